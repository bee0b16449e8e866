//! A Stratum job as jobmaker publishes it (the Job message).

use bitcoin::block::Version;
use bitcoin::{Amount, BlockHash, CompactTarget, TxMerkleNode};

use crate::job_id::JobId;
use crate::share::Work;
use crate::template::TemplateId;

/// Everything a server needs to hand out work and check shares, and a block
/// maker needs to find the template again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Unique, monotonic, time-prefixed id.
    pub id: JobId,
    /// Epoch of the jobmaker leader that made it: servers ignore jobs from a
    /// lower epoch than the highest they have seen.
    pub leader_epoch: u64,
    /// The template it was built from.
    pub template_id: TemplateId,
    /// Block height.
    pub height: u32,
    /// The tip it builds on.
    pub prev_blockhash: BlockHash,
    /// Block version before rolling.
    pub version: Version,
    /// Network target.
    pub bits: CompactTarget,
    /// ntime to hand to miners.
    pub time: u32,
    /// Earliest acceptable ntime.
    pub min_time: u32,
    /// Legacy coinbase before the extranonce.
    pub coinbase1: Vec<u8>,
    /// Legacy coinbase after the extranonce.
    pub coinbase2: Vec<u8>,
    /// The coinbase's merkle branch.
    pub merkle_branch: Vec<TxMerkleNode>,
    /// Value the coinbase pays out.
    pub coinbase_value: Amount,
    /// Whether miners must drop earlier work (a new block arrived).
    pub clean: bool,
    /// When the job was made, unix milliseconds.
    pub created_at_ms: u64,
}

impl Job {
    /// The share-check view of this job for sessions with `extranonce2_len`.
    pub fn work(&self, extranonce2_len: usize) -> Work {
        Work {
            version: self.version,
            prev_blockhash: self.prev_blockhash,
            bits: self.bits,
            min_time: self.min_time,
            coinbase1: self.coinbase1.clone(),
            coinbase2: self.coinbase2.clone(),
            merkle_branch: self.merkle_branch.clone(),
            extranonce2_len,
        }
    }
}
