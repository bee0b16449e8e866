//! Minute statistics as viabtc keeps them: for every minute of the last
//! 24 hours, the shares, the accepted difficulty and the rejects (stale and
//! invalid) of the pool, each sserver, each user and, unless turned off,
//! each worker. The dashboard's charts and the bot read them.
//!
//! A series is a ring of 1,440 minutes, placed by each share's own
//! timestamp, like the hour windows (`window.rs`). Workers are the many, so
//! theirs are 8-byte minutes (u16 counts, f32 difficulty: 11.25 KiB a
//! worker); the pool, servers and users sum many workers and take 16 bytes.
//! An entity without a share for 24 hours is forgotten. They are rebuilt at
//! start from the share log with everything else.

use std::collections::HashMap;

use crate::window::Kind;

/// Minutes kept: 24 hours.
pub(crate) const DAY_MINUTES: usize = 1_440;
const MINUTE_MS: u64 = 60_000;

/// One minute of one entity, as its storage keeps it.
pub(crate) trait Slot: Copy + Default {
    fn add(&mut self, kind: Kind, difficulty: f64);
    fn read(&self) -> Minute;
}

/// One minute, as served.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Minute {
    pub(crate) shares: u64,
    pub(crate) accept: f64,
    pub(crate) rejects: u64,
}

/// A minute of the pool, a server or a user.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wide {
    accept: f64,
    shares: u32,
    rejects: u32,
}

impl Slot for Wide {
    fn add(&mut self, kind: Kind, difficulty: f64) {
        self.shares = self.shares.saturating_add(1);
        match kind {
            Kind::Accept => self.accept += difficulty,
            Kind::Stale | Kind::Reject => self.rejects = self.rejects.saturating_add(1),
        }
    }
    fn read(&self) -> Minute {
        Minute {
            shares: u64::from(self.shares),
            accept: self.accept,
            rejects: u64::from(self.rejects),
        }
    }
}

/// A minute of one worker (a worker sends far fewer than 65,535 shares a
/// minute; the counts saturate rather than wrap).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Narrow {
    accept: f32,
    shares: u16,
    rejects: u16,
}

impl Slot for Narrow {
    fn add(&mut self, kind: Kind, difficulty: f64) {
        self.shares = self.shares.saturating_add(1);
        match kind {
            Kind::Accept => self.accept += difficulty as f32,
            Kind::Stale | Kind::Reject => self.rejects = self.rejects.saturating_add(1),
        }
    }
    fn read(&self) -> Minute {
        Minute {
            shares: u64::from(self.shares),
            accept: f64::from(self.accept),
            rejects: u64::from(self.rejects),
        }
    }
}

/// The last 24 hours of one entity.
#[derive(Debug, Clone)]
pub(crate) struct Series<S> {
    /// The minute (unix ms / 60,000) of the newest slot.
    head: u64,
    slots: Box<[S]>,
}

impl<S: Slot> Default for Series<S> {
    fn default() -> Self {
        Series {
            head: 0,
            slots: vec![S::default(); DAY_MINUTES].into_boxed_slice(),
        }
    }
}

impl<S: Slot> Series<S> {
    /// Counts a share at `at_ms` seen at `now_ms` (a share from the future
    /// counts now; one older than 24 hours not at all).
    fn add(&mut self, kind: Kind, difficulty: f64, at_ms: u64, now_ms: u64) {
        let minute = at_ms.min(now_ms) / MINUTE_MS;
        if minute > self.head {
            let gap = (minute - self.head).min(DAY_MINUTES as u64);
            for m in (minute + 1 - gap)..=minute {
                self.slots[slot_of(m)] = S::default();
            }
            self.head = minute;
        } else if self.head - minute >= DAY_MINUTES as u64 {
            return;
        }
        self.slots[slot_of(minute)].add(kind, difficulty);
    }

    /// The `count` minutes ending with the one of `now_ms`, oldest first.
    fn read(&self, count: usize, now_ms: u64) -> Vec<Minute> {
        let now_minute = now_ms / MINUTE_MS;
        let count = count.min(DAY_MINUTES) as u64;
        (0..count)
            .rev()
            .map(|back| match now_minute.checked_sub(back) {
                Some(m) if m <= self.head && self.head - m < DAY_MINUTES as u64 => {
                    self.slots[slot_of(m)].read()
                }
                _ => Minute::default(),
            })
            .collect()
    }

    /// Whether nothing was counted in the 24 hours before `now_ms`.
    fn is_idle(&self, now_ms: u64) -> bool {
        (now_ms / MINUTE_MS).saturating_sub(self.head) >= DAY_MINUTES as u64
    }
}

fn slot_of(minute: u64) -> usize {
    (minute % DAY_MINUTES as u64) as usize
}

/// Whose minutes to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Pool,
    Server(u8),
    User(u32),
    Worker(u32, i64),
}

/// Every series.
#[derive(Debug)]
pub(crate) struct Minutes {
    pool: Series<Wide>,
    servers: HashMap<u8, Series<Wide>>,
    users: HashMap<u32, Series<Wide>>,
    /// `None` when workers' minutes are turned off.
    workers: Option<HashMap<(u32, i64), Series<Narrow>>>,
}

impl Minutes {
    pub(crate) fn new(per_worker: bool) -> Self {
        Minutes {
            pool: Series::default(),
            servers: HashMap::new(),
            users: HashMap::new(),
            workers: per_worker.then(HashMap::new),
        }
    }

    /// Counts one share.
    pub(crate) fn apply(
        &mut self,
        (user, worker, server): (u32, i64, u8),
        kind: Kind,
        difficulty: f64,
        at_ms: u64,
        now_ms: u64,
    ) {
        if at_ms.saturating_add(DAY_MINUTES as u64 * MINUTE_MS) <= now_ms {
            return;
        }
        self.pool.add(kind, difficulty, at_ms, now_ms);
        let series = [
            self.servers.entry(server).or_default(),
            self.users.entry(user).or_default(),
        ];
        for s in series {
            s.add(kind, difficulty, at_ms, now_ms);
        }
        if let Some(workers) = &mut self.workers {
            workers
                .entry((user, worker))
                .or_default()
                .add(kind, difficulty, at_ms, now_ms);
        }
    }

    /// The last `count` minutes of `scope` at `now_ms`, oldest first; `None`
    /// if it had no share for 24 hours (or workers' minutes are off).
    pub(crate) fn read(&self, scope: Scope, count: usize, now_ms: u64) -> Option<Vec<Minute>> {
        match scope {
            Scope::Pool => Some(self.pool.read(count, now_ms)),
            Scope::Server(id) => self.servers.get(&id).map(|s| s.read(count, now_ms)),
            Scope::User(id) => self.users.get(&id).map(|s| s.read(count, now_ms)),
            Scope::Worker(user, worker) => self
                .workers
                .as_ref()?
                .get(&(user, worker))
                .map(|s| s.read(count, now_ms)),
        }
    }

    /// Whether workers' minutes are kept.
    pub(crate) fn per_worker(&self) -> bool {
        self.workers.is_some()
    }

    /// Forgets what had no share for 24 hours.
    pub(crate) fn evict(&mut self, now_ms: u64) {
        self.servers.retain(|_, s| !s.is_idle(now_ms));
        self.users.retain(|_, s| !s.is_idle(now_ms));
        if let Some(workers) = &mut self.workers {
            workers.retain(|_, s| !s.is_idle(now_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000 - (1_800_000_000_000 % MINUTE_MS);
    const DAY_MS: u64 = DAY_MINUTES as u64 * MINUTE_MS;

    #[test]
    fn each_share_counts_in_its_minute_for_pool_server_user_and_worker() {
        let mut m = Minutes::new(true);
        let now = T0 + 10 * MINUTE_MS + 30_000;
        m.apply((1, 11, 3), Kind::Accept, 2.0, T0 + 9 * MINUTE_MS, now);
        m.apply(
            (1, 11, 3),
            Kind::Accept,
            2.0,
            T0 + 9 * MINUTE_MS + 59_999,
            now,
        );
        m.apply((1, 12, 4), Kind::Stale, 8.0, T0 + 10 * MINUTE_MS, now);
        m.apply((2, 21, 4), Kind::Reject, 16.0, T0 + 10 * MINUTE_MS, now);
        let pool = m.read(Scope::Pool, 3, now).unwrap();
        assert_eq!(pool.len(), 3);
        assert_eq!(pool[0], Minute::default(), "minute 8: nothing");
        assert_eq!(
            pool[1],
            Minute {
                shares: 2,
                accept: 4.0,
                rejects: 0
            }
        );
        assert_eq!(
            pool[2],
            Minute {
                shares: 2,
                accept: 0.0,
                rejects: 2
            }
        );
        let user = m.read(Scope::User(1), 2, now).unwrap();
        assert_eq!((user[0].shares, user[1].shares), (2, 1));
        let server = m.read(Scope::Server(4), 1, now).unwrap();
        assert_eq!((server[0].shares, server[0].rejects), (2, 2));
        let worker = m.read(Scope::Worker(1, 11), 2, now).unwrap();
        assert_eq!(worker[0].accept, 4.0);
        assert!(m.read(Scope::Worker(1, 99), 2, now).is_none());
        assert!(m.read(Scope::User(7), 2, now).is_none());
    }

    #[test]
    fn a_day_is_kept_and_what_is_older_falls_out() {
        let mut m = Minutes::new(true);
        let now = T0 + DAY_MS;
        // One accepted share of difficulty 1 in each minute of the day.
        for minute in 1..=DAY_MINUTES as u64 {
            m.apply((1, 1, 1), Kind::Accept, 1.0, T0 + minute * MINUTE_MS, now);
        }
        m.apply((1, 1, 1), Kind::Accept, 1.0, T0, now);
        let day = m.read(Scope::Worker(1, 1), DAY_MINUTES, now).unwrap();
        assert_eq!(day.len(), DAY_MINUTES);
        assert!(day.iter().all(|x| x.shares == 1 && x.accept == 1.0));
        // Ten minutes later the ten oldest are gone and the new ones empty.
        let later = now + 10 * MINUTE_MS;
        m.apply((1, 1, 1), Kind::Accept, 5.0, later, later);
        let day = m.read(Scope::Pool, DAY_MINUTES, later).unwrap();
        let total: u64 = day.iter().map(|x| x.shares).sum();
        assert_eq!(total, DAY_MINUTES as u64 - 10 + 1);
        assert_eq!(day[DAY_MINUTES - 1].accept, 5.0);
        assert_eq!(day[DAY_MINUTES - 2], Minute::default());
    }

    #[test]
    fn idle_entities_are_forgotten_after_a_day_and_workers_can_be_off() {
        let mut m = Minutes::new(false);
        m.apply((1, 1, 1), Kind::Accept, 1.0, T0, T0);
        assert!(!m.per_worker());
        assert!(m.read(Scope::Worker(1, 1), 5, T0).is_none());
        m.evict(T0 + DAY_MS - MINUTE_MS);
        assert!(m.read(Scope::User(1), 5, T0).is_some());
        m.evict(T0 + DAY_MS);
        assert!(m.read(Scope::User(1), 5, T0).is_none());
        assert!(m.read(Scope::Server(1), 5, T0).is_none());
    }

    #[test]
    fn a_worker_minute_takes_eight_bytes() {
        assert_eq!(std::mem::size_of::<Narrow>(), 8);
        assert_eq!(std::mem::size_of::<Wide>(), 16);
    }
}
