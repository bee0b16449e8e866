//! blkmaker's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sluice_core::record::BlockStatus;
use sluice_service::Metrics;

/// The standing a found block moved to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    pub(crate) status: &'static str,
}

/// Counters, gauges and the submit latency.
#[derive(Clone)]
pub(crate) struct BlkMetrics {
    pub(crate) solved: Counter,
    pub(crate) replays: Counter,
    pub(crate) submitted: Counter,
    pub(crate) accepted: Counter,
    pub(crate) rejected: Counter,
    pub(crate) wrong_chain: Counter,
    pub(crate) template_unknown: Counter,
    pub(crate) unassembled: Counter,
    pub(crate) too_old: Counter,
    pub(crate) recorded: Counter,
    pub(crate) confirmation_rounds: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) templates: Gauge,
    /// Seconds from the share's server time to the first node's answer.
    pub(crate) latency: Histogram,
    /// Found blocks whose standing changed, by the new one.
    pub(crate) standing: Family<StatusLabel, Counter>,
}

impl BlkMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let buckets = [
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0,
        ];
        let m = BlkMetrics {
            solved: Counter::default(),
            replays: Counter::default(),
            submitted: Counter::default(),
            accepted: Counter::default(),
            rejected: Counter::default(),
            wrong_chain: Counter::default(),
            template_unknown: Counter::default(),
            unassembled: Counter::default(),
            too_old: Counter::default(),
            recorded: Counter::default(),
            confirmation_rounds: Counter::default(),
            in_flight: Gauge::default(),
            templates: Gauge::default(),
            latency: Histogram::new(buckets),
            standing: Family::default(),
        };
        metrics.register(|r| {
            let counters = [
                (
                    "blkmaker_solved_shares",
                    "Solved shares consumed",
                    &m.solved,
                ),
                (
                    "blkmaker_replays",
                    "Solved shares already handled by this process",
                    &m.replays,
                ),
                (
                    "blkmaker_blocks_submitted",
                    "Blocks submitted to the nodes",
                    &m.submitted,
                ),
                (
                    "blkmaker_blocks_accepted",
                    "Blocks at least one node holds as valid",
                    &m.accepted,
                ),
                (
                    "blkmaker_blocks_rejected",
                    "Blocks every node refused or could not get",
                    &m.rejected,
                ),
                (
                    "blkmaker_blocks_wrong_chain",
                    "Blocks every node refused as prev-blk-not-found: mined on a chain the nodes do not hold",
                    &m.wrong_chain,
                ),
                (
                    "blkmaker_template_unknown",
                    "Solved shares whose template was not kept",
                    &m.template_unknown,
                ),
                (
                    "blkmaker_unassembled",
                    "Solved shares that could not be made into a block",
                    &m.unassembled,
                ),
                (
                    "blkmaker_too_old",
                    "Solved shares skipped as older than max_share_age_secs",
                    &m.too_old,
                ),
                ("blkmaker_rows_recorded", "found_blocks writes", &m.recorded),
                (
                    "blkmaker_confirmation_rounds",
                    "Rounds of the confirmation watch (found blocks and the chain looked up on the nodes)",
                    &m.confirmation_rounds,
                ),
            ];
            for (name, help, c) in counters {
                r.register(name, help, c.clone());
            }
            r.register(
                "blkmaker_in_flight",
                "Solved shares being handled",
                m.in_flight.clone(),
            );
            r.register(
                "blkmaker_templates_kept",
                "Templates kept",
                m.templates.clone(),
            );
            r.register(
                "blkmaker_submit_latency_seconds",
                "Share's server time to the first node's answer",
                m.latency.clone(),
            );
            r.register(
                "blkmaker_block_standing_changes",
                "Found blocks that became pending, confirmed or orphaned",
                m.standing.clone(),
            );
        });
        m
    }

    /// The counter of blocks that moved to `status`.
    pub(crate) fn standing_changes(&self, status: BlockStatus) -> Counter {
        self.standing
            .get_or_create(&StatusLabel {
                status: status.as_str(),
            })
            .clone()
    }
}
