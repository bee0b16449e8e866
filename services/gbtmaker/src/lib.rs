//! gbtmaker: block templates from every configured node to the RawGbt topic.
//!
//! One task per node polls `getblocktemplate` every `poll_interval_ms`, and at
//! once when the node's ZMQ `hashblock` fires (or, without ZMQ, when a long
//! poll returns on a new tip). Each template is published as typed RawGbt
//! keyed by its content id; jobmaker picks among nodes and templates. A dead
//! or slow node is retried with backoff and shown in `/health`; it never
//! stops the others or the service.

mod metrics;
mod node;

use std::time::Duration;

use serde::Deserialize;
use sluice_bus::{BusConfig, Producer, Topic, start_heartbeat};
use sluice_core::record::Figure;
use sluice_service::{CommonConfig, Context, Validate};

pub use sluice_node::{NodeConfig, NodeError};

/// gbtmaker's configuration (deploy/config/gbtmaker.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9101>")]
    pub service: CommonConfig,
    /// `[kafka]`.
    #[serde(default)]
    pub kafka: BusConfig,
    /// The nodes to take templates from.
    pub nodes: Vec<NodeConfig>,
    /// Poll interval when no block arrives.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Timeout of one `getblocktemplate` (large mempools take seconds).
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_secs: u64,
    /// When ZMQ announces a block, publish a template for an empty block on
    /// it before fetching the node's template (btcpool's and viabtc's
    /// empty-block jobs): miners move to the new tip without waiting for
    /// `getblocktemplate`. The empty block pays the subsidy only; the full
    /// template replaces it as soon as it exists. Needs ZMQ.
    #[serde(default)]
    pub empty_block_jobs: bool,
}

fn default_poll_ms() -> u64 {
    5_000
}
fn default_rpc_timeout() -> u64 {
    30
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        sluice_node::validate_nodes(&self.nodes)?;
        if self.poll_interval_ms < 100 || self.rpc_timeout_secs == 0 {
            return Err(
                "poll_interval_ms must be at least 100 and rpc_timeout_secs positive".into(),
            );
        }
        Ok(())
    }
}

/// The service: one loop per node until shutdown.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    // linger 0: a new template is news; nothing is gained by batching.
    let producer = Producer::new(&config.kafka, 0)?;
    let shared = node::Shared {
        producer: producer.clone(),
        topic: Topic::new(config.kafka.topics.raw_gbt.clone()),
        health: ctx.health.clone(),
        metrics: metrics::GbtMetrics::register(&ctx.metrics),
        poll_interval: Duration::from_millis(config.poll_interval_ms),
        rpc_timeout: Duration::from_secs(config.rpc_timeout_secs),
        empty_block_jobs: config.empty_block_jobs,
    };
    let (health, published) = (ctx.health.clone(), shared.metrics.published.clone());
    start_heartbeat(
        &ctx,
        producer.clone(),
        &config.kafka,
        "gbtmaker",
        &config.service.instance,
        move || {
            let figure = Figure::new("templates_published", published.get() as f64);
            (health.is_healthy(), vec![figure])
        },
    );
    ctx.shutdown.tracker().spawn({
        let health = ctx.health.clone();
        sluice_bus::watch_delivery(
            producer.clone(),
            move |ok, detail| health.set("kafka_templates", ok, detail),
            ctx.shutdown.token().clone(),
        )
    });
    for node in config.nodes {
        let token = ctx.shutdown.token().clone();
        ctx.shutdown
            .tracker()
            .spawn(node::run(node, shared.clone(), token));
    }
    ctx.shutdown.token().cancelled().await;
    producer.flush(Duration::from_secs(2)).await.ok();
    Ok(())
}
