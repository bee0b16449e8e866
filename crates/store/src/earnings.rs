//! What a user can read of the books about themselves: each block's share
//! of work and credit with the window it was split by, their payouts, and
//! their entries.

use mysql_async::prelude::{Query, WithParams};

use crate::{Store, StoreError};

/// The rows are the API's types: what statshttpd answers is what was read.
pub use sluice_api::{EarnedBlock, UserEntry, UserPayout};

impl Store {
    /// The `limit` newest blocks `user` has a part of.
    pub async fn earned_blocks(
        &self,
        user: u32,
        limit: u32,
    ) -> Result<Vec<EarnedBlock>, StoreError> {
        "SELECT b.hash, b.height, b.state, b.scheme, b.reward, b.fee_bps, b.first_minute, \
         b.last_minute, CAST(b.window_size AS CHAR) AS window_size, \
         CAST(b.window_work AS CHAR) AS window_work, b.filled, CAST(u.work AS CHAR) AS work, \
         u.credit, DATE_FORMAT(b.credited_at, '%Y-%m-%d %H:%i:%s') AS credited_at \
         FROM ledger_block_users u JOIN ledger_blocks b ON b.hash = u.hash \
         WHERE u.user_id = ? ORDER BY b.credited_at DESC, b.hash LIMIT ?"
            .with((user, limit))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// The `limit` newest payouts to `user`.
    pub async fn user_payouts(&self, user: u32, limit: u32) -> Result<Vec<UserPayout>, StoreError> {
        "SELECT p.id, p.txid, p.state, i.amount, i.address, \
         DATE_FORMAT(p.created_at, '%Y-%m-%d %H:%i:%s') AS created_at \
         FROM payout_items i JOIN payouts p ON p.id = i.payout_id \
         WHERE i.user_id = ? ORDER BY p.id DESC LIMIT ?"
            .with((user, limit))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// The `limit` newest entries of `user`'s accounts.
    pub async fn user_entries(&self, user: u32, limit: u32) -> Result<Vec<UserEntry>, StoreError> {
        "SELECT t.kind, t.reference, e.account, e.amount, \
         DATE_FORMAT(t.created_at, '%Y-%m-%d %H:%i:%s') AS at \
         FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id \
         WHERE e.user_id = ? ORDER BY t.id DESC LIMIT ?"
            .with((user, limit))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))
    }
}
