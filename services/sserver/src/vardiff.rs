//! Variable difficulty: aim each miner at one accepted share every
//! `share_interval_secs`.
//!
//! Only accepted shares count, so a miner flooding bad shares cannot drive its
//! own difficulty up (btcpool issue #370, which btcpool only patched over in
//! its statistics). Difficulties are powers of two (as in btcpool; fractional
//! ones too, for regtest and testnet), clamped to the pool's and the miner's
//! bounds. Time is a parameter (seconds as `f64` from any fixed origin), so
//! convergence is tested without a clock.

/// Vardiff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VardiffConfig {
    /// The wanted seconds between accepted shares.
    pub share_interval_secs: f64,
    /// How long a measurement window lasts before a retarget decision.
    pub retarget_secs: f64,
    /// Lowest difficulty handed out.
    pub min: f64,
    /// Highest difficulty handed out.
    pub max: f64,
}

/// Shares needed before an early retarget when a miner is much too fast.
const FAST_SAMPLE: u32 = 8;

/// The shortest window an early retarget trusts. Shares reach the server in
/// bursts (one read brings several), so a window of milliseconds overstates
/// a miner's rate many times over and would throw its difficulty to the
/// maximum.
const MIN_FAST_SECS: f64 = 1.0;

/// One miner's difficulty controller.
#[derive(Debug, Clone)]
pub(crate) struct Vardiff {
    config: VardiffConfig,
    current: f64,
    floor: f64,
    window_start: f64,
    sum: f64,
    count: u32,
}

/// The power of two nearest to `x` in log scale.
pub(crate) fn nearest_power_of_two(x: f64) -> f64 {
    2f64.powi(x.log2().round() as i32)
}

impl Vardiff {
    /// A controller starting at `start` (rounded to a power of two and
    /// clamped) at time `now`.
    pub(crate) fn new(config: VardiffConfig, start: f64, now: f64) -> Self {
        let mut v = Vardiff {
            config,
            current: 0.0,
            floor: config.min,
            window_start: now,
            sum: 0.0,
            count: 0,
        };
        v.current = v.clamp(start);
        v
    }

    /// The current difficulty.
    pub(crate) fn current(&self) -> f64 {
        self.current
    }

    fn clamp(&self, d: f64) -> f64 {
        let d = nearest_power_of_two(d);
        d.max(self.floor).min(self.config.max).max(self.config.min)
    }

    /// A miner's own minimum (`md=`, `minimum-difficulty`); never below the pool's.
    pub(crate) fn set_floor(&mut self, floor: f64, now: f64) {
        self.floor = floor.max(self.config.min);
        if self.current < self.floor {
            self.reset(self.floor, now);
        }
    }

    /// Sets the difficulty (`d=`, `suggest_difficulty`) and starts measuring anew.
    pub(crate) fn reset(&mut self, difficulty: f64, now: f64) {
        self.current = self.clamp(difficulty);
        self.restart(now);
    }

    fn restart(&mut self, now: f64) {
        self.window_start = now;
        self.sum = 0.0;
        self.count = 0;
    }

    /// Counts an accepted share of difficulty `difficulty`.
    pub(crate) fn on_accepted(&mut self, difficulty: f64) {
        self.sum += difficulty;
        self.count += 1;
    }

    /// When the current measurement window ends (a retarget decision is due
    /// then at the latest).
    pub(crate) fn window_end(&self) -> f64 {
        self.window_start + self.config.retarget_secs
    }

    /// Whether enough shares were counted for an early retarget to be
    /// worth a look.
    pub(crate) fn may_be_fast(&self) -> bool {
        self.count >= FAST_SAMPLE
    }

    /// A new difficulty if the measurements call for one.
    pub(crate) fn retarget(&mut self, now: f64) -> Option<f64> {
        let elapsed = now - self.window_start;
        if elapsed <= 0.0 {
            return None;
        }
        let expected = elapsed / self.config.share_interval_secs;
        let too_fast = elapsed >= MIN_FAST_SECS.min(self.config.retarget_secs)
            && self.count >= FAST_SAMPLE
            && f64::from(self.count) >= 4.0 * expected;
        if !too_fast && elapsed < self.config.retarget_secs {
            return None;
        }
        let ideal = if self.count == 0 {
            // Nothing at all in a whole window: the miner cannot keep up.
            self.current / 4.0
        } else {
            self.sum / elapsed * self.config.share_interval_secs
        };
        self.restart(now);
        // Change only for at least a factor of two, so a miner whose ideal sits
        // between two powers of two does not flap.
        if (ideal / self.current).log2().abs() < 1.0 {
            return None;
        }
        let next = self.clamp(ideal);
        if next == self.current {
            return None;
        }
        self.current = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: VardiffConfig = VardiffConfig {
        share_interval_secs: 10.0,
        retarget_secs: 60.0,
        min: 1.0 / 1024.0,
        max: 1e12,
    };

    /// A miner of `hashes_per_diff_sec` (difficulty-1 shares per second)
    /// mining from `t` for `secs`, submitting shares at exactly its expected rate.
    fn mine(v: &mut Vardiff, rate: f64, t: &mut f64, secs: f64) -> Vec<f64> {
        let mut changes = vec![];
        let end = *t + secs;
        while *t < end {
            let d = v.current();
            *t += d / rate;
            v.on_accepted(d);
            if let Some(n) = v.retarget(*t) {
                changes.push(n);
            }
        }
        changes
    }

    #[test]
    fn converges_up_from_a_low_start_and_then_holds() {
        // 1,000 difficulty-1 shares a second: the ideal is 10,000, i.e. 2^13 or 2^14.
        let mut v = Vardiff::new(CONFIG, 1.0, 0.0);
        let mut t = 0.0;
        let changes = mine(&mut v, 1000.0, &mut t, 600.0);
        assert!(!changes.is_empty());
        let d = v.current();
        assert!((8192.0..=16384.0).contains(&d), "settled at {d}");
        assert!(t < 700.0);
        // Once there, an hour brings no more changes.
        assert_eq!(mine(&mut v, 1000.0, &mut t, 3600.0), Vec::<f64>::new());
        // The fast ramp got there in seconds, not windows.
        let mut v = Vardiff::new(CONFIG, 1.0, 0.0);
        let mut t = 0.0;
        mine(&mut v, 1000.0, &mut t, 5.0);
        assert!(v.current() >= 1024.0, "after 5 s: {}", v.current());
    }

    #[test]
    fn converges_down_for_a_slow_miner_and_respects_the_floor() {
        let mut v = Vardiff::new(CONFIG, 65536.0, 0.0);
        // 0.5 difficulty-1 shares a second → ideal 5 → 4 or 8.
        let mut t = 0.0;
        // Shares so rare at first that whole windows are empty.
        for _ in 0..20 {
            t += 60.0;
            v.retarget(t);
        }
        mine(&mut v, 0.5, &mut t, 3600.0);
        assert!(
            (4.0..=8.0).contains(&v.current()),
            "settled at {}",
            v.current()
        );
        v.set_floor(32.0, t);
        assert_eq!(v.current(), 32.0);
        t += 600.0;
        v.retarget(t);
        assert_eq!(v.current(), 32.0, "never below the miner's floor");
    }

    #[test]
    fn a_burst_of_shares_read_at_once_is_not_a_rate() {
        // 50 shares handled within 10 ms (one read's worth): no retarget on
        // that; a second of the same pace later, one to the right level.
        let mut v = Vardiff::new(CONFIG, 1.0, 0.0);
        for i in 0..50 {
            v.on_accepted(1.0);
            assert_eq!(v.retarget(f64::from(i) * 0.0002), None, "share {i}");
        }
        for _ in 0..4950 {
            v.on_accepted(1.0);
        }
        let d = v.retarget(1.0).expect("a retarget after a second");
        // 5,000 difficulty-1 shares a second: ideal 50,000 → 2^15 or 2^16.
        assert!((32768.0..=65536.0).contains(&d), "{d}");
    }

    #[test]
    fn rejected_shares_do_not_count() {
        // A miner whose shares are all rejected reports nothing accepted: its
        // difficulty falls, it does not rise (btcpool #370).
        let mut v = Vardiff::new(CONFIG, 1024.0, 0.0);
        assert_eq!(v.retarget(61.0), Some(256.0));
    }

    #[test]
    fn fractional_difficulties_for_regtest() {
        let mut v = Vardiff::new(CONFIG, 0.01, 0.0);
        assert_eq!(v.current(), 1.0 / 128.0);
        let mut t = 0.0;
        mine(&mut v, 0.001, &mut t, 20000.0);
        assert_eq!(v.current(), 1.0 / 128.0);
        let v = Vardiff::new(CONFIG, 1e-9, 0.0);
        assert_eq!(v.current(), CONFIG.min);
    }
}
