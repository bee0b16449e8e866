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

/// Consumer-side fencing of deposed jobmaker leaders.
///
/// A leader that lost its ZooKeeper session may still publish for a moment
/// before it notices. Jobs carry the leader's epoch, which only grows with
/// each election; a consumer admits a job only if its epoch is at least the
/// highest seen, so once a newer leader has spoken, the old one is ignored.
#[derive(Debug, Clone, Default)]
pub struct EpochFence {
    highest: Option<u64>,
}

impl EpochFence {
    /// Whether `job` comes from the current leader (recording its epoch).
    pub fn admit(&mut self, job: &Job) -> bool {
        match self.highest {
            Some(h) if job.leader_epoch < h => false,
            _ => {
                self.highest = Some(job.leader_epoch);
                true
            }
        }
    }

    /// The newest leader epoch seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn job(epoch: u64) -> Job {
        Job {
            id: JobId(1),
            leader_epoch: epoch,
            template_id: TemplateId([0; 32]),
            height: 1,
            prev_blockhash: BlockHash::all_zeros(),
            version: Version::TWO,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            time: 0,
            min_time: 0,
            coinbase1: vec![],
            coinbase2: vec![],
            merkle_branch: vec![],
            coinbase_value: Amount::ZERO,
            clean: true,
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_deposed_leader_is_ignored_once_a_newer_one_spoke() {
        let mut fence = EpochFence::default();
        assert!(fence.admit(&job(3)), "the first leader seen");
        assert!(fence.admit(&job(3)), "the same leader again");
        assert!(fence.admit(&job(7)), "a newer leader");
        assert!(!fence.admit(&job(3)), "the deposed one, still publishing");
        assert_eq!(fence.highest(), Some(7));
        assert!(!fence.admit(&job(0)));
    }
}
