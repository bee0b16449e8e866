//! The work the payer read from the Share topic (`payout_work`), written
//! with the offsets it was read to (`payout_offsets`) and the block shares
//! (`payout_found`) in one transaction, and read back for a block's window.

use std::collections::{BTreeMap, HashMap};

use mysql_async::TxOpts;
use mysql_async::prelude::{Query, Queryable, WithParams};
use sluice_ledger::Tally;
use sluice_ledger::pplns::Minute;

use crate::ledger::{decimal, insert_rows, text};
use crate::{Store, StoreError};

/// What one read of the Share topic adds, written at once or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkBatch {
    /// The topic read.
    pub topic: String,
    /// Its shares' work, value and blocks.
    pub tally: Tally,
    /// Per partition: the next offset before the batch (`None`: never read),
    /// the next offset after it, and the newest share time in it.
    pub offsets: BTreeMap<i32, (Option<i64>, i64, u64)>,
}

/// (minute, user, work) rows, minutes descending, as minutes.
fn group_minutes(rows: Vec<(u32, u32, String)>) -> Result<Vec<Minute>, StoreError> {
    let mut out: Vec<Minute> = Vec::new();
    for (minute, user, work) in rows {
        let work = decimal("payout_work", &work)?;
        match out.last_mut() {
            Some(m) if m.minute == minute => {
                m.work.insert(user, work);
            }
            _ => out.push(Minute {
                minute,
                work: [(user, work)].into_iter().collect(),
            }),
        }
    }
    Ok(out)
}

impl Store {
    /// Where the payer's reading of `topic` stands: partition → next offset.
    pub async fn payout_offsets(&self, topic: &str) -> Result<HashMap<i32, i64>, StoreError> {
        let rows: Vec<(i32, i64)> = "SELECT part, next_offset FROM payout_offsets WHERE topic = ?"
            .with((topic,))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().collect())
    }

    /// Per partition of `topic`: the next offset to read and the newest
    /// share time read, as of one read.
    pub async fn payout_positions(
        &self,
        topic: &str,
    ) -> Result<HashMap<i32, (i64, u64)>, StoreError> {
        let rows: Vec<(i32, i64, u64)> =
            "SELECT part, next_offset, newest_ms FROM payout_offsets WHERE topic = ?"
                .with((topic,))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(p, next, newest)| (p, (next, newest)))
            .collect())
    }

    /// Writes `batch` in one transaction. The offsets move only from where
    /// the batch says they stood: if another writer moved them, nothing is
    /// written ([`StoreError::Conflict`]).
    pub async fn apply_work(&self, batch: &WorkBatch) -> Result<(), StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.err(e))?;
        for (&part, &(before, after, newest)) in &batch.offsets {
            let moved = match before {
                Some(before) => {
                    tx.exec_drop(
                        "UPDATE payout_offsets SET next_offset = ?, newest_ms = GREATEST(newest_ms, ?) \
                         WHERE topic = ? AND part = ? AND next_offset = ?",
                        (after, newest, &batch.topic, part, before),
                    )
                    .await
                    .map_err(|e| self.err(e))?;
                    tx.affected_rows() == 1
                }
                None => tx
                    .exec_drop(
                        "INSERT IGNORE INTO payout_offsets (topic, part, next_offset, newest_ms) \
                         VALUES (?, ?, ?, ?)",
                        (&batch.topic, part, after, newest),
                    )
                    .await
                    .map(|()| tx.affected_rows() == 1)
                    .map_err(|e| self.err(e))?,
            };
            if !moved {
                return Err(StoreError::Conflict(format!(
                    "payout_offsets {}[{part}] is no longer at {before:?}",
                    batch.topic
                )));
            }
        }
        let work = batch
            .tally
            .work
            .iter()
            .map(|(&(minute, user, height, bits), &(work, shares))| {
                vec![
                    minute.into(),
                    user.into(),
                    height.into(),
                    bits.into(),
                    text(work).into(),
                    shares.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO payout_work (minute, user_id, height, network_bits, work, shares) VALUES",
            "(?, ?, ?, ?, CAST(? AS DECIMAL(39,0)), ?)",
            "ON DUPLICATE KEY UPDATE work = work + VALUES(work), shares = shares + VALUES(shares)",
            work,
        )
        .await
        .map_err(|e| self.err(e))?;
        let pps = batch
            .tally
            .pps
            .iter()
            .map(|(&user, &value)| vec![user.into(), text(value).into()])
            .collect();
        insert_rows(
            &mut tx,
            "INSERT INTO pps_accrued (user_id, value) VALUES",
            "(?, CAST(? AS DECIMAL(39,0)))",
            "ON DUPLICATE KEY UPDATE value = value + VALUES(value)",
            pps,
        )
        .await
        .map_err(|e| self.err(e))?;
        let found = batch
            .tally
            .found
            .iter()
            .map(|(hash, f)| {
                vec![
                    hash.as_str().into(),
                    f.timestamp_ms.into(),
                    f.height.into(),
                    f.network_bits.into(),
                    f.user_id.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "INSERT IGNORE INTO payout_found (hash, timestamp_ms, height, network_bits, user_id) VALUES",
            "(?, ?, ?, ?, ?)",
            "",
            found,
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Minutes of work up to `last` and after `after`, newest first.
    pub async fn work_minutes(&self, after: u32, last: u32) -> Result<Vec<Minute>, StoreError> {
        let rows: Vec<(u32, u32, String)> =
            "SELECT minute, user_id, CAST(SUM(work) AS CHAR) FROM payout_work \
             WHERE minute <= ? AND minute > ? GROUP BY minute, user_id ORDER BY minute DESC, user_id"
                .with((last, after))
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        group_minutes(rows)
    }

    /// What a block's PPLNS window is taken from, as of one instant: the
    /// offsets `topic` was read to, and the minutes of work up to `last`,
    /// newest first, until they add up to `size` hashes or run out.
    pub async fn work_snapshot(
        &self,
        topic: &str,
        last: u32,
        size: u128,
    ) -> Result<(BTreeMap<i32, i64>, Vec<Minute>), StoreError> {
        const SPAN: u32 = 720;
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let mut opts = TxOpts::default();
        opts.with_consistent_snapshot(true).with_readonly(true);
        let mut tx = conn
            .start_transaction(opts)
            .await
            .map_err(|e| self.err(e))?;
        let cut: Vec<(i32, i64)> = tx
            .exec(
                "SELECT part, next_offset FROM payout_offsets WHERE topic = ?",
                (topic,),
            )
            .await
            .map_err(|e| self.err(e))?;
        let oldest: Option<u32> = tx
            .query_first("SELECT MIN(minute) FROM payout_work")
            .await
            .map_err(|e| self.err(e))?
            .flatten();
        let mut minutes: Vec<Minute> = Vec::new();
        let (mut hi, mut total) = (last, 0u128);
        while let Some(oldest) = oldest.filter(|&o| o <= hi && total < size) {
            let lo = hi.saturating_sub(SPAN).max(oldest.saturating_sub(1));
            let rows: Vec<(u32, u32, String)> = tx
                .exec(
                    "SELECT minute, user_id, CAST(SUM(work) AS CHAR) FROM payout_work \
                     WHERE minute <= ? AND minute > ? GROUP BY minute, user_id \
                     ORDER BY minute DESC, user_id",
                    (hi, lo),
                )
                .await
                .map_err(|e| self.err(e))?;
            for m in group_minutes(rows)? {
                total = total.saturating_add(m.work.values().sum());
                minutes.push(m);
            }
            if lo == 0 || lo < oldest {
                break;
            }
            hi = lo;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok((cut.into_iter().collect(), minutes))
    }

    /// The newest credited PPLNS block's window: its first and last minute.
    pub async fn newest_credited_window(&self) -> Result<Option<(u32, u32)>, StoreError> {
        "SELECT first_minute, last_minute FROM ledger_blocks WHERE scheme = 'pplns' \
         ORDER BY last_minute DESC LIMIT 1"
            .with(())
            .first(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// The minute of the oldest block share read since `since_minute` whose
    /// block is not credited yet.
    pub async fn oldest_uncredited_found(
        &self,
        since_minute: u32,
    ) -> Result<Option<u32>, StoreError> {
        let ms: Option<u64> = "SELECT MIN(f.timestamp_ms) FROM payout_found f \
             LEFT JOIN ledger_blocks b ON b.hash = f.hash \
             WHERE b.hash IS NULL AND f.timestamp_ms >= ?"
            .with((u64::from(since_minute) * 60_000,))
            .first::<Option<u64>, _>(self.pool())
            .await
            .map(Option::flatten)
            .map_err(|e| self.err(e))?;
        Ok(ms.map(|ms| (ms / 60_000) as u32))
    }

    /// Deletes at most `limit` rows of work older than `before` (a minute);
    /// the rows deleted.
    pub async fn prune_work(&self, before: u32, limit: u32) -> Result<u64, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        conn.exec_drop(
            "DELETE FROM payout_work WHERE minute < ? LIMIT ?",
            (before, limit),
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(conn.affected_rows())
    }

    /// The oldest minute of work kept, if any.
    pub async fn oldest_work_minute(&self) -> Result<Option<u32>, StoreError> {
        "SELECT MIN(minute) FROM payout_work"
            .with(())
            .first::<Option<u32>, _>(self.pool())
            .await
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }
}
