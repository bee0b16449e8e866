//! The live figures: sliding windows per worker, user, sserver and for the
//! pool, from every share of the last hour.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use sluice_core::record::{ShareRecord, ShareStatus};

use crate::window::{Kind, Sums, Window};

/// An hour: older shares are not in any window, and a worker, user or server
/// without a share for this long is forgotten.
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// What a share counts as in the statistics.
pub(crate) fn kind(status: ShareStatus) -> Kind {
    match status {
        ShareStatus::Accepted | ShareStatus::Block => Kind::Accept,
        ShareStatus::Stale => Kind::Stale,
        ShareStatus::LowDifficulty
        | ShareStatus::TimeTooOld
        | ShareStatus::TimeTooNew
        | ShareStatus::BadVersionBits
        | ShareStatus::Invalid => Kind::Reject,
    }
}

/// The difficulty a share's hash itself meets (difficulty-1 target over
/// the hash): 0 for a zero hash, which no share has.
pub(crate) fn share_difficulty_of(hash: bitcoin::BlockHash) -> f64 {
    use bitcoin::hashes::Hash;
    let target = bitcoin::Target::from_le_bytes(hash.to_byte_array());
    sluice_core::Difficulty::from_target(target).map_or(0.0, sluice_core::Difficulty::get)
}

/// One worker (boxed in the map: ~0.8 KiB each).
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    pub(crate) window: Window<f32>,
    pub(crate) accept_count: u64,
    /// The best accepted share's own difficulty (its hash's, not the
    /// target's it was sent): what a solo miner watches.
    pub(crate) best: f64,
    pub(crate) last_share_ms: u64,
    pub(crate) last_ip: IpAddr,
    pub(crate) name: Box<str>,
}

/// A user, a server or the pool.
#[derive(Debug, Clone)]
pub(crate) struct Aggregate {
    pub(crate) window: Window<f64>,
    pub(crate) accept_count: u64,
    pub(crate) best: f64,
    pub(crate) last_share_ms: u64,
    pub(crate) last_ip: IpAddr,
    /// Active workers (users only).
    pub(crate) workers: u32,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            window: Window::default(),
            accept_count: 0,
            best: 0.0,
            last_share_ms: 0,
            last_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            workers: 0,
        }
    }
}

/// What the API and the `mining_workers` flush read of one entity.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Figures {
    /// 5 m, 15 m and 1 h sums.
    pub(crate) windows: [Sums; 3],
    pub(crate) accept_count: u64,
    /// The best accepted share's difficulty since the windows were built.
    pub(crate) best_share: f64,
    pub(crate) last_share_ms: u64,
    pub(crate) last_ip: IpAddr,
}

/// Every window.
#[derive(Debug, Default)]
pub(crate) struct Live {
    workers: HashMap<(u32, i64), Box<Worker>>,
    users: HashMap<u32, Aggregate>,
    servers: HashMap<u8, Aggregate>,
    pool: Aggregate,
    /// Highest share height seen.
    pub(crate) height: u32,
}

impl Live {
    /// Counts a share at `now_ms` (nothing if it is older than an hour).
    pub(crate) fn apply(&mut self, s: &ShareRecord, now_ms: u64) {
        self.height = self.height.max(s.height);
        if s.timestamp_ms.saturating_add(HOUR_MS) <= now_ms {
            return;
        }
        let kind = kind(s.status);
        let d = s.share_difficulty;
        let t = s.timestamp_ms;
        let accepted = u64::from(kind == Kind::Accept);
        let best = if kind == Kind::Accept {
            share_difficulty_of(s.hash)
        } else {
            0.0
        };
        let mut new_worker = false;
        let w = self
            .workers
            .entry((s.user_id, s.worker_id))
            .or_insert_with(|| {
                new_worker = true;
                Box::new(Worker {
                    window: Window::default(),
                    accept_count: 0,
                    best: 0.0,
                    last_share_ms: 0,
                    last_ip: s.client_ip,
                    name: s.worker_name.as_str().into(),
                })
            });
        w.window.add(kind, d, t, now_ms);
        w.accept_count += accepted;
        w.best = w.best.max(best);
        if t >= w.last_share_ms {
            w.last_share_ms = t;
            w.last_ip = s.client_ip;
            if *w.name != *s.worker_name {
                w.name = s.worker_name.as_str().into();
            }
        }
        let user = self.users.entry(s.user_id).or_default();
        user.workers += u32::from(new_worker);
        let server = self.servers.entry(s.server_id).or_default();
        for a in [user, server, &mut self.pool] {
            a.window.add(kind, d, t, now_ms);
            a.accept_count += accepted;
            a.best = a.best.max(best);
            if t >= a.last_share_ms {
                a.last_share_ms = t;
                a.last_ip = s.client_ip;
            }
        }
    }

    /// Forgets workers, users and servers without a share for an hour, and
    /// returns the forgotten workers' and users' (worker 0) keys: their rows
    /// get a last flush.
    pub(crate) fn evict(&mut self, now_ms: u64) -> Vec<(u32, i64, Box<str>)> {
        let idle = |last: u64| last.saturating_add(HOUR_MS) <= now_ms;
        let mut gone = Vec::new();
        self.workers.retain(|&(user, worker), w| {
            if idle(w.last_share_ms) {
                gone.push((user, worker, std::mem::take(&mut w.name)));
                false
            } else {
                true
            }
        });
        for (user, _, _) in &gone {
            if let Some(u) = self.users.get_mut(user) {
                u.workers = u.workers.saturating_sub(1);
            }
        }
        self.users.retain(|&user, u| {
            let keep = u.workers > 0 && !idle(u.last_share_ms);
            if !keep {
                gone.push((user, 0, Box::from("")));
            }
            keep
        });
        self.servers.retain(|_, s| !idle(s.last_share_ms));
        gone
    }

    pub(crate) fn worker(&self, user: u32, worker: i64, now_ms: u64) -> Option<(Figures, &str)> {
        self.workers
            .get(&(user, worker))
            .map(|w| (worker_figures(w, now_ms), &*w.name))
    }

    pub(crate) fn user(&self, user: u32, now_ms: u64) -> Option<(Figures, u32)> {
        self.users
            .get(&user)
            .map(|u| (figures(u, now_ms), u.workers))
    }

    pub(crate) fn pool(&self, now_ms: u64) -> Figures {
        figures(&self.pool, now_ms)
    }

    pub(crate) fn server(&self, id: u8, now_ms: u64) -> Option<Figures> {
        self.servers.get(&id).map(|s| figures(s, now_ms))
    }

    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.users.len(), self.workers.len())
    }

    /// Every worker of `user`, by worker id.
    pub(crate) fn workers_of(&self, user: u32, now_ms: u64) -> Vec<(i64, String, Figures)> {
        let mut out: Vec<_> = self
            .workers
            .iter()
            .filter(|((u, _), _)| *u == user)
            .map(|(&(_, id), w)| (id, w.name.to_string(), worker_figures(w, now_ms)))
            .collect();
        out.sort_by_key(|(id, _, _)| *id);
        out
    }

    /// Every worker and every user (as worker 0), for `mining_workers`.
    pub(crate) fn rows(&self, now_ms: u64) -> Vec<WorkerRow> {
        let mut rows = Vec::with_capacity(self.workers.len() + self.users.len());
        for (&(user_id, worker_id), w) in &self.workers {
            rows.push(WorkerRow {
                user_id,
                worker_id,
                name: w.name.to_string(),
                figures: worker_figures(w, now_ms),
            });
        }
        for (&user_id, u) in &self.users {
            rows.push(WorkerRow {
                user_id,
                worker_id: 0,
                name: String::new(),
                figures: figures(u, now_ms),
            });
        }
        rows
    }
}

/// One `mining_workers` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerRow {
    pub(crate) user_id: u32,
    pub(crate) worker_id: i64,
    pub(crate) name: String,
    pub(crate) figures: Figures,
}

fn worker_figures(w: &Worker, now_ms: u64) -> Figures {
    Figures {
        windows: w.window.all(now_ms),
        accept_count: w.accept_count,
        best_share: w.best,
        last_share_ms: w.last_share_ms,
        last_ip: w.last_ip,
    }
}

fn figures(a: &Aggregate, now_ms: u64) -> Figures {
    Figures {
        windows: a.window.all(now_ms),
        accept_count: a.accept_count,
        best_share: a.best,
        last_share_ms: a.last_share_ms,
        last_ip: a.last_ip,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use sluice_core::JobId;

    pub(crate) const T0: u64 = 1_795_262_400_000; // 2026-11-21T12:00:00Z

    pub(crate) fn share(
        user: u32,
        worker: i64,
        server: u8,
        status: ShareStatus,
        d: f64,
        t: u64,
    ) -> ShareRecord {
        ShareRecord {
            job_id: JobId(1),
            user_id: user,
            worker_id: worker,
            worker_name: format!("w{worker}"),
            server_id: server,
            extranonce1: 7,
            extranonce2: vec![0; 8],
            ntime: (t / 1000) as u32,
            nonce: 1,
            version_bits: 0,
            share_difficulty: d,
            network_bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
            height: 101,
            status,
            hash: bitcoin::BlockHash::all_zeros(),
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, worker as u8)),
            timestamp_ms: t,
            protocol: sluice_core::record::MiningProtocol::StratumV1,
            solo: false,
        }
    }

    #[test]
    fn a_share_s_best_is_its_hash_s_own_difficulty_of_accepted_shares_only() {
        // A hash equal to the difficulty-1 target is difficulty 1; half of it, 2.
        let diff1 = sluice_core::DIFF1_TARGET.to_le_bytes();
        let hash = bitcoin::BlockHash::from_byte_array(diff1);
        assert!((share_difficulty_of(hash) - 1.0).abs() < 1e-9);
        let mut live = Live::default();
        let mut s = share(1, 1, 1, ShareStatus::Accepted, 1e-6, T0);
        s.hash = hash;
        live.apply(&s, T0);
        // A stale share of a far better hash (1 as a number) is not a best.
        let mut stale = share(1, 1, 1, ShareStatus::Stale, 1e-6, T0);
        stale.hash = bitcoin::BlockHash::from_byte_array({
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        });
        live.apply(&stale, T0);
        let (user, _) = live.user(1, T0).unwrap();
        assert!((user.best_share - 1.0).abs() < 1e-9, "{}", user.best_share);
        let (worker, _) = live.worker(1, 1, T0).unwrap();
        assert!(
            (worker.best_share - 1.0).abs() < 1e-9,
            "{}",
            worker.best_share
        );
    }

    #[test]
    fn shares_count_for_worker_user_server_and_pool() {
        let mut live = Live::default();
        let now = T0 + 600_000;
        live.apply(
            &share(1, 11, 3, ShareStatus::Accepted, 2.0, now - 60_000),
            now,
        );
        live.apply(&share(1, 12, 3, ShareStatus::Block, 4.0, now - 60_000), now);
        live.apply(&share(1, 12, 4, ShareStatus::Stale, 8.0, now - 60_000), now);
        live.apply(
            &share(2, 21, 4, ShareStatus::LowDifficulty, 16.0, now - 60_000),
            now,
        );
        live.apply(
            &share(2, 21, 4, ShareStatus::Accepted, 1.0, now - 2 * HOUR_MS),
            now,
        );
        let (w, name) = live.worker(1, 12, now).unwrap();
        assert_eq!(name, "w12");
        assert_eq!(
            w.windows[0],
            Sums {
                accept: 4.0,
                stale: 8.0,
                reject: 0.0
            }
        );
        assert_eq!(w.accept_count, 1);
        let (u, workers) = live.user(1, now).unwrap();
        assert_eq!((u.windows[2].accept, workers), (6.0, 2));
        assert_eq!(live.server(4, now).unwrap().windows[1].reject, 16.0);
        let pool = live.pool(now);
        assert_eq!(
            pool.windows[2],
            Sums {
                accept: 6.0,
                stale: 8.0,
                reject: 16.0
            }
        );
        assert_eq!(
            pool.accept_count, 2,
            "the share two hours old is not counted"
        );
        assert_eq!(live.counts(), (2, 3));
        assert_eq!(live.rows(now).len(), 5);
        assert_eq!(live.workers_of(1, now).len(), 2);
    }

    #[test]
    fn an_hour_without_shares_forgets_a_worker() {
        let mut live = Live::default();
        live.apply(&share(1, 11, 3, ShareStatus::Accepted, 2.0, T0), T0);
        live.apply(
            &share(1, 12, 3, ShareStatus::Accepted, 2.0, T0 + 1_800_000),
            T0 + 1_800_000,
        );
        let gone = live.evict(T0 + HOUR_MS);
        assert_eq!(gone, vec![(1, 11, "w11".into())]);
        let gone = live.evict(T0 + 2 * HOUR_MS);
        assert_eq!(gone, vec![(1, 12, "w12".into()), (1, 0, "".into())]);
        assert_eq!(live.counts(), (0, 0));
        assert!(live.server(3, T0 + 2 * HOUR_MS).is_none());
    }
}
