//! The agent's Prometheus metrics: the farm's totals, the uplink's traffic,
//! and per miner (`worker` label: a farm's own agent serves one farm, so a
//! series per miner is what its operator wants to see).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sluice_service::Metrics;

/// The `status` label of shares.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// accepted, rejected (by the pool), low_difficulty and unknown_job
    /// (refused here), gap_lost (kept while the uplink was down, then
    /// unplaceable).
    pub status: &'static str,
}

/// The `worker` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    /// The miner's worker name.
    pub worker: String,
}

/// The agent's counters.
#[derive(Clone, Debug, Default)]
pub struct AgentMetrics {
    /// Miners connected and authorized.
    pub miners: Gauge,
    /// Upstream sessions connected and authorized.
    pub upstream_connected: Gauge,
    /// Shares by outcome.
    pub shares: Family<StatusLabel, Counter>,
    /// Accepted difficulty per miner (its hashrate: × 2^32 per second).
    pub worker_accepted_difficulty: Family<WorkerLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Accepted shares per miner.
    pub worker_accepted: Family<WorkerLabel, Counter>,
    /// Bytes written to the pool.
    pub uplink_bytes_sent: Counter,
    /// Bytes read from the pool.
    pub uplink_bytes_received: Counter,
    /// Writes to the pool (each one or more TCP segments).
    pub uplink_writes: Counter,
    /// Jobs received from the pool.
    pub jobs: Counter,
    /// Shares waiting for the uplink.
    pub gap_shares: Gauge,
    /// Upstream connections made (the first and every reconnect).
    pub upstream_connects: Counter,
}

impl AgentMetrics {
    /// Registers every metric under `agent_`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = AgentMetrics::default();
        metrics.register(|r| {
            r.register(
                "agent_miners",
                "Miners connected and authorized",
                m.miners.clone(),
            );
            r.register(
                "agent_upstream_connected",
                "Upstream sessions connected and authorized",
                m.upstream_connected.clone(),
            );
            r.register("agent_shares", "Shares by outcome", m.shares.clone());
            r.register(
                "agent_worker_accepted_difficulty",
                "Accepted share difficulty per miner",
                m.worker_accepted_difficulty.clone(),
            );
            r.register(
                "agent_worker_accepted",
                "Accepted shares per miner",
                m.worker_accepted.clone(),
            );
            r.register(
                "agent_uplink_sent_bytes",
                "Bytes written to the pool",
                m.uplink_bytes_sent.clone(),
            );
            r.register(
                "agent_uplink_received_bytes",
                "Bytes read from the pool",
                m.uplink_bytes_received.clone(),
            );
            r.register(
                "agent_uplink_writes",
                "Writes to the pool",
                m.uplink_writes.clone(),
            );
            r.register("agent_jobs", "Jobs received from the pool", m.jobs.clone());
            r.register(
                "agent_gap_shares",
                "Shares waiting for the uplink",
                m.gap_shares.clone(),
            );
            r.register(
                "agent_upstream_connects",
                "Upstream connections made",
                m.upstream_connects.clone(),
            );
        });
        m
    }

    /// Counts one share outcome.
    pub fn share(&self, status: &'static str) {
        self.shares.get_or_create(&StatusLabel { status }).inc();
    }
}
