//! gbtmaker's Prometheus metrics (low-cardinality: no per-node labels).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use sluice_service::Metrics;

/// Counters and the latency histogram.
#[derive(Clone)]
pub(crate) struct GbtMetrics {
    pub(crate) published: Counter,
    pub(crate) empty_published: Counter,
    pub(crate) zmq_misses: Counter,
    /// Seconds from the trigger (ZMQ hashblock, long-poll return or poll) to the broker's ack.
    pub(crate) latency: Histogram,
}

impl GbtMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let buckets = [
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ];
        let m = GbtMetrics {
            published: Counter::default(),
            empty_published: Counter::default(),
            zmq_misses: Counter::default(),
            latency: Histogram::new(buckets),
        };
        metrics.register(|r| {
            r.register(
                "gbtmaker_templates_published",
                "Templates published to Kafka",
                m.published.clone(),
            );
            r.register(
                "gbtmaker_empty_templates_published",
                "Empty-block templates published on a ZMQ block announcement",
                m.empty_published.clone(),
            );
            r.register(
                "gbtmaker_zmq_misses",
                "New tips ZMQ did not announce (subscription reconnected)",
                m.zmq_misses.clone(),
            );
            r.register(
                "gbtmaker_publish_latency_seconds",
                "Trigger to broker acknowledgement",
                m.latency.clone(),
            );
        });
        m
    }
}
