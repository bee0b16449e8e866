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
    /// What a solo miner's coinbase of this job pays, when the pool offers
    /// solo mining: its coinbase is `coinbase1` ‖ extranonce ‖ the solo
    /// `coinbase2` of its own script.
    pub solo: Option<crate::SoloCoinbase>,
}

/// extranonce1 bytes (sserver's id and session index) a Job's coinbase is
/// split around, before extranonce2 bytes (the miner's): 4 + 8 = 12 bytes of
/// coinbase space (ARCHITECTURE.md §8). sserver pads for a shorter
/// extranonce2.
pub const EXTRANONCE1_LEN: usize = 4;
/// See [`EXTRANONCE1_LEN`].
pub const EXTRANONCE2_LEN: usize = 8;

/// What a job and a template must both be: a height above genesis, a value
/// within the 21 million BTC, bits that are a target (up to regtest's).
pub(crate) fn plausible(height: u32, value: Amount, bits: CompactTarget) -> Result<(), String> {
    if height == 0 {
        return Err("height 0 (genesis is never mined)".into());
    }
    if value > Amount::MAX_MONEY {
        return Err(format!("coinbase value {value} exceeds 21 million BTC"));
    }
    let target = bitcoin::Target::from_compact(bits);
    if target == bitcoin::Target::ZERO || target > bitcoin::Target::MAX_ATTAINABLE_REGTEST {
        return Err(format!("bits {:08x} is no target", bits.to_consensus()));
    }
    Ok(())
}

/// Levels a real block's merkle branch can have: a block of 4,000,000
/// weight units holds fewer than 2^15 transactions (each at least 240).
pub const MAX_MERKLE_BRANCH: usize = 15;

impl Job {
    /// Why this job cannot be real (it decoded, but no jobmaker makes such
    /// a job): a merkle branch deeper than any block, a coinbase that does
    /// not reassemble into a transaction around 4 + 8 extranonce bytes, an
    /// impossible target or value. Consumers skip such a job as poison.
    pub fn check(&self) -> Result<(), String> {
        if self.merkle_branch.len() > MAX_MERKLE_BRANCH {
            return Err(format!(
                "merkle branch of {} levels (a block has at most {MAX_MERKLE_BRANCH})",
                self.merkle_branch.len()
            ));
        }
        plausible(self.height, self.coinbase_value, self.bits)?;
        let coinbase = crate::coinbase::join_coinbase(
            &self.coinbase1,
            &[0; EXTRANONCE1_LEN],
            &[0; EXTRANONCE2_LEN],
            &self.coinbase2,
        );
        let tx = crate::coinbase::coinbase_transaction(&coinbase)
            .map_err(|e| format!("coinbase does not reassemble: {e}"))?;
        if !tx.is_coinbase() {
            return Err("coinbase does not spend the null outpoint".into());
        }
        if let Some(solo) = &self.solo {
            if solo.miner_value.checked_add(solo.fee()) != Some(self.coinbase_value) {
                return Err(format!(
                    "solo coinbase pays {} and {} of a value of {}",
                    solo.miner_value,
                    solo.fee(),
                    self.coinbase_value
                ));
            }
            let coinbase = crate::coinbase::join_coinbase(
                &self.coinbase1,
                &[0; EXTRANONCE1_LEN],
                &[0; EXTRANONCE2_LEN],
                &solo.coinbase2(&bitcoin::ScriptBuf::new()),
            );
            crate::coinbase::coinbase_transaction(&coinbase)
                .map_err(|e| format!("solo coinbase does not reassemble: {e}"))?;
        }
        Ok(())
    }

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
            solo: None,
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

    /// A job as jobmaker makes one: a real coinbase split around 4 + 8
    /// extranonce bytes.
    fn real() -> Job {
        let split = crate::CoinbaseParams {
            height: 840_000,
            unique: 7,
            pool_tag: b"/sluice/".to_vec(),
            extranonce1_len: 4,
            extranonce2_len: 8,
            value: Amount::from_sat(312_500_000),
            payout_script: bitcoin::ScriptBuf::new_op_return([0u8; 4]),
            fixed_outputs: Vec::new(),
            witness_commitment: None,
        }
        .build()
        .unwrap();
        Job {
            height: 840_000,
            coinbase1: split.coinbase1,
            coinbase2: split.coinbase2,
            merkle_branch: vec![TxMerkleNode::all_zeros(); 12],
            coinbase_value: Amount::from_sat(312_500_000),
            ..job(1)
        }
    }

    #[test]
    fn a_job_no_jobmaker_makes_is_refused_with_the_reason() {
        assert_eq!(real().check(), Ok(()));
        let why = |j: Job| j.check().unwrap_err();
        let deep = Job {
            merkle_branch: vec![TxMerkleNode::all_zeros(); 40],
            ..real()
        };
        assert!(why(deep).starts_with("merkle branch of 40 levels"));
        assert!(
            why(Job {
                height: 0,
                ..real()
            })
            .starts_with("height 0")
        );
        let rich = Job {
            coinbase_value: Amount::from_sat(21_000_001 * 100_000_000),
            ..real()
        };
        assert!(why(rich).contains("21 million"));
        let no_target = Job {
            bits: CompactTarget::from_consensus(0),
            ..real()
        };
        assert!(why(no_target).contains("no target"));
        let cut = Job {
            coinbase2: real().coinbase2[..3].to_vec(),
            ..real()
        };
        assert!(why(cut).starts_with("coinbase does not reassemble"));
    }
}
