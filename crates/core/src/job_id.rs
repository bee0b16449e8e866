//! Job ids: unique, strictly increasing, prefixed with the time they were made.
//!
//! A job id is a `u64`: the high 32 bits are the unix second the job was
//! created, the low 32 bits count jobs within that second. Ids therefore sort
//! by creation even across a jobmaker failover (the new leader's clock is
//! ahead of the old leader's last second), and an id tells an operator when
//! its job was made. On the Stratum wire an id is 16 lower-case hex digits.

use std::fmt;
use std::str::FromStr;

/// A job's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl JobId {
    /// The unix second the job was created.
    pub fn created_secs(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A job id string that is not 1..=16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job id {0:?} is not 1 to 16 hex digits")]
pub struct ParseJobIdError(pub String);

impl FromStr for JobId {
    type Err = ParseJobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseJobIdError(s.chars().take(40).collect()));
        }
        u64::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| ParseJobIdError(s.to_owned()))
    }
}

/// Hands out job ids; one per jobmaker leader.
#[derive(Debug, Clone, Default)]
pub struct JobIdGenerator {
    last: u64,
}

impl JobIdGenerator {
    /// A generator that will only issue ids above `last` (e.g. the newest job
    /// id seen on the Job topic when a standby takes over).
    pub fn after(last: JobId) -> Self {
        JobIdGenerator { last: last.0 }
    }

    /// The next id for a job created at `now_unix_secs`: the first id of that
    /// second, or one more than the last id if the clock has not moved on
    /// (or went backwards).
    pub fn next(&mut self, now_unix_secs: u64) -> JobId {
        let candidate = (now_unix_secs & 0xffff_ffff) << 32;
        self.last = if candidate > self.last {
            candidate
        } else {
            self.last + 1
        };
        JobId(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_carry_their_second_and_count_within_it() {
        let mut g = JobIdGenerator::default();
        let a = g.next(1_700_000_000);
        let b = g.next(1_700_000_000);
        assert_eq!(a.created_secs(), 1_700_000_000);
        assert_eq!(b.0, a.0 + 1);
        assert_eq!(a.to_string(), "6553f10000000000");
        assert_eq!("6553f10000000000".parse::<JobId>().unwrap(), a);
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in ["", "xyz", "00000000000000000", "-1", "12 4"] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn strictly_increasing_whatever_the_clock(times in proptest::collection::vec(0u64..u32::MAX as u64, 1..200)) {
            let mut g = JobIdGenerator::default();
            let mut prev = None;
            for t in times {
                let id = g.next(t);
                if let Some(p) = prev { prop_assert!(id > p); }
                prop_assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
                prev = Some(id);
            }
        }
    }
}
