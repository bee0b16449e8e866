//! statshttpd's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_service::Metrics;

#[derive(Clone)]
pub(crate) struct StatsMetrics {
    pub(crate) shares: Counter,
    pub(crate) already_logged: Counter,
    pub(crate) flushes: Counter,
    pub(crate) flush_failures: Counter,
    pub(crate) initializing: Gauge,
    pub(crate) workers: Gauge,
    pub(crate) users: Gauge,
    pub(crate) consumer_lag: Gauge,
    /// Milliseconds the last successful flush took.
    pub(crate) flush_ms: Gauge,
}

impl StatsMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let m = StatsMetrics {
            shares: Counter::default(),
            already_logged: Counter::default(),
            flushes: Counter::default(),
            flush_failures: Counter::default(),
            initializing: Gauge::default(),
            workers: Gauge::default(),
            users: Gauge::default(),
            consumer_lag: Gauge::default(),
            flush_ms: Gauge::default(),
        };
        m.initializing.set(1);
        metrics.register(|r| {
            for (name, help, c) in [
                ("statshttpd_shares", "Shares logged and counted", &m.shares),
                (
                    "statshttpd_shares_already_logged",
                    "Redelivered shares the share log already held",
                    &m.already_logged,
                ),
                ("statshttpd_flushes", "Successful MySQL flushes", &m.flushes),
                (
                    "statshttpd_flush_failures",
                    "MySQL flushes that failed (retried at the next interval)",
                    &m.flush_failures,
                ),
            ] {
                r.register(name, help, c.clone());
            }
            for (name, help, g) in [
                (
                    "statshttpd_initializing",
                    "1 until the windows are rebuilt and the topic caught up",
                    &m.initializing,
                ),
                (
                    "statshttpd_workers",
                    "Workers with a share in the last hour",
                    &m.workers,
                ),
                (
                    "statshttpd_users",
                    "Users with a share in the last hour",
                    &m.users,
                ),
                (
                    "statshttpd_consumer_lag",
                    "Shares in the topic not yet read",
                    &m.consumer_lag,
                ),
                (
                    "statshttpd_flush_ms",
                    "Duration of the last flush",
                    &m.flush_ms,
                ),
            ] {
                r.register(name, help, g.clone());
            }
        });
        m
    }
}
