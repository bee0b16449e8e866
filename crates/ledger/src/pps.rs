//! Pay per share: each share's expected value, paid whether or not the pool
//! finds a block.
//!
//! A share of `w` hashes finds a block with probability `w / B` (`B` the
//! block's work in hashes at the share's network target), so it is worth
//! `w / B` of the reward: the subsidy at the share's height (PPS), plus the
//! fees a block pays on average (FPPS), less the pool's fee. Values are
//! summed per user per minute of work in fixed point (2^-64 satoshi), so a
//! small miner's fractions are never floored away: a user's credits are the
//! whole satoshis of their running total, `floor(total after) − floor(total
//! before)`, and what they were credited always equals `floor(total)`.

use crate::split::BPS;
use crate::wide::mul_div;

/// Fractional bits of a [`value`].
pub const FRACTION_BITS: u32 = 64;

/// The value of `work` hashes (at most `block_work`) at `block_work` hashes a block paying
/// `reward` satoshis, the pool taking `fee_bps`, in 2^-64 satoshi; `None`
/// if the numbers are out of any real range (a fee over 100 %, no block
/// work, or a value beyond 2^64 satoshis).
pub fn value(work: u128, block_work: u128, reward: u64, fee_bps: u32) -> Option<u128> {
    // A share is worth at most a block (btcpool's min(1, d / D)): on a test
    // chain easier than the shares, each share is a block.
    let work = work.min(block_work);
    let kept = BPS.checked_sub(u64::from(fee_bps))?;
    // reward < 2^64 and kept ≤ 2^14: the fixed-point factor is below 2^142
    // only if reward is; real rewards are below 2^51, so shift by 64 fits.
    let paid = u128::from(reward).checked_mul(u128::from(kept))?;
    let scaled = paid
        .checked_shl(FRACTION_BITS)
        .filter(|s| s >> FRACTION_BITS == paid)?;
    mul_div(work, scaled, block_work.checked_mul(u128::from(BPS))?)
}

/// The heights whose blocks' fees FPPS averages for a share of a job at
/// `height`: the `blocks` before it, genesis excepted (a young chain has
/// fewer; a chain of only genesis, none).
pub fn fee_heights(height: u32, blocks: u32) -> std::ops::Range<u32> {
    height.saturating_sub(blocks).max(1)..height.max(1)
}

/// The fees a block pays on average, whole satoshis (floored): FPPS values
/// a share at the subsidy plus this of the blocks [`fee_heights`] names.
pub fn mean_fees(fees: &[u64]) -> u64 {
    let sum: u128 = fees.iter().map(|&f| u128::from(f)).sum();
    sum.checked_div(fees.len() as u128).unwrap_or(0) as u64
}

/// The whole satoshis between two running totals of [`value`]s.
pub fn credit(total_before: u128, total_after: u128) -> u64 {
    ((total_after >> FRACTION_BITS) - (total_before >> FRACTION_BITS)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ONE_SAT: u128 = 1 << FRACTION_BITS;

    #[test]
    fn a_share_of_a_tenth_of_a_block_is_worth_a_tenth_less_the_fee() {
        // 3.125 BTC, 2 % fee: a tenth of a block is 30,625,000 sat.
        let v = value(10, 100, 312_500_000, 200).unwrap();
        assert_eq!(v, 30_625_000 * ONE_SAT);
        assert_eq!(credit(0, v), 30_625_000);
    }

    #[test]
    fn fractions_add_up_instead_of_being_floored_away() {
        // A third of a satoshi a minute: three minutes make one satoshi.
        let third = value(1, 3, 1, 0).unwrap();
        assert_eq!(credit(0, third), 0);
        // Three thirds floored are a hair under one satoshi; the fourth tips it.
        assert_eq!(credit(third * 2, third * 3), 0);
        assert_eq!(credit(third * 3, third * 4), 1);
    }

    #[test]
    fn fpps_averages_the_blocks_before_the_share_s_height() {
        assert_eq!(fee_heights(1_000, 144), 856..1_000);
        assert_eq!(fee_heights(10, 144), 1..10, "a young chain: all it has");
        assert_eq!(fee_heights(1, 144), 1..1, "only genesis: none");
        assert_eq!(fee_heights(0, 144), 1..1);
        assert_eq!(mean_fees(&[]), 0);
        assert_eq!(mean_fees(&[10, 11]), 10, "floored");
        assert_eq!(mean_fees(&[u64::MAX, u64::MAX]), u64::MAX, "no overflow");
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        assert_eq!(value(1, 1, 1, 10_001), None);
        assert_eq!(value(1, 0, 1, 0), None);
        assert_eq!(value(u128::MAX, 1, u64::MAX, 0), None);
    }

    proptest! {
        /// Whatever the order minutes are credited in, the credits sum to
        /// the floor of the whole value.
        #[test]
        fn credits_sum_to_the_floor_of_the_total(
            works in proptest::collection::vec(1u128..1u128 << 70, 1..30),
            block_work in 1u128 << 60..1u128 << 80,
            reward in 1u64..5_000_000_000,
            fee_bps in 0u32..=10_000,
        ) {
            let values: Vec<u128> = works.iter().map(|w| value(*w, block_work, reward, fee_bps).unwrap()).collect();
            let mut total = 0u128;
            let mut credited = 0u64;
            for v in values {
                credited += credit(total, total + v);
                total += v;
            }
            prop_assert_eq!(credited as u128, total >> FRACTION_BITS);
            let exact: f64 = works.iter().map(|&w| w.min(block_work) as f64 / block_work as f64).sum::<f64>()
                * reward as f64 * (10_000 - fee_bps) as f64 / 10_000.0;
            prop_assert!((credited as f64 - exact).abs() <= 1.0 + exact * 1e-9);
        }
    }
}
