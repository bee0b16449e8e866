//! The bus's own metrics, shared by every consumer in the process:
//! messages skipped as poison, by topic. Every service exports them on its
//! `/metrics` (registered by [`crate::start_heartbeat`], the bus wiring
//! every service has).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// A topic's name as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabel {
    pub(crate) topic: String,
}

/// Messages consumers of this process skipped because they did not decode
/// (or decoded to something unusable, as a service reports with
/// [`count_poison`]), by topic.
pub(crate) fn poison() -> &'static Family<TopicLabel, Counter> {
    static POISON: OnceLock<Family<TopicLabel, Counter>> = OnceLock::new();
    POISON.get_or_init(Family::default)
}

/// Counts a message of `topic` a service skipped as unusable after it
/// decoded (a Job whose merkle branch cannot be, a template that does not
/// convert): the same counter as undecodable ones.
pub fn count_poison(topic: &str) {
    poison()
        .get_or_create(&TopicLabel {
            topic: topic.to_owned(),
        })
        .inc();
}

/// Adds the bus's metrics to `metrics` (once per registry).
pub fn register_metrics(metrics: &sluice_service::Metrics) {
    metrics.register(|r| {
        r.register(
            "sluice_bus_poison_messages",
            "Messages skipped as undecodable or unusable, by topic",
            poison().clone(),
        );
    });
}
