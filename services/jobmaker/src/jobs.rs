//! Jobs from templates, with the pool's coinbase (crates/core).

use bitcoin::{BlockHash, TxMerkleNode};
use sluice_core::{
    BlockTemplate, CoinbaseError, CoinbaseParams, Job, JobId, JobIdGenerator, merkle_branch,
};

use sluice_core::SoloCoinbase;
use sluice_core::job::{EXTRANONCE1_LEN, EXTRANONCE2_LEN};

use crate::Payout;

/// Makes jobs for one leadership term.
pub(crate) struct JobFactory {
    pool_tag: Vec<u8>,
    payout: Payout,
    epoch: u64,
    ids: JobIdGenerator,
    /// The merkle branch of the current template (computed once per template).
    branch: Option<(sluice_core::TemplateId, Vec<TxMerkleNode>)>,
    /// The tip of the last job and the earliest time a job on it may carry:
    /// the first job's on that tip. An empty-block job from a header may time
    /// itself past the median the full template allows; the full job on the
    /// same tip must not go back before it (SV2: a job's `min_ntime` is never
    /// below its `SetNewPrevHash`'s; SRI's translator drops every miner).
    tip_time: Option<(BlockHash, u32)>,
}

impl JobFactory {
    /// Ids continue after `last_job` (the newest on the Job topic), so they
    /// keep increasing across leaders.
    pub(crate) fn new(
        pool_tag: Vec<u8>,
        payout: Payout,
        epoch: u64,
        last_job: Option<JobId>,
    ) -> Self {
        let ids = last_job.map_or_else(JobIdGenerator::default, JobIdGenerator::after);
        JobFactory {
            pool_tag,
            payout,
            epoch,
            ids,
            branch: None,
            tip_time: None,
        }
    }

    /// A job on `template` at `now_ms`.
    pub(crate) fn make(
        &mut self,
        template: &BlockTemplate,
        clean: bool,
        now_ms: u64,
    ) -> Result<Job, CoinbaseError> {
        let now_secs = now_ms / 1000;
        let id = self.ids.next(now_secs);
        // ntime: the clock, but never before the template's mintime/curtime,
        // nor before the first job on the same tip.
        let mut time = u32::try_from(now_secs)
            .unwrap_or(u32::MAX)
            .max(template.cur_time)
            .max(template.min_time);
        match self.tip_time {
            Some((tip, first)) if tip == template.prev_blockhash => time = time.max(first),
            _ => self.tip_time = Some((template.prev_blockhash, time)),
        }
        let split = CoinbaseParams {
            height: template.height,
            unique: u32::try_from(now_secs).unwrap_or(u32::MAX),
            pool_tag: self.pool_tag.clone(),
            extranonce1_len: EXTRANONCE1_LEN,
            extranonce2_len: EXTRANONCE2_LEN,
            value: template.coinbase_value,
            payout_script: self.payout.script.clone(),
            fixed_outputs: Vec::new(),
            witness_commitment: template.default_witness_commitment.clone(),
        }
        .build()?;
        let solo = match &self.payout.solo {
            Some(terms) => Some(SoloCoinbase::new(
                terms.network,
                template.coinbase_value,
                terms.fee_bps,
                &terms.fee_script,
                template.default_witness_commitment.as_deref(),
            )?),
            None => None,
        };
        let branch = match &self.branch {
            Some((tid, branch)) if *tid == template.id => branch.clone(),
            _ => {
                let branch = merkle_branch(&template.txids());
                self.branch = Some((template.id, branch.clone()));
                branch
            }
        };
        Ok(Job {
            id,
            leader_epoch: self.epoch,
            template_id: template.id,
            height: template.height,
            prev_blockhash: template.prev_blockhash,
            version: template.version,
            bits: template.bits,
            time,
            min_time: template.min_time,
            coinbase1: split.coinbase1,
            coinbase2: split.coinbase2,
            merkle_branch: branch,
            coinbase_value: template.coinbase_value,
            clean,
            created_at_ms: now_ms,
            solo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use sluice_core::BlockTemplate;

    fn template(prev: u8, cur_time: u32) -> BlockTemplate {
        let tip = sluice_node::HeaderInfo {
            hash: BlockHash::from_byte_array([prev; 32]),
            height: 100,
            bits: "207fffff".into(),
            time: cur_time - 1,
            median_time: cur_time - 1,
            chain_work: bitcoin::pow::Work::from_be_bytes([1; 32]),
        };
        let version = bitcoin::block::Version::TWO;
        sluice_node::empty_template("n", bitcoin::Network::Regtest, &tip, None, version, 0).unwrap()
    }

    fn pooled() -> Payout {
        Payout {
            script: bitcoin::ScriptBuf::new(),
            solo: None,
        }
    }

    #[test]
    fn a_job_on_the_same_tip_never_goes_back_before_the_first_one() {
        let mut f = JobFactory::new(b"/t/".to_vec(), pooled(), 1, None);
        let now_ms = 1_700_000_000_000;
        // The empty job from a header timed ahead of the clock; then the
        // full template on the same tip, whose earliest time is lower.
        let empty = f.make(&template(1, 1_700_000_050), true, now_ms).unwrap();
        let full = f.make(&template(1, 1_700_000_000), false, now_ms).unwrap();
        assert_eq!((empty.time, full.time), (1_700_000_050, 1_700_000_050));
        // A new tip starts from its own template's time.
        let next = f.make(&template(2, 1_700_000_001), true, now_ms).unwrap();
        assert_eq!(next.time, 1_700_000_001);
    }
}
