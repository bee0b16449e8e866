//! The status heartbeat every service sends to the Event topic
//! (ARCHITECTURE.md §3): who it is, how long it has run, whether it is
//! healthy, and a few key figures. Operators and statshttpd read them.

use std::time::{Duration, Instant};

use sluice_core::record::{Event, EventKind, Figure, ServiceStatus};
use tokio_util::sync::CancellationToken;

use crate::{BusConfig, Producer, Topic};

/// How often a service beats (ARCHITECTURE.md §3).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// The sending service.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Service name (`gbtmaker`, ...).
    pub service: String,
    /// Instance name, unique within the service.
    pub instance: String,
    /// Host name.
    pub host: String,
    /// Software version.
    pub version: String,
}

impl Identity {
    /// `service` running on `host` as `instance`, at `version`.
    pub fn new(service: &str, instance: &str, host: &str, version: &str) -> Self {
        Identity {
            service: service.into(),
            instance: instance.into(),
            host: host.into(),
            version: version.into(),
        }
    }
}

/// Starts `service`'s heartbeat as `instance` on this host to the Event
/// topic, every [`HEARTBEAT_INTERVAL`] until the service stops, tracked for
/// its drain, and adds the bus's metrics (poison messages by topic) to its
/// `/metrics`: the wiring every service shares. `status` gives its health
/// and figures at each beat; the problems are its `/health` components not ok.
pub fn start_heartbeat<F>(
    ctx: &sluice_service::Context,
    producer: Producer,
    kafka: &BusConfig,
    service: &str,
    instance: &str,
    status: F,
) where
    F: Fn() -> (bool, Vec<Figure>) + Send + 'static,
{
    let identity = Identity::new(
        service,
        instance,
        &sluice_service::host_name(),
        env!("CARGO_PKG_VERSION"),
    );
    crate::metrics::register_metrics(&ctx.metrics);
    let health = ctx.health.clone();
    ctx.shutdown.tracker().spawn(heartbeat(
        producer,
        Topic::new(kafka.topics.event.clone()),
        identity,
        HEARTBEAT_INTERVAL,
        move || {
            let (healthy, figures) = status();
            let problems = health
                .snapshot()
                .into_iter()
                .filter(|(_, c)| !c.ok)
                .map(|(name, c)| format!("{name}: {}", c.detail))
                .collect();
            (healthy, figures, problems)
        },
        ctx.shutdown.token().clone(),
    ));
}

/// Sends a heartbeat every `interval` until `token` is cancelled, and a last
/// one (unhealthy, "stopping") on the way out. `status` gives the health,
/// figures and problems at each beat. A failed send is logged; the next beat
/// tries again.
pub async fn heartbeat<F>(
    producer: Producer,
    topic: Topic<Event>,
    identity: Identity,
    interval: Duration,
    status: F,
    token: CancellationToken,
) where
    F: Fn() -> (bool, Vec<Figure>, Vec<String>) + Send,
{
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    loop {
        let stopping = tokio::select! {
            () = token.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let (healthy, figures, problems) = if stopping {
            (false, Vec::new(), vec!["stopping".to_owned()])
        } else {
            status()
        };
        let event = Event {
            timestamp_ms: crate::now_ms(),
            kind: EventKind::ServiceStatus(ServiceStatus {
                service: identity.service.clone(),
                instance: identity.instance.clone(),
                host: identity.host.clone(),
                version: identity.version.clone(),
                uptime_secs: started.elapsed().as_secs(),
                healthy,
                figures,
                problems,
            }),
        };
        let send = producer.send(&topic, identity.instance.as_bytes(), &event);
        // A beat waits for an away broker (it would be stale when delivered,
        // but harmless) only until the service stops; the last one waits a
        // moment at most.
        let sent = if stopping {
            tokio::time::timeout(LAST_BEAT_WAIT, send).await.ok()
        } else {
            tokio::select! {
                () = token.cancelled() => None,
                sent = send => Some(sent),
            }
        };
        if let Some(Err(error)) = sent {
            tracing::warn!(%error, "heartbeat not sent");
        }
        if stopping {
            return;
        }
    }
}

/// How long the last heartbeat may wait for the broker.
const LAST_BEAT_WAIT: Duration = Duration::from_secs(2);
