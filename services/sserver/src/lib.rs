//! sserver: the Stratum V1 server miners connect to.
//!
//! - A 1-byte server id from ZooKeeper (`<root>/sserver/ids/<id>`), or fixed
//!   in the config, prefixes every extranonce1; if the id's node is lost the
//!   server drains its miners (`client.reconnect`) and takes an id again, so
//!   two servers never hand out the same extranonce1.
//! - Jobs come from the tail of the Job topic ([`jobs`]) and fan out to
//!   connections through a `watch` channel; the last job keeps being served
//!   if Kafka stalls.
//! - Each connection is one task ([`connection`]) around the sans-IO session
//!   of crates/stratum; shares are checked with crates/core.
//! - Checked shares, block candidates and miner events leave through the
//!   [`sinks`]; users come from MySQL ([`users`]).
//! - SIGTERM drains: no new connections, `client.reconnect` to every miner,
//!   connections closed spread over `drain_spread_secs`, queued shares flushed.

mod channel;
mod connection;
mod ids;
pub mod jobs;
mod judge;
mod limits;
mod listener;
mod metrics;
pub mod proxy;
mod shared;
mod sinks;
mod solo;
mod spool;
pub mod sv2;
mod tls;
mod users;
mod vardiff;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sluice_bus::{BusConfig, Producer, Topic, TopicOwner, start_heartbeat};
use sluice_coord::{Coord, IdLease, ZkConfig};
use sluice_core::record::Figure;
use sluice_service::{Backoff, CommonConfig, Context, Validate};
pub use sluice_store::MysqlConfig;
use sluice_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::jobs::{Board, FeedConfig};
use crate::limits::{Admission, LimitsConfig};
use crate::listener::{Port, accept, listen};
use crate::metrics::ServerMetrics;
use crate::shared::{ConnConfig, Shared};
pub use crate::tls::TlsConfig;
use crate::users::Users;
use crate::vardiff::VardiffConfig;

/// sserver's configuration (deploy/config/sserver.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9103>")]
    pub service: CommonConfig,
    /// `[kafka]`.
    #[serde(default)]
    pub kafka: BusConfig,
    /// `[zookeeper]`.
    #[serde(default)]
    pub zookeeper: ZkConfig,
    /// `[mysql]`.
    #[serde(default)]
    pub mysql: MysqlConfig,
    /// Where miners connect.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// extranonce1's first byte, 1–255; 0 takes the lowest free one from ZooKeeper.
    #[serde(default)]
    pub server_id: u8,
    /// Bytes of extranonce2 miners roll (4–8).
    #[serde(default = "default_en2")]
    pub extranonce2_size: usize,
    /// Version bits miners may roll (BIP310), hex.
    #[serde(default = "default_mask")]
    pub version_mask: String,
    /// Block candidates are logged here before they are sent.
    #[serde(default = "default_solved_log")]
    pub solved_log: PathBuf,
    /// Expect a PROXY protocol v1/v2 header on every connection (behind a load balancer).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// A submit's answer waits this long for the broker to acknowledge its
    /// share (acks=all), so "accepted" survives a crash; then the share is
    /// written to the spool and answered once it is on disk (the broker
    /// away must not stall miners). 0: answer at once, promising nothing.
    #[serde(default = "default_accept_wait_ms")]
    pub accept_wait_ms: u64,
    /// `[spool]`: shares the broker has not acknowledged in time.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `[difficulty]`.
    #[serde(default)]
    pub difficulty: DifficultyConfig,
    /// `[jobs]`.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// `[users]`.
    #[serde(default)]
    pub users: UsersConfig,
    /// `[limits]`.
    #[serde(default)]
    pub limits: Limits,
    /// `[tls]`: Stratum over TLS on a second port (none by default).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `[sv2]`: Stratum V2 on a port of its own (none by default).
    #[serde(default)]
    pub sv2: Option<sv2::Sv2Config>,
}

/// `[difficulty]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DifficultyConfig {
    /// Where a new miner starts.
    pub default: f64,
    /// Lowest handed out (fractions allowed: regtest, testnet).
    pub min: f64,
    /// Highest handed out.
    pub max: f64,
    /// Vardiff aims at one accepted share per miner this often.
    pub share_interval_secs: f64,
    /// Vardiff measures this long before deciding (sooner for a much too fast miner).
    pub retarget_secs: f64,
}

impl Default for DifficultyConfig {
    fn default() -> Self {
        DifficultyConfig {
            default: 16384.0,
            min: 64.0,
            max: 4.0e15,
            share_interval_secs: 10.0,
            retarget_secs: 300.0,
        }
    }
}

/// `[jobs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// A miner given no new job for this long is sent the latest again.
    pub notify_interval_secs: u64,
    /// Shares for jobs older than this are "job not found".
    pub max_job_lifetime_secs: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            notify_interval_secs: 30,
            max_job_lifetime_secs: 300,
        }
    }
}

/// `[users]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Unknown names are added to `users` on first authorize.
    pub auto_register: bool,
    /// Seconds between reloads of the table.
    pub refresh_secs: u64,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            auto_register: false,
            refresh_secs: 30,
        }
    }
}

/// `[spool]`: where shares the broker has not acknowledged within
/// `accept_wait_ms` are kept on disk (see the spool module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Its directory; by default `solved_log` with the extension `spool`
    /// (each sserver needs one of its own, as it does a solved log).
    pub dir: Option<PathBuf>,
    /// Megabytes it may hold (about 8,000 shares a megabyte); past it,
    /// answers wait for the broker. 0: no spool (answers go after
    /// `accept_wait_ms` anyway, counted, and a kill -9 loses them).
    pub max_mb: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_mb: 1024,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Longest request line, bytes.
    pub max_line_bytes: usize,
    /// New connections per second per IP (sustained).
    pub connections_per_ip_per_sec: f64,
    /// New connections per IP in a burst.
    pub connection_burst_per_ip: f64,
    /// New connections a second over all addresses (per listener), after a burst of
    /// `accept_burst` (0: no pace); past it they wait in the kernel's
    /// listen queue, and the miners already mining are not crowded out.
    pub accepts_per_sec: f64,
    /// New connections accepted at once before the pace applies.
    pub accept_burst: f64,
    /// A connection must authorize within this.
    pub preauth_timeout_secs: u64,
    /// An authorized connection silent this long is closed.
    pub idle_timeout_secs: u64,
    /// A connection that takes none of its answers and jobs for this long
    /// (a miner that stopped reading) is closed.
    pub write_timeout_secs: u64,
    /// Rejected shares per minute before the IP is banned (0: never).
    pub max_rejects_per_minute: u32,
    /// How long a ban lasts.
    pub ban_secs: u64,
    /// Malformed lines tolerated per connection.
    pub max_bad_lines: u32,
    /// On SIGTERM, connections close spread over this long (keep below the grace).
    pub drain_spread_secs: f64,
    /// A farm agent's session whose connection dropped is kept this long: an
    /// agent that reconnects within it (subscribing with its old session id)
    /// gets the same extranonce1 and jobs back, so the shares its miners made
    /// while the uplink was down still count (0: never kept).
    pub agent_resume_secs: u64,
    /// Miners registered through farm agents, over all sessions, at most:
    /// a registration costs no socket, so one connection must not be able
    /// to hold memory for tens of thousands of them unbounded.
    pub max_agent_workers: usize,
    /// Networks (CIDR, e.g. `"10.0.0.0/8"`) exempt from the per-IP rate and
    /// from bans: a farm behind one NAT address, the pool's own proxies.
    pub trusted_networks: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 200_000,
            max_line_bytes: 8192,
            // A farm of 2,000 behind one NAT address reconnects within
            // ten seconds after a restart (1,000 at once, then 100/s).
            connections_per_ip_per_sec: 100.0,
            connection_burst_per_ip: 1000.0,
            accepts_per_sec: 5000.0,
            accept_burst: 1000.0,
            preauth_timeout_secs: 30,
            idle_timeout_secs: 900,
            agent_resume_secs: 300,
            max_agent_workers: 200_000,
            write_timeout_secs: 30,
            max_rejects_per_minute: 300,
            ban_secs: 600,
            max_bad_lines: 10,
            drain_spread_secs: 5.0,
            trusted_networks: Vec::new(),
        }
    }
}

fn default_accept_wait_ms() -> u64 {
    500
}

fn default_listen() -> SocketAddr {
    ([0, 0, 0, 0], 3333).into()
}
fn default_en2() -> usize {
    8
}
fn default_mask() -> String {
    "1fffe000".into()
}
fn default_solved_log() -> PathBuf {
    "/var/lib/sluice/sserver-solved.log".into()
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.zookeeper.validate()?;
        self.mysql.validate()?;
        self.version_mask()?;
        if !(4..=8).contains(&self.extranonce2_size) {
            return Err(format!(
                "extranonce2_size must be 4 to 8, got {}",
                self.extranonce2_size
            ));
        }
        let d = &self.difficulty;
        for (name, v) in [("default", d.default), ("min", d.min), ("max", d.max)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!(
                    "difficulty.{name} must be a positive number, got {v}"
                ));
            }
        }
        if d.min > d.max || d.default < d.min || d.default > d.max {
            return Err("difficulty must satisfy min <= default <= max".into());
        }
        if !(d.share_interval_secs > 0.0 && d.retarget_secs >= d.share_interval_secs) {
            return Err(
                "difficulty.share_interval_secs must be positive and at most retarget_secs".into(),
            );
        }
        let l = &self.limits;
        if l.max_connections == 0 || l.max_line_bytes < 256 {
            return Err(
                "limits.max_connections must be positive and limits.max_line_bytes at least 256"
                    .into(),
            );
        }
        if !(l.connections_per_ip_per_sec > 0.0 && l.connection_burst_per_ip >= 1.0) {
            return Err("limits.connections_per_ip_per_sec must be positive and connection_burst_per_ip at least 1".into());
        }
        if !(l.accepts_per_sec >= 0.0 && l.accept_burst >= 1.0) {
            return Err(
                "limits.accepts_per_sec must be 0 (no pace) or positive and accept_burst at least 1"
                    .into(),
            );
        }
        if l.preauth_timeout_secs == 0 || l.idle_timeout_secs == 0 || l.write_timeout_secs == 0 {
            return Err(
                "limits.preauth_timeout_secs, idle_timeout_secs and write_timeout_secs must be positive"
                    .into(),
            );
        }
        if self.jobs.notify_interval_secs == 0 || self.jobs.max_job_lifetime_secs == 0 {
            return Err(
                "jobs.notify_interval_secs and jobs.max_job_lifetime_secs must be positive".into(),
            );
        }
        if self.users.refresh_secs == 0 {
            return Err("users.refresh_secs must be positive".into());
        }
        Ok(())
    }
}

impl Config {
    /// The spool's directory, if shares are spooled (a wait for the broker
    /// and room on disk).
    pub fn spool_dir(&self) -> Option<PathBuf> {
        if self.accept_wait_ms == 0 || self.spool.max_mb == 0 {
            return None;
        }
        Some(
            self.spool
                .dir
                .clone()
                .unwrap_or_else(|| self.solved_log.with_extension("spool")),
        )
    }

    /// The BIP310 mask.
    pub fn version_mask(&self) -> Result<u32, String> {
        u32::from_str_radix(&self.version_mask, 16)
            .map_err(|_| format!("version_mask {:?} is not 8 hex digits", self.version_mask))
    }

    fn conn_config(&self) -> ConnConfig {
        let d = &self.difficulty;
        let l = &self.limits;
        ConnConfig {
            extranonce2_size: self.extranonce2_size,
            version_mask: self.version_mask().unwrap_or(0x1fff_e000),
            default_difficulty: d.default,
            vardiff: VardiffConfig {
                share_interval_secs: d.share_interval_secs,
                retarget_secs: d.retarget_secs,
                min: d.min,
                max: d.max,
            },
            max_line_bytes: l.max_line_bytes,
            preauth_timeout: Duration::from_secs(l.preauth_timeout_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            write_timeout: Duration::from_secs(l.write_timeout_secs),
            accepts_per_sec: l.accepts_per_sec,
            accept_burst: l.accept_burst,
            notify_interval: Duration::from_secs(self.jobs.notify_interval_secs),
            max_rejects_per_minute: l.max_rejects_per_minute,
            proxy_protocol: self.proxy_protocol,
            drain_spread: Duration::from_secs_f64(l.drain_spread_secs.max(0.0)),
            max_bad_lines: l.max_bad_lines,
            accept_wait: Duration::from_millis(self.accept_wait_ms),
            agent_resume: Duration::from_secs(l.agent_resume_secs),
            max_agent_workers: l.max_agent_workers,
        }
    }
}

/// Everything that outlives one server id.
struct Parts {
    board: watch::Receiver<Arc<Board>>,
    users: Users,
    shares: sinks::ShareSink,
    solved: sinks::SolvedSink,
    events: mpsc::Sender<(String, sluice_core::Event)>,
    metrics: ServerMetrics,
    ids: ids::SessionIds,
    admission: Arc<Admission>,
}

/// The service.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let tracker = ctx.shutdown.tracker().clone();
    let metrics = ServerMetrics::register(&ctx.metrics);
    let listener = listen(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "stratum listening");
    // Every miner is an open file: take the hard limit, not the 1,024 a
    // shell or a unit gives by default.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < config.limits.max_connections => tracing::info!(
            limit,
            max_connections = config.limits.max_connections,
            "the open-file limit caps the miners below limits.max_connections"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let tls = match &config.tls {
        Some(tls) => {
            let acceptor = tls.acceptor()?;
            let listener = listen(tls.listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {} (tls): {e}", tls.listen))?;
            tracing::info!(listen = %listener.local_addr()?, "stratum over TLS listening");
            Some((listener, acceptor))
        }
        None => None,
    };
    let sv2 = match &config.sv2 {
        Some(c) => {
            let server = Arc::new(sv2::Sv2Server::load(c)?);
            let listener = listen(c.listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {} (sv2): {e}", c.listen))?;
            tracing::info!(listen = %listener.local_addr()?, authority = %server.authority(), "stratum v2 listening");
            Some((listener, server))
        }
        None => None,
    };

    let topics = &config.kafka.topics;
    // The solved-share log is this cluster's topic's: which one is asked
    // before it is opened (and nothing is served without the broker's jobs).
    let owner = Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
        .retry(
            &token,
            || TopicOwner::of(&config.kafka, &topics.solved_share),
            |error, retry_in| {
                ctx.health
                    .set("kafka_blocks", false, format!("cluster id: {error}"));
                tracing::warn!(%error, ?retry_in, "cannot ask the broker which cluster it is yet");
            },
        )
        .await;
    let Some(owner) = owner else {
        return Ok(());
    };
    let solved_log = sinks::SolvedLog::open(&config.solved_log, owner)?;
    // What the last run left unsent is read before any connection logs more.
    let unsent = solved_log.unsent().unwrap_or_else(|error| {
        tracing::error!(%error, path = %solved_log.path().display(), "cannot read the solved-share log");
        vec![]
    });
    let solved_log = Arc::new(solved_log);
    let (spool, leftover) = config
        .spool_dir()
        .map(|dir| spool::Spool::open(&dir, config.spool.max_mb << 20, metrics.clone()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("[spool] {e}"))?
        .unzip();
    // Both producers wait out an away broker; /health says when they do.
    // Shares linger 1 ms: answers wait for their acknowledgement, and 1 ms
    // against 5 halved the submit round trip with the same saturated
    // throughput (BENCHMARKS.md).
    let share_producer = Producer::with_queue(&config.kafka, 1, sinks::SHARE_QUEUE)?;
    let solved_producer = Producer::new(&config.kafka, 0)?;
    for (producer, component) in [
        (&share_producer, "kafka_shares"),
        (&solved_producer, "kafka_blocks"),
    ] {
        let health = ctx.health.clone();
        tracker.spawn(sluice_bus::watch_delivery(
            producer.clone(),
            move |ok, detail| health.set(component, ok, detail),
            token.clone(),
        ));
    }
    let share_topic = Topic::new(topics.share.clone());
    if let Some(leftover) = leftover {
        tracker.spawn(spool::replay(
            leftover,
            config.kafka.clone(),
            share_producer.clone(),
            share_topic.clone(),
            ctx.health.clone(),
            metrics.clone(),
            token.clone(),
        ));
    }
    let (shares, flusher) =
        sinks::ShareSink::new(share_producer, share_topic, spool, metrics.clone());
    tracker.spawn(flusher);
    let (solved_tx, solved_rx) = mpsc::channel(1024);
    let abandon = CancellationToken::new();
    tracker.spawn(sinks::solved_writer(
        solved_producer,
        Topic::new(topics.solved_share.clone()),
        (Arc::clone(&solved_log), unsent),
        solved_rx,
        metrics.clone(),
        abandon.clone(),
    ));
    let (event_tx, event_rx) = mpsc::channel(16_384);
    tracker.spawn(sinks::event_writer(
        Producer::new(&config.kafka, 5)?,
        Topic::new(topics.event.clone()),
        event_rx,
    ));

    let store = Store::new(&config.mysql.url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let users = Users::new(store, config.users.auto_register);
    tracker.spawn(users.clone().refresh(
        Duration::from_secs(config.users.refresh_secs),
        ctx.health.clone(),
        token.clone(),
    ));

    let (board_tx, board_rx) = watch::channel(Arc::new(Board::default()));
    tracker.spawn(jobs::feed(
        FeedConfig {
            kafka: config.kafka.clone(),
            extranonce2_size: config.extranonce2_size,
            max_job_lifetime_secs: config.jobs.max_job_lifetime_secs,
            fenced: metrics.jobs_fenced.clone(),
        },
        board_tx,
        ctx.health.clone(),
        token.clone(),
    ));

    let parts = Parts {
        board: board_rx,
        users,
        shares,
        solved: sinks::SolvedSink::new(solved_log, solved_tx),
        events: event_tx,
        metrics: metrics.clone(),
        ids: ids::SessionIds::new(),
        admission: Arc::new(Admission::new(LimitsConfig {
            connections_per_ip_per_sec: config.limits.connections_per_ip_per_sec,
            connection_burst_per_ip: config.limits.connection_burst_per_ip,
            ban: Duration::from_secs(config.limits.ban_secs),
            trusted: config.limits.trusted_networks.clone(),
        })),
    };
    spawn_heartbeat(&config, &ctx, &parts)?;

    // Give up on unsent block candidates just before the drain deadline: they
    // stay in the local log and go out at the next start.
    let grace = config.service.shutdown_grace();
    tracker.spawn({
        let token = token.clone();
        async move {
            token.cancelled().await;
            tokio::time::sleep(grace.saturating_sub(Duration::from_millis(750))).await;
            abandon.cancel();
        }
    });

    let result = serve_ids(&config, &ctx, &listener, tls.as_ref(), sv2.as_ref(), parts).await;
    drop(listener);
    drop(tls);
    drop(sv2);
    result
}

/// Takes a server id, serves under it until it is lost or the service
/// stops, and again.
async fn serve_ids(
    config: &Config,
    ctx: &Context,
    listener: &TcpListener,
    tls: Option<&(TcpListener, TlsAcceptor)>,
    sv2: Option<&(TcpListener, Arc<sv2::Sv2Server>)>,
    parts: Parts,
) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let semaphore = Arc::new(Semaphore::new(config.limits.max_connections));
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    while !token.is_cancelled() {
        let taken = backoff
            .retry(
                &token,
                || server_id(config),
                |error, retry_in| {
                    ctx.health
                        .set("zookeeper", false, format!("no server id: {error:#}"));
                    tracing::warn!(
                        error = format!("{error:#}"),
                        ?retry_in,
                        "no server id yet; not serving"
                    );
                },
            )
            .await;
        let Some((server_id, lease)) = taken else {
            break;
        };
        parts.metrics.server_id.set(i64::from(server_id));
        ctx.health
            .set("zookeeper", true, format!("server id {server_id}"));
        let serving = token.child_token();
        let shared = Arc::new(Shared {
            config: config.conn_config(),
            server_id,
            board: parts.board.clone(),
            users: parts.users.clone(),
            shares: parts.shares.clone(),
            solved: parts.solved.clone(),
            events: parts.events.clone(),
            metrics: parts.metrics.clone(),
            ids: parts.ids.clone(),
            admission: Arc::clone(&parts.admission),
            drain: serving.clone(),
            lingering: Arc::new(Semaphore::new(listener::MAX_LINGERING)),
            parked: Default::default(),
        });
        let lost = async {
            match &lease {
                Some(lease) => lease.lost().await,
                None => std::future::pending().await,
            }
        };
        let plain = accept(listener, &Port::V1, &shared, &semaphore, ctx);
        let over_tls = async {
            if let Some((listener, acceptor)) = tls {
                let port = Port::Tls(acceptor.clone());
                accept(listener, &port, &shared, &semaphore, ctx).await;
            }
        };
        let v2 = async {
            if let Some((listener, server)) = sv2 {
                let port = Port::Sv2(Arc::clone(server));
                accept(listener, &port, &shared, &semaphore, ctx).await;
            }
        };
        tokio::select! {
            _ = futures::future::join3(plain, over_tls, v2) => {}
            () = lost => {
                tracing::error!(server_id, "server id lost (ZooKeeper session ended); draining miners and taking an id again");
                ctx.health.set("zookeeper", false, "server id lost");
                serving.cancel();
            }
        }
        drop(shared);
        parts.metrics.server_id.set(0);
        if let Some(lease) = lease {
            let _ = lease.release().await;
        }
    }
    Ok(())
}

/// The configured id, or one from ZooKeeper with its lease (which keeps the
/// ZooKeeper session).
async fn server_id(config: &Config) -> anyhow::Result<(u8, Option<IdLease>)> {
    if config.server_id != 0 {
        return Ok((config.server_id, None));
    }
    let coord = Coord::connect(&config.zookeeper.coord()).await?;
    let info = format!(
        "{} {} pid {}",
        config.service.instance,
        config.listen,
        std::process::id()
    );
    let lease = coord
        .acquire_id("sserver", 1..=255, info.as_bytes())
        .await?;
    let id = u8::try_from(lease.id())?;
    Ok((id, Some(lease)))
}

fn spawn_heartbeat(config: &Config, ctx: &Context, parts: &Parts) -> anyhow::Result<()> {
    let metrics = parts.metrics.clone();
    let board = parts.board.clone();
    let health = ctx.health.clone();
    let last = Mutex::new((Instant::now(), 0u64, 0.0f64));
    start_heartbeat(
        ctx,
        Producer::new(&config.kafka, 0)?,
        &config.kafka,
        "sserver",
        &config.service.instance,
        move || {
            let submits = metrics.submits.get();
            let accepted = metrics.accepted_difficulty.get();
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let secs = last.0.elapsed().as_secs_f64().max(1e-3);
            let shares_per_sec = (submits - last.1) as f64 / secs;
            let hashrate = (accepted - last.2) * 4_294_967_296.0 / secs;
            *last = (Instant::now(), submits, accepted);
            let job_age = board.borrow().latest().map_or(-1.0, |j| {
                (sluice_service::now_ms().saturating_sub(j.job.created_at_ms)) as f64 / 1000.0
            });
            (
                health.is_healthy(),
                vec![
                    Figure::new("server_id", metrics.server_id.get() as f64),
                    Figure::new("connections", metrics.connections.get() as f64),
                    Figure::new("shares_per_sec", shares_per_sec),
                    Figure::new("hashrate", hashrate),
                    Figure::new("last_job_age_secs", job_age),
                ],
            )
        },
    );
    Ok(())
}
