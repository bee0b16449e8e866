//! Pool difficulty and its conversion to and from 256-bit targets.
//!
//! Stratum difficulty 1 is the target `0xffff × 2^208` (Bitcoin's maximum
//! attainable mainnet target, "bdiff"). A share of difficulty `d` must hash at
//! or below `DIFF1 / d`. Difficulty is a positive `f64` because regtest and
//! testnet pools hand out fractional difficulties (down to 1e-9 and below);
//! targets are exact 256-bit integers computed with integer arithmetic, so the
//! conversion never loses the bits a share check depends on.

use bitcoin::{CompactTarget, Target};

/// The target of difficulty 1: `0x00000000ffff0000…0000`.
pub const DIFF1_TARGET: Target = Target::MAX_ATTAINABLE_MAINNET;

/// A validated pool difficulty: finite and strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Difficulty(f64);

/// Why a number is not a difficulty.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum DifficultyError {
    /// Zero, negative, NaN or infinite.
    #[error("difficulty must be a finite number greater than zero, got {0}")]
    NotPositive(f64),
}

impl Difficulty {
    /// Difficulty 1.
    pub const ONE: Difficulty = Difficulty(1.0);

    /// Validates `value` as a difficulty.
    pub fn new(value: f64) -> Result<Self, DifficultyError> {
        if value.is_finite() && value > 0.0 {
            Ok(Difficulty(value))
        } else {
            Err(DifficultyError::NotPositive(value))
        }
    }

    /// The difficulty as a number.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The share target for this difficulty: `floor(DIFF1 / d)`, saturated at
    /// `2^256 - 1` for difficulties so small that the quotient would not fit
    /// (below about 2.3e-10), and zero for difficulties beyond about 2^224.
    pub fn to_target(self) -> Target {
        Target::from_le_bytes(wide::diff1_div(self.0).to_le_bytes())
    }

    /// The difficulty a target stands for, `DIFF1 / target`; `None` for the
    /// zero target, which no hash can meet.
    pub fn from_target(target: Target) -> Option<Self> {
        let t = wide::U256::from_le_bytes(target.to_le_bytes()).to_f64();
        Difficulty::new(wide::U256::from_le_bytes(DIFF1_TARGET.to_le_bytes()).to_f64() / t).ok()
    }

    /// The network difficulty of compact `bits` (as `getblockchaininfo` reports it).
    pub fn from_compact(bits: CompactTarget) -> Option<Self> {
        Self::from_target(Target::from_compact(bits))
    }
}

/// A difficulty's target (difficulty 1's for a value that is not one).
pub fn target_of(difficulty: f64) -> Target {
    Difficulty::new(difficulty)
        .map(Difficulty::to_target)
        .unwrap_or(DIFF1_TARGET)
}

/// The hashes expected to meet `target`: `floor(2^256 / (target + 1))`,
/// Bitcoin Core's block proof (`GetBlockProof`, rust-bitcoin's
/// [`Target::to_work`]). A share's work and a block's are measured alike, as
/// whole numbers, so sums of them are exact (payouts split by them).
/// Saturates at `u128::MAX`, beyond any target a share or a block can have
/// (difficulty 1 is 2^32 hashes; 2^128 is difficulty 2^96).
pub fn hashes_of(target: Target) -> u128 {
    let be = target.to_work().to_be_bytes();
    let (high, low) = be.split_at(16);
    if high.iter().any(|&b| b != 0) {
        return u128::MAX;
    }
    u128::from_be_bytes(low.try_into().expect("split_at(16) of 32 bytes"))
}

impl std::fmt::Display for Difficulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

mod wide {
    //! Just enough unsigned wide-integer arithmetic for `DIFF1 / d`:
    //! little-endian 64-bit limbs, shift left, divide by a 64-bit word.

    /// A 256-bit unsigned integer, limbs least significant first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct U256(pub(super) [u64; 4]);

    impl U256 {
        pub(super) const MAX: U256 = U256([u64::MAX; 4]);

        pub(super) fn from_le_bytes(bytes: [u8; 32]) -> Self {
            let mut limbs = [0u64; 4];
            for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
                *limb = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
            }
            U256(limbs)
        }

        pub(super) fn to_le_bytes(self) -> [u8; 32] {
            let mut bytes = [0u8; 32];
            for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
                chunk.copy_from_slice(&limb.to_le_bytes());
            }
            bytes
        }

        pub(super) fn to_f64(self) -> f64 {
            self.0.iter().rev().fold(0.0, |acc, &limb| {
                acc * 18_446_744_073_709_551_616.0 + limb as f64
            })
        }
    }

    /// Six limbs hold DIFF1 (224 bits) shifted left by up to 160 bits.
    type Wide = [u64; 6];

    /// DIFF1 = 0xffff << 208: bits 208..224 set, i.e. limb 3 = 0xffff << 16.
    const DIFF1: Wide = [0, 0, 0, 0xffff_0000, 0, 0];

    fn shl(x: Wide, bits: u32) -> Wide {
        let (limbs, rem) = ((bits / 64) as usize, bits % 64);
        let mut out = [0u64; 6];
        for i in (limbs..6).rev() {
            let src = i - limbs;
            out[i] = x[src] << rem;
            if rem > 0 && src > 0 {
                out[i] |= x[src - 1] >> (64 - rem);
            }
        }
        out
    }

    fn shr(x: Wide, bits: u32) -> Wide {
        if bits >= 384 {
            return [0; 6];
        }
        let (limbs, rem) = ((bits / 64) as usize, bits % 64);
        let mut out = [0u64; 6];
        for (i, limb) in out.iter_mut().enumerate().take(6 - limbs) {
            let src = i + limbs;
            *limb = x[src] >> rem;
            if rem > 0 && src + 1 < 6 {
                *limb |= x[src + 1] << (64 - rem);
            }
        }
        out
    }

    fn div_word(x: Wide, d: u64) -> Wide {
        let mut out = [0u64; 6];
        let mut rem: u128 = 0;
        for i in (0..6).rev() {
            let cur = (rem << 64) | x[i] as u128;
            out[i] = (cur / d as u128) as u64;
            rem = cur % d as u128;
        }
        out
    }

    /// `floor(DIFF1 / diff)` for a finite `diff > 0`, saturating at 2^256-1.
    pub(super) fn diff1_div(diff: f64) -> U256 {
        // diff = mant × 2^exp exactly, with mant < 2^53.
        let bits = diff.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mant, exp) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased - 1075)
        };
        debug_assert!(mant != 0, "callers pass a positive difficulty");
        let q = if exp < 0 {
            // DIFF1 ≥ 2^223 and mant < 2^53: a shift of 86 or more cannot fit.
            let shift = exp.unsigned_abs();
            if shift >= 86 {
                return U256::MAX;
            }
            div_word(shl(DIFF1, shift), mant)
        } else {
            shr(div_word(DIFF1, mant), exp.unsigned_abs())
        };
        if q[4] != 0 || q[5] != 0 {
            return U256::MAX;
        }
        U256([q[0], q[1], q[2], q[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn target_hex(t: Target) -> String {
        let mut be = t.to_le_bytes();
        be.reverse();
        be.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hashes_of_a_target_are_core_s_block_proof() {
        // Difficulty 1: 2^256 / (0xffff·2^208 + 1) = 2^32 + 2^16 + 1 (rounded down).
        assert_eq!(hashes_of(DIFF1_TARGET), 4_295_032_833);
        // Regtest's easiest target (0x207fffff): 2 hashes a block, as Core's chainwork says.
        assert_eq!(
            hashes_of(Target::from_compact(CompactTarget::from_consensus(
                0x207f_ffff
            ))),
            2
        );
        // Mainnet block 840,000 (bits 0x17034219): chainwork grows by 0x0000…4a6ad3d4ebe3c5f2a54 ≈ 3.76e23.
        let halving = hashes_of(Target::from_compact(CompactTarget::from_consensus(
            0x1703_4219,
        )));
        assert!((3.7e23..3.8e23).contains(&(halving as f64)), "{halving}");
        assert_eq!(hashes_of(Target::ZERO), u128::MAX);
    }

    #[test]
    fn difficulty_one_is_diff1() {
        assert_eq!(Difficulty::ONE.to_target(), DIFF1_TARGET);
        assert_eq!(
            target_hex(Difficulty::ONE.to_target()),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn powers_of_two_shift_the_target() {
        let t = Difficulty::new(65536.0).unwrap().to_target();
        assert_eq!(
            target_hex(t),
            "000000000000ffff000000000000000000000000000000000000000000000000"
        );
        let t = Difficulty::new(4_294_967_296.0).unwrap().to_target();
        assert_eq!(
            target_hex(t),
            "0000000000000000ffff00000000000000000000000000000000000000000000"
        );
        let t = Difficulty::new(0.5).unwrap().to_target();
        assert_eq!(
            target_hex(t),
            "00000001fffe0000000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn fractional_regtest_difficulty() {
        // 1e-9 is far below regtest's own minimum (4.66e-10 for bits 207fffff).
        let d = Difficulty::new(1e-9).unwrap();
        let t = d.to_target();
        let back = Difficulty::from_target(t).unwrap().get();
        assert!((back - 1e-9).abs() / 1e-9 < 1e-12, "round trip gave {back}");
        // The regtest pow limit (bits 0x207fffff) has difficulty 4.6565e-10.
        let regtest = Difficulty::from_compact(CompactTarget::from_consensus(0x207f_ffff)).unwrap();
        assert!((regtest.get() - 4.656_542_373_906_925e-10).abs() < 1e-20);
    }

    #[test]
    fn tiny_difficulties_saturate_and_huge_ones_reach_zero() {
        let t = Difficulty::new(1e-12).unwrap().to_target();
        assert_eq!(t.to_le_bytes(), [0xff; 32]);
        let t = Difficulty::new(1e80).unwrap().to_target();
        assert_eq!(t, Target::ZERO);
        assert_eq!(Difficulty::from_target(Target::ZERO), None);
    }

    #[test]
    fn rejects_non_positive() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Difficulty::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn mainnet_bits_difficulty_matches_rust_bitcoin() {
        // Block 702,861 has bits 0x170e1fcb... use a known modern bits value.
        let bits = CompactTarget::from_consensus(0x1703_4219);
        let ours = Difficulty::from_compact(bits).unwrap().get();
        let theirs = Target::from_compact(bits).difficulty_float();
        assert!((ours - theirs).abs() / theirs < 1e-12);
    }

    proptest! {
        #[test]
        fn round_trip_is_tight(exp in -9.0f64..15.0, frac in 1.0f64..10.0) {
            let d = frac * 10f64.powf(exp);
            let t = Difficulty::new(d).unwrap().to_target();
            let back = Difficulty::from_target(t).unwrap().get();
            prop_assert!((back - d).abs() / d < 1e-12, "{} -> {}", d, back);
        }

        #[test]
        fn higher_difficulty_never_raises_the_target(a in 1e-9f64..1e15, b in 1e-9f64..1e15) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let t_lo = Difficulty::new(lo).unwrap().to_target();
            let t_hi = Difficulty::new(hi).unwrap().to_target();
            prop_assert!(t_hi <= t_lo);
        }

        #[test]
        fn agrees_with_rust_bitcoin_for_compact_targets(bits in 0x1b00_8000u32..0x1d00_ffff) {
            // Only canonical, positive mantissas.
            prop_assume!(bits & 0x0080_0000 == 0 && bits & 0x007f_ffff != 0);
            let target = Target::from_compact(CompactTarget::from_consensus(bits));
            let ours = Difficulty::from_target(target).unwrap().get();
            let theirs = target.difficulty_float();
            prop_assert!((ours - theirs).abs() / theirs < 1e-12);
        }
    }
}
