//! A block's reward split into credits that sum to it exactly.
//!
//! The rule, in satoshis, whole numbers only:
//! 1. the pool's fee is `floor(reward × fee_bps / 10,000)`;
//! 2. each user's credit is `floor(rest × work_u / work_total)` of the rest;
//! 3. what the floors leave (under one satoshi per user) goes to the pool's
//!    account with the fee.
//!
//! With no work to split by (a block before any share was counted) the
//! whole reward is the pool's. Anyone holding the same work can redo it.

use std::collections::BTreeMap;

use crate::wide::mul_div;

/// Basis points in one: a fee of 100 bps is 1 %.
pub const BPS: u64 = 10_000;

/// How a reward was divided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The reward split, satoshis.
    pub reward: u64,
    /// The pool's fee.
    pub fee: u64,
    /// What the floors left, also the pool's.
    pub remainder: u64,
    /// Each user's work (hashes) and credit (satoshis), by user id; a user
    /// whose work earned less than a satoshi is listed with 0.
    pub credits: BTreeMap<u32, Credit>,
}

/// One user's part of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    /// The user's work counted, in hashes.
    pub work: u128,
    /// Satoshis.
    pub sat: u64,
}

/// Why a split cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The fee is over 100 %.
    #[error("pool fee of {0} basis points is over 10,000 (100 %)")]
    Fee(u32),
    /// The work adds up beyond what the books can hold.
    #[error("the work to split by adds up beyond 2^128 hashes")]
    Work,
}

impl Split {
    /// The pool's part: fee and remainder.
    pub fn pool(&self) -> u64 {
        self.fee + self.remainder
    }

    /// The users' credits summed.
    pub fn credited(&self) -> u64 {
        self.credits.values().map(|c| c.sat).sum()
    }
}

/// Splits `reward` by each user's `work`, the pool taking `fee_bps`.
pub fn split(reward: u64, fee_bps: u32, work: &BTreeMap<u32, u128>) -> Result<Split, SplitError> {
    if u64::from(fee_bps) > BPS {
        return Err(SplitError::Fee(fee_bps));
    }
    let fee = (u128::from(reward) * u128::from(fee_bps) / u128::from(BPS)) as u64;
    let rest = reward - fee;
    let total = work
        .values()
        .try_fold(0u128, |sum, w| sum.checked_add(*w))
        .ok_or(SplitError::Work)?;
    let credits: BTreeMap<u32, Credit> = work
        .iter()
        .map(|(&user, &w)| {
            // rest × w / total ≤ rest: it fits.
            let sat = mul_div(u128::from(rest), w, total).unwrap_or(0) as u64;
            (user, Credit { work: w, sat })
        })
        .collect();
    let credited: u64 = credits.values().map(|c| c.sat).sum();
    Ok(Split {
        reward,
        fee,
        remainder: rest - credited,
        credits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn work(pairs: &[(u32, u128)]) -> BTreeMap<u32, u128> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn fee_first_then_work_then_the_remainder_to_the_pool() {
        // 3.125 BTC, 2 % fee, three users 1:1:1.
        let s = split(312_500_000, 200, &work(&[(1, 10), (2, 10), (3, 10)])).unwrap();
        assert_eq!(s.fee, 6_250_000);
        let each = 306_250_000 / 3;
        assert!(s.credits.values().all(|c| c.sat == each));
        assert_eq!(s.remainder, 306_250_000 - 3 * each);
        assert_eq!(s.remainder, 1);
        assert_eq!(s.credited() + s.pool(), s.reward);
    }

    #[test]
    fn no_work_leaves_the_reward_to_the_pool_and_a_bad_fee_is_refused() {
        let s = split(5_000_000_000, 100, &BTreeMap::new()).unwrap();
        assert_eq!((s.fee, s.remainder), (50_000_000, 4_950_000_000));
        assert_eq!(
            split(1, 10_001, &work(&[(1, 1)])),
            Err(SplitError::Fee(10_001))
        );
        assert_eq!(
            split(1, 0, &work(&[(1, u128::MAX), (2, 1)])),
            Err(SplitError::Work)
        );
    }

    #[test]
    fn a_user_below_a_satoshi_is_listed_with_nothing() {
        let s = split(100, 0, &work(&[(1, 1), (2, 1_000)])).unwrap();
        assert_eq!(s.credits[&1].sat, 0);
        assert_eq!(s.credits[&2].sat, 99);
        assert_eq!(s.remainder, 1);
    }

    proptest! {
        /// The parts always sum to the reward, each user's credit is within
        /// a satoshi of its exact share, and the remainder is under one
        /// satoshi per user.
        #[test]
        fn splits_sum_exactly(
            reward in 0u64..=2_100_000_000_000_000,
            fee_bps in 0u32..=10_000,
            users in proptest::collection::btree_map(1u32..1_000_000, 1u128..1u128 << 90, 0..50),
        ) {
            let s = split(reward, fee_bps, &users).unwrap();
            prop_assert_eq!(s.credited() + s.fee + s.remainder, reward);
            prop_assert!(s.remainder <= users.len() as u64 || users.is_empty());
            let total: f64 = users.values().map(|&w| w as f64).sum();
            for (user, credit) in &s.credits {
                let exact = (reward - s.fee) as f64 * users[user] as f64 / total;
                prop_assert!((credit.sat as f64) <= exact + 1e-6 * exact.max(1.0));
                prop_assert!((credit.sat as f64) > exact - 1.0 - 1e-6 * exact);
            }
        }
    }
}
