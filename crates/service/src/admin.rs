//! The admin HTTP server: `/metrics` (Prometheus text) and `/health` (JSON,
//! 200 when every component is ok, 503 otherwise). Bound to loopback by default.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::Health;

/// The service's Prometheus registry. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// Registers metrics: `metrics.register(|r| r.register("name", "help", counter.clone()))`.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[derive(Clone)]
struct AdminState {
    health: Health,
    metrics: Metrics,
}

/// A bound, not yet serving, admin server.
#[derive(Debug)]
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port).
    /// `/metrics` also carries `sluice_health{component}`, 1 while that
    /// component of `/health` is ok.
    pub async fn bind(addr: SocketAddr, health: Health, metrics: Metrics) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let collector = HealthCollector(health.clone());
        metrics.register(|r| r.register_collector(Box::new(collector)));
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/health", get(serve_health))
            .with_state(AdminState { health, metrics });
        Ok(AdminServer { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled.
    pub async fn serve(self, stop: CancellationToken) {
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "admin server failed");
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: String,
}

/// `/health` as a gauge per component, read at each scrape.
#[derive(Debug)]
struct HealthCollector(Health);

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<ComponentLabel, Gauge>::default();
        for (component, state) in self.0.snapshot() {
            family
                .get_or_create(&ComponentLabel { component })
                .set(i64::from(state.ok));
        }
        let metric = encoder.encode_descriptor(
            "sluice_health",
            "1 while the component is ok in /health, 0 while not",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

async fn serve_metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn serve_health(State(s): State<AdminState>) -> impl IntoResponse {
    let status = if s.health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(s.health.snapshot()))
}
