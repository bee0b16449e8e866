//! The pool's round: accepted difficulty since the pool's last block, and
//! for each block the work behind it (its effort = work / network
//! difficulty), counted from the Share topic in the order shares are logged.
//! A round under way when statshttpd starts is counted from the oldest share
//! it rebuilds from: such a block's work is marked not whole (a lower bound).

use sluice_core::Difficulty;
use sluice_core::record::{ShareRecord, ShareStatus};
use sluice_store::BlockWork;

/// The round under way.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// Accepted difficulty since it began.
    work: f64,
    /// Unix ms it began: the last block's share, or the first share counted.
    since_ms: Option<u64>,
    /// It began at a block (not at the first share counted).
    whole: bool,
    /// The network difficulty of the newest share.
    network_difficulty: f64,
}

/// The round as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RoundNow {
    pub(crate) work: f64,
    pub(crate) network_difficulty: f64,
    pub(crate) since_ms: u64,
    pub(crate) whole: bool,
}

impl Round {
    /// Counts `share`; a block's share ends the round and returns the work
    /// behind the block.
    pub(crate) fn apply(&mut self, share: &ShareRecord) -> Option<BlockWork> {
        if !share.status.is_accepted() {
            return None;
        }
        self.network_difficulty =
            Difficulty::from_compact(share.network_bits).map_or(0.0, Difficulty::get);
        self.work += share.share_difficulty;
        let since_ms = *self.since_ms.get_or_insert(share.timestamp_ms);
        if share.status != ShareStatus::Block {
            return None;
        }
        let work = BlockWork {
            hash: share.hash.to_string(),
            height: share.height,
            work: self.work,
            network_difficulty: self.network_difficulty,
            since_ms,
            whole: self.whole,
        };
        *self = Round {
            work: 0.0,
            since_ms: Some(share.timestamp_ms),
            whole: true,
            network_difficulty: self.network_difficulty,
        };
        Some(work)
    }

    /// The round so far (`None` before the first accepted share).
    pub(crate) fn now(&self) -> Option<RoundNow> {
        Some(RoundNow {
            work: self.work,
            network_difficulty: self.network_difficulty,
            since_ms: self.since_ms?,
            whole: self.whole,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use bitcoin::hashes::Hash;
    use bitcoin::{BlockHash, CompactTarget};
    use sluice_core::JobId;
    use sluice_core::record::{ShareRecord, ShareStatus};

    use super::Round;

    fn share(status: ShareStatus, difficulty: f64, at: u64) -> ShareRecord {
        ShareRecord {
            job_id: JobId(1),
            user_id: 1,
            worker_id: 1,
            worker_name: "rig".into(),
            server_id: 1,
            extranonce1: 1,
            extranonce2: vec![0; 8],
            ntime: 0,
            nonce: 0,
            version_bits: 0,
            share_difficulty: difficulty,
            // Difficulty 1 (the pool's bits for difficulty 1).
            network_bits: CompactTarget::from_consensus(0x1d00_ffff),
            height: 7,
            status,
            hash: BlockHash::from_byte_array([at as u8; 32]),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            timestamp_ms: at,
            protocol: sluice_core::record::MiningProtocol::StratumV1,
            solo: false,
        }
    }

    #[test]
    fn a_block_takes_the_accepted_work_since_the_last_and_starts_a_whole_round() {
        let mut round = Round::default();
        assert_eq!(round.now(), None);
        assert!(
            round
                .apply(&share(ShareStatus::Accepted, 0.25, 10))
                .is_none()
        );
        assert!(round.apply(&share(ShareStatus::Stale, 100.0, 11)).is_none());
        assert!(
            round
                .apply(&share(ShareStatus::LowDifficulty, 100.0, 12))
                .is_none()
        );
        let first = round.apply(&share(ShareStatus::Block, 0.5, 13)).unwrap();
        assert_eq!((first.work, first.since_ms, first.whole), (0.75, 10, false));
        assert_eq!(first.network_difficulty, 1.0);
        assert_eq!(first.height, 7);
        assert!((first.effort() - 0.75).abs() < 1e-12);

        assert_eq!(
            round.now().map(|r| (r.work, r.since_ms, r.whole)),
            Some((0.0, 13, true))
        );
        round.apply(&share(ShareStatus::Accepted, 2.0, 20));
        let second = round.apply(&share(ShareStatus::Block, 1.0, 21)).unwrap();
        assert_eq!(
            (second.work, second.since_ms, second.whole),
            (3.0, 13, true)
        );
        assert_eq!(
            second.hash,
            BlockHash::from_byte_array([21; 32]).to_string()
        );
    }
}
