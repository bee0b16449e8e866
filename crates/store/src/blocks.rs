//! The `found_blocks` table: one row per block hash, whoever writes it.

use mysql_async::prelude::{FromRow, Query, WithParams};

use crate::{Store, StoreError};

/// A found block as blkmaker records it (and statshttpd lists it).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct FoundBlock {
    /// Height.
    pub height: u32,
    /// Block hash, hex as RPC shows it.
    pub hash: String,
    /// Parent's hash, hex.
    pub prev_hash: String,
    /// Finder's account.
    pub user_id: u32,
    /// Finder's worker id.
    pub worker_id: i64,
    /// Finder's worker name.
    pub worker_name: String,
    /// The job it answered.
    pub job_id: u64,
    /// Total coinbase output, satoshis.
    pub reward: u64,
    /// Fees of its transactions, satoshis.
    pub fees: u64,
    /// Serialized size, bytes.
    pub size: u32,
    /// Transactions, coinbase included.
    pub tx_count: u32,
    /// Per-node results, a JSON object `{"node": "accepted", ...}`.
    pub submit_results: String,
    /// Marked when the block left the best chain.
    pub is_orphaned: bool,
}

impl Store {
    /// Records `block`, idempotent on its hash: a second write (a replayed
    /// share, a second blkmaker) adds its per-node results to the row's and
    /// changes nothing else.
    pub async fn record_found_block(&self, block: &FoundBlock) -> Result<(), StoreError> {
        r"INSERT INTO found_blocks (height, hash, prev_hash, user_id, worker_id, worker_name,
              job_id, reward, fees, size, tx_count, submit_results)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON DUPLICATE KEY UPDATE submit_results = COALESCE(
              JSON_MERGE_PATCH(submit_results, VALUES(submit_results)),
              VALUES(submit_results))"
            .with((
                block.height,
                &block.hash,
                &block.prev_hash,
                block.user_id,
                block.worker_id,
                &block.worker_name,
                block.job_id,
                block.reward,
                block.fees,
                block.size,
                block.tx_count,
                &block.submit_results,
            ))
            .ignore(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// The block with `hash`, if recorded.
    pub async fn found_block(&self, hash: &str) -> Result<Option<FoundBlock>, StoreError> {
        format!("{SELECT_BLOCKS} WHERE hash = ?")
            .with((hash,))
            .first(self.pool())
            .await
            .map_err(|e| self.err(e))
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

    /// The newest `limit` blocks (by height, then by when they were found),
    /// of `user_id` only if given, each with its unix time of recording.
    pub async fn recent_found_blocks(
        &self,
        limit: u32,
        user_id: Option<u32>,
    ) -> Result<Vec<(FoundBlock, u64)>, StoreError> {
        let rows: Vec<mysql_async::Row> =
            "SELECT height, hash, prev_hash, user_id, worker_id, worker_name, job_id, reward, \
             fees, size, tx_count, submit_results, is_orphaned, \
             CAST(UNIX_TIMESTAMP(created_at) AS UNSIGNED) FROM found_blocks \
             WHERE (? IS NULL OR user_id = ?) ORDER BY height DESC, id DESC LIMIT ?"
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
     job_id, reward, fees, size, tx_count, submit_results, is_orphaned FROM found_blocks";

/// A row of [`Store::recent_found_blocks`]'s query.
fn listed(mut row: mysql_async::Row) -> Option<(FoundBlock, u64)> {
    Some((
        FoundBlock {
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
            submit_results: row.take_opt(11)?.ok()?,
            is_orphaned: row.take_opt(12)?.ok()?,
        },
        row.take_opt(13)?.ok()?,
    ))
}
