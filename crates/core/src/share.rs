//! Header assembly from a Stratum submission, and the share check.
//!
//! sserver calls [`Work::check`] for every `mining.submit`: it rebuilds the
//! coinbase from the job's halves and the session's extranonces, folds its
//! txid through the merkle branch, assembles the 80-byte header with the
//! miner's ntime, nonce and rolled version bits (BIP310), hashes it and
//! compares the hash with the share target and the network target. The
//! outcome is typed: a block candidate is recognised whatever the share
//! target, so a block is never lost to a share-difficulty setting.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{Hash, HashEngine, sha256d};
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode, Txid};

use crate::merkle::merkle_root;

/// The furthest into the future a share's ntime may be, as Bitcoin Core
/// allows for block times (`MAX_FUTURE_BLOCK_TIME`, two hours).
pub const MAX_FUTURE_NTIME_SECS: u32 = 7200;

/// What the share check needs of a job; built once per job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// Block version from the template, before any rolling.
    pub version: Version,
    /// The block this job builds on.
    pub prev_blockhash: BlockHash,
    /// Network target in compact form.
    pub bits: CompactTarget,
    /// The template's `mintime`: the earliest ntime Bitcoin Core accepts.
    pub min_time: u32,
    /// Legacy coinbase bytes before the extranonce.
    pub coinbase1: Vec<u8>,
    /// Legacy coinbase bytes after the extranonce.
    pub coinbase2: Vec<u8>,
    /// The coinbase's merkle branch.
    pub merkle_branch: Vec<TxMerkleNode>,
    /// Bytes of extranonce2 a miner must submit.
    pub extranonce2_len: usize,
}

/// A miner's `mining.submit`, with the session's extranonce1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submission<'a> {
    /// Assigned by the server when the session subscribed.
    pub extranonce1: &'a [u8],
    /// Chosen by the miner.
    pub extranonce2: &'a [u8],
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// BIP310 version bits (the 6th submit parameter), if any.
    pub version_bits: Option<u32>,
}

/// Why a submission cannot be turned into a header at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    /// extranonce2 has the wrong size.
    #[error("extranonce2 is {got} bytes, expected {expected}")]
    Extranonce2Size {
        /// Bytes submitted.
        got: usize,
        /// Bytes the job requires.
        expected: usize,
    },
    /// Version bits were rolled outside the negotiated mask.
    #[error("version bits {bits:08x} fall outside the negotiated mask {mask:08x}")]
    VersionBitsOutsideMask {
        /// Submitted bits.
        bits: u32,
        /// The session's mask.
        mask: u32,
    },
    /// ntime before the template's mintime.
    #[error("ntime {ntime} is before the job's mintime {min_time}")]
    NtimeTooOld {
        /// Submitted ntime.
        ntime: u32,
        /// The job's mintime.
        min_time: u32,
    },
    /// ntime more than two hours after the server's clock.
    #[error("ntime {ntime} is more than {MAX_FUTURE_NTIME_SECS}s after now ({now})")]
    NtimeTooNew {
        /// Submitted ntime.
        ntime: u32,
        /// Server time.
        now: u32,
    },
}

/// How a hash compares with the share and network targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareOutcome {
    /// Above the share target: rejected as low difficulty.
    LowDifficulty,
    /// Meets the share target but not the network target.
    Share,
    /// Meets the network target: a block candidate.
    Block,
}

/// The result of checking one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedShare {
    /// The header the miner hashed.
    pub header: Header,
    /// Its hash.
    pub hash: BlockHash,
    /// How that hash compares with the targets.
    pub outcome: ShareOutcome,
}

/// The block version after BIP310 version rolling:
/// `(job_version & !mask) | (bits & mask)`. Bits outside the mask are refused.
///
/// btcpool applies submitted bits with XOR; for job versions with no bit set
/// inside the mask (every BIP9 template version with the usual mask
/// `1fffe000`) the two are identical.
pub fn rolled_version(
    job_version: Version,
    version_bits: Option<u32>,
    mask: u32,
) -> Result<Version, SubmissionError> {
    let Some(bits) = version_bits else {
        return Ok(job_version);
    };
    if bits & !mask != 0 {
        return Err(SubmissionError::VersionBitsOutsideMask { bits, mask });
    }
    let v = job_version.to_consensus() as u32;
    Ok(Version::from_consensus(
        ((v & !mask) | (bits & mask)) as i32,
    ))
}

/// Checks an ntime against the job's mintime and the server clock.
pub fn check_ntime(ntime: u32, min_time: u32, now: u32) -> Result<(), SubmissionError> {
    if ntime < min_time {
        return Err(SubmissionError::NtimeTooOld { ntime, min_time });
    }
    if ntime > now.saturating_add(MAX_FUTURE_NTIME_SECS) {
        return Err(SubmissionError::NtimeTooNew { ntime, now });
    }
    Ok(())
}

impl Work {
    /// The coinbase txid for these extranonces, hashed without allocating.
    pub fn coinbase_txid(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Txid {
        self.coinbase_txid_with(&self.coinbase2, extranonce1, extranonce2)
    }

    /// [`Work::coinbase_txid`] of the coinbase ending in `coinbase2` (a solo
    /// miner's, [`crate::SoloCoinbase::coinbase2`]) instead of the job's.
    pub fn coinbase_txid_with(
        &self,
        coinbase2: &[u8],
        extranonce1: &[u8],
        extranonce2: &[u8],
    ) -> Txid {
        let mut engine = sha256d::Hash::engine();
        engine.input(&self.coinbase1);
        engine.input(extranonce1);
        engine.input(extranonce2);
        engine.input(coinbase2);
        Txid::from_raw_hash(sha256d::Hash::from_engine(engine))
    }

    /// The header a submission describes. ntime is not judged here (see
    /// [`check_ntime`]): a header is well defined whatever the time.
    pub fn header(
        &self,
        sub: &Submission<'_>,
        version_mask: u32,
    ) -> Result<Header, SubmissionError> {
        self.header_with(&self.coinbase2, sub, version_mask)
    }

    /// [`Work::header`] of the coinbase ending in `coinbase2`.
    pub fn header_with(
        &self,
        coinbase2: &[u8],
        sub: &Submission<'_>,
        version_mask: u32,
    ) -> Result<Header, SubmissionError> {
        if sub.extranonce2.len() != self.extranonce2_len {
            return Err(SubmissionError::Extranonce2Size {
                got: sub.extranonce2.len(),
                expected: self.extranonce2_len,
            });
        }
        let version = rolled_version(self.version, sub.version_bits, version_mask)?;
        let txid = self.coinbase_txid_with(coinbase2, sub.extranonce1, sub.extranonce2);
        Ok(Header {
            version,
            prev_blockhash: self.prev_blockhash,
            merkle_root: merkle_root(txid, &self.merkle_branch),
            time: sub.ntime,
            bits: self.bits,
            nonce: sub.nonce,
        })
    }

    /// Assembles the header and compares its hash with `share_target` and the
    /// network target.
    pub fn check(
        &self,
        sub: &Submission<'_>,
        version_mask: u32,
        share_target: &Target,
    ) -> Result<CheckedShare, SubmissionError> {
        self.check_with(&self.coinbase2, sub, version_mask, share_target)
    }

    /// [`Work::check`] of the coinbase ending in `coinbase2`.
    pub fn check_with(
        &self,
        coinbase2: &[u8],
        sub: &Submission<'_>,
        version_mask: u32,
        share_target: &Target,
    ) -> Result<CheckedShare, SubmissionError> {
        let header = self.header_with(coinbase2, sub, version_mask)?;
        let hash = header.block_hash();
        Ok(CheckedShare {
            header,
            hash,
            outcome: classify(hash, share_target, self.bits),
        })
    }
}

/// Compares a header hash with a share target and the network target.
pub fn classify(hash: BlockHash, share_target: &Target, bits: CompactTarget) -> ShareOutcome {
    if Target::from_compact(bits).is_met_by(hash) {
        ShareOutcome::Block
    } else if share_target.is_met_by(hash) {
        ShareOutcome::Share
    } else {
        ShareOutcome::LowDifficulty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rolling_stays_inside_the_mask() {
        let job = Version::from_consensus(0x2000_0000);
        let mask = 0x1fff_e000;
        assert_eq!(rolled_version(job, None, mask).unwrap(), job);
        let v = rolled_version(job, Some(0x0000_e000), mask).unwrap();
        assert_eq!(v.to_consensus(), 0x2000_e000);
        assert_eq!(
            rolled_version(job, Some(0x0000_0001), mask),
            Err(SubmissionError::VersionBitsOutsideMask { bits: 1, mask })
        );
        // Equal to btcpool's XOR for a job version with no bits in the mask.
        let xor = (0x2000_0000u32 ^ 0x1234_e000u32 & mask) as i32;
        assert_eq!(
            rolled_version(job, Some(0x1234_e000 & mask), mask)
                .unwrap()
                .to_consensus(),
            xor
        );
    }

    #[test]
    fn ntime_window() {
        assert!(check_ntime(1000, 1000, 900).is_ok());
        assert_eq!(
            check_ntime(999, 1000, 900),
            Err(SubmissionError::NtimeTooOld {
                ntime: 999,
                min_time: 1000
            })
        );
        assert!(check_ntime(900 + 7200, 0, 900).is_ok());
        assert!(matches!(
            check_ntime(900 + 7201, 0, 900),
            Err(SubmissionError::NtimeTooNew { .. })
        ));
    }

    #[test]
    fn a_block_is_a_block_whatever_the_share_target() {
        // Regtest bits: almost every hash meets the network target.
        let bits = CompactTarget::from_consensus(0x207f_ffff);
        let hash = BlockHash::from_byte_array([0x11; 32]); // 0x1111…: above difficulty 1
        let hard_share = crate::DIFF1_TARGET;
        assert!(!hard_share.is_met_by(hash));
        assert_eq!(classify(hash, &hard_share, bits), ShareOutcome::Block);
        let mainnet_bits = CompactTarget::from_consensus(0x1703_4219);
        assert_eq!(
            classify(hash, &Target::from_le_bytes([0xff; 32]), mainnet_bits),
            ShareOutcome::Share
        );
        assert_eq!(
            classify(hash, &hard_share, mainnet_bits),
            ShareOutcome::LowDifficulty
        );
    }
}
