//! Payout addresses, and payout batches with their items: a batch is
//! written (state `signed`, with its signed transaction and its ledger
//! transaction) before it is broadcast, and moves on only from the state it
//! was read in, so a payer restarted at any point finds it and finishes it
//! instead of paying again.

use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::{Params, TxOpts, Value};
use sluice_ledger::books::{Kind, Txn};

use crate::ledger::{insert_rows, write_txn};
use crate::{Store, StoreError};

/// A user due a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Account id.
    pub user_id: u32,
    /// Where they are paid.
    pub address: String,
    /// Their payable balance, satoshis.
    pub balance: u64,
}

/// A payout batch not yet settled (signed or broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPayout {
    /// Its id (the ledger transaction's reference).
    pub id: u64,
    /// `signed` or `broadcast`.
    pub state: String,
    /// Txid, hex.
    pub txid: String,
    /// The signed transaction, hex.
    pub tx_hex: String,
}

/// A batch as the books list it: the API's type (`/api/v1/payouts`).
pub type PayoutRow = sluice_api::Payout;

type PayoutColumns = (u64, String, String, u64, u64, u32, Option<String>, String);

fn payout_row(
    (id, state, txid, total, network_fee, users, error, created_at): PayoutColumns,
) -> PayoutRow {
    PayoutRow {
        id,
        state,
        txid,
        total,
        network_fee,
        users,
        error,
        created_at,
    }
}

impl Store {
    /// Sets where `user` is paid (and their own threshold; `None`: the
    /// pool's). The caller checks the address is one of the pool's network.
    pub async fn set_payout_address(
        &self,
        user: u32,
        address: &str,
        min_payout: Option<u64>,
    ) -> Result<(), StoreError> {
        "INSERT INTO payout_settings (user_id, address, min_payout) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE address = VALUES(address), min_payout = VALUES(min_payout)"
            .with((user, address, min_payout))
            .ignore(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// `user`'s payout address and threshold, if set.
    pub async fn payout_address(
        &self,
        user: u32,
    ) -> Result<Option<(String, Option<u64>)>, StoreError> {
        "SELECT address, min_payout FROM payout_settings WHERE user_id = ?"
            .with((user,))
            .first(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// Users with an address whose balance reached their threshold
    /// (`default_min` where they set none), at most `limit`, the largest
    /// balances first.
    pub async fn due_payouts(&self, default_min: u64, limit: u32) -> Result<Vec<Due>, StoreError> {
        let rows: Vec<(u32, String, i64)> =
            "SELECT s.user_id, s.address, CAST(SUM(e.amount) AS SIGNED) AS balance \
             FROM payout_settings s JOIN ledger_entries e ON e.user_id = s.user_id AND e.account = 4 \
             WHERE s.user_id <> 0 GROUP BY s.user_id, s.address, s.min_payout \
             HAVING balance >= COALESCE(s.min_payout, ?) AND balance > 0 \
             ORDER BY balance DESC, s.user_id LIMIT ?"
                .with((default_min, limit))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(user_id, address, balance)| Due {
                user_id,
                address,
                balance: balance.unsigned_abs(),
            })
            .collect())
    }

    /// Batches signed or broadcast, not yet settled, the oldest first.
    pub async fn open_payouts(&self) -> Result<Vec<OpenPayout>, StoreError> {
        let rows: Vec<(u64, String, String, String)> =
            "SELECT id, state, txid, tx_hex FROM payouts WHERE state IN ('signed', 'broadcast') ORDER BY id"
                .with(())
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(id, state, txid, tx_hex)| OpenPayout {
                id,
                state,
                txid,
                tx_hex,
            })
            .collect())
    }

    /// Writes a signed batch before it is broadcast: its row (`signed`),
    /// its items and the ledger transaction built by `txn` for its id, at
    /// once. Refused ([`StoreError::Conflict`]) while another batch is open
    /// or if a user's balance no longer covers their item.
    pub async fn record_payout(
        &self,
        txid: &str,
        tx_hex: &str,
        network_fee: u64,
        items: &[(u32, String, u64)],
        txn: impl FnOnce(u64) -> Txn,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.err(e))?;
        let open: Option<u64> = tx
            .query_first(
                "SELECT id FROM payouts WHERE state IN ('signed', 'broadcast') LIMIT 1 FOR UPDATE",
            )
            .await
            .map_err(|e| self.err(e))?;
        if let Some(open) = open {
            return Err(StoreError::Conflict(format!("payout {open} is still open")));
        }
        for (user, _, amount) in items {
            let balance: Option<i64> = tx
                .exec_first(
                    "SELECT CAST(COALESCE(SUM(amount), 0) AS SIGNED) FROM ledger_entries \
                     WHERE user_id = ? AND account = 4 FOR UPDATE",
                    (user,),
                )
                .await
                .map_err(|e| self.err(e))?;
            if balance.unwrap_or(0) < i64::try_from(*amount).unwrap_or(i64::MAX) {
                return Err(StoreError::Conflict(format!(
                    "user {user}'s balance no longer covers {amount}"
                )));
            }
        }
        let total: u64 = items.iter().map(|(_, _, a)| a).sum();
        tx.exec_drop(
            "INSERT INTO payouts (state, txid, tx_hex, total, network_fee, users) VALUES ('signed', ?, ?, ?, ?, ?)",
            (txid, tx_hex, total, network_fee, items.len()),
        )
        .await
        .map_err(|e| self.err(e))?;
        let id = tx.last_insert_id().unwrap_or_default();
        let rows = items
            .iter()
            .map(|(user, address, amount)| {
                vec![
                    Value::from(id),
                    (*user).into(),
                    address.as_str().into(),
                    (*amount).into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO payout_items (payout_id, user_id, address, amount) VALUES",
            "(?, ?, ?, ?)",
            "",
            rows,
        )
        .await
        .map_err(|e| self.err(e))?;
        let ledger = txn(id);
        if !write_txn(&mut tx, &ledger).await.map_err(|e| self.err(e))? {
            return Err(StoreError::Conflict(format!(
                "{} {}",
                ledger.kind.name(),
                ledger.reference
            )));
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// Moves batch `id` from `from` to `to`, with `txn` (its confirmation
    /// or its reversal) and `error`, at once. False if it was not in `from`.
    pub async fn settle_payout(
        &self,
        id: u64,
        from: &str,
        to: &str,
        error: Option<&str>,
        txn: Option<&Txn>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.err(e))?;
        let stamp = if to == "broadcast" {
            "broadcast_at"
        } else {
            "settled_at"
        };
        tx.exec_drop(
            format!("UPDATE payouts SET state = ?, error = COALESCE(?, error), {stamp} = NOW(3) WHERE id = ? AND state = ?"),
            Params::Positional(vec![to.into(), error.into(), id.into(), from.into()]),
        )
        .await
        .map_err(|e| self.err(e))?;
        if tx.affected_rows() == 0 {
            return Ok(false);
        }
        if let Some(txn) = txn
            && !write_txn(&mut tx, txn).await.map_err(|e| self.err(e))?
        {
            return Ok(false);
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// The newest `limit` batches, the newest first.
    pub async fn payouts(&self, limit: u32) -> Result<Vec<PayoutRow>, StoreError> {
        "SELECT id, state, txid, total, network_fee, users, error, \
         DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') AS created_at \
         FROM payouts ORDER BY id DESC LIMIT ?"
            .with((limit,))
            .map(self.pool(), payout_row)
            .await
            .map_err(|e| self.err(e))
    }

    /// Batch `id`.
    pub async fn payout(&self, id: u64) -> Result<Option<PayoutRow>, StoreError> {
        "SELECT id, state, txid, total, network_fee, users, error, \
         DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') AS created_at FROM payouts WHERE id = ?"
            .with((id,))
            .first::<PayoutColumns, _>(self.pool())
            .await
            .map(|row| row.map(payout_row))
            .map_err(|e| self.err(e))
    }

    /// Batch `id`'s signed ledger transaction.
    pub async fn payout_txn(&self, id: u64) -> Result<Option<Txn>, StoreError> {
        self.ledger_txn(Kind::Payout, &id.to_string()).await
    }
}
