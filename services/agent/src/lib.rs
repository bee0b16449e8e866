//! Sluice's farm agent: a farm's Stratum V1 miners (ASICs, cpuminer) connect
//! to it on the farm's network; it carries them to the pool over a few
//! upstream sessions with the BTCAgent protocol
//! ([`sluice_stratum::agent`]), so the farm's uplink carries one job per
//! block instead of one per miner, the pool holds a handful of sockets, and
//! a flaky uplink disconnects nobody.
//!
//! - Each miner gets a 16-bit session id: its extranonce1 is that id (4
//!   bytes, `0000SSSS`) and it rolls 4 bytes of extranonce2; the upstream
//!   session's extranonce1 is appended to coinbase1, so every miner's work
//!   is its own and the pool sees each miner as its own worker.
//! - Miners are spread over `upstream.sessions` sessions (session id modulo
//!   the count); each session connects to the first pool of
//!   `upstream.pools` that answers (failover in order) and re-registers its
//!   miners after a reconnect.
//! - Difficulty is the pool's, per miner (`MINING_SET_DIFF`); a share that
//!   misses it (or names an unknown job) is refused here, without crossing
//!   the uplink. Every other share is answered with the pool's verdict
//!   (`subres`): a miner never sees "accepted" for a share the pool did not
//!   accept.
//! - Uplink lost: miners stay connected on their current job (no fake
//!   work), their shares wait, and go up when the session is back: the pool
//!   keeps a dropped agent session for a while (`limits.agent_resume_secs`)
//!   and the agent resumes it, same extranonce1, same jobs. Only after
//!   `miners.reconnect_grace_secs` without an uplink are the miners told to
//!   reconnect (to their backup pool).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_service::{CommonConfig, Context, Validate};
use tokio::net::TcpListener;

pub mod metrics;
pub mod miner;
pub mod upstream;

pub use metrics::AgentMetrics;
pub use upstream::{UpHandle, Upstream};

/// The agent's configuration (deploy/config/agent.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9109>")]
    pub service: CommonConfig,
    /// Where the farm's miners connect.
    pub listen: SocketAddr,
    /// `[upstream]`: the pool.
    pub upstream: UpstreamConfig,
    /// `[miners]`.
    #[serde(default)]
    pub miners: MinersConfig,
}

/// `[upstream]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The pool's Stratum addresses (`host:port`), tried in order.
    pub pools: Vec<String>,
    /// The pool account every miner mines for; a miner's own `user.worker`
    /// login gives only the worker name.
    pub account: String,
    /// The authorize password: the pool's options for the whole farm (for
    /// Sluice, `d=START` sets the difficulty every miner starts at).
    #[serde(default)]
    pub password: String,
    /// Upstream sessions to spread the miners over.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Seconds to wait for a pool to connect and answer the handshake.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The longest pause between reconnect attempts, seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: f64,
    /// Shares kept per session while the uplink is down.
    #[serde(default = "default_gap_shares")]
    pub max_gap_shares: usize,
    /// Milliseconds the miners' shares wait to go up together (0: each at
    /// once): fewer packets on the uplink for a little more submit latency.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
}

fn default_batch_ms() -> u64 {
    50
}

fn default_sessions() -> usize {
    2
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_retry_max() -> f64 {
    1.0
}
fn default_gap_shares() -> usize {
    200_000
}

/// `[miners]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinersConfig {
    /// Miners at most (each takes a 16-bit session id).
    pub max_miners: usize,
    /// Uplink down this long: miners are told to reconnect (`client.reconnect`)
    /// and closed, so they fail over to their backup pool.
    pub reconnect_grace_secs: u64,
    /// Longest request line from a miner.
    pub max_line_bytes: usize,
    /// A miner must authorize within this.
    pub preauth_timeout_secs: u64,
    /// A miner silent this long is closed.
    pub idle_timeout_secs: u64,
}

impl Default for MinersConfig {
    fn default() -> Self {
        MinersConfig {
            max_miners: usize::from(sluice_stratum::agent::MAX_SESSION_ID),
            reconnect_grace_secs: 300,
            max_line_bytes: 8192,
            preauth_timeout_secs: 60,
            idle_timeout_secs: 900,
        }
    }
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        let u = &self.upstream;
        if u.pools.is_empty() {
            return Err("upstream.pools must name at least one pool".into());
        }
        for p in &u.pools {
            let ok = p
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("upstream.pools: {p:?} is not host:port"));
            }
        }
        if sluice_core::worker::parse_login(&u.account).is_none() || u.account.contains('.') {
            return Err(format!(
                "upstream.account {:?}: a pool account name (no worker part)",
                u.account
            ));
        }
        if !(1..=64).contains(&u.sessions) {
            return Err("upstream.sessions must be 1 to 64".into());
        }
        if u.batch_ms > 1000 {
            return Err("upstream.batch_ms must be at most 1000".into());
        }
        if !(u.retry_max_secs > 0.0 && u.retry_max_secs <= 60.0) {
            return Err("upstream.retry_max_secs must be in (0, 60]".into());
        }
        let m = &self.miners;
        if m.max_miners == 0 || m.max_miners > usize::from(sluice_stratum::agent::MAX_SESSION_ID) {
            return Err("miners.max_miners must be 1 to 65534".into());
        }
        if m.preauth_timeout_secs == 0 || m.idle_timeout_secs == 0 {
            return Err(
                "miners.preauth_timeout_secs and idle_timeout_secs must be positive".into(),
            );
        }
        Ok(())
    }
}

/// Runs the agent until shutdown.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    serve(listener, config, ctx).await
}

/// Runs the agent on a bound listener (tests bind port 0).
pub async fn serve(listener: TcpListener, config: Config, ctx: Context) -> anyhow::Result<()> {
    let metrics = AgentMetrics::register(&ctx.metrics);
    let config = Arc::new(config);
    let ups: Vec<UpHandle> = (0..config.upstream.sessions)
        .map(|slot| Upstream::spawn(slot, Arc::clone(&config), metrics.clone(), &ctx))
        .collect();
    let hub = Arc::new(miner::Hub::new(ups, Arc::clone(&config), metrics));
    tracing::info!(listen = %listener.local_addr()?, pools = ?config.upstream.pools, sessions = config.upstream.sessions, "agent serving miners");
    let token = ctx.shutdown.token().clone();
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    ctx.shutdown.tracker().spawn(miner::serve(stream, peer, Arc::clone(&hub), token.clone()));
                }
                Err(error) => {
                    // Out of descriptors: wait a moment rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
