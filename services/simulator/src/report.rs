//! The final report: a table for people, JSON for scripts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::BlockHash;

use crate::{Shared, Snapshot};

/// Percentiles of a latency, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// From samples in microseconds.
    pub fn of(mut micros: Vec<u32>) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[i]) / 1000.0
        };
        Latency {
            count: micros.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Miners asked for.
    pub connections: usize,
    /// Miners connected and authorized when the measurement ended.
    pub connected: u64,
    /// Seconds until every miner was authorized (or 30 s passed).
    pub ramp_up_secs: f64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections lost or closed by the server, then made again.
    pub reconnects: u64,
    /// Seconds measured (after the ramp-up).
    pub elapsed_secs: f64,
    /// Shares sent while measuring.
    pub submitted: u64,
    /// Accepted while measuring.
    pub accepted: u64,
    /// Rejected while measuring.
    pub rejected: u64,
    /// Rejections over the whole run, by `code message`.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Shares abandoned: difficulty out of reach of a simulated miner.
    pub too_hard: u64,
    /// Answered shares per second while measuring.
    pub shares_per_sec: f64,
    /// Accepted difficulty while measuring.
    pub accepted_difficulty: f64,
    /// Accepted difficulty x 2^32 per second: the hashrate a pool should
    /// credit these miners with.
    pub hashrate: f64,
    /// Submit to answer, over the whole run.
    pub submit_round_trip: Latency,
    /// Blocks made on the node (`--node-rpc`).
    pub blocks_made: usize,
    /// New block made → each miner's clean job on top of it.
    pub new_block_to_notify: Latency,
    /// Clean jobs expected (blocks x miners) but not seen.
    pub new_block_missed: usize,
    /// The whole run's shares, ramp-up and after-stop included.
    pub totals: Totals,
    /// Accepted shares that met the network target (block hashes), the
    /// whole run.
    pub blocks_found: Vec<String>,
    /// Every accepted share's header hash (with `--record-accepted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_hashes: Vec<String>,
}

/// Shares over a whole run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Sent.
    pub submitted: u64,
    /// Answered accepted.
    pub accepted: u64,
    /// Answered rejected.
    pub rejected: u64,
    /// Bytes the miners sent, as on the wire (sealed, for SV2).
    pub bytes_sent: u64,
    /// Bytes the miners received.
    pub bytes_received: u64,
}

pub(crate) fn build(
    shared: &Shared,
    base: &Snapshot,
    end: &Snapshot,
    elapsed: Duration,
    ramp_up: Duration,
    made: &[(BlockHash, Instant)],
) -> Report {
    let c = &shared.counters;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let accepted = end.accepted - base.accepted;
    let rejected = end.rejected - base.rejected;
    let accepted_difficulty = end.accepted_difficulty - base.accepted_difficulty;
    let round_trips: Vec<u32> = take(&shared.round_trips);
    let seen: Vec<(BlockHash, Instant)> = take(&shared.clean_seen);
    let made_at: HashMap<BlockHash, Instant> = made.iter().copied().collect();
    let block_latencies: Vec<u32> = seen
        .iter()
        .filter_map(|(prev, at)| made_at.get(prev).map(|t| at.saturating_duration_since(*t)))
        .map(|d| d.as_micros().min(u128::from(u32::MAX)) as u32)
        .collect();
    let expected = made.len() * shared.options.connections;
    Report {
        connections: shared.options.connections,
        connected: end.connected,
        ramp_up_secs: ramp_up.as_secs_f64(),
        connect_failures: c.connect_failures.load(Ordering::Relaxed),
        reconnects: c.reconnects.load(Ordering::Relaxed),
        elapsed_secs: secs,
        submitted: end.submitted - base.submitted,
        accepted,
        rejected,
        rejected_by_reason: shared
            .rejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        too_hard: c.too_hard.load(Ordering::Relaxed),
        shares_per_sec: (accepted + rejected) as f64 / secs,
        accepted_difficulty,
        hashrate: accepted_difficulty * 4_294_967_296.0 / secs,
        submit_round_trip: Latency::of(round_trips),
        blocks_made: made.len(),
        new_block_missed: expected.saturating_sub(block_latencies.len()),
        new_block_to_notify: Latency::of(block_latencies),
        totals: Totals {
            submitted: c.submitted.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        },
        blocks_found: take(&shared.blocks)
            .iter()
            .map(ToString::to_string)
            .collect(),
        accepted_hashes: take(&shared.accepted)
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn take<T>(m: &std::sync::Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

impl Report {
    /// The summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "{k:<28} {v}");
        };
        row(
            "miners connected",
            format!(
                "{} of {} (ramp-up {:.1} s)",
                self.connected, self.connections, self.ramp_up_secs
            ),
        );
        row(
            "connect failures / reconnects",
            format!("{} / {}", self.connect_failures, self.reconnects),
        );
        row("measured", format!("{:.1} s", self.elapsed_secs));
        row("shares submitted", self.submitted.to_string());
        row("accepted", self.accepted.to_string());
        row("rejected", self.rejected.to_string());
        for (why, n) in &self.rejected_by_reason {
            row(&format!("  {why}"), n.to_string());
        }
        if self.too_hard > 0 {
            row("not mined (too hard)", self.too_hard.to_string());
        }
        row("shares/s (answered)", format!("{:.0}", self.shares_per_sec));
        row(
            "hashrate credited",
            format!(
                "{:.4e} H/s (accepted difficulty {:.4e})",
                self.hashrate, self.accepted_difficulty
            ),
        );
        let l = &self.submit_round_trip;
        row(
            "submit round trip",
            format!(
                "p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  ({} samples)",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
        );
        if self.blocks_made > 0 {
            let l = &self.new_block_to_notify;
            row(
                "new block -> clean notify",
                format!(
                    "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} blocks, {} notifies, {} missed)",
                    l.p50_ms, l.p99_ms, l.max_ms, self.blocks_made, l.count, self.new_block_missed
                ),
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let l = Latency::of((1..=1000).map(|ms| ms * 1000).collect());
        assert_eq!(
            (l.count, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms),
            (1000, 500.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(Latency::of(vec![]), Latency::default());
        assert_eq!(Latency::of(vec![2500]).p99_ms, 2.5);
    }
}
