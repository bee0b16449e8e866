//! Jobs from templates, with the pool's coinbase (crates/core).

use bitcoin::{ScriptBuf, TxMerkleNode};
use sluice_core::{
    BlockTemplate, CoinbaseError, CoinbaseParams, Job, JobId, JobIdGenerator, merkle_branch,
};

use sluice_core::job::{EXTRANONCE1_LEN, EXTRANONCE2_LEN};

/// Makes jobs for one leadership term.
pub(crate) struct JobFactory {
    pool_tag: Vec<u8>,
    payout: ScriptBuf,
    epoch: u64,
    ids: JobIdGenerator,
    /// The merkle branch of the current template (computed once per template).
    branch: Option<(sluice_core::TemplateId, Vec<TxMerkleNode>)>,
}

impl JobFactory {
    /// Ids continue after `last_job` (the newest on the Job topic), so they
    /// keep increasing across leaders.
    pub(crate) fn new(
        pool_tag: Vec<u8>,
        payout: ScriptBuf,
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
        // ntime: the clock, but never before the template's mintime/curtime.
        let time = u32::try_from(now_secs)
            .unwrap_or(u32::MAX)
            .max(template.cur_time)
            .max(template.min_time);
        let split = CoinbaseParams {
            height: template.height,
            unique: u32::try_from(now_secs).unwrap_or(u32::MAX),
            pool_tag: self.pool_tag.clone(),
            extranonce1_len: EXTRANONCE1_LEN,
            extranonce2_len: EXTRANONCE2_LEN,
            value: template.coinbase_value,
            payout_script: self.payout.clone(),
            fixed_outputs: Vec::new(),
            witness_commitment: template.default_witness_commitment.clone(),
        }
        .build()?;
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
        })
    }
}
