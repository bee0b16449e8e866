//! sserver's Prometheus metrics. Labels are low-cardinality: share status
//! and rejection reason, never a worker or an address.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sluice_service::Metrics;

/// The `status` label of shares.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// accepted, block, stale, low_difficulty, duplicate, job_not_found, …
    pub status: &'static str,
}

/// The `reason` label of closed connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// miner, io, authorize_timeout, idle_timeout, write_timeout, protocol,
    /// banned, drained
    pub reason: &'static str,
}

/// Counters shared by every connection.
#[derive(Clone, Debug, Default)]
pub struct ServerMetrics {
    /// The server id in use (0 while it has none).
    pub server_id: Gauge,
    /// Open connections.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Connections refused (cap, rate limit, ban).
    pub connections_refused: Counter,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Stratum V2 (Noise) handshakes that failed or timed out.
    pub sv2_handshake_failures: Counter,
    /// Stratum V2 channels open.
    pub sv2_channels: Gauge,
    /// Farm-agent sessions open (BTCAgent protocol).
    pub agent_sessions: Gauge,
    /// Miners registered through farm agents.
    pub agent_workers: Gauge,
    /// Submits by outcome.
    pub shares: Family<StatusLabel, Counter>,
    /// Submits, all outcomes.
    pub submits: Counter,
    /// Accepted share difficulty, summed (for hashrate in the heartbeat).
    pub accepted_difficulty: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Block candidates published.
    pub solved: Counter,
    /// Lines that were not valid requests.
    pub bad_lines: Counter,
    /// IPs banned for invalid shares.
    pub bans: Counter,
    /// Shares waiting for the broker's acknowledgement.
    pub shares_in_flight: Gauge,
    /// Submits answered before the broker acknowledged their share (it did
    /// not within `accept_wait_ms`).
    pub answered_unacknowledged: Counter,
    /// Shares written to the spool (the broker did not acknowledge them
    /// within `accept_wait_ms`).
    pub spooled: Counter,
    /// Bytes in this run's spool segments.
    pub spool_bytes: Gauge,
    /// Shares the last run spooled, sent at this start.
    pub spool_replayed: Counter,
    /// Answers that waited for the broker because the spool refused their
    /// shares (full or unwritable).
    pub spool_refused: Counter,
    /// Events dropped because their queue was full.
    pub events_dropped: Counter,
    /// Jobs ignored because a newer jobmaker leader's epoch was seen.
    pub jobs_fenced: Counter,
    /// Connections closed, by why.
    pub closed: Family<ReasonLabel, Counter>,
}

impl ServerMetrics {
    /// Registers every metric under `sserver_`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = ServerMetrics::default();
        metrics.register(|r| {
            r.register(
                "sserver_shares_spooled",
                "Shares written to the local spool because the broker had not acknowledged them within accept_wait_ms",
                m.spooled.clone(),
            );
            r.register(
                "sserver_spool_bytes",
                "Bytes in this run's spool segments (shares not yet acknowledged by the broker)",
                m.spool_bytes.clone(),
            );
            r.register(
                "sserver_spool_replayed",
                "Shares the last run spooled, sent to the broker at this start",
                m.spool_replayed.clone(),
            );
            r.register(
                "sserver_spool_refused",
                "Answers that waited for the broker because the spool was full or unwritable",
                m.spool_refused.clone(),
            );
            r.register(
                "sserver_server_id",
                "The server id (extranonce1 prefix) in use, 0 while none",
                m.server_id.clone(),
            );
            r.register(
                "sserver_connections",
                "Open miner connections",
                m.connections.clone(),
            );
            r.register(
                "sserver_connections_accepted",
                "Connections accepted",
                m.connections_total.clone(),
            );
            r.register(
                "sserver_connections_refused",
                "Connections refused (cap, rate, ban)",
                m.connections_refused.clone(),
            );
            r.register(
                "sserver_connections_closed",
                "Connections closed, by reason",
                m.closed.clone(),
            );
            r.register(
                "sserver_tls_handshake_failures",
                "TLS handshakes that failed or timed out",
                m.tls_handshake_failures.clone(),
            );
            r.register(
                "sserver_sv2_handshake_failures",
                "Stratum V2 Noise handshakes that failed or timed out",
                m.sv2_handshake_failures.clone(),
            );
            r.register(
                "sserver_sv2_channels",
                "Stratum V2 channels open",
                m.sv2_channels.clone(),
            );
            r.register(
                "sserver_agent_sessions",
                "Farm-agent sessions open",
                m.agent_sessions.clone(),
            );
            r.register(
                "sserver_agent_workers",
                "Miners registered through farm agents",
                m.agent_workers.clone(),
            );
            r.register("sserver_shares", "Submits by outcome", m.shares.clone());
            r.register(
                "sserver_accepted_difficulty",
                "Sum of accepted share difficulty",
                m.accepted_difficulty.clone(),
            );
            r.register(
                "sserver_solved_shares",
                "Block candidates published",
                m.solved.clone(),
            );
            r.register(
                "sserver_bad_lines",
                "Lines that were not valid requests",
                m.bad_lines.clone(),
            );
            r.register(
                "sserver_bans",
                "IPs banned for invalid shares",
                m.bans.clone(),
            );
            r.register(
                "sserver_answered_unacknowledged",
                "Submits answered before the broker acknowledged their share (it did not within accept_wait_ms)",
                m.answered_unacknowledged.clone(),
            );
            r.register(
                "sserver_shares_in_flight",
                "Shares awaiting the broker's ack",
                m.shares_in_flight.clone(),
            );
            r.register(
                "sserver_jobs_fenced",
                "Jobs from a deposed jobmaker leader ignored (an epoch below the newest seen)",
                m.jobs_fenced.clone(),
            );
            r.register(
                "sserver_events_dropped",
                "Events dropped on a full queue",
                m.events_dropped.clone(),
            );
        });
        m
    }

    /// Counts one submit outcome.
    pub fn share(&self, status: &'static str) {
        self.shares.get_or_create(&StatusLabel { status }).inc();
        self.submits.inc();
    }
}
