//! Sliding windows of share difficulty: one-minute buckets over the last
//! hour, read as 5-, 15- and 60-minute sums.
//!
//! A window of W seconds ending at `now` is the sum of the buckets of the
//! last W/60 minutes, the current (partial) minute included, plus the part
//! of the bucket just before them that still lies inside the window, pro
//! rata. So a steady miner reads the same at any second of a minute, and the
//! hashrate (sum x 2^32 / W) has no bias from the minute boundary. Shares
//! are placed by their own timestamp (the sserver's clock at submission).
//!
//! Workers are the many: their buckets are `f32` (61 x 3 x 4 bytes), which
//! keeps a worker under 1 KiB. Users, servers and the pool sum many workers'
//! shares, so theirs are `f64`.

use std::ops::AddAssign;

/// Minutes kept: the current one and the 60 before it.
pub(crate) const SLOTS: usize = 61;
const MINUTE_MS: u64 = 60_000;

/// The windows served everywhere, in seconds.
pub(crate) const WINDOWS: [u64; 3] = sluice_api::WINDOW_SECS;

/// A bucket's number type.
pub(crate) trait Sum: Copy + Default + AddAssign {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Sum for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Sum for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// What a share counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Accept,
    Stale,
    Reject,
}

/// Accepted, stale and rejected difficulty per minute for the last hour.
#[derive(Debug, Clone)]
pub(crate) struct Window<S> {
    /// The minute (unix ms / 60 000) of the newest bucket.
    head: u64,
    accept: [S; SLOTS],
    stale: [S; SLOTS],
    reject: [S; SLOTS],
}

/// The three sums of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Sums {
    pub(crate) accept: f64,
    pub(crate) stale: f64,
    pub(crate) reject: f64,
}

impl Sums {
    /// Hashes per second: accepted difficulty x 2^32 over `secs`.
    pub(crate) fn hashrate(&self, secs: u64) -> f64 {
        hashrate(self.accept, secs)
    }

    pub(crate) fn add(&mut self, other: &Sums) {
        self.accept += other.accept;
        self.stale += other.stale;
        self.reject += other.reject;
    }
}

/// Hashes per second for `accepted` difficulty over `secs` seconds (the
/// API's one rule, [`sluice_api::hashrate`]).
pub(crate) fn hashrate(accepted: f64, secs: u64) -> f64 {
    sluice_api::hashrate(accepted, secs as f64)
}

impl From<Sums> for sluice_api::Sums {
    fn from(s: Sums) -> Self {
        sluice_api::Sums {
            accept: s.accept,
            stale: s.stale,
            reject: s.reject,
        }
    }
}

impl<S: Sum> Default for Window<S> {
    fn default() -> Self {
        Window {
            head: 0,
            accept: [S::default(); SLOTS],
            stale: [S::default(); SLOTS],
            reject: [S::default(); SLOTS],
        }
    }
}

impl<S: Sum> Window<S> {
    /// Counts `difficulty` of `kind` at `at_ms`, as seen at `now_ms`. Shares
    /// from the future (a sserver's clock ahead of ours) count in the current
    /// minute; shares older than the hour are not counted.
    pub(crate) fn add(&mut self, kind: Kind, difficulty: f64, at_ms: u64, now_ms: u64) {
        let minute = at_ms.min(now_ms) / MINUTE_MS;
        if minute > self.head {
            self.advance(minute);
        } else if self.head - minute >= SLOTS as u64 {
            return;
        }
        let slot = (minute % SLOTS as u64) as usize;
        let v = S::from_f64(difficulty);
        match kind {
            Kind::Accept => self.accept[slot] += v,
            Kind::Stale => self.stale[slot] += v,
            Kind::Reject => self.reject[slot] += v,
        }
    }

    /// Moves the head to `minute`, clearing the minutes in between.
    fn advance(&mut self, minute: u64) {
        let gap = (minute - self.head).min(SLOTS as u64);
        for m in (minute + 1 - gap)..=minute {
            let slot = (m % SLOTS as u64) as usize;
            self.accept[slot] = S::default();
            self.stale[slot] = S::default();
            self.reject[slot] = S::default();
        }
        self.head = minute;
    }

    /// The sums over the last `secs` seconds (a multiple of 60, at most an
    /// hour) at `now_ms`.
    pub(crate) fn sums(&self, secs: u64, now_ms: u64) -> Sums {
        let now_minute = now_ms / MINUTE_MS;
        let minutes = (secs / 60).clamp(1, SLOTS as u64 - 1);
        let mut out = Sums::default();
        // The whole minutes: the current one and the minutes-1 before it.
        for back in 0..minutes {
            self.collect(now_minute.checked_sub(back), 1.0, &mut out);
        }
        // The part of the minute before them still inside the window.
        let inside = 1.0 - (now_ms % MINUTE_MS) as f64 / MINUTE_MS as f64;
        self.collect(now_minute.checked_sub(minutes), inside, &mut out);
        out
    }

    fn collect(&self, minute: Option<u64>, weight: f64, out: &mut Sums) {
        let Some(minute) = minute else { return };
        if minute > self.head || self.head - minute >= SLOTS as u64 {
            return;
        }
        let slot = (minute % SLOTS as u64) as usize;
        out.accept += self.accept[slot].to_f64() * weight;
        out.stale += self.stale[slot].to_f64() * weight;
        out.reject += self.reject[slot].to_f64() * weight;
    }

    /// The three windows of [`WINDOWS`].
    pub(crate) fn all(&self, now_ms: u64) -> [Sums; 3] {
        WINDOWS.map(|secs| self.sums(secs, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000 - (1_800_000_000_000 % MINUTE_MS);

    #[test]
    fn windows_sum_what_fell_inside_them() {
        let mut w = Window::<f64>::default();
        let now = T0 + 3_600_000;
        // One share of difficulty 1 at the middle of every minute of the hour.
        for m in 0..60 {
            w.add(Kind::Accept, 1.0, T0 + m * MINUTE_MS + 30_000, now);
        }
        w.add(Kind::Stale, 2.0, now - 100_000, now);
        w.add(Kind::Reject, 4.0, now - 800_000, now);
        // At a minute boundary the oldest minute counts whole.
        let [m5, m15, h1] = w.all(now);
        assert_eq!(m5.accept, 5.0);
        assert_eq!(m15.accept, 15.0);
        assert_eq!(h1.accept, 60.0);
        assert_eq!((m5.stale, m15.stale, h1.stale), (2.0, 2.0, 2.0));
        assert_eq!((m5.reject, m15.reject, h1.reject), (0.0, 4.0, 4.0));
        assert_eq!(m5.hashrate(300), 5.0 * 4_294_967_296.0 / 300.0);
    }

    #[test]
    fn the_oldest_minute_counts_pro_rata() {
        let mut w = Window::<f64>::default();
        let now = T0 + 10 * MINUTE_MS;
        for m in 0..10 {
            w.add(Kind::Accept, 60.0, T0 + m * MINUTE_MS, now);
        }
        // 15 s into the current (empty) minute: the 5 m window holds minutes
        // 6..=9 whole and three quarters of minute 5.
        let s = w.sums(300, now + 15_000);
        assert_eq!(s.accept, 4.0 * 60.0 + 45.0);
    }

    #[test]
    fn old_shares_fall_out_and_future_ones_count_now() {
        let mut w = Window::<f32>::default();
        let now = T0 + 2 * 3_600_000;
        w.add(Kind::Accept, 1.0, now - 3_700_000, now);
        assert_eq!(w.sums(3600, now).accept, 0.0);
        w.add(Kind::Accept, 1.0, now + 5_000_000, now);
        assert_eq!(w.sums(300, now).accept, 1.0);
        // An hour later it is gone, and the buckets were cleared on the way.
        assert_eq!(w.sums(3600, now + 3_700_000).accept, 0.0);
        w.add(Kind::Accept, 3.0, now + 3_700_000, now + 3_700_000);
        assert_eq!(w.sums(3600, now + 3_700_000).accept, 3.0);
    }

    #[test]
    fn a_late_share_lands_in_its_own_minute() {
        let mut w = Window::<f64>::default();
        let now = T0 + 20 * MINUTE_MS;
        w.add(Kind::Accept, 1.0, now, now);
        // Arrives after a newer one: ten minutes old, outside the 5 m window.
        w.add(Kind::Accept, 7.0, now - 10 * MINUTE_MS, now);
        assert_eq!(w.sums(300, now).accept, 1.0);
        assert_eq!(w.sums(900, now).accept, 8.0);
    }

    #[test]
    fn a_worker_window_is_small() {
        // 61 minutes x 3 sums x 4 bytes, and the head minute.
        assert!(std::mem::size_of::<Window<f32>>() <= 768);
    }
}
