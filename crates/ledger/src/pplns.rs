//! The PPLNS window: the last `N × D` of accepted work before a block.
//!
//! Work is counted per user per minute (the share's server timestamp,
//! unix milliseconds ÷ 60,000), accepted and block shares only: a stale or
//! rejected share is no work. A block's window closes at the end of the
//! minute its share was found in and walks back minute by minute until it
//! holds `N` times the block's work (`N` in thousandths, the block's work in
//! hashes: Bitcoin Core's block proof of the network target). The oldest
//! minute it reaches is counted in part: each user's work of that minute
//! times `remaining / minute's work`, rounded down. A window that runs out
//! of minutes first (a young pool) splits the reward by the work there is.

use std::collections::BTreeMap;

use crate::wide::mul_div;

/// One minute of accepted work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minute {
    /// Unix minute.
    pub minute: u32,
    /// Work per user id, in hashes.
    pub work: BTreeMap<u32, u128>,
}

/// The work a block's reward is split by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The work it was to hold.
    pub size: u128,
    /// Newest minute counted (the block's).
    pub last_minute: u32,
    /// Oldest minute counted (in part when `filled`).
    pub first_minute: u32,
    /// Work counted per user.
    pub work: BTreeMap<u32, u128>,
    /// Whether it reached `size` (false: it ran out of minutes).
    pub filled: bool,
}

impl Window {
    /// The work counted.
    pub fn total(&self) -> u128 {
        self.work.values().sum()
    }
}

/// The window's size: `factor_milli / 1000` times `block_work` hashes.
pub fn size(block_work: u128, factor_milli: u64) -> u128 {
    mul_div(block_work, u128::from(factor_milli), 1000).unwrap_or(u128::MAX)
}

/// The window of `size` hashes over `minutes`, newest first, ending at
/// `last_minute` (minutes after it are skipped; the caller gives them in
/// descending order).
pub fn window(last_minute: u32, size: u128, minutes: impl IntoIterator<Item = Minute>) -> Window {
    let mut w = Window {
        size,
        last_minute,
        first_minute: last_minute,
        work: BTreeMap::new(),
        filled: size == 0,
    };
    let mut remaining = size;
    for m in minutes.into_iter().filter(|m| m.minute <= last_minute) {
        if remaining == 0 {
            break;
        }
        debug_assert!(m.minute <= w.first_minute, "minutes come newest first");
        w.first_minute = m.minute;
        let total: u128 = m.work.values().fold(0u128, |s, v| s.saturating_add(*v));
        let counted = if total <= remaining {
            m.work
        } else {
            part(&m.work, remaining, total)
        };
        remaining = remaining.saturating_sub(total);
        for (user, work) in counted {
            *w.work.entry(user).or_default() += work;
        }
    }
    w.filled = remaining == 0;
    w
}

/// Each user's work of a minute scaled to `remaining` of its `total`.
fn part(work: &BTreeMap<u32, u128>, remaining: u128, total: u128) -> BTreeMap<u32, u128> {
    work.iter()
        .map(|(&user, &w)| (user, mul_div(w, remaining, total).unwrap_or(0)))
        .filter(|(_, w)| *w > 0)
        .collect()
}

/// How much older than the newest credited window, in its own span, the
/// work kept reaches: a later block's window of `N × D` can reach further
/// back only if the difficulty rose (at most 4× a retarget) or the pool's
/// hashrate fell.
pub const KEEP_SPANS: u32 = 4;

/// The oldest minute of work the books must keep (older may be deleted).
/// Every minute from `now_minute − keep_minutes` is kept; under PPLNS
/// (`newest` the newest credited block's window, first and last minute),
/// so is every minute a window [`KEEP_SPANS`] times its span could reach,
/// from the newest credited block's and from each block found and not yet
/// credited (`uncredited`, its minute). Before any block is credited,
/// everything is kept.
pub fn keep_from(
    pplns: bool,
    newest: Option<(u32, u32)>,
    uncredited: Option<u32>,
    now_minute: u32,
    keep_minutes: u32,
) -> u32 {
    let floor = now_minute.saturating_sub(keep_minutes);
    if !pplns {
        return floor;
    }
    let Some((first, last)) = newest else {
        return 0;
    };
    let span = last.saturating_sub(first) + 1;
    let reach = |end: u32| end.saturating_sub(span.saturating_mul(KEEP_SPANS) - 1);
    let mut keep = floor.min(reach(last));
    if let Some(found) = uncredited {
        keep = keep.min(reach(found));
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn work_is_kept_four_spans_of_the_newest_window_back_and_the_keep_time() {
        // A window of minutes 1,000..=1,009 (10 minutes): 40 minutes back
        // from its last are kept, or the keep time if it reaches further.
        assert_eq!(keep_from(true, Some((1_000, 1_009)), None, 2_000, 0), 970);
        assert_eq!(
            keep_from(true, Some((1_000, 1_009)), None, 2_000, 1_440),
            560
        );
        // A block found before it, not yet credited, keeps its own reach.
        assert_eq!(
            keep_from(true, Some((1_000, 1_009)), Some(990), 2_000, 0),
            951
        );
        // Nothing credited yet: everything is kept.
        assert_eq!(keep_from(true, None, Some(990), 2_000, 0), 0);
        // Pay per share: no window needs work; only the keep time.
        assert_eq!(keep_from(false, None, None, 2_000, 60), 1_940);
        // Young clocks and tiny numbers do not wrap.
        assert_eq!(keep_from(true, Some((0, 0)), None, 5, 0), 0);
    }

    fn minute(minute: u32, pairs: &[(u32, u128)]) -> Minute {
        Minute {
            minute,
            work: pairs.iter().copied().collect(),
        }
    }

    #[test]
    fn the_oldest_minute_reached_counts_in_part() {
        // Window 100: minute 12 gives 60, minute 11 gives 40 of its 80.
        let w = window(
            12,
            100,
            [
                minute(12, &[(1, 30), (2, 30)]),
                minute(11, &[(1, 40), (3, 40)]),
                minute(10, &[(4, 1_000)]),
            ],
        );
        assert!(w.filled);
        assert_eq!((w.first_minute, w.last_minute), (11, 12));
        assert_eq!(w.work, [(1, 50), (2, 30), (3, 20)].into_iter().collect());
        assert_eq!(w.total(), 100);
    }

    #[test]
    fn a_minute_that_fills_it_exactly_ends_it() {
        let w = window(5, 60, [minute(5, &[(1, 60)]), minute(4, &[(2, 60)])]);
        assert!(w.filled);
        assert_eq!(w.first_minute, 5);
        assert_eq!(w.work, [(1, 60)].into_iter().collect());
    }

    #[test]
    fn minutes_after_the_block_are_not_counted_and_a_short_history_counts_whole() {
        let w = window(
            7,
            1_000,
            [
                minute(8, &[(9, 500)]),
                minute(7, &[(1, 10)]),
                minute(3, &[(2, 5)]),
            ],
        );
        assert!(!w.filled);
        assert_eq!(w.first_minute, 3);
        assert_eq!(w.work, [(1, 10), (2, 5)].into_iter().collect());
    }

    #[test]
    fn the_size_is_n_times_the_block_s_work() {
        assert_eq!(size(4_295_032_833, 2_000), 8_590_065_666);
        assert_eq!(size(3, 500), 1);
    }

    proptest! {
        /// A filled window never holds more than its size and falls short by
        /// under a hash per user of its oldest minute; each user's work in it
        /// is at most their work in the minutes walked.
        #[test]
        fn a_window_holds_its_size(
            size in 1u128..1_000_000,
            minutes in proptest::collection::vec(
                proptest::collection::btree_map(1u32..20, 1u128..100_000, 1..8), 1..40),
        ) {
            let n = minutes.len() as u32;
            let given: Vec<Minute> = minutes
                .iter()
                .enumerate()
                .map(|(i, work)| Minute { minute: n - i as u32, work: work.clone() })
                .collect();
            let w = window(n, size, given.clone());
            prop_assert!(w.total() <= size);
            if w.filled {
                prop_assert!(size - w.total() < 20);
            } else {
                let all: u128 = given.iter().flat_map(|m| m.work.values()).sum();
                prop_assert_eq!(w.total(), all);
            }
            for (user, work) in &w.work {
                let walked: u128 = given
                    .iter()
                    .filter(|m| m.minute >= w.first_minute)
                    .filter_map(|m| m.work.get(user))
                    .sum();
                prop_assert!(*work <= walked);
            }
        }
    }
}
