//! `floor(a × b / c)` on whole numbers without overflow: the product of two
//! `u128` is held in 256 bits (four 64-bit limbs) and divided by long
//! division. Splits and PPS values multiply satoshis by work in hashes
//! (up to about 2^80 each), which a `u128` cannot hold.

/// `floor(a × b / c)`, or `None` when `c` is zero or the quotient does not
/// fit in a `u128`.
pub fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    div(mul(a, b), c)
}

/// Four limbs, least significant first.
type U256 = [u64; 4];

fn mul(a: u128, b: u128) -> U256 {
    let (a, b) = (limbs(a), limbs(b));
    let mut out = [0u64; 4];
    for (i, &x) in a.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &y) in b.iter().enumerate() {
            let cur = out[i + j] as u128 + x as u128 * y as u128 + carry;
            out[i + j] = cur as u64;
            carry = cur >> 64;
        }
        out[i + 2] = carry as u64;
    }
    out
}

fn limbs(x: u128) -> [u64; 2] {
    [x as u64, (x >> 64) as u64]
}

/// Bit-by-bit long division; the remainder stays below `c` < 2^128, so it
/// fits in a `u128` once its top bit is handled.
fn div(n: U256, c: u128) -> Option<u128> {
    let mut quotient: U256 = [0; 4];
    let mut rem: u128 = 0;
    for bit in (0..256).rev() {
        let top = rem >> 127;
        rem = (rem << 1) | ((n[bit / 64] >> (bit % 64)) & 1) as u128;
        if top == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            quotient[bit / 64] |= 1 << (bit % 64);
        }
    }
    if quotient[2] != 0 || quotient[3] != 0 {
        return None;
    }
    Some(quotient[0] as u128 | (quotient[1] as u128) << 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn products_beyond_128_bits_divide_exactly() {
        let max = u128::MAX;
        assert_eq!(mul_div(max, max, max), Some(max));
        assert_eq!(mul_div(max, 2, 4), Some(max / 2));
        assert_eq!(mul_div(1 << 100, 1 << 100, 1 << 90), Some(1 << 110));
        assert_eq!(mul_div(max, max, 1), None);
        assert_eq!(mul_div(5, 7, 0), None);
        assert_eq!(mul_div(0, max, 3), Some(0));
    }

    proptest! {
        /// Where the product fits, the answer is u128 arithmetic's.
        #[test]
        fn agrees_with_narrow_arithmetic(a in any::<u64>(), b in any::<u64>(), c in 1u128..) {
            let expected = a as u128 * b as u128 / c;
            prop_assert_eq!(mul_div(a as u128, b as u128, c), Some(expected));
        }

        /// q = floor(ab/c) means q·c ≤ ab < (q+1)·c, checked in 256 bits.
        #[test]
        fn is_the_floor(a in any::<u128>(), b in any::<u128>(), c in 1u128..) {
            if let Some(q) = mul_div(a, b, c) {
                let ab = mul(a, b);
                let below = add(mul(q, c), [0; 4]);
                prop_assert!(le(below, ab));
                prop_assert!(lt(ab, add(mul(q, c), [c as u64, (c >> 64) as u64, 0, 0])));
            } else {
                // Only a quotient of 2^128 or more is refused.
                prop_assert!(!lt(mul(a, b), [0, 0, c as u64, (c >> 64) as u64]));
            }
        }
    }

    fn add(x: U256, y: U256) -> U256 {
        let mut out = [0u64; 4];
        let mut carry = 0u128;
        for i in 0..4 {
            let cur = x[i] as u128 + y[i] as u128 + carry;
            out[i] = cur as u64;
            carry = cur >> 64;
        }
        out
    }

    fn lt(x: U256, y: U256) -> bool {
        x.iter().rev().cmp(y.iter().rev()) == std::cmp::Ordering::Less
    }

    fn le(x: U256, y: U256) -> bool {
        !lt(y, x)
    }
}
