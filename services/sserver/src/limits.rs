//! Admission control: a cap on connections, a per-IP connection rate, and
//! bans for IPs whose miners send too many invalid shares.
//!
//! Time is a parameter (`Instant`), so the rules are unit-tested without a
//! clock. State is behind one short mutex, never held across an await.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// Admission settings.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// New connections per second one IP may open (sustained).
    pub connections_per_ip_per_sec: f64,
    /// How many it may open in a burst.
    pub connection_burst_per_ip: f64,
    /// How long a ban lasts.
    pub ban: Duration,
    /// Networks neither rate-limited nor banned (a farm behind one NAT
    /// address, the pool's own proxies).
    pub trusted: Vec<IpNet>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The accept loop's pace, over all addresses: a burst, then a sustained
/// rate. Past it the loop waits and the kernel's listen queue holds the
/// rest, so a storm of new connections cannot crowd out the miners already
/// mining (each new connection is a task ahead of theirs in the queue).
#[derive(Debug)]
pub(crate) struct Pace {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Pace {
    /// `rate` a second after `burst` at once; a rate of 0 is no pace.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Pace {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes the next connection's turn at `now`: how long to wait for it.
    pub(crate) fn turn(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many connections from this IP too fast.
    Rate,
    /// Banned until the instant given.
    Banned(Instant),
}

impl Refusal {
    /// What the refused miner is told (one JSON-RPC error line), at `now`.
    pub fn message(self, now: Instant) -> String {
        match self {
            Refusal::Rate => {
                "refused: too many new connections from your address; retry in a few seconds".into()
            }
            Refusal::Banned(until) => format!(
                "refused: your address is banned for {} s more (too many rejected shares)",
                until.saturating_duration_since(now).as_secs().max(1)
            ),
        }
    }
}

/// Per-IP admission state.
#[derive(Debug)]
pub struct Admission {
    config: LimitsConfig,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    bans: Mutex<HashMap<IpAddr, Instant>>,
}

impl Admission {
    /// Empty state.
    pub fn new(config: LimitsConfig) -> Self {
        Admission {
            config,
            buckets: Mutex::default(),
            bans: Mutex::default(),
        }
    }

    /// Whether `ip` may open a connection at `now` (taking a token if so).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.trusted(ip) {
            return Ok(());
        }
        {
            let mut bans = self
                .bans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match bans.get(&ip) {
                Some(&until) if until > now => return Err(Refusal::Banned(until)),
                Some(_) => {
                    bans.remove(&ip);
                }
                None => {}
            }
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 100_000 {
            // Forget full buckets so a scan of many addresses cannot grow the map forever.
            let burst = self.config.connection_burst_per_ip;
            let rate = self.config.connections_per_ip_per_sec;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.config.connection_burst_per_ip,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64()
            * self.config.connections_per_ip_per_sec;
        b.tokens = (b.tokens + refill).min(self.config.connection_burst_per_ip);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::Rate)
        }
    }

    /// Whether `ip` is in a trusted network.
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.config.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Bans `ip` from `now` for the configured time; false (and no ban) for
    /// a trusted address, whose other miners must not pay for one.
    pub fn ban(&self, ip: IpAddr, now: Instant) -> bool {
        if self.trusted(ip) {
            return false;
        }
        self.bans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ip, now + self.config.ban);
        true
    }
}

/// Counts one session's rejected shares in a sliding window.
#[derive(Debug, Clone)]
pub(crate) struct RejectWindow {
    window: Duration,
    max: u32,
    times: std::collections::VecDeque<Instant>,
}

impl RejectWindow {
    /// At most `max` rejections per `window`.
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        RejectWindow {
            window,
            max,
            times: std::collections::VecDeque::new(),
        }
    }

    /// Records a rejection at `now`; true when the limit is exceeded.
    pub(crate) fn reject(&mut self, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.window)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.max > 0 && self.times.len() > self.max as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LimitsConfig = LimitsConfig {
        connections_per_ip_per_sec: 2.0,
        connection_burst_per_ip: 4.0,
        ban: Duration::from_secs(60),
        trusted: Vec::new(),
    };

    #[test]
    fn a_trusted_network_is_neither_limited_nor_banned() {
        let a = Admission::new(LimitsConfig {
            trusted: vec!["10.8.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
            ..CONFIG
        });
        let t = Instant::now();
        let farm: IpAddr = [10, 8, 3, 4].into();
        for _ in 0..2_000 {
            assert_eq!(a.admit(farm, t), Ok(()));
        }
        assert!(!a.ban(farm, t), "a trusted address is not banned");
        assert_eq!(a.admit(farm, t), Ok(()));
        let v6: IpAddr = "fd12::1".parse().unwrap();
        assert!(a.trusted(v6));
        let outside: IpAddr = [10, 9, 0, 1].into();
        for _ in 0..4 {
            assert_eq!(a.admit(outside, t), Ok(()));
        }
        assert_eq!(
            a.admit(outside, t),
            Err(Refusal::Rate),
            "outside the network: limited"
        );
        assert!(a.ban(outside, t));
    }

    #[test]
    fn a_refusal_says_why_and_for_how_long() {
        let t = Instant::now();
        assert!(
            Refusal::Rate
                .message(t)
                .contains("too many new connections")
        );
        let m = Refusal::Banned(t + Duration::from_secs(90)).message(t);
        assert!(m.contains("banned for 90 s"), "{m}");
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let a = Admission::new(CONFIG);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t = Instant::now();
        for _ in 0..4 {
            assert_eq!(a.admit(ip, t), Ok(()));
        }
        assert_eq!(a.admit(ip, t), Err(Refusal::Rate));
        assert_eq!(a.admit([10, 0, 0, 2].into(), t), Ok(()), "per IP");
        let later = t + Duration::from_millis(500);
        assert_eq!(a.admit(ip, later), Ok(()), "one token after 0.5 s at 2/s");
        assert_eq!(a.admit(ip, later), Err(Refusal::Rate));
    }

    #[test]
    fn the_accept_pace_is_a_burst_then_the_rate() {
        let t = Instant::now();
        let mut pace = Pace::new(1000.0, 3.0, t);
        for _ in 0..3 {
            assert_eq!(pace.turn(t), Duration::ZERO);
        }
        // The fourth waits a thousandth of a second, the fifth two.
        assert_eq!(pace.turn(t), Duration::from_millis(1));
        assert_eq!(pace.turn(t), Duration::from_millis(2));
        // Taken at their turns, they refill nothing ahead.
        let later = t + Duration::from_millis(2);
        let wait = pace.turn(later).as_secs_f64();
        assert!((wait - 0.001).abs() < 1e-9, "{wait}");
        // A quiet second fills the burst again, no more.
        let quiet = later + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(pace.turn(quiet), Duration::ZERO);
        }
        assert!(pace.turn(quiet) > Duration::ZERO);
        let mut none = Pace::new(0.0, 0.0, t);
        assert_eq!(none.turn(t), Duration::ZERO);
    }

    #[test]
    fn bans_expire() {
        let a = Admission::new(CONFIG);
        let ip: IpAddr = [10, 0, 0, 3].into();
        let t = Instant::now();
        a.ban(ip, t);
        assert!(matches!(
            a.admit(ip, t + Duration::from_secs(59)),
            Err(Refusal::Banned(_))
        ));
        assert_eq!(a.admit(ip, t + Duration::from_secs(61)), Ok(()));
    }

    #[test]
    fn rejects_over_the_window_trip_the_limit() {
        let mut w = RejectWindow::new(3, Duration::from_secs(60));
        let t = Instant::now();
        assert!(!w.reject(t));
        assert!(!w.reject(t));
        assert!(!w.reject(t));
        assert!(w.reject(t));
        let mut w = RejectWindow::new(3, Duration::from_secs(60));
        for i in 0..10 {
            assert!(
                !w.reject(t + Duration::from_secs(30 * i)),
                "spread out: fine"
            );
        }
    }
}
