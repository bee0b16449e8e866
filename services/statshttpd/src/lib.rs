//! statshttpd: what the operator sees, and what a payout system needs.
//!
//! - Shares (`ingest.rs`): every Share is appended to the share log
//!   (`sharelog.rs`, daily files that record each share's topic offset, so
//!   each is written once), then counted into the live windows (`live.rs`,
//!   5 m / 15 m / 1 h per worker, user, sserver and pool) and the hourly and
//!   daily totals (`tally.rs`). At start, today's and yesterday's files
//!   rebuild both, and the topic is read on from where the files end (or the
//!   group's committed offset). Until it has caught up with the topic's end
//!   as it was at start, the service is "initializing": no flush, and the
//!   btcpool endpoints say so.
//! - MySQL (`flush.rs`): every `flush_interval_secs`, `mining_workers`
//!   (batched upserts, worker 0 = the user) and the changed `stats_*` rows
//!   (absolute totals, so rewriting is harmless). MySQL down: the flush is
//!   retried at the next interval; nothing is lost, since windows and totals
//!   live in memory and in the share log.
//! - Events (`events.rs`): sserver heartbeats (the servers view) and miner
//!   connects (worker name and miner agent in `mining_workers`).
//! - HTTP (`api.rs`): btcpool's `/`, `/worker_status`, `/flush_db_time`, and
//!   the JSON `/api/v1/...`, plus `/metrics`.
//! - `sharelog` (the second binary): replay a day's file into the stats
//!   tables, dump it, or re-verify its shares against the Job topic.

mod api;
mod clock;
mod earnings;
mod events;
mod flush;
mod ingest;
mod live;
mod metrics;
mod minutes;
pub mod params;
pub mod replay;
mod round;
pub mod sharelog;
mod tally;
mod web;
mod window;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;
use sluice_bus::BusConfig;
use sluice_coord::ZkConfig;
use sluice_node::NodeConfig;
use sluice_service::{CommonConfig, Context, Health, Metrics, Validate};
pub use sluice_store::MysqlConfig;
use sluice_store::Store;

pub use crate::clock::{Clock, day_of, hour_of, parse_day};
use crate::events::Services;
use crate::live::Live;
use crate::metrics::StatsMetrics;
use crate::minutes::Minutes;
use crate::tally::Tally;

/// statshttpd's configuration (deploy/config/statshttpd.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9106>")]
    pub service: CommonConfig,
    /// `[kafka]`.
    #[serde(default)]
    pub kafka: BusConfig,
    /// `[mysql]`.
    #[serde(default)]
    pub mysql: MysqlConfig,
    /// `[zookeeper]`: only watched, for `/api/v1/health`.
    #[serde(default)]
    pub zookeeper: Option<ZkConfig>,
    /// Nodes watched for `/api/v1/health` and the network height.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// The HTTP API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the daily share log files go.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Share consumer group (committed offsets: resume point and lag).
    /// Empty means `sluice-statshttpd-<instance>`.
    #[serde(default)]
    pub group: String,
    /// mainnet, testnet, testnet4, signet or regtest: the block subsidy in
    /// the PPS earnings.
    #[serde(default = "default_network")]
    pub network: String,
    /// Seconds between MySQL flushes.
    #[serde(default = "default_flush")]
    pub flush_interval_secs: u64,
    /// Events read back at start (heartbeats, miner connects).
    #[serde(default = "default_events_tail")]
    pub events_tail: i64,
    /// Keep each worker's minute statistics for 24 hours (11.25 KiB a
    /// worker); the pool's, servers' and users' are always kept.
    #[serde(default = "sluice_service::default_true")]
    pub worker_minutes: bool,
    /// Where the dashboard's chart library (uPlot's `dist`, installed from
    /// npm by install/deps.sh) is.
    #[serde(default = "default_web_dir")]
    pub web_dir: PathBuf,
}

fn default_web_dir() -> PathBuf {
    "/opt/sluice-tools/web/node_modules/uplot/dist".into()
}

fn default_listen() -> SocketAddr {
    ([127, 0, 0, 1], 8080).into()
}
fn default_data_dir() -> PathBuf {
    "/var/lib/sluice/sharelog".into()
}
fn default_network() -> String {
    "regtest".into()
}
fn default_flush() -> u64 {
    15
}
fn default_events_tail() -> i64 {
    20_000
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.mysql.validate()?;
        sluice_core::network::parse_network(&self.network)?;
        if let Some(zk) = &self.zookeeper {
            zk.validate()?;
        }
        if !self.nodes.is_empty() {
            sluice_node::validate_nodes(&self.nodes)?;
        }
        if self.flush_interval_secs == 0 {
            return Err("flush_interval_secs must be positive".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("data_dir must name a directory".into());
        }
        Ok(())
    }
}

impl Config {
    /// The Share consumer group.
    pub fn group(&self) -> String {
        if self.group.is_empty() {
            format!("sluice-statshttpd-{}", self.service.instance)
        } else {
            self.group.clone()
        }
    }

    fn bitcoin_network(&self) -> bitcoin::Network {
        sluice_core::network::parse_network(&self.network).unwrap_or(bitcoin::Network::Regtest)
    }
}

/// Everything the tasks share.
pub(crate) struct Stats {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) live: Mutex<Live>,
    pub(crate) tally: Mutex<Tally>,
    /// Every service instance's last heartbeat.
    pub(crate) services: Mutex<Services>,
    /// The last 24 hours, minute by minute.
    pub(crate) minutes: Mutex<Minutes>,
    /// The round under way.
    pub(crate) round: Mutex<round::Round>,
    /// The work behind blocks, waiting to be written to `block_work`.
    pub(crate) block_work: Mutex<Vec<sluice_store::BlockWork>>,
    /// Miner connects waiting to be written to `mining_workers`.
    pub(crate) agents: Mutex<HashMap<flush::WorkerKey, flush::NameAndAgent>>,
    /// Workers forgotten by the windows whose zero rows are not written yet.
    pub(crate) gone: Mutex<Vec<(u32, i64, Box<str>)>>,
    pub(crate) initialized: AtomicBool,
    /// Unix seconds of the last successful `mining_workers` flush.
    pub(crate) flushed_at: AtomicU64,
    pub(crate) started_ms: u64,
    pub(crate) requests: AtomicU64,
    pub(crate) reply_bytes: AtomicU64,
    /// Network height from the nodes (0 until one answers).
    pub(crate) node_height: AtomicU64,
    /// The next Share offset to read, per partition (as last committed).
    pub(crate) positions: Mutex<HashMap<i32, i64>>,
    pub(crate) store: Store,
    pub(crate) health: Health,
    pub(crate) metrics: StatsMetrics,
    pub(crate) registry: Metrics,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stats {
    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::SeqCst)
    }
}

/// The service on the system clock.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    run_with_clock(config, ctx, Clock::system()).await
}

/// The service on `clock` (tests move a manual one).
pub async fn run_with_clock(config: Config, ctx: Context, clock: Clock) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let store = Store::new(&config.mysql.url)?;
    let network = config.bitcoin_network();
    let stats = Arc::new(Stats {
        started_ms: clock.now_ms(),
        clock,
        live: Mutex::default(),
        tally: Mutex::new(Tally::new(network)),
        minutes: Mutex::new(Minutes::new(config.worker_minutes)),
        round: Mutex::default(),
        block_work: Mutex::default(),
        services: Mutex::default(),
        agents: Mutex::default(),
        gone: Mutex::default(),
        initialized: AtomicBool::new(false),
        flushed_at: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        reply_bytes: AtomicU64::new(0),
        node_height: AtomicU64::new(0),
        positions: Mutex::default(),
        store,
        health: ctx.health.clone(),
        metrics: StatsMetrics::register(&ctx.metrics),
        registry: ctx.metrics.clone(),
        config,
    });
    let token = ctx.shutdown.token().clone();
    let tracker = ctx.shutdown.tracker();
    tracing::info!(listen = %stats.config.listen, data_dir = %stats.config.data_dir.display(),
        group = stats.config.group(), "statshttpd starting");
    tracker.spawn(api::serve(listener, stats.clone(), token.clone()));
    tracker.spawn(events::follow(stats.clone(), token.clone()));
    tracker.spawn(events::watch_infrastructure(stats.clone(), token.clone()));
    tracker.spawn(flush::every_interval(stats.clone(), token.clone()));
    sluice_bus::start_heartbeat(
        &ctx,
        sluice_bus::Producer::new(&stats.config.kafka, 5)?,
        &stats.config.kafka,
        "statshttpd",
        &stats.config.service.instance,
        {
            let stats = stats.clone();
            move || {
                let (users, workers) = lock(&stats.live).counts();
                let figure = sluice_core::record::Figure::new;
                (
                    stats.health.is_healthy() && stats.is_initialized(),
                    vec![
                        figure("users", users as f64),
                        figure("workers", workers as f64),
                        figure("shares", stats.metrics.shares.get() as f64),
                        figure("consumer_lag", stats.metrics.consumer_lag.get() as f64),
                    ],
                )
            }
        },
    );
    let result = ingest::run(stats.clone(), token.clone()).await;
    token.cancel();
    result
}

/// What `benches/stats.rs` measures, reachable from outside the crate.
#[doc(hidden)]
pub mod bench_support {
    use sluice_core::record::ShareRecord;
    use sluice_store::{Store, StoreError};

    /// The live windows.
    #[derive(Default)]
    pub struct LiveWindows(crate::live::Live);

    impl LiveWindows {
        /// Counts a share at `now_ms`.
        pub fn apply(&mut self, share: &ShareRecord, now_ms: u64) {
            self.0.apply(share, now_ms);
        }

        /// (users, workers).
        pub fn counts(&self) -> (usize, usize) {
            self.0.counts()
        }

        /// Writes every worker's and user's `mining_workers` row; returns
        /// how many.
        pub async fn flush(&self, store: &Store, now_ms: u64) -> Result<usize, StoreError> {
            let rows = self.0.rows(now_ms);
            crate::flush::write_workers(store, &rows).await?;
            Ok(rows.len())
        }
    }

    /// The 24-hour minute statistics.
    pub struct MinuteSeries(crate::minutes::Minutes);

    impl MinuteSeries {
        /// With or without every worker's minutes.
        pub fn new(per_worker: bool) -> Self {
            MinuteSeries(crate::minutes::Minutes::new(per_worker))
        }

        /// Counts a share at `now_ms`.
        pub fn apply(&mut self, s: &ShareRecord, now_ms: u64) {
            let kind = crate::live::kind(s.status);
            self.0.apply(
                (s.user_id, s.worker_id, s.server_id),
                kind,
                s.share_difficulty,
                s.timestamp_ms,
                now_ms,
            );
        }
    }

    /// The hourly and daily totals.
    pub struct Totals(crate::tally::Tally);

    impl Totals {
        /// Regtest totals.
        pub fn new() -> Self {
            Totals(crate::tally::Tally::new(bitcoin::Network::Regtest))
        }

        /// Counts a share.
        pub fn apply(&mut self, share: &ShareRecord) {
            self.0.apply(share);
        }
    }

    impl Default for Totals {
        fn default() -> Self {
            Self::new()
        }
    }
}
