//! Whether the pool mines on a chain its nodes hold.
//!
//! A block every node that answered refuses as `prev-blk-not-found` (Core's
//! reason for a block whose parent it does not have) builds on a block none
//! of them holds: the jobs the miners get are another chain's (templates of
//! a node the pool no longer uses, a jobmaker not configured with these
//! nodes), and every block found there is worthless. That raises
//! `wrong_chain` in /health (ERROR in the log, a metric; tgbot tells the
//! operators) until the pool is seen mining on a tip a node holds: a block a
//! node accepts, or the newest job on the Job topic building on a block a
//! node has on its best chain (looked at in each confirmation round).

use std::collections::BTreeMap;
use std::time::Duration;

use bitcoin::BlockHash;
use sluice_bus::{BusConfig, TailConsumer, Topic};
use sluice_core::{Job, SolvedShare};
use sluice_node::{NodeRpc, SubmitAnswer};

use crate::submit::Outcome;

/// Core's reject reason for a block whose previous block it does not have.
pub(crate) const PREV_NOT_FOUND: &str = "prev-blk-not-found";

/// The /health component.
pub(crate) const COMPONENT: &str = "wrong_chain";

/// Whether the nodes' answers say the block builds on a block none of them
/// has: every node that answered refused it as `prev-blk-not-found`, and
/// one at least answered (an unreachable node has no say).
pub(crate) fn builds_on_unknown_block(results: &BTreeMap<String, Outcome>) -> bool {
    let answers: Vec<&SubmitAnswer> = results
        .values()
        .filter_map(|o| match o {
            Outcome::Answer(a) => Some(a),
            _ => None,
        })
        .collect();
    !answers.is_empty()
        && answers
            .iter()
            .all(|a| matches!(a, SubmitAnswer::Rejected(r) if r == PREV_NOT_FOUND))
}

/// What /health says while the pool mines on a chain its nodes do not hold.
pub(crate) fn problem(share: &SolvedShare) -> String {
    format!(
        "block {} at height {} builds on {}, which no node has ({PREV_NOT_FOUND} from every node): \
         the pool is mining on a chain its nodes do not hold",
        share.block_hash, share.height, share.header.prev_blockhash
    )
}

/// Whether a node holds the tip the newest job builds on on its best chain:
/// `Some(true)` yes, `Some(false)` no node does, `None` when it cannot be
/// told (no job, the broker or every node unreachable).
pub(crate) async fn newest_job_on_a_held_tip(kafka: &BusConfig, nodes: &[NodeRpc]) -> Option<bool> {
    let tip = newest_job_tip(kafka).await?;
    let answers = futures::future::join_all(nodes.iter().map(|n| n.confirmations(tip))).await;
    let mut told = false;
    for answer in answers {
        match answer {
            Ok(Some(confirmations)) if confirmations >= 1 => return Some(true),
            Ok(_) => told = true,
            Err(_) => {}
        }
    }
    told.then_some(false)
}

/// The tip the newest job on the Job topic builds on.
async fn newest_job_tip(kafka: &BusConfig) -> Option<BlockHash> {
    let topic = Topic::<Job>::new(kafka.topics.job.clone());
    let tail = TailConsumer::new(kafka, &topic, 1).await.ok()?;
    let record = tokio::time::timeout(Duration::from_secs(2), tail.next())
        .await
        .ok()?
        .ok()?;
    Some(record.value.prev_blockhash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(outcomes: &[Outcome]) -> BTreeMap<String, Outcome> {
        outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("node{i}"), o.clone()))
            .collect()
    }

    fn refused(reason: &str) -> Outcome {
        Outcome::Answer(SubmitAnswer::Rejected(reason.into()))
    }

    #[test]
    fn a_wrong_chain_is_every_answering_node_missing_the_parent() {
        let missing = refused(PREV_NOT_FOUND);
        let unreachable = Outcome::Unreachable("connection refused".into());
        assert!(builds_on_unknown_block(&results(std::slice::from_ref(
            &missing
        ))));
        assert!(builds_on_unknown_block(&results(&[
            missing.clone(),
            unreachable.clone()
        ])));
        // One node has the parent (it refused for another reason, or took it).
        assert!(!builds_on_unknown_block(&results(&[
            missing.clone(),
            refused("high-hash")
        ])));
        assert!(!builds_on_unknown_block(&results(&[
            missing,
            Outcome::Answer(SubmitAnswer::Accepted)
        ])));
        // Nobody answered: nothing is known of the chain.
        assert!(!builds_on_unknown_block(&results(&[unreachable])));
        assert!(!builds_on_unknown_block(&results(&[refused(
            "bad-txnmrklroot"
        )])));
    }
}
