//! Which template to mine on: btcpool's anti-jitter rules.
//!
//! Several gbtmakers poll several nodes, so templates arrive out of order and
//! nodes briefly disagree about the tip. Following every template would flap
//! miners between tips with a clean job each time. The rules:
//! - a higher height is a new block: switch at once, clean;
//! - the same tip, newer: refresh the transactions, not clean;
//! - a lower height, or another tip at the same height, is believed only once
//!   the current template is older than twice the job interval (the node we
//!   followed may have gone away); then it is a clean switch.

use std::time::Duration;

use sluice_core::BlockTemplate;

/// What to do with an arriving template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep the current template.
    Ignore,
    /// Same tip, fresher: use it for the next job.
    Refresh,
    /// A different tip: make a clean job now.
    NewTip,
}

/// Judges `new` against the current template at `now_ms`.
pub(crate) fn judge(
    current: Option<&BlockTemplate>,
    new: &BlockTemplate,
    now_ms: u64,
    job_interval: Duration,
) -> Verdict {
    let Some(cur) = current else {
        return Verdict::NewTip;
    };
    if new.id == cur.id || new.created_at_ms < cur.created_at_ms {
        return Verdict::Ignore;
    }
    if new.height > cur.height {
        return Verdict::NewTip;
    }
    if new.height == cur.height && new.prev_blockhash == cur.prev_blockhash {
        return Verdict::Refresh;
    }
    // Lower height or a competing tip: only once ours has gone stale.
    let age = Duration::from_millis(now_ms.saturating_sub(cur.created_at_ms));
    if age > job_interval * 2 {
        Verdict::NewTip
    } else {
        Verdict::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::block::Version;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, BlockHash, CompactTarget};
    use sluice_core::TemplateId;

    fn t(height: u32, prev: u8, created_at_ms: u64) -> BlockTemplate {
        let mut t = BlockTemplate {
            id: TemplateId([0; 32]),
            node_id: "n".into(),
            created_at_ms,
            height,
            prev_blockhash: BlockHash::from_byte_array([prev; 32]),
            version: Version::from_consensus(0x2000_0000),
            bits: CompactTarget::from_consensus(0x207f_ffff),
            cur_time: (created_at_ms / 1000) as u32,
            min_time: 0,
            coinbase_value: Amount::from_sat(1),
            default_witness_commitment: None,
            transactions: vec![],
        };
        t.id = t.compute_id();
        t
    }

    const JOB: Duration = Duration::from_secs(30);

    #[test]
    fn first_template_and_higher_heights_are_new_tips() {
        assert_eq!(judge(None, &t(5, 1, 1_000), 1_000, JOB), Verdict::NewTip);
        assert_eq!(
            judge(Some(&t(5, 1, 1_000)), &t(6, 2, 2_000), 2_000, JOB),
            Verdict::NewTip
        );
    }

    #[test]
    fn same_tip_refreshes_and_repeats_or_older_ones_are_ignored() {
        let cur = t(5, 1, 10_000);
        assert_eq!(
            judge(Some(&cur), &t(5, 1, 15_000), 15_000, JOB),
            Verdict::Refresh
        );
        assert_eq!(
            judge(Some(&cur), &cur.clone(), 15_000, JOB),
            Verdict::Ignore
        );
        assert_eq!(
            judge(Some(&cur), &t(5, 1, 9_000), 15_000, JOB),
            Verdict::Ignore,
            "arrived late"
        );
    }

    #[test]
    fn flapping_back_is_ignored_until_the_current_tip_is_stale() {
        let cur = t(6, 2, 100_000);
        let lower = t(5, 1, 101_000);
        assert_eq!(judge(Some(&cur), &lower, 101_000, JOB), Verdict::Ignore);
        let rival = t(6, 3, 101_000);
        assert_eq!(judge(Some(&cur), &rival, 101_000, JOB), Verdict::Ignore);
        // 61 s later our template is older than 2 × 30 s: the node we followed is gone.
        let later = t(5, 1, 161_000);
        assert_eq!(judge(Some(&cur), &later, 161_000, JOB), Verdict::NewTip);
    }
}
