//! What a user can read of the books about themselves: each block's share
//! of work and credit with the window it was split by, their payouts, and
//! their entries.

use mysql_async::prelude::{FromRow, Query, WithParams};

use crate::{Store, StoreError};

/// A credited block, as one user earned from it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct EarnedBlock {
    /// Block hash, hex.
    pub hash: String,
    /// Height.
    pub height: u32,
    /// `immature`, `mature` or `orphaned` in the books.
    pub state: String,
    /// `pplns` or `pps`.
    pub scheme: String,
    /// The reward split, satoshis.
    pub reward: u64,
    /// The pool's fee, basis points.
    pub fee_bps: u32,
    /// The window's oldest and newest unix minutes.
    pub first_minute: u32,
    /// Newest.
    pub last_minute: u32,
    /// Its size and the work counted in it, hashes (decimal text).
    pub window_size: String,
    /// Work counted.
    pub window_work: String,
    /// Whether it reached its size.
    pub filled: bool,
    /// The user's work in it, hashes (decimal text).
    pub work: String,
    /// The user's credit, satoshis.
    pub credit: u64,
    /// When it was credited, `YYYY-MM-DD HH:MM:SS` UTC.
    pub credited_at: String,
}

/// A payout as one user received it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct UserPayout {
    /// The batch.
    pub id: u64,
    /// Its transaction.
    pub txid: String,
    /// signed, broadcast, confirmed or failed.
    pub state: String,
    /// Satoshis to this user.
    pub amount: u64,
    /// Where.
    pub address: String,
    /// When it was written, `YYYY-MM-DD HH:MM:SS` UTC.
    pub created_at: String,
}

/// One entry of a user's accounts.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct UserEntry {
    /// The transaction's kind (`block_credit`, `payout`…).
    pub kind: String,
    /// Its reference (block hash, payout id, credit time).
    pub reference: String,
    /// 3 immature, 4 balance (`sluice_ledger::Account` codes).
    pub account: u8,
    /// Satoshis, signed.
    pub amount: i64,
    /// When, `YYYY-MM-DD HH:MM:SS` UTC.
    pub at: String,
}

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
