//! The Event topic (sserver heartbeats, miner connects) and the watch on the
//! rest of the pool's infrastructure for `/api/v1/health`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_bus::{TailConsumer, Topic};
use sluice_core::record::{Event, EventKind, ServiceStatus};
use sluice_node::NodeRpc;
use sluice_service::Backoff;
use tokio_util::sync::CancellationToken;

use crate::{Stats, lock};

/// A server is up while its heartbeats (every 10 s) keep coming.
pub(crate) const SERVER_UP_MS: u64 = 30_000;

/// The last heartbeat of every service instance, by (service, instance):
/// `/api/v1/services` lists those heard in the last day, `/api/v1/servers`
/// every sserver ever heard.
#[derive(Debug, Default)]
pub(crate) struct Services {
    by_name: BTreeMap<(String, String), (u64, ServiceStatus)>,
}

/// An instance not heard for a day is left out of `/api/v1/services`
/// (renamed, removed).
const SERVICE_FORGOTTEN_MS: u64 = 86_400_000;

impl Services {
    fn heard(&mut self, at_ms: u64, status: ServiceStatus) {
        let key = (status.service.clone(), status.instance.clone());
        if self.by_name.get(&key).is_none_or(|(t, _)| *t <= at_ms) {
            self.by_name.insert(key, (at_ms, status));
        }
    }

    /// Every instance heard in the last day at `now_ms`.
    pub(crate) fn recent(&self, now_ms: u64) -> Vec<(u64, ServiceStatus)> {
        self.by_name
            .values()
            .filter(|(at, _)| now_ms.saturating_sub(*at) < SERVICE_FORGOTTEN_MS)
            .cloned()
            .collect()
    }

    /// Every instance of `service`, by instance name.
    pub(crate) fn of(&self, service: &str) -> Vec<(u64, ServiceStatus)> {
        self.by_name
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, beat)| beat.clone())
            .collect()
    }
}

/// Follows the Event topic from its last `events_tail` messages.
pub(crate) async fn follow(stats: Arc<Stats>, token: CancellationToken) {
    let topic = Topic::<Event>::new(stats.config.kafka.topics.event.clone());
    let consumer = Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
        .retry(
            &token,
            || TailConsumer::new(&stats.config.kafka, &topic, stats.config.events_tail),
            |error, _| stats.health.set("events", false, error.to_string()),
        )
        .await;
    let Some(consumer) = consumer else { return };
    stats
        .health
        .set("events", true, "following the Event topic");
    loop {
        let record = tokio::select! {
            () = token.cancelled() => return,
            r = consumer.next() => r,
        };
        match record {
            Ok(r) => handle(&stats, r.value),
            Err(error) => {
                stats.health.set("events", false, error.to_string());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn handle(stats: &Stats, event: Event) {
    match event.kind {
        EventKind::ServiceStatus(s) => lock(&stats.services).heard(event.timestamp_ms, s),
        EventKind::MinerConnected(m) => {
            lock(&stats.agents).insert((m.user_id, m.worker_id), (m.worker_name, m.miner_agent));
        }
        _ => {}
    }
}

/// Every 10 s: MySQL, ZooKeeper and the nodes answer or not, and how far
/// behind the Share topic's end the share log is.
pub(crate) async fn watch_infrastructure(stats: Arc<Stats>, token: CancellationToken) {
    let nodes: Vec<_> = stats
        .config
        .nodes
        .iter()
        .map(|n| (n.name.clone(), NodeRpc::new(n, Duration::from_secs(5))))
        .collect();
    let mut zk = None;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        match stats.store.ping().await {
            Ok(()) => stats
                .health
                .set("mysql", true, format!("{} answers", stats.store.addr())),
            Err(e) => stats.health.set("mysql", false, e.to_string()),
        }
        if let Some(config) = &stats.config.zookeeper {
            zk = check_zookeeper(&stats, config, zk.take()).await;
        }
        let mut height = 0;
        for (name, rpc) in &nodes {
            let component = format!("node:{name}");
            let answer = match rpc {
                Ok(rpc) => rpc.block_count().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(h) => {
                    height = height.max(h);
                    stats.health.set(&component, true, format!("height {h}"));
                }
                Err(e) => stats.health.set(&component, false, e),
            }
        }
        if height > 0 {
            stats.node_height.store(height, Ordering::SeqCst);
        }
        check_lag(&stats).await;
    }
}

async fn check_zookeeper(
    stats: &Stats,
    config: &sluice_coord::ZkConfig,
    session: Option<sluice_coord::Coord>,
) -> Option<sluice_coord::Coord> {
    let session = match session {
        Some(s) if !s.state().is_terminated() => s,
        _ => match sluice_coord::Coord::connect(&config.coord()).await {
            Ok(s) => s,
            Err(e) => {
                stats.health.set("zookeeper", false, e.to_string());
                return None;
            }
        },
    };
    let state = session.state();
    let ok = matches!(state, sluice_coord::SessionState::SyncConnected);
    stats.health.set(
        "zookeeper",
        ok,
        format!("{} session {state:?}", config.connect),
    );
    Some(session)
}

async fn check_lag(stats: &Stats) {
    let topic = &stats.config.kafka.topics.share;
    match sluice_bus::fetch_watermarks(&stats.config.kafka, topic).await {
        Ok(marks) => {
            let positions = lock(&stats.positions).clone();
            let lag: HashMap<i32, i64> = marks
                .iter()
                .map(|&(p, low, high)| {
                    (p, high - positions.get(&p).copied().unwrap_or(low).max(low))
                })
                .collect();
            let total: i64 = lag.values().sum();
            stats.metrics.consumer_lag.set(total);
            let detail = format!("{total} shares behind the end of {topic}");
            stats.health.set("consumer_lag", true, detail);
        }
        Err(e) => stats.health.set("consumer_lag", false, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(instance: &str, connections: f64) -> ServiceStatus {
        ServiceStatus {
            service: "sserver".into(),
            instance: instance.into(),
            host: "h".into(),
            version: "0".into(),
            uptime_secs: 1,
            healthy: true,
            figures: vec![sluice_core::record::Figure {
                name: "connections".into(),
                value: connections,
            }],
            problems: Vec::new(),
        }
    }

    #[test]
    fn the_newest_heartbeat_of_each_server_wins() {
        let mut s = Services::default();
        s.heard(2_000, beat("a", 2.0));
        s.heard(1_000, beat("a", 1.0));
        s.heard(1_500, beat("b", 5.0));
        let servers = s.of("sserver");
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].1.instance, "a");
        assert_eq!(servers[0].1.figures[0].value, 2.0);
    }
}
