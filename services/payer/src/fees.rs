//! How a share is valued under PPS and FPPS. FPPS adds to the subsidy the
//! fees a block pays on average: for a job at height `h`, the mean of
//! `getblockstats totalfee` over the `fpps_fee_blocks` blocks before it
//! ([`sluice_ledger::pps::fee_heights`]), asked of the payout node the first
//! time a share of `h` is read and recorded in `fpps_fees` before any share
//! of `h` is valued, so the books and `sluicectl payouts verify` value it
//! alike and anyone can check the mean against a node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use sluice_bus::Record;
use sluice_core::record::ShareRecord;
use sluice_ledger::PpsTerms;
use sluice_ledger::pps::{fee_heights, mean_fees};
use sluice_node::NodeRpc;
use sluice_store::{FeeRecord, Store};

use crate::{Config, Scheme};

/// The terms shares are valued by, and for FPPS where fees come from.
pub(crate) struct Pricing {
    terms: Option<PpsTerms>,
    source: Option<FeeSource>,
}

struct FeeSource {
    node: NodeRpc,
    name: String,
    blocks: u32,
    /// Fees of the blocks asked so far, by height.
    asked: HashMap<u32, u64>,
}

impl Pricing {
    /// For `config`'s scheme, with FPPS's recorded means read from `store`.
    pub(crate) async fn new(config: &Config, store: &Store) -> anyhow::Result<Pricing> {
        let fees = match config.scheme {
            Scheme::Pplns => {
                return Ok(Pricing {
                    terms: None,
                    source: None,
                });
            }
            Scheme::Pps => None,
            Scheme::Fpps => Some(store.fpps_fees().await?),
        };
        let source = match (&fees, &config.payouts) {
            (Some(_), Some(p)) => Some(FeeSource {
                node: NodeRpc::new(&p.node, Duration::from_secs(p.rpc_timeout_secs))?,
                name: p.node.name.clone(),
                blocks: config.fpps_fee_blocks,
                asked: HashMap::new(),
            }),
            (Some(_), None) => anyhow::bail!("FPPS needs [payouts.node] to read blocks' fees"),
            (None, _) => None,
        };
        Ok(Pricing {
            terms: Some(PpsTerms {
                network: config.network(),
                fee_bps: config.fee_bps,
                fees,
            }),
            source,
        })
    }

    /// The terms to value shares by (`None`: PPLNS, work only).
    pub(crate) fn terms(&self) -> Option<&PpsTerms> {
        self.terms.as_ref()
    }

    /// Under FPPS, records the fees of every height `records` has accepted
    /// shares of and none is recorded for yet. An error (the node or the
    /// database away) leaves the shares unread: the caller retries.
    pub(crate) async fn prepare(
        &mut self,
        store: &Store,
        records: &[Record<ShareRecord>],
    ) -> anyhow::Result<()> {
        let (
            Some(source),
            Some(PpsTerms {
                fees: Some(known), ..
            }),
        ) = (&mut self.source, &mut self.terms)
        else {
            return Ok(());
        };
        let missing: BTreeSet<u32> = records
            .iter()
            .filter(|r| r.value.status.is_accepted())
            .map(|r| r.value.height)
            .filter(|h| !known.contains_key(h))
            .collect();
        let mut rows = Vec::with_capacity(missing.len());
        for height in missing {
            rows.push(source.mean_for(height).await?);
        }
        let recorded: BTreeMap<u32, u64> = store.record_fpps_fees(&rows).await?;
        for row in &rows {
            let mean = recorded.get(&row.height).copied().unwrap_or(row.mean_fees);
            if mean != row.mean_fees {
                tracing::info!(
                    height = row.height,
                    recorded = mean,
                    asked = row.mean_fees,
                    "FPPS fees were recorded already (by an earlier term): the record stands"
                );
            }
            tracing::info!(
                height = row.height,
                mean,
                blocks = row.blocks,
                "FPPS fees recorded"
            );
            known.insert(row.height, mean);
        }
        Ok(())
    }
}

impl FeeSource {
    /// The mean fees for shares of a job at `height`, asked of the node.
    async fn mean_for(&mut self, height: u32) -> anyhow::Result<FeeRecord> {
        let heights = fee_heights(height, self.blocks);
        let mut fees = Vec::with_capacity(heights.len());
        for h in heights.clone() {
            let f = match self.asked.get(&h) {
                Some(&f) => f,
                None => {
                    let f = self.node.block_fees(h).await.map_err(|e| {
                        anyhow::anyhow!("FPPS fees of block {h} (for height {height}): {e}")
                    })?;
                    self.asked.insert(h, f);
                    f
                }
            };
            fees.push(f);
        }
        Ok(FeeRecord {
            height,
            mean_fees: mean_fees(&fees),
            first_height: heights.start,
            blocks: fees.len() as u32,
            total_fees: fees.iter().sum(),
            node: self.name.clone(),
        })
    }
}
