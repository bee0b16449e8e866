//! jobmaker's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sluice_service::Metrics;

/// Whether a job is clean (a new block) or a refresh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CleanLabel {
    pub(crate) clean: &'static str,
}

/// Where an empty-block job's template came from: the announced `header`
/// alone, or the `node` asked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FromLabel {
    pub(crate) from: &'static str,
}

/// Why a template was not mined on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

/// Jobs, leadership and the template → job latency.
#[derive(Clone)]
pub(crate) struct JobMetrics {
    pub(crate) jobs: Family<CleanLabel, Counter>,
    pub(crate) skipped: Family<ReasonLabel, Counter>,
    pub(crate) leader: Gauge,
    /// Empty-block jobs made at a node's announcement.
    pub(crate) empty_jobs: Family<FromLabel, Counter>,
    /// Seconds from the template's creation at gbtmaker to the broker's ack
    /// of the clean job made from it.
    pub(crate) latency: Histogram,
}

impl JobMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let buckets = [
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ];
        let m = JobMetrics {
            jobs: Family::default(),
            skipped: Family::default(),
            leader: Gauge::default(),
            empty_jobs: Family::default(),
            latency: Histogram::new(buckets),
        };
        metrics.register(|r| {
            r.register(
                "jobmaker_jobs_published",
                "Jobs acknowledged by the broker, clean (new block) or not",
                m.jobs.clone(),
            );
            r.register(
                "jobmaker_templates_skipped",
                "Templates not mined on, by reason: impossible, stale, unknown_node (not in [[nodes]]), other_network, unconfirmed_tip (from the tail, not its node's best block)",
                m.skipped.clone(),
            );
            r.register(
                "jobmaker_leader",
                "1 while this instance leads",
                m.leader.clone(),
            );
            r.register(
                "jobmaker_empty_jobs",
                "Clean jobs for an empty block made at the followed node's ZMQ announcement, before its template, by where it came from: header (rawblock alone) or node (getblockheader)",
                m.empty_jobs.clone(),
            );
            r.register(
                "jobmaker_template_to_job_seconds",
                "A new block's template created at gbtmaker to its clean job acknowledged",
                m.latency.clone(),
            );
        });
        m
    }

    pub(crate) fn published(&self, clean: bool) {
        let clean = if clean { "true" } else { "false" };
        self.jobs.get_or_create(&CleanLabel { clean }).inc();
    }

    pub(crate) fn empty_job(&self, from: &'static str) {
        self.empty_jobs.get_or_create(&FromLabel { from }).inc();
    }

    pub(crate) fn skipped(&self, reason: &'static str) {
        self.skipped.get_or_create(&ReasonLabel { reason }).inc();
    }
}
