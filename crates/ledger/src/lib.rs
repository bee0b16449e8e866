//! Sluice's payout books without I/O.
//!
//! Work is measured in hashes ([`sluice_core::hashes_of`] of the share's
//! target: whole numbers, so any reader sums them alike). A block's reward is
//! split by the PPLNS [`pplns::window`] ([`split::split`]: to the satoshi,
//! the floors' remainder to the pool); under PPS each minute of work has a
//! [`pps::value`]. The movements are double-entry [`books::Txn`]s. The payer
//! service writes them, and `sluicectl payouts verify` recomputes them from
//! the share log with these same functions.

pub mod books;
pub mod pplns;
pub mod pps;
pub mod split;
pub mod tally;
pub mod verify;
mod wide;

pub use books::{Account, Kind, Txn};
pub use split::{Credit, Split, SplitError, split};
pub use tally::{Found, PpsTerms, Tally};
pub use wide::mul_div;

/// A share's work in hashes: Bitcoin Core's block proof of the target its
/// difficulty stands for ([`sluice_core::target_of`]).
pub fn share_work(difficulty: f64) -> u128 {
    sluice_core::hashes_of(sluice_core::target_of(difficulty))
}
