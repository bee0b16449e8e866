//! The `found_blocks` table: one row per block hash, whoever writes it.

use std::collections::BTreeMap;

use mysql_async::prelude::{Query, WithParams};

pub use sluice_core::record::BlockStatus;

use crate::{Store, StoreError};

/// A found block as blkmaker records it (and statshttpd lists it): the
/// API's type.
pub use sluice_api::FoundBlock;

impl Store {
    /// Records `block`, idempotent on its hash: a second write (a replayed
    /// share, a second blkmaker) adds its per-node results to the row's and
    /// changes nothing else.
    pub async fn record_found_block(&self, block: &FoundBlock) -> Result<(), StoreError> {
        r"INSERT INTO found_blocks (height, hash, prev_hash, user_id, worker_id, worker_name,
              job_id, reward, fees, size, tx_count, submit_results, solo_address)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON DUPLICATE KEY UPDATE submit_results = COALESCE(
              JSON_MERGE_PATCH(submit_results, VALUES(submit_results)),
              VALUES(submit_results))"
            .with(vec![
                mysql_async::Value::from(block.height),
                block.hash.as_str().into(),
                block.prev_hash.as_str().into(),
                block.user_id.into(),
                block.worker_id.into(),
                block.worker_name.as_str().into(),
                block.job_id.into(),
                block.reward.into(),
                block.fees.into(),
                block.size.into(),
                block.tx_count.into(),
                // A JSON object: a later write's answers merge into it.
                serde_json::to_string(&block.submit_results)
                    .unwrap_or_else(|_| "{}".into())
                    .into(),
                block.solo_address.as_deref().into(),
            ])
            .ignore(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// The block with `hash`, if recorded.
    pub async fn found_block(&self, hash: &str) -> Result<Option<FoundBlock>, StoreError> {
        let row: Option<mysql_async::Row> = format!("{SELECT_BLOCKS} WHERE hash = ?")
            .with((hash,))
            .first(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.and_then(|mut row| found_row(&mut row)))
    }

    /// How many rows carry `hash` (0 or 1: the column is unique).
    pub async fn found_block_count(&self, hash: &str) -> Result<u64, StoreError> {
        "SELECT COUNT(*) FROM found_blocks WHERE hash = ?"
            .with((hash,))
            .first(self.pool())
            .await
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }

    /// The newest `limit` blocks (in the order they were recorded: heights repeat
    /// when several of the pool's blocks compete, or chains are reset on test nodes),
    /// of `user_id` only if given, with where they stand and their work.
    pub async fn recent_found_blocks(
        &self,
        limit: u32,
        user_id: Option<u32>,
    ) -> Result<Vec<ListedBlock>, StoreError> {
        let rows: Vec<mysql_async::Row> =
            "SELECT b.height, b.hash, b.prev_hash, b.user_id, b.worker_id, b.worker_name, \
             b.job_id, b.reward, b.fees, b.size, b.tx_count, b.submit_results, b.is_orphaned, \
             b.solo_address, CAST(UNIX_TIMESTAMP(b.created_at) AS UNSIGNED), b.confirmations, b.status, \
             w.work, w.network_difficulty, w.since_ms, w.whole \
             FROM found_blocks b LEFT JOIN block_work w ON w.hash = b.hash \
             WHERE (? IS NULL OR b.user_id = ?) ORDER BY b.id DESC LIMIT ?"
                .with((user_id, user_id, limit))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|row| {
                listed(row).ok_or_else(|| {
                    self.err(mysql_async::Error::Other(
                        "found_blocks row of unexpected types".into(),
                    ))
                })
            })
            .collect()
    }

    /// Blocks whose standing may still change: pending and orphaned ones (a
    /// reorganization may bring an orphan back) recorded in the last
    /// `within_hours`; at most `limit`, the newest first.
    pub async fn unsettled_blocks(
        &self,
        within_hours: u32,
        limit: u32,
    ) -> Result<Vec<Unsettled>, StoreError> {
        let rows: Vec<(String, u32, String, u64, String)> =
            "SELECT hash, height, worker_name, reward, status FROM found_blocks \
             WHERE status IN ('pending', 'orphaned') \
             AND created_at > NOW() - INTERVAL ? HOUR ORDER BY id DESC LIMIT ?"
                .with((within_hours, limit))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(hash, height, worker_name, reward, status)| Unsettled {
                hash,
                height,
                worker_name,
                reward,
                status: BlockStatus::parse(&status),
            })
            .collect())
    }

    /// Records what the nodes say of block `hash`; true if its status
    /// changed (false when another blkmaker already wrote the same).
    pub async fn set_block_standing(
        &self,
        hash: &str,
        status: BlockStatus,
        confirmations: u32,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        "UPDATE found_blocks SET status = ?, is_orphaned = ?, confirmations = ?, \
         checked_at = NOW() WHERE hash = ? AND status <> ?"
            .with((
                status.as_str(),
                status == BlockStatus::Orphaned,
                confirmations,
                hash,
                status.as_str(),
            ))
            .ignore(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        if conn.affected_rows() > 0 {
            return Ok(true);
        }
        "UPDATE found_blocks SET confirmations = ?, checked_at = NOW() WHERE hash = ?"
            .with((confirmations, hash))
            .ignore(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(false)
    }

    /// Records the work behind block `work.hash`; the first write wins (a
    /// rebuild after a restart may count less of the round).
    pub async fn record_block_work(&self, work: &BlockWork) -> Result<(), StoreError> {
        "INSERT IGNORE INTO block_work (hash, height, work, network_difficulty, since_ms, whole) \
         VALUES (?, ?, ?, ?, ?, ?)"
            .with((
                &work.hash,
                work.height,
                work.work,
                work.network_difficulty,
                work.since_ms,
                work.whole,
            ))
            .ignore(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// Rows in `found_blocks`.
    pub async fn found_blocks_total(&self) -> Result<u64, StoreError> {
        "SELECT COUNT(*) FROM found_blocks"
            .with(())
            .first(self.pool())
            .await
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }
}

const SELECT_BLOCKS: &str = "SELECT height, hash, prev_hash, user_id, worker_id, worker_name, \
     job_id, reward, fees, size, tx_count, submit_results, is_orphaned, solo_address FROM found_blocks";

/// A found block whose standing may still change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    /// Block hash, hex.
    pub hash: String,
    /// Height.
    pub height: u32,
    /// Finder's worker name.
    pub worker_name: String,
    /// Total coinbase output, satoshis.
    pub reward: u64,
    /// Where it stood at the last look.
    pub status: BlockStatus,
}

/// The pool's work behind one block (`block_work`).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockWork {
    /// Block hash, hex.
    pub hash: String,
    /// Height.
    pub height: u32,
    /// Accepted difficulty since the pool's previous block.
    pub work: f64,
    /// The network difficulty the block met.
    pub network_difficulty: f64,
    /// Unix ms the counted round began.
    pub since_ms: u64,
    /// False when the round began before the oldest share counted (work is
    /// a lower bound).
    pub whole: bool,
}

impl BlockWork {
    /// Work over network difficulty: 1.0 is a block's expected work.
    pub fn effort(&self) -> f64 {
        if self.network_difficulty > 0.0 {
            self.work / self.network_difficulty
        } else {
            0.0
        }
    }
}

/// A found block as listed: the row, when it was recorded, where it stands
/// and the work behind it (if statshttpd counted it).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedBlock {
    /// The row.
    pub block: FoundBlock,
    /// Unix seconds of recording.
    pub found_at: u64,
    /// Confirmations the best node gave it at the last check.
    pub confirmations: u32,
    /// Where it stands.
    pub status: BlockStatus,
    /// The work behind it.
    pub work: Option<BlockWork>,
}

/// The `found_blocks` columns of [`SELECT_BLOCKS`]'s order, first in `row`.
fn found_row(row: &mut mysql_async::Row) -> Option<FoundBlock> {
    let results: String = row.take_opt(11)?.ok()?;
    Some(FoundBlock {
        height: row.take_opt(0)?.ok()?,
        hash: row.take_opt(1)?.ok()?,
        prev_hash: row.take_opt(2)?.ok()?,
        user_id: row.take_opt(3)?.ok()?,
        worker_id: row.take_opt(4)?.ok()?,
        worker_name: row.take_opt(5)?.ok()?,
        job_id: row.take_opt(6)?.ok()?,
        reward: row.take_opt(7)?.ok()?,
        fees: row.take_opt(8)?.ok()?,
        size: row.take_opt(9)?.ok()?,
        tx_count: row.take_opt(10)?.ok()?,
        // An unreadable record reads as no answers, not as no block.
        submit_results: serde_json::from_str::<BTreeMap<String, String>>(&results)
            .unwrap_or_default(),
        is_orphaned: row.take_opt(12)?.ok()?,
        solo_address: row.take_opt(13)?.ok()?,
    })
}

/// A row of [`Store::recent_found_blocks`]'s query.
fn listed(mut row: mysql_async::Row) -> Option<ListedBlock> {
    let block = found_row(&mut row)?;
    let found_at = row.take_opt(14)?.ok()?;
    let confirmations = row.take_opt(15)?.ok()?;
    let status: String = row.take_opt(16)?.ok()?;
    let work: Option<f64> = row.take_opt(17)?.ok()?;
    let network_difficulty: Option<f64> = row.take_opt(18)?.ok()?;
    let since_ms: Option<u64> = row.take_opt(19)?.ok()?;
    let whole: Option<bool> = row.take_opt(20)?.ok()?;
    let work = match (work, network_difficulty, since_ms, whole) {
        (Some(work), Some(network_difficulty), Some(since_ms), Some(whole)) => Some(BlockWork {
            hash: block.hash.clone(),
            height: block.height,
            work,
            network_difficulty,
            since_ms,
            whole,
        }),
        _ => None,
    };
    Some(ListedBlock {
        block,
        found_at,
        confirmations,
        status: BlockStatus::parse(&status),
        work,
    })
}
