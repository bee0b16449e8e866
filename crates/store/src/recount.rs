//! What `payouts verify` reads back of the books: every credited block
//! with its window, cut and users, and every PPS credit's cut.

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::{Query, WithParams};

use crate::ledger::{decimal, parse_cut};
use crate::{CreditedBlock, Store, StoreError};

impl Store {
    /// Every credited block with its window, its cut and its users, the
    /// oldest first (what `sluicectl payouts verify` redoes).
    pub async fn credited_blocks(&self) -> Result<Vec<CreditedBlock>, StoreError> {
        let rows: Vec<mysql_async::Row> = "SELECT hash, height, scheme, reward, fee_bps, \
             CAST(block_work AS CHAR), CAST(window_size AS CHAR), first_minute, last_minute, \
             CAST(window_work AS CHAR), filled, cut FROM ledger_blocks ORDER BY credited_at, hash"
            .with(())
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        let users: Vec<(String, u32, String, u64)> =
            "SELECT hash, user_id, CAST(work AS CHAR), credit FROM ledger_block_users"
                .with(())
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        let mut by_block: HashMap<String, BTreeMap<u32, (u128, u64)>> = HashMap::new();
        for (hash, user, work, credit) in users {
            let work = decimal("ledger_block_users", &work)?;
            by_block
                .entry(hash)
                .or_default()
                .insert(user, (work, credit));
        }
        rows.into_iter()
            .map(|row| credited(row, &mut by_block))
            .collect()
    }

    /// Every PPS credit's reference and cut, the oldest first.
    pub async fn pps_credit_cuts(&self) -> Result<Vec<(String, BTreeMap<i32, i64>)>, StoreError> {
        let rows: Vec<(String, String)> =
            "SELECT reference, cut FROM pps_credits ORDER BY created_at, reference"
                .with(())
                .fetch(self.pool())
                .await
                .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(reference, cut)| Ok((reference, parse_cut("pps_credits", &cut)?)))
            .collect()
    }
}

/// A `ledger_blocks` row and its users.
fn credited(
    row: mysql_async::Row,
    users: &mut HashMap<String, BTreeMap<u32, (u128, u64)>>,
) -> Result<CreditedBlock, StoreError> {
    type Columns = (
        String,
        u32,
        String,
        u64,
        u32,
        String,
        String,
        u32,
        u32,
        String,
        bool,
        String,
    );
    let (hash, height, scheme, reward, fee_bps, block_work, size, first, last, work, filled, cut): Columns =
        mysql_async::from_row_opt(row).map_err(|e| StoreError::Corrupt {
            table: "ledger_blocks",
            what: e.to_string(),
        })?;
    let t = "ledger_blocks";
    Ok(CreditedBlock {
        users: users.remove(&hash).unwrap_or_default(),
        hash,
        height,
        scheme,
        reward,
        fee_bps,
        block_work: decimal(t, &block_work)?,
        window_size: decimal(t, &size)?,
        first_minute: first,
        last_minute: last,
        window_work: decimal(t, &work)?,
        filled,
        cut: parse_cut(t, &cut)?,
    })
}
