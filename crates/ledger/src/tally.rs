//! What shares add to the books, read the same way by the payer (from the
//! Share topic) and by `sluicectl payouts verify` (from the share log).
//!
//! Accepted and block shares are work: hashes per user per unix minute of
//! the share's server time, kept apart by the job's height and network
//! target. Under PPS each such share is also worth its [`pps::value`] of the
//! subsidy at its height. A block share marks where the block's window ends.
//! Stale and rejected shares add nothing.

use std::collections::{BTreeMap, HashMap};

use sluice_core::bitcoin::{Network, Target};
use sluice_core::network::block_subsidy;
use sluice_core::record::ShareRecord;

use crate::{pps, share_work};

/// PPS terms: each share's value is paid at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PpsTerms {
    /// The network (its subsidy schedule).
    pub network: Network,
    /// The pool's fee, basis points.
    pub fee_bps: u32,
    /// FPPS: the fees a block pays on average, recorded per job height
    /// ([`pps::mean_fees`] of the blocks before it); `None` under PPS.
    pub fees: Option<BTreeMap<u32, u64>>,
}

impl PpsTerms {
    /// What a block at `height` is taken to pay: the subsidy, plus under
    /// FPPS the recorded mean fees (an error if none is recorded).
    pub fn reward(&self, height: u32) -> Result<u64, Unusable> {
        let subsidy = block_subsidy(self.network, height).to_sat();
        match &self.fees {
            None => Ok(subsidy),
            Some(fees) => fees
                .get(&height)
                .map(|f| subsidy.saturating_add(*f))
                .ok_or(Unusable::NoFees(height)),
        }
    }
}

/// A block share as the books keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Server time of the share, unix ms.
    pub timestamp_ms: u64,
    /// Height.
    pub height: u32,
    /// Network target it met (compact).
    pub network_bits: u32,
    /// Finder.
    pub user_id: u32,
}

/// Work, value and blocks of some shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Work (hashes) and shares per (minute, user, height, network bits).
    pub work: BTreeMap<(u32, u32, u32, u32), (u128, u32)>,
    /// PPS value (2^-64 satoshi) per user.
    pub pps: BTreeMap<u32, u128>,
    /// Block shares by block hash (RPC hex).
    pub found: BTreeMap<String, Found>,
    /// Shares added (all verdicts).
    pub shares: u64,
    hashes: HashMap<u64, u128>,
}

/// A share the books cannot count.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unusable {
    /// Its difficulty.
    #[error("share difficulty {0} is not a positive number")]
    Difficulty(f64),
    /// FPPS without the fees of its height recorded.
    #[error("no FPPS fees are recorded for height {0}")]
    NoFees(u32),
}

/// Whether `share` is work the pool's blocks pay for: accepted (a block
/// or a share) and not a solo miner's, whose work earns nothing of the
/// pool's blocks and whose block pays its own address.
pub fn earns(share: &ShareRecord) -> bool {
    share.status.is_accepted() && !share.solo
}

impl Tally {
    /// Adds `share`; with `pps`, its value too.
    pub fn add(&mut self, share: &ShareRecord, pps: Option<&PpsTerms>) -> Result<(), Unusable> {
        let d = share.share_difficulty;
        if !(d.is_finite() && d > 0.0) {
            return Err(Unusable::Difficulty(d));
        }
        let accepted = earns(share);
        let reward = match pps {
            Some(terms) if accepted => Some(terms.reward(share.height)?),
            _ => None,
        };
        self.shares += 1;
        if !accepted {
            return Ok(());
        }
        let work = *self
            .hashes
            .entry(d.to_bits())
            .or_insert_with(|| share_work(d));
        let bits = share.network_bits.to_consensus();
        let minute = (share.timestamp_ms / 60_000) as u32;
        let slot = self
            .work
            .entry((minute, share.user_id, share.height, bits))
            .or_default();
        slot.0 = slot.0.saturating_add(work);
        slot.1 += 1;
        if let (Some(terms), Some(reward)) = (pps, reward) {
            let block = sluice_core::hashes_of(Target::from_compact(share.network_bits));
            let v = pps::value(work, block, reward, terms.fee_bps).unwrap_or(0);
            let total = self.pps.entry(share.user_id).or_default();
            *total = total.saturating_add(v);
        }
        if share.status == sluice_core::ShareStatus::Block {
            self.found.insert(
                share.hash.to_string(),
                Found {
                    timestamp_ms: share.timestamp_ms,
                    height: share.height,
                    network_bits: bits,
                    user_id: share.user_id,
                },
            );
        }
        Ok(())
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.shares == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::ShareStatus;
    use sluice_core::bitcoin::{BlockHash, CompactTarget, hashes::Hash};

    fn share(user: u32, d: f64, status: ShareStatus, ms: u64) -> ShareRecord {
        ShareRecord {
            job_id: sluice_core::JobId(1),
            user_id: user,
            worker_id: 1,
            worker_name: "w".into(),
            server_id: 1,
            extranonce1: 0,
            extranonce2: vec![0; 8],
            ntime: 0,
            nonce: 0,
            version_bits: 0,
            share_difficulty: d,
            network_bits: CompactTarget::from_consensus(0x207f_ffff),
            height: 200,
            status,
            hash: BlockHash::from_byte_array([7; 32]),
            client_ip: [127, 0, 0, 1].into(),
            timestamp_ms: ms,
            protocol: Default::default(),
            solo: false,
        }
    }

    #[test]
    fn solo_shares_and_blocks_stay_out_of_the_books() {
        let mut t = Tally::default();
        let mut solo = share(1, 1.0, ShareStatus::Block, 60_000);
        solo.solo = true;
        let terms = PpsTerms {
            network: Network::Regtest,
            fee_bps: 0,
            fees: None,
        };
        t.add(&solo, Some(&terms)).unwrap();
        assert_eq!(t.shares, 1, "read, so its offset moves on");
        assert!(t.work.is_empty() && t.pps.is_empty() && t.found.is_empty());
    }

    #[test]
    fn accepted_work_counts_per_minute_and_the_rest_only_as_shares() {
        let mut t = Tally::default();
        t.add(&share(1, 1.0, ShareStatus::Accepted, 60_000), None)
            .unwrap();
        t.add(&share(1, 1.0, ShareStatus::Accepted, 119_999), None)
            .unwrap();
        t.add(&share(1, 1.0, ShareStatus::Stale, 61_000), None)
            .unwrap();
        t.add(&share(2, 2.0, ShareStatus::Block, 120_000), None)
            .unwrap();
        assert_eq!(t.shares, 4);
        assert_eq!(t.work[&(1, 1, 200, 0x207f_ffff)], (2 * 4_295_032_833, 2));
        assert_eq!(t.work[&(2, 2, 200, 0x207f_ffff)].1, 1);
        let found = &t.found[&BlockHash::from_byte_array([7; 32]).to_string()];
        assert_eq!((found.user_id, found.timestamp_ms), (2, 120_000));
        assert!(t.pps.is_empty());
        assert_eq!(
            t.add(&share(1, 0.0, ShareStatus::Accepted, 1), None),
            Err(Unusable::Difficulty(0.0))
        );
    }

    #[test]
    fn under_pps_a_share_is_worth_its_chance_of_the_subsidy() {
        // Regtest at 0x207fffff: a block is 2 hashes, so a share of
        // difficulty 1 is a block: worth the subsidy at height 200 (25 BTC).
        let mut t = Tally::default();
        let terms = PpsTerms {
            network: Network::Regtest,
            fee_bps: 100,
            fees: None,
        };
        t.add(&share(1, 1.0, ShareStatus::Accepted, 0), Some(&terms))
            .unwrap();
        assert_eq!(pps::credit(0, t.pps[&1]), 2_475_000_000);
    }

    #[test]
    fn under_fpps_a_share_is_worth_its_chance_of_the_subsidy_and_the_mean_fees() {
        // As above, plus 0.1 BTC of fees recorded for height 200.
        let terms = PpsTerms {
            network: Network::Regtest,
            fee_bps: 100,
            fees: Some(BTreeMap::from([(200, 10_000_000)])),
        };
        let mut t = Tally::default();
        t.add(&share(1, 1.0, ShareStatus::Accepted, 0), Some(&terms))
            .unwrap();
        assert_eq!(pps::credit(0, t.pps[&1]), 2_484_900_000);
        // A share whose height has no recorded fees is refused whole: no
        // work counted without its value.
        let mut other = share(2, 1.0, ShareStatus::Accepted, 0);
        other.height = 201;
        assert_eq!(t.add(&other, Some(&terms)), Err(Unusable::NoFees(201)));
        assert_eq!((t.shares, t.work.len()), (1, 1));
        // A stale share needs no fees: it is worth nothing.
        other.status = ShareStatus::Stale;
        assert_eq!(t.add(&other, Some(&terms)), Ok(()));
    }
}
