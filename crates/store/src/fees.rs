//! FPPS fees (`fpps_fees`): the mean fees a block pays, recorded per job
//! height the first time a share of that height is valued, and never
//! changed after, so the books and their proof value shares alike.

use std::collections::BTreeMap;

use mysql_async::prelude::{Query, WithParams};

use crate::ledger::insert_rows;
use crate::{Store, StoreError};

/// The fees recorded for shares of jobs at `height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRecord {
    /// The job height the mean is for.
    pub height: u32,
    /// The mean, whole satoshis (floored).
    pub mean_fees: u64,
    /// The first block averaged (the last is `height - 1`).
    pub first_height: u32,
    /// Blocks averaged.
    pub blocks: u32,
    /// Their fees together.
    pub total_fees: u64,
    /// The node asked.
    pub node: String,
}

impl Store {
    /// Every recorded mean: job height → satoshis.
    pub async fn fpps_fees(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        let rows: Vec<(u32, u64)> = "SELECT height, mean_fees FROM fpps_fees"
            .with(())
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().collect())
    }

    /// Records `fees` where nothing is recorded yet (a mean once recorded
    /// stands, even if a reorganization changed the blocks it averaged) and
    /// answers the recorded means of their heights.
    pub async fn record_fpps_fees(
        &self,
        fees: &[FeeRecord],
    ) -> Result<BTreeMap<u32, u64>, StoreError> {
        if fees.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows = fees
            .iter()
            .map(|f| {
                vec![
                    f.height.into(),
                    f.mean_fees.into(),
                    f.first_height.into(),
                    f.blocks.into(),
                    f.total_fees.into(),
                    f.node.as_str().into(),
                ]
            })
            .collect();
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        insert_rows(
            &mut conn,
            "INSERT IGNORE INTO fpps_fees \
             (height, mean_fees, first_height, blocks, total_fees, node) VALUES",
            "(?, ?, ?, ?, ?, ?)",
            "",
            rows,
        )
        .await
        .map_err(|e| self.err(e))?;
        let wanted: Vec<String> = fees.iter().map(|f| f.height.to_string()).collect();
        let rows: Vec<(u32, u64)> = format!(
            "SELECT height, mean_fees FROM fpps_fees WHERE height IN ({})",
            wanted.join(",")
        )
        .with(())
        .fetch(&mut conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().collect())
    }
}
