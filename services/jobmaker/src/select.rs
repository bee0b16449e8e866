//! Which template to mine on: btcpool's anti-jitter rules, by chain work.
//!
//! Several gbtmakers poll several nodes, so templates arrive out of order and
//! nodes briefly disagree about the tip. Following every template would flap
//! miners between tips with a clean job each time. The rules:
//! - a tip with more chain work is a new block: switch at once, clean (more
//!   work, not a greater height: a reorganization may lead to a lower one;
//!   templates from before gbtmaker published chain work compare heights);
//! - the same tip, newer: refresh the transactions, not clean; but when the
//!   current template is an empty block's (gbtmaker's `empty_block_jobs`)
//!   and the new one has transactions, a job at once (btcpool: "current job
//!   was empty and best is non-empty at same height"); an empty template
//!   never replaces a full one;
//! - another tip with no more work is a rival: believed at once only when
//!   the node of the current template no longer holds its tip as its best
//!   block (the leader asks it: the node was replaced, or reorganized),
//!   otherwise only once the current template is older than twice the job
//!   interval (the node we followed may have gone away); then it is a clean
//!   switch.
//!
//! Before any of that, [`admit`] keeps out what must never be mined on: a
//! template no node could have made, one older than the stale limit, one
//! from a node that is not in jobmaker's `[[nodes]]`, or of another network.

use std::time::Duration;

use bitcoin::Network;
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
    /// Another tip with no more work, while the current one is fresh: a
    /// new tip only if the current template's node no longer holds the
    /// current tip as its best block.
    Rival,
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
    if new.height == cur.height && new.prev_blockhash == cur.prev_blockhash {
        return match (cur.transactions.is_empty(), new.transactions.is_empty()) {
            (true, false) => Verdict::Fill,
            (false, true) => Verdict::Ignore,
            _ => Verdict::Refresh,
        };
    }
    if new.has_more_work_than(cur) {
        return Verdict::NewTip;
    }
    // Less or equal work, or a competing tip: only once ours has gone stale,
    // or its node says it moved away from it.
    let age = Duration::from_millis(now_ms.saturating_sub(cur.created_at_ms));
    if age > job_interval * 2 {
        Verdict::NewTip
    } else {
        Verdict::Rival
    }
}

/// Why a template is not mined on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No node could have made it (poison).
    Impossible(String),
    /// Older than the stale limit (read back from the tail).
    Stale,
    /// From a node that is not in jobmaker's `[[nodes]]`.
    UnknownNode,
    /// From a node of another network.
    OtherNetwork(Network),
}

impl Refusal {
    /// The `reason` label of `jobmaker_templates_skipped`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Refusal::Impossible(_) => "impossible",
            Refusal::Stale => "stale",
            Refusal::UnknownNode => "unknown_node",
            Refusal::OtherNetwork(_) => "other_network",
        }
    }
}

/// What a template must be to be mined on at all: one a node could have
/// made, no older than `stale_ms` at `now_ms`, from one of the `nodes`
/// configured and, where gbtmaker told its network, of `network`.
pub(crate) fn admit(
    t: &BlockTemplate,
    nodes: &[String],
    network: Network,
    now_ms: u64,
    stale_ms: u64,
) -> Result<(), Refusal> {
    t.check().map_err(Refusal::Impossible)?;
    if !nodes.contains(&t.node_id) {
        return Err(Refusal::UnknownNode);
    }
    if let Some(other) = t.network.filter(|n| *n != network) {
        return Err(Refusal::OtherNetwork(other));
    }
    if now_ms.saturating_sub(t.created_at_ms) > stale_ms {
        return Err(Refusal::Stale);
    }
    Ok(())
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
            network: Some(Network::Regtest),
            chain_work: None,
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
    fn flapping_back_is_a_rival_until_the_current_tip_is_stale() {
        let cur = t(6, 2, 100_000);
        let lower = t(5, 1, 101_000);
        assert_eq!(judge(Some(&cur), &lower, 101_000, JOB), Verdict::Rival);
        let rival = t(6, 3, 101_000);
        assert_eq!(judge(Some(&cur), &rival, 101_000, JOB), Verdict::Rival);
        // 61 s later our template is older than 2 × 30 s: the node we followed is gone.
        let later = t(5, 1, 161_000);
        assert_eq!(judge(Some(&cur), &later, 161_000, JOB), Verdict::NewTip);
    }

    fn with_work(mut t: BlockTemplate, work: u8) -> BlockTemplate {
        let mut be = [0u8; 32];
        be[31] = work;
        t.chain_work = Some(bitcoin::pow::Work::from_be_bytes(be));
        t
    }

    #[test]
    fn more_chain_work_is_a_new_tip_even_at_a_lower_height() {
        let cur = with_work(t(229, 1, 100_000), 10);
        // Another chain, lower but harder: the best.
        let harder = with_work(t(111, 2, 101_000), 11);
        assert_eq!(judge(Some(&cur), &harder, 101_000, JOB), Verdict::NewTip);
        // Higher but with less work: a rival, not a new block.
        let longer = with_work(t(300, 3, 101_000), 9);
        assert_eq!(judge(Some(&cur), &longer, 101_000, JOB), Verdict::Rival);
    }

    #[test]
    fn only_templates_of_the_configured_nodes_and_network_are_mined_on() {
        let nodes = ["core-a".to_owned(), "core-b".to_owned()];
        let now = 100_000;
        let mut ok = t(5, 1, now);
        ok.node_id = "core-b".into();
        assert_eq!(admit(&ok, &nodes, Network::Regtest, now, 60_000), Ok(()));
        let mut stranger = ok.clone();
        stranger.node_id = "127.0.0.1:18443".into();
        assert_eq!(
            admit(&stranger, &nodes, Network::Regtest, now, 60_000),
            Err(Refusal::UnknownNode)
        );
        assert_eq!(
            admit(&ok, &nodes, Network::Bitcoin, now, 60_000),
            Err(Refusal::OtherNetwork(Network::Regtest))
        );
        // A template from before gbtmaker told the network passes that check.
        let mut untold = ok.clone();
        untold.network = None;
        assert_eq!(
            admit(&untold, &nodes, Network::Bitcoin, now, 60_000),
            Ok(())
        );
        assert_eq!(
            admit(&ok, &nodes, Network::Regtest, now + 60_001, 60_000),
            Err(Refusal::Stale)
        );
        let mut forged = ok.clone();
        forged.height = 0;
        assert!(matches!(
            admit(&forged, &nodes, Network::Regtest, now, 60_000),
            Err(Refusal::Impossible(_))
        ));
    }
}
