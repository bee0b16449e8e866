//! Sluice's Bitcoin and pool math, on rust-bitcoin 0.32 types.
//!
//! Every service calls this crate instead of repeating the math: jobmaker
//! builds coinbases ([`coinbase`]) and merkle branches ([`merkle`]) and numbers
//! jobs ([`job_id`]); sserver converts difficulties to targets
//! ([`difficulty`]) and checks shares ([`share`]); blkmaker reassembles
//! coinbases and blocks; statshttpd keys statistics by worker ([`worker`]).
//!
//! Nothing here does I/O or reads a clock: time is a parameter.
#![warn(missing_docs)]

pub mod coinbase;
pub mod difficulty;
pub mod job;
pub mod job_id;
pub mod merkle;
pub mod network;
pub mod record;
pub mod share;
pub mod solo;
pub mod template;
pub mod worker;

pub use bitcoin;
pub use coinbase::{CoinbaseError, CoinbaseParams, CoinbaseSplit};
pub use difficulty::{DIFF1_TARGET, Difficulty, DifficultyError, hashes_of, target_of};
pub use job::{EpochFence, Job};
pub use job_id::{JobId, JobIdGenerator};
pub use merkle::{merkle_branch, merkle_root};
pub use record::{Event, EventKind, ShareRecord, ShareStatus, SolvedShare};
pub use share::{CheckedShare, ShareOutcome, Submission, SubmissionError, Work};
pub use solo::SoloCoinbase;
pub use template::{BlockTemplate, TemplateId, TemplateTx};
