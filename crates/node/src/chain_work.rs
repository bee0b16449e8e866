//! Core's `chainwork`: up to 64 hex digits, the work of a chain as a
//! big-endian 256-bit number (`getblockheader`, `getblockchaininfo`).

use bitcoin::pow::Work;
use serde::{Deserialize, Deserializer};

/// Reads `hex` (up to 64 digits) as work; `None` if it is not hex.
pub fn parse(hex: &str) -> Option<Work> {
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{hex:0>64}");
    let mut be = [0u8; 32];
    for (i, byte) in be.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Work::from_be_bytes(be))
}

/// serde's reader of a `chainwork` field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Work, D::Error> {
    let hex = String::deserialize(d)?;
    parse(&hex).ok_or_else(|| serde::de::Error::custom(format!("chainwork {hex:?} is not hex")))
}
