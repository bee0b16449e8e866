//! The confirmation watch: every `confirm_interval_secs`, each found block
//! whose standing may still change is looked up on every node
//! (`getblockheader`), and its row says where it stands: pending (on a best
//! chain, not yet mature), confirmed (`mature_confirmations` deep: Core lets
//! its coinbase be spent) or orphaned (the nodes that know it all hold it
//! off their best chain: Core's -1 confirmations). A node that does not know
//! the block has no say (it never got it, or it is another chain's: several
//! test chains share one database). Blocks are watched for
//! `watch_hours` after they were found. A change of standing is an Event for the
//! operators, sent by the blkmaker whose write changed the row (so several
//! blkmakers tell it once).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::record::{BlockStanding, BlockStatus, Event, EventKind};
use sluice_node::NodeRpc;
use sluice_store::Unsettled;
use tokio_util::sync::CancellationToken;

use crate::Blkmaker;

/// Rows looked at per round (the newest first).
const PER_ROUND: u32 = 500;

/// Runs the watch until `token` is cancelled.
pub(crate) async fn watch(blk: Arc<Blkmaker>, token: CancellationToken) {
    let timeout = Duration::from_secs(blk.config.rpc_timeout_secs);
    let nodes: Vec<NodeRpc> = blk
        .config
        .nodes
        .iter()
        .filter_map(|n| match NodeRpc::new(n, timeout) {
            Ok(rpc) => Some(rpc),
            Err(error) => {
                tracing::error!(%error, node = n.name, "node left out of the confirmation watch");
                None
            }
        })
        .collect();
    tracing::info!(
        nodes = nodes.len(),
        every_secs = blk.config.confirm_interval_secs,
        watch_hours = blk.config.watch_hours,
        mature = blk.config.mature_confirmations,
        "confirmation watch started"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(blk.config.confirm_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A round under way ends with the service: the next start repeats it.
        tokio::select! {
            () = token.cancelled() => return,
            () = look(&blk, &nodes) => {}
        }
    }
}

/// One round: the chain, if the pool was seen on the wrong one, and every
/// unsettled block.
async fn look(blk: &Blkmaker, nodes: &[NodeRpc]) {
    if blk.wrong_chain.load(std::sync::atomic::Ordering::SeqCst)
        && crate::chain::newest_job_on_a_held_tip(&blk.config.kafka, nodes).await == Some(true)
    {
        blk.right_chain("the newest job builds on a block the nodes hold".into());
    }
    match round(blk, nodes).await {
        Ok(summary) => {
            tracing::debug!(summary, "confirmation round");
            blk.health.set("confirmations", true, summary);
        }
        Err(error) => {
            tracing::warn!(error, "confirmation watch round failed; next round retries");
            blk.health.set("confirmations", false, error);
        }
    }
    blk.metrics.confirmation_rounds.inc();
}

/// What one node says of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// On its best chain, this deep.
    Confirmed(u32),
    /// Known, off its best chain.
    Elsewhere,
    /// It cannot tell (unreachable, or it does not know the block).
    Unknown,
}

/// Where a block stands from what every node says; `None` when no node can
/// tell (the row is left as it is).
pub(crate) fn standing(seen: &[Seen], mature: u32) -> Option<(BlockStatus, u32)> {
    let best = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Confirmed(c) => Some(*c),
            _ => None,
        })
        .max();
    match best {
        Some(c) if c >= mature => Some((BlockStatus::Confirmed, c)),
        Some(c) => Some((BlockStatus::Pending, c)),
        None if seen.contains(&Seen::Elsewhere) => Some((BlockStatus::Orphaned, 0)),
        None => None,
    }
}

/// One look at every unsettled block; a summary for `/health`.
async fn round(blk: &Blkmaker, nodes: &[NodeRpc]) -> Result<String, String> {
    let heights: Vec<Option<u64>> =
        futures::future::join_all(nodes.iter().map(NodeRpc::block_count))
            .await
            .into_iter()
            .map(Result::ok)
            .collect();
    let Some(tip) = heights.iter().flatten().max().copied() else {
        return Err("no node reachable".into());
    };
    let mature = blk.config.mature_confirmations;
    let rows = blk
        .store
        .unsettled_blocks(blk.config.watch_hours, PER_ROUND)
        .await
        .map_err(|e| e.to_string())?;
    let mut changed = 0;
    for row in &rows {
        let Ok(hash) = bitcoin::BlockHash::from_str(&row.hash) else {
            tracing::error!(
                hash = row.hash,
                "found_blocks holds a malformed hash; skipped"
            );
            continue;
        };
        let answers = futures::future::join_all(nodes.iter().map(|n| n.confirmations(hash))).await;
        let seen: Vec<Seen> = answers
            .into_iter()
            .map(|answer| match answer {
                Ok(Some(c)) if c >= 1 => Seen::Confirmed(u32::try_from(c).unwrap_or(u32::MAX)),
                Ok(Some(_)) => Seen::Elsewhere,
                Ok(None) | Err(_) => Seen::Unknown,
            })
            .collect();
        let Some((status, confirmations)) = standing(&seen, mature) else {
            continue;
        };
        let moved = blk
            .store
            .set_block_standing(&row.hash, status, confirmations)
            .await
            .map_err(|e| e.to_string())?;
        if moved {
            changed += 1;
            tell(blk, row, hash, status, confirmations);
        }
    }
    Ok(format!(
        "{} block(s) watched at node height {tip}, {changed} changed standing in the last round",
        rows.len()
    ))
}

/// Logs, counts and publishes a change of standing.
fn tell(
    blk: &Blkmaker,
    row: &Unsettled,
    hash: bitcoin::BlockHash,
    status: BlockStatus,
    confirmations: u32,
) {
    match status {
        BlockStatus::Orphaned => {
            tracing::warn!(%hash, height = row.height, was = row.status.as_str(), "BLOCK ORPHANED");
        }
        _ => {
            tracing::info!(%hash, height = row.height, status = status.as_str(), was = row.status.as_str(),
            confirmations, "block standing changed")
        }
    }
    blk.metrics.standing_changes(status).inc();
    let event = Event {
        timestamp_ms: sluice_service::now_ms(),
        kind: EventKind::BlockStanding(BlockStanding {
            height: row.height,
            hash,
            status,
            confirmations,
            worker_name: row.worker_name.clone(),
            reward_sat: row.reward,
        }),
    };
    blk.send_event(event, "BlockStanding");
}

#[cfg(test)]
mod tests {
    use super::{Seen, standing};
    use sluice_core::record::BlockStatus;

    #[test]
    fn the_deepest_node_decides_and_orphaned_needs_a_node_that_left_it() {
        use Seen::{Confirmed, Elsewhere, Unknown};
        assert_eq!(
            standing(&[Confirmed(3), Elsewhere], 100),
            Some((BlockStatus::Pending, 3))
        );
        assert_eq!(
            standing(&[Unknown, Confirmed(100)], 100),
            Some((BlockStatus::Confirmed, 100))
        );
        assert_eq!(
            standing(&[Elsewhere, Unknown], 100),
            Some((BlockStatus::Orphaned, 0))
        );
        assert_eq!(standing(&[Unknown, Unknown], 100), None, "nobody can tell");
        assert_eq!(standing(&[], 100), None);
    }
}
