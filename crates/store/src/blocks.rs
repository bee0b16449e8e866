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
}

const SELECT_BLOCKS: &str = "SELECT height, hash, prev_hash, user_id, worker_id, worker_name, \
     job_id, reward, fees, size, tx_count, submit_results, is_orphaned FROM found_blocks";
