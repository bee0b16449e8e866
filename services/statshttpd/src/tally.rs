//! Hourly and daily totals: the `stats_{pool,users,workers}_{hour,day}` rows.
//!
//! Every row holds absolute totals of the shares counted into it, so writing
//! a row again is harmless: a restart, a MySQL outage or a replay of the
//! share log rewrites the same numbers. Shares are counted in share-log
//! order, by live ingestion and by replay alike, so the floating-point sums
//! come out bit for bit the same.
//!
//! As btcpool's slparser: accepted, stale and rejected difficulty; reject
//! rate = reject / (accept + reject); score = Σ min(1, share difficulty /
//! network difficulty) over accepted shares; earn = Σ score x block subsidy
//! at the share's height, in satoshis (PPS, fees excluded).

use std::collections::{HashMap, HashSet};

use bitcoin::Network;
use sluice_core::Difficulty;
use sluice_core::network::block_subsidy;
use sluice_core::record::ShareRecord;

use crate::clock::{day_of, hour_of};
use crate::live::kind;
use crate::window::Kind;

/// Which table a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    PoolHour,
    PoolDay,
    UsersHour,
    UsersDay,
    WorkersHour,
    WorkersDay,
}

impl Table {
    pub(crate) const ALL: [Table; 6] = [
        Table::PoolHour,
        Table::PoolDay,
        Table::UsersHour,
        Table::UsersDay,
        Table::WorkersHour,
        Table::WorkersDay,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::PoolHour => "stats_pool_hour",
            Table::PoolDay => "stats_pool_day",
            Table::UsersHour => "stats_users_hour",
            Table::UsersDay => "stats_users_day",
            Table::WorkersHour => "stats_workers_hour",
            Table::WorkersDay => "stats_workers_day",
        }
    }

    pub(crate) fn is_day(self) -> bool {
        matches!(self, Table::PoolDay | Table::UsersDay | Table::WorkersDay)
    }
}

/// A row's identity: table, period (YYYYMMDDHH or YYYYMMDD), user, worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) table: Table,
    pub(crate) period: u32,
    pub(crate) user_id: u32,
    pub(crate) worker_id: i64,
}

impl Key {
    /// The UTC day (YYYYMMDD) of the row.
    pub(crate) fn day(&self) -> u32 {
        if self.table.is_day() {
            self.period
        } else {
            self.period / 100
        }
    }
}

/// A row's values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Totals {
    pub(crate) accept: f64,
    pub(crate) stale: f64,
    pub(crate) reject: f64,
    pub(crate) score: f64,
    /// Satoshis, fractional until written.
    pub(crate) earn: f64,
}

impl Totals {
    pub(crate) fn reject_rate(&self) -> f64 {
        let all = self.accept + self.reject;
        if all > 0.0 { self.reject / all } else { 0.0 }
    }

    /// Whole satoshis, as the `earn` column holds them.
    pub(crate) fn earn_sat(&self) -> u64 {
        self.earn.round().max(0.0) as u64
    }
}

/// The totals of the days being counted, and which rows changed since they
/// were last written.
#[derive(Debug)]
pub(crate) struct Tally {
    network: Network,
    rows: HashMap<Key, Totals>,
    dirty: HashSet<Key>,
}

impl Tally {
    pub(crate) fn new(network: Network) -> Self {
        Tally {
            network,
            rows: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// Counts a share into its hour and day, for its worker, user and the pool.
    pub(crate) fn apply(&mut self, s: &ShareRecord) {
        let kind = kind(s.status);
        let d = s.share_difficulty;
        let (score, earn) = if kind == Kind::Accept {
            let network =
                Difficulty::from_compact(s.network_bits).map_or(f64::INFINITY, |n| n.get());
            let score = (d / network).min(1.0);
            let subsidy = block_subsidy(self.network, s.height).to_sat() as f64;
            (score, score * subsidy)
        } else {
            (0.0, 0.0)
        };
        let hour = hour_of(s.timestamp_ms);
        let day = day_of(s.timestamp_ms);
        let keys = [
            (Table::PoolHour, hour, 0, 0),
            (Table::PoolDay, day, 0, 0),
            (Table::UsersHour, hour, s.user_id, 0),
            (Table::UsersDay, day, s.user_id, 0),
            (Table::WorkersHour, hour, s.user_id, s.worker_id),
            (Table::WorkersDay, day, s.user_id, s.worker_id),
        ];
        for (table, period, user_id, worker_id) in keys {
            let key = Key {
                table,
                period,
                user_id,
                worker_id,
            };
            let t = self.rows.entry(key).or_default();
            match kind {
                Kind::Accept => {
                    t.accept += d;
                    t.score += score;
                    t.earn += earn;
                }
                Kind::Stale => t.stale += d,
                Kind::Reject => t.reject += d,
            }
            self.dirty.insert(key);
        }
    }

    /// The rows changed since the last [`Tally::written`], sorted.
    pub(crate) fn changed(&self) -> Vec<(Key, Totals)> {
        let mut out: Vec<_> = self
            .dirty
            .iter()
            .filter_map(|k| self.rows.get(k).map(|t| (*k, *t)))
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }

    /// Every row, sorted (a replay writes them all).
    pub(crate) fn all(&self) -> Vec<(Key, Totals)> {
        let mut out: Vec<_> = self.rows.iter().map(|(k, t)| (*k, *t)).collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }

    /// Marks rows as written, unless they changed again since `rows` was
    /// taken.
    pub(crate) fn written(&mut self, rows: &[(Key, Totals)]) {
        for (k, t) in rows {
            if self.rows.get(k) == Some(t) {
                self.dirty.remove(k);
            }
        }
    }

    /// Forgets written rows of days before `day` (they are final in MySQL).
    pub(crate) fn forget_before(&mut self, day: u32) {
        let dirty = &self.dirty;
        self.rows.retain(|k, _| k.day() >= day || dirty.contains(k));
    }

    #[cfg(test)]
    pub(crate) fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: &Key) -> Option<Totals> {
        self.rows.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::tests::{T0, share};
    use sluice_core::ShareStatus;

    fn key(table: Table, period: u32, user_id: u32, worker_id: i64) -> Key {
        Key {
            table,
            period,
            user_id,
            worker_id,
        }
    }

    #[test]
    fn hours_and_days_add_up_as_slparser_does() {
        let mut t = Tally::new(Network::Regtest);
        // Regtest bits 207fffff: network difficulty 4.66e-10, so every share
        // scores 1 and earns the whole subsidy (50 BTC at height 101).
        t.apply(&share(1, 11, 3, ShareStatus::Accepted, 2.0, T0 + 1_000));
        t.apply(&share(1, 11, 3, ShareStatus::Stale, 4.0, T0 + 2_000));
        t.apply(&share(
            1,
            12,
            3,
            ShareStatus::LowDifficulty,
            6.0,
            T0 + 3_600_000,
        ));
        let h12 = key(Table::WorkersHour, 2_026_112_112, 1, 11);
        let w = t.get(&h12).unwrap();
        assert_eq!((w.accept, w.stale, w.reject), (2.0, 4.0, 0.0));
        assert_eq!(w.score, 1.0);
        assert_eq!(w.earn_sat(), 5_000_000_000);
        let day = t.get(&key(Table::UsersDay, 20_261_121, 1, 0)).unwrap();
        assert_eq!((day.accept, day.stale, day.reject), (2.0, 4.0, 6.0));
        assert_eq!(day.reject_rate(), 0.75);
        let h13 = t.get(&key(Table::PoolHour, 2_026_112_113, 0, 0)).unwrap();
        assert_eq!((h13.accept, h13.reject, h13.score), (0.0, 6.0, 0.0));
        assert_eq!(t.changed().len(), 6 + 4);
    }

    #[test]
    fn score_is_capped_at_one_and_proportional_below() {
        let mut t = Tally::new(Network::Bitcoin);
        let mut s = share(1, 11, 3, ShareStatus::Accepted, 1.0, T0);
        s.network_bits = bitcoin::CompactTarget::from_consensus(0x1d00_ffff); // difficulty 1
        s.share_difficulty = 0.25;
        s.height = 840_000;
        t.apply(&s);
        let r = t.get(&key(Table::PoolDay, 20_261_121, 0, 0)).unwrap();
        assert_eq!(r.score, 0.25);
        assert_eq!(r.earn_sat(), 312_500_000 / 4);
    }

    #[test]
    fn written_rows_stay_clean_until_they_change() {
        let mut t = Tally::new(Network::Regtest);
        t.apply(&share(1, 11, 3, ShareStatus::Accepted, 2.0, T0));
        let rows = t.changed();
        t.apply(&share(1, 12, 3, ShareStatus::Accepted, 2.0, T0));
        t.written(&rows);
        // The pool and user rows changed after they were taken: still dirty.
        let again: Vec<_> = t
            .changed()
            .into_iter()
            .map(|(k, _)| (k.table, k.worker_id))
            .collect();
        assert!(again.contains(&(Table::PoolHour, 0)));
        assert!(again.contains(&(Table::WorkersDay, 12)));
        assert!(!again.contains(&(Table::WorkersDay, 11)));
        t.written(&t.changed());
        assert_eq!(t.dirty_count(), 0);
        t.forget_before(20_261_122);
        assert!(t.all().is_empty());
    }
}
