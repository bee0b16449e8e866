//! What the bus's tests and its hop benchmark send.

use sluice_core::record::{Event, EventKind, Figure, ServiceStatus};

/// A small heartbeat whose timestamp and uptime are `n`.
pub(crate) fn event(n: u64) -> Event {
    Event {
        timestamp_ms: n,
        kind: EventKind::ServiceStatus(ServiceStatus {
            service: "test".into(),
            instance: format!("i{n}"),
            host: "localhost".into(),
            version: "0".into(),
            uptime_secs: n,
            healthy: true,
            figures: vec![Figure {
                name: "n".into(),
                value: n as f64,
            }],
            problems: Vec::new(),
        }),
    }
}
