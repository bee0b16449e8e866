//! The payer's tables (`sql/0007_payouts.sql`): the double-entry books and
//! the credited blocks (the work they are split by is `work.rs`'s, what
//! verify reads back `recount.rs`'s). Work and PPS values are whole numbers
//! beyond 64 bits, stored as `DECIMAL(39,0)`: written through
//! `CAST(? AS DECIMAL(39,0))` from their decimal text (a string in MySQL
//! arithmetic would be a double) and read back as text.

use std::collections::BTreeMap;

use mysql_async::prelude::{Query, Queryable, WithParams};
use mysql_async::{Params, Transaction, TxOpts, Value};
use sluice_ledger::books::{self, Account, Kind, Txn};
use sluice_ledger::pps;

use crate::{Store, StoreError};

/// A found block the payer has not credited: its share was read and
/// blkmaker recorded it (pending or confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockToCredit {
    /// Block hash, hex.
    pub hash: String,
    /// Height.
    pub height: u32,
    /// Its coinbase outputs, satoshis.
    pub reward: u64,
    /// Its share's time, unix ms.
    pub timestamp_ms: u64,
    /// The network target it met.
    pub network_bits: u32,
}

/// A block's credit as `ledger_blocks` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditedBlock {
    /// Block hash, hex.
    pub hash: String,
    /// Height.
    pub height: u32,
    /// `pplns` (or the scheme that paid the block's finder's pool).
    pub scheme: String,
    /// Reward split, satoshis.
    pub reward: u64,
    /// Pool fee, basis points.
    pub fee_bps: u32,
    /// The block's work, hashes.
    pub block_work: u128,
    /// The window's size, hashes.
    pub window_size: u128,
    /// Oldest minute counted.
    pub first_minute: u32,
    /// Newest minute counted.
    pub last_minute: u32,
    /// Work counted.
    pub window_work: u128,
    /// Whether the window reached its size.
    pub filled: bool,
    /// The Share topic read when it was split: partition → next offset.
    pub cut: BTreeMap<i32, i64>,
    /// Each user's work and credit.
    pub users: BTreeMap<u32, (u128, u64)>,
}

/// A credited block whose standing at the nodes changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settling {
    /// Block hash, hex.
    pub hash: String,
    /// `immature` or `mature` in the books.
    pub state: String,
    /// `confirmed` or `orphaned` in found_blocks.
    pub status: String,
}

const CHUNK: usize = 500;

pub(crate) fn text(v: u128) -> String {
    v.to_string()
}

pub(crate) fn decimal(table: &'static str, s: &str) -> Result<u128, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt {
        table,
        what: format!("{s:?} is not a whole number of at most 39 digits"),
    })
}

/// `{"partition":next_offset,…}`.
pub(crate) fn cut_json(cut: &BTreeMap<i32, i64>) -> String {
    let parts: Vec<String> = cut.iter().map(|(p, o)| format!("\"{p}\":{o}")).collect();
    format!("{{{}}}", parts.join(","))
}

/// `{"partition":next_offset,…}` as [`cut_json`] wrote it.
pub(crate) fn parse_cut(table: &'static str, text: &str) -> Result<BTreeMap<i32, i64>, StoreError> {
    let corrupt = || StoreError::Corrupt {
        table,
        what: format!("cut {text:?} is not {{\"partition\":offset,…}}"),
    };
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(corrupt)?;
    inner
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (p, o) = pair.split_once(':').ok_or_else(corrupt)?;
            let p = p.trim().trim_matches('"').parse().map_err(|_| corrupt())?;
            Ok((p, o.trim().parse().map_err(|_| corrupt())?))
        })
        .collect()
}

/// `rows` inserted `CHUNK` at a time as `head (…), (…)… tail`.
pub(crate) async fn insert_rows(
    conn: &mut impl Queryable,
    head: &str,
    row: &str,
    tail: &str,
    rows: Vec<Vec<Value>>,
) -> Result<(), mysql_async::Error> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(CHUNK).collect();
        let placeholders = vec![row; chunk.len()].join(", ");
        let params: Vec<Value> = chunk.into_iter().flatten().collect();
        conn.exec_drop(
            format!("{head} {placeholders} {tail}"),
            Params::Positional(params),
        )
        .await?;
    }
    Ok(())
}

impl Store {
    /// Found blocks whose share was read and that blkmaker recorded on the
    /// nodes' chain, not yet credited; the oldest first.
    pub async fn blocks_to_credit(&self, limit: u32) -> Result<Vec<BlockToCredit>, StoreError> {
        let rows: Vec<(String, u32, u64, u64, u32)> =
            "SELECT p.hash, f.height, f.reward, p.timestamp_ms, p.network_bits \
             FROM payout_found p JOIN found_blocks f ON f.hash = p.hash \
             LEFT JOIN ledger_blocks l ON l.hash = p.hash \
             WHERE l.hash IS NULL AND f.status IN ('pending', 'confirmed') \
             ORDER BY p.timestamp_ms LIMIT ?"
                .with((limit,))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(hash, height, reward, timestamp_ms, network_bits)| BlockToCredit {
                    hash,
                    height,
                    reward,
                    timestamp_ms,
                    network_bits,
                },
            )
            .collect())
    }

    /// Records a block's credit: its row, its users and its transaction, at
    /// once. False if it was credited already (nothing written).
    pub async fn credit_block(&self, block: &CreditedBlock, txn: &Txn) -> Result<bool, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.err(e))?;

        tx.exec_drop(
            "INSERT IGNORE INTO ledger_blocks (hash, height, scheme, reward, fee_bps, block_work, \
             window_size, first_minute, last_minute, window_work, filled, cut, state) VALUES \
             (?, ?, ?, ?, ?, CAST(? AS DECIMAL(39,0)), CAST(? AS DECIMAL(39,0)), ?, ?, \
             CAST(? AS DECIMAL(39,0)), ?, ?, 'immature')",
            Params::Positional(vec![
                block.hash.as_str().into(),
                block.height.into(),
                block.scheme.as_str().into(),
                block.reward.into(),
                block.fee_bps.into(),
                text(block.block_work).into(),
                text(block.window_size).into(),
                block.first_minute.into(),
                block.last_minute.into(),
                text(block.window_work).into(),
                block.filled.into(),
                cut_json(&block.cut).into(),
            ]),
        )
        .await
        .map_err(|e| self.err(e))?;
        if tx.affected_rows() == 0 {
            return Ok(false);
        }
        let users = block
            .users
            .iter()
            .map(|(&user, &(work, credit))| {
                vec![
                    block.hash.as_str().into(),
                    user.into(),
                    text(work).into(),
                    credit.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO ledger_block_users (hash, user_id, work, credit) VALUES",
            "(?, ?, CAST(? AS DECIMAL(39,0)), ?)",
            "",
            users,
        )
        .await
        .map_err(|e| self.err(e))?;
        if !write_txn(&mut tx, txn).await.map_err(|e| self.err(e))? {
            return Err(StoreError::Conflict(format!(
                "{} {}",
                txn.kind.name(),
                txn.reference
            )));
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Credits every user the whole satoshis of their PPS value not yet
    /// credited, as transaction `reference`, with the Share topic's offsets
    /// at that instant (the value and the offsets are read locked, so they
    /// agree). The users credited and the satoshis, or `None` if nobody had
    /// a whole satoshi due.
    pub async fn credit_pps(
        &self,
        topic: &str,
        reference: &str,
    ) -> Result<Option<(usize, u64)>, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.err(e))?;
        let cut: Vec<(i32, i64)> = tx
            .exec(
                "SELECT part, next_offset FROM payout_offsets WHERE topic = ? FOR UPDATE",
                (topic,),
            )
            .await
            .map_err(|e| self.err(e))?;
        let rows: Vec<(u32, String, u64)> = tx
            .query("SELECT user_id, CAST(value AS CHAR), credited FROM pps_accrued FOR UPDATE")
            .await
            .map_err(|e| self.err(e))?;
        let mut due = BTreeMap::new();
        for (user, value, credited) in rows {
            let whole = u64::try_from(decimal("pps_accrued", &value)? >> pps::FRACTION_BITS)
                .unwrap_or(u64::MAX);
            if whole > credited {
                due.insert(user, whole - credited);
            }
        }
        if due.is_empty() {
            return Ok(None);
        }
        let txn = books::pps_credit(reference, &due);
        if !write_txn(&mut tx, &txn).await.map_err(|e| self.err(e))? {
            return Err(StoreError::Conflict(format!("pps_credit {reference}")));
        }
        for (&user, &sat) in &due {
            tx.exec_drop(
                "UPDATE pps_accrued SET credited = credited + ? WHERE user_id = ?",
                (sat, user),
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        let total: u64 = due.values().sum();
        tx.exec_drop(
            "INSERT INTO pps_credits (reference, cut, users, total) VALUES (?, ?, ?, ?)",
            (
                reference,
                cut_json(&cut.into_iter().collect()),
                due.len(),
                total,
            ),
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(Some((due.len(), total)))
    }

    /// Credited blocks whose standing changed: immature ones now confirmed
    /// or orphaned, mature ones orphaned.
    pub async fn blocks_to_settle(&self, limit: u32) -> Result<Vec<Settling>, StoreError> {
        let rows: Vec<(String, String, String)> =
            "SELECT l.hash, l.state, f.status FROM ledger_blocks l JOIN found_blocks f ON f.hash = l.hash \
             WHERE (l.state = 'immature' AND f.status IN ('confirmed', 'orphaned')) \
             OR (l.state = 'mature' AND f.status = 'orphaned') LIMIT ?"
                .with((limit,))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(hash, state, status)| Settling {
                hash,
                state,
                status,
            })
            .collect())
    }

    /// Moves block `hash` from `from` to `to` in the books with `txn`, at
    /// once. False if it had moved already.
    pub async fn settle_block(
        &self,
        hash: &str,
        from: &str,
        to: &str,
        txn: &Txn,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.err(e))?;
        tx.exec_drop(
            "UPDATE ledger_blocks SET state = ?, settled_at = NOW(3) WHERE hash = ? AND state = ?",
            (to, hash, from),
        )
        .await
        .map_err(|e| self.err(e))?;
        if tx.affected_rows() == 0 || !write_txn(&mut tx, txn).await.map_err(|e| self.err(e))? {
            return Ok(false);
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// The transaction of `kind` and `reference`, if recorded.
    pub async fn ledger_txn(&self, kind: Kind, reference: &str) -> Result<Option<Txn>, StoreError> {
        let rows: Vec<(u8, u32, i64)> = "SELECT e.account, e.user_id, e.amount FROM ledger_txns t \
             JOIN ledger_entries e ON e.txn_id = t.id WHERE t.kind = ? AND t.reference = ?"
            .with((kind.name(), reference))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut entries = BTreeMap::new();
        for (code, user, amount) in rows {
            let account = Account::from_code(code, user).ok_or_else(|| StoreError::Corrupt {
                table: "ledger_entries",
                what: format!("account {code} is none of the books' accounts"),
            })?;
            entries.insert(account, amount);
        }
        Ok(Some(Txn {
            kind,
            reference: reference.to_owned(),
            entries,
        }))
    }

    /// Every account's balance: the sum of its entries.
    pub async fn ledger_balances(&self) -> Result<BTreeMap<Account, i64>, StoreError> {
        self.balances_where("", ()).await
    }

    /// User `user`'s balances.
    pub async fn user_balances(&self, user: u32) -> Result<BTreeMap<Account, i64>, StoreError> {
        self.balances_where("WHERE user_id = ?", (user,)).await
    }

    async fn balances_where(
        &self,
        filter: &str,
        params: impl Into<Params> + Send,
    ) -> Result<BTreeMap<Account, i64>, StoreError> {
        let rows: Vec<(u8, u32, i64)> = format!(
            "SELECT account, user_id, CAST(SUM(amount) AS SIGNED) FROM ledger_entries {filter} \
             GROUP BY account, user_id"
        )
        .with(params)
        .fetch(self.pool())
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter(|(_, _, v)| *v != 0)
            .filter_map(|(code, user, v)| Account::from_code(code, user).map(|a| (a, v)))
            .collect())
    }
}

/// Writes `txn` unless its (kind, reference) is recorded: true if written.
pub(crate) async fn write_txn(
    conn: &mut Transaction<'_>,
    txn: &Txn,
) -> Result<bool, mysql_async::Error> {
    debug_assert!(txn.is_balanced(), "{txn:?}");
    conn.exec_drop(
        "INSERT IGNORE INTO ledger_txns (kind, reference) VALUES (?, ?)",
        (txn.kind.name(), &txn.reference),
    )
    .await?;
    if conn.affected_rows() == 0 {
        return Ok(false);
    }
    let id = conn.last_insert_id().unwrap_or_default();
    let rows = txn
        .entries
        .iter()
        .map(|(account, &amount)| {
            let (code, user) = account.code();
            vec![id.into(), code.into(), user.into(), amount.into()]
        })
        .collect();
    insert_rows(
        conn,
        "INSERT INTO ledger_entries (txn_id, account, user_id, amount) VALUES",
        "(?, ?, ?, ?)",
        "",
        rows,
    )
    .await?;
    Ok(true)
}
