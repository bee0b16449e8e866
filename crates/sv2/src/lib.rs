//! Stratum V2 for Sluice: the binary codec of the common and mining
//! messages ([`codec`], our own types), Noise NX through `stratum-core`
//! ([`noise`], the one module that names it), the authority key pair
//! ([`keys`]) and encrypted frames over tokio streams ([`stream`]).
//!
//! Both ends use it: sserver's SV2 listener and the simulator's SV2 miners.

pub mod codec;
pub mod keys;
pub mod noise;
pub mod stream;

pub use codec::{DecodeError, Header, Message};
pub use keys::{AuthorityKeys, AuthorityPublicKey, KeyError};

use bitcoin::pow::Target;

/// A difficulty's target as SV2 carries it (U256, little-endian).
pub fn target_bytes(target: Target) -> codec::U256 {
    target.to_le_bytes()
}

/// The target of SV2's U256 bytes.
pub fn target_of(bytes: &codec::U256) -> Target {
    Target::from_le_bytes(*bytes)
}
