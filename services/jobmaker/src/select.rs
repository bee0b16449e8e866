//! Which template to mine on: btcpool's anti-jitter rules.
//!
//! Several gbtmakers poll several nodes, so templates arrive out of order and
//! nodes briefly disagree about the tip. Following every template would flap
//! miners between tips with a clean job each time. The rules:
//! - a higher height is a new block: switch at once, clean;
//! - the same tip, newer: refresh the transactions, not clean; but when the
//!   current template is an empty block's (gbtmaker's `empty_block_jobs`)
//!   and the new one has transactions, a job at once (btcpool: "current job
//!   was empty and best is non-empty at same height"); an empty template
//!   never replaces a full one;
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
    /// Same tip, with the transactions the current (empty-block) template
    /// lacks: a job now, not clean.
    Fill,
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
        return match (cur.transactions.is_empty(), new.transactions.is_empty()) {
            (true, false) => Verdict::Fill,
            (false, true) => Verdict::Ignore,
            _ => Verdict::Refresh,
        };
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

    /// `t` with one transaction.
    fn full(height: u32, prev: u8, created_at_ms: u64) -> BlockTemplate {
        let mut f = t(height, prev, created_at_ms);
        f.transactions.push(sluice_core::TemplateTx {
            txid: bitcoin::Txid::all_zeros(),
            wtxid: bitcoin::Wtxid::all_zeros(),
            fee: Amount::from_sat(10),
            weight: bitcoin::Weight::from_wu(400),
            raw: vec![1],
        });
        f.id = f.compute_id();
        f
    }

    #[test]
    fn a_full_template_replaces_an_empty_block_s_at_once_never_the_reverse() {
        let empty = t(7, 1, 10_000);
        let filled = full(7, 1, 10_050);
        assert_eq!(
            judge(Some(&empty), &filled, 10_050, JOB),
            Verdict::Fill,
            "the transactions arrive: a job now"
        );
        // A second gbtmaker's empty template arriving after the full one.
        assert_eq!(
            judge(Some(&filled), &t(7, 1, 10_060), 10_060, JOB),
            Verdict::Ignore
        );
        // Full after full on the same tip is the usual refresh.
        assert_eq!(
            judge(Some(&filled), &full(7, 1, 20_000), 20_000, JOB),
            Verdict::Refresh
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
