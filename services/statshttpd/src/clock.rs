//! Time as statshttpd sees it: the system clock, or a hand-set one in tests
//! (windows, evictions and "initializing" all read it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix milliseconds, from the system or set by hand.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that reads `start_ms` until [`Clock::set`] moves it.
    pub fn manual(start_ms: u64) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(start_ms))),
        }
    }

    /// Moves a manual clock (no effect on the system clock).
    pub fn set(&self, now_ms: u64) {
        if let Some(m) = &self.manual {
            m.store(now_ms, Ordering::SeqCst);
        }
    }

    /// Now, in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(m) => m.load(Ordering::SeqCst),
            None => sluice_service::now_ms(),
        }
    }
}

/// A UTC calendar day as the number YYYYMMDD (the `day` column).
pub fn day_of(ms: u64) -> u32 {
    let (y, m, d) = civil((ms / 86_400_000) as i64);
    (y * 10_000 + m * 100 + d) as u32
}

/// A UTC hour as the number YYYYMMDDHH (the `hour` column).
pub fn hour_of(ms: u64) -> u32 {
    day_of(ms) * 100 + ((ms / 3_600_000) % 24) as u32
}

/// The unix milliseconds at which day YYYYMMDD begins, if it is a date.
pub(crate) fn day_start_ms(day: u32) -> Option<u64> {
    let (y, m, d) = (
        i64::from(day / 10_000),
        i64::from(day / 100 % 100),
        i64::from(day % 100),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let back = civil(days);
    (back == (y, m, d)).then(|| (days as u64) * 86_400_000)
}

/// Parses `YYYY-MM-DD` or `YYYYMMDD` into YYYYMMDD.
pub fn parse_day(s: &str) -> Option<u32> {
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    if digits.len() != 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let day: u32 = digits.parse().ok()?;
    day_start_ms(day).map(|_| day)
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's
/// `civil_from_days`.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01: `days_from_civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_numbers_are_utc() {
        assert_eq!(day_of(0), 19_700_101);
        // 2026-11-21T13:45:00Z
        let t = 1_795_268_700_000;
        assert_eq!(day_of(t), 20_261_121);
        assert_eq!(hour_of(t), 2_026_112_113);
        assert_eq!(day_of(951_782_400_000), 20_000_229, "a leap day");
        assert_eq!(day_start_ms(20_261_121), Some(t - t % 86_400_000));
        assert_eq!(day_start_ms(20_260_230), None);
        assert_eq!(parse_day("2026-11-21"), Some(20_261_121));
        assert_eq!(parse_day("20261121"), Some(20_261_121));
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("yesterday"), None);
    }

    #[test]
    fn a_manual_clock_moves_only_by_hand() {
        let c = Clock::manual(5);
        assert_eq!(c.now_ms(), 5);
        c.set(9);
        assert_eq!(c.clone().now_ms(), 9);
        assert!(Clock::system().now_ms() > 1_700_000_000_000);
    }
}
