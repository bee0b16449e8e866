//! Redoing the books from the shares: every credited block's PPLNS split
//! and every PPS credit, from the same share records the payer read (the
//! share log keeps them with their Share topic partition and offset).
//!
//! A block was split by the shares before its cut (the offsets the payer
//! had read, per partition) whose minute lies in its window; a PPS credit
//! paid the whole satoshis of the value of the shares before its cut, less
//! what earlier credits paid. Feed every share to [`Recount::add`], in any
//! order, then compare.

use std::collections::{BTreeMap, HashMap};

use sluice_core::record::ShareRecord;

use crate::pplns::{self, Minute};
use crate::split::{Split, SplitError, split};
use crate::tally::{PpsTerms, Tally};

/// What the books say a block was split by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTerms {
    /// The reward split.
    pub reward: u64,
    /// The pool's fee, basis points.
    pub fee_bps: u32,
    /// The window's size, hashes (0: the pool's block, under PPS).
    pub size: u128,
    /// The window's newest minute (the block share's).
    pub last_minute: u32,
    /// Its oldest.
    pub first_minute: u32,
    /// The Share topic read when it was split.
    pub cut: BTreeMap<i32, i64>,
}

/// Work per minute, per user.
type Minutes = BTreeMap<u32, BTreeMap<u32, u128>>;

/// Shares recounted for a set of blocks and PPS credits.
#[derive(Debug)]
pub struct Recount {
    blocks: Vec<(BlockTerms, Minutes)>,
    pps_cuts: Vec<BTreeMap<i32, i64>>,
    pps: Vec<BTreeMap<u32, u128>>,
    terms: Option<PpsTerms>,
    work: HashMap<u64, u128>,
    /// Shares read.
    pub shares: u64,
}

impl Recount {
    /// For `blocks` and the PPS credits with `pps_cuts` (oldest first),
    /// valued with `terms`.
    pub fn new(
        blocks: Vec<BlockTerms>,
        pps_cuts: Vec<BTreeMap<i32, i64>>,
        terms: Option<PpsTerms>,
    ) -> Self {
        Recount {
            blocks: blocks.into_iter().map(|b| (b, BTreeMap::new())).collect(),
            pps: vec![BTreeMap::new(); pps_cuts.len()],
            pps_cuts,
            terms,
            work: HashMap::new(),
            shares: 0,
        }
    }

    /// Counts the share at `offset` of `partition`.
    pub fn add(&mut self, partition: i32, offset: i64, share: &ShareRecord) {
        self.shares += 1;
        let d = share.share_difficulty;
        if !(crate::tally::earns(share) && d.is_finite() && d > 0.0) {
            return;
        }
        let work = *self
            .work
            .entry(d.to_bits())
            .or_insert_with(|| crate::share_work(d));
        let minute = (share.timestamp_ms / 60_000) as u32;
        let before = |cut: &BTreeMap<i32, i64>| cut.get(&partition).is_some_and(|&c| offset < c);
        for (terms, minutes) in &mut self.blocks {
            if (terms.first_minute..=terms.last_minute).contains(&minute) && before(&terms.cut) {
                *minutes
                    .entry(minute)
                    .or_default()
                    .entry(share.user_id)
                    .or_default() += work;
            }
        }
        if let (Some(terms), Some(k)) = (&self.terms, self.pps_cuts.iter().position(before)) {
            let mut one = Tally::default();
            if one.add(share, Some(terms)).is_ok()
                && let Some(v) = one.pps.get(&share.user_id)
            {
                *self.pps[k].entry(share.user_id).or_default() += v;
            }
        }
    }

    /// Block `i`'s split, redone.
    pub fn block_split(&self, i: usize) -> Result<(pplns::Window, Split), SplitError> {
        let (terms, minutes) = &self.blocks[i];
        let walk = minutes.iter().rev().map(|(&minute, work)| Minute {
            minute,
            work: work.clone(),
        });
        let window = pplns::window(terms.last_minute, terms.size, walk);
        let s = split(terms.reward, terms.fee_bps, &window.work)?;
        Ok((window, s))
    }

    /// Each PPS credit's satoshis per user, redone: the whole satoshis of
    /// the running value at its cut, less those at the one before.
    pub fn pps_credits(&self) -> Vec<BTreeMap<u32, u64>> {
        let mut total: BTreeMap<u32, u128> = BTreeMap::new();
        self.pps
            .iter()
            .map(|period| {
                period
                    .iter()
                    .map(|(&user, &v)| {
                        let before = total.get(&user).copied().unwrap_or(0);
                        let after = before + v;
                        total.insert(user, after);
                        (user, crate::pps::credit(before, after))
                    })
                    .filter(|(_, sat)| *sat > 0)
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::ShareStatus;
    use sluice_core::bitcoin::{BlockHash, CompactTarget, Network, hashes::Hash};

    fn share(user: u32, minute: u64, status: ShareStatus) -> ShareRecord {
        ShareRecord {
            job_id: sluice_core::JobId(1),
            user_id: user,
            worker_id: 1,
            worker_name: "w".into(),
            server_id: 1,
            extranonce1: 0,
            extranonce2: vec![],
            ntime: 0,
            nonce: 0,
            version_bits: 0,
            share_difficulty: 1.0,
            network_bits: CompactTarget::from_consensus(0x1d00_ffff),
            height: 300,
            status,
            hash: BlockHash::all_zeros(),
            client_ip: [127, 0, 0, 1].into(),
            timestamp_ms: minute * 60_000,
            protocol: Default::default(),
            solo: false,
        }
    }

    #[test]
    fn a_block_counts_the_shares_before_its_cut_in_its_window() {
        let one = crate::share_work(1.0);
        let terms = BlockTerms {
            reward: 1_000,
            fee_bps: 0,
            size: 2 * one,
            last_minute: 10,
            first_minute: 9,
            cut: [(0, 5)].into_iter().collect(),
        };
        let mut r = Recount::new(vec![terms], vec![], None);
        r.add(0, 0, &share(1, 9, ShareStatus::Accepted));
        r.add(0, 1, &share(2, 10, ShareStatus::Accepted));
        r.add(0, 2, &share(3, 10, ShareStatus::Stale));
        r.add(0, 3, &share(4, 8, ShareStatus::Accepted)); // before the window
        r.add(0, 5, &share(5, 10, ShareStatus::Accepted)); // read after the split
        r.add(1, 0, &share(6, 10, ShareStatus::Accepted)); // a partition not read then
        let (window, s) = r.block_split(0).unwrap();
        assert!(window.filled);
        assert_eq!(s.credits.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!((s.credits[&1].sat, s.credits[&2].sat), (500, 500));
        assert_eq!(r.shares, 6);
    }

    #[test]
    fn pps_credits_are_the_whole_satoshis_between_cuts() {
        let terms = PpsTerms {
            network: Network::Regtest,
            fee_bps: 0,
            fees: None,
        };
        let cuts = vec![
            [(0, 2)].into_iter().collect(),
            [(0, 4)].into_iter().collect(),
        ];
        let mut r = Recount::new(vec![], cuts, Some(terms));
        for offset in 0..5 {
            r.add(0, offset, &share(1, 1, ShareStatus::Accepted));
        }
        let credits = r.pps_credits();
        // Difficulty 1 at difficulty-1 bits: each share is a block's subsidy
        // (height 300 on regtest: 12.5 BTC); the fifth is after the last cut.
        assert_eq!(credits[0][&1], 2_500_000_000);
        assert_eq!(credits[1][&1], 2_500_000_000);
    }
}
