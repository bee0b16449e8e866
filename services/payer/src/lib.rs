//! payer: the pool's books and its payouts, kept by exactly one elected
//! payer.
//!
//! Every instance campaigns in ZooKeeper (`<root>/payer/election`); the
//! leader
//! - reads the Share topic from the offsets the books hold (`ingest.rs`):
//!   accepted and block shares become work per user per minute and, under
//!   PPS, value, written with the offsets in one database transaction, so
//!   every share counts exactly once whatever is killed when;
//! - credits each found block once its minute's shares are all in
//!   (`blocks.rs`): PPLNS splits the reward by the window's work to the
//!   satoshi, PPS and FPPS (`fees.rs`) give it to the pool; credits are immature until
//!   blkmaker finds the block confirmed (101 confirmations), and taken back
//!   by opposite entries if it is orphaned.
//!
//! The books are `sluice_ledger`'s double-entry transactions in MariaDB,
//! unique by kind and reference, so a step repeated after a restart writes
//! nothing.

mod blocks;
mod failpoint;
mod fees;
mod ingest;
mod metrics;
mod payouts;
mod term;
pub mod verify;

use std::time::Duration;

use serde::Deserialize;
use sluice_bus::{BusConfig, Producer, start_heartbeat};
use sluice_coord::{Coord, ZkConfig};
use sluice_core::record::Figure;
pub use sluice_node::NodeConfig;
use sluice_service::{Backoff, CommonConfig, Context, Validate};
pub use sluice_store::MysqlConfig;

/// How blocks pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Pay per last N shares: each block's reward split by the work of the
    /// window before it.
    Pplns,
    /// Pay per share: each share credited its expected value of the block
    /// subsidy at once; blocks are the pool's.
    Pps,
    /// Full pay per share: as PPS, the subsidy plus the fees recent blocks
    /// paid on average (`fpps_fee_blocks` of them, recorded per height).
    Fpps,
}

impl Scheme {
    /// Its name in the books.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Pplns => "pplns",
            Scheme::Pps => "pps",
            Scheme::Fpps => "fpps",
        }
    }

    /// Whether shares are paid as they come (PPS, FPPS) and blocks are the
    /// pool's.
    pub fn pays_per_share(self) -> bool {
        self != Scheme::Pplns
    }
}

/// payer's configuration (deploy/config/payer.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9110>")]
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
    /// `mainnet`, `testnet`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// `pplns`, `pps` or `fpps`.
    pub scheme: Scheme,
    /// The pool's fee, basis points (100 = 1 %).
    pub fee_bps: u32,
    /// PPLNS: the window in network difficulties (N of "N × D").
    #[serde(default = "default_window")]
    pub pplns_window: f64,
    /// A minute's shares are taken to be all in this long after it ended
    /// (or once every partition was read past it by this much).
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// How often found blocks are looked at.
    #[serde(default = "default_books_interval")]
    pub books_interval_secs: u64,
    /// PPS: how often users are credited the whole satoshis their shares'
    /// value reached (fractions carry over, nothing is lost in between).
    #[serde(default = "default_pps_credit")]
    pub pps_credit_secs: u64,
    /// FPPS: how many blocks before a share's height its fees average
    /// (read from `[payouts.node]`).
    #[serde(default = "default_fee_blocks")]
    pub fpps_fee_blocks: u32,
    /// Per-minute work is kept at least this long; older work is deleted
    /// once no block's window can reach it (PPLNS: four spans of the newest
    /// credited window; PPS and FPPS need none).
    #[serde(default = "default_work_keep")]
    pub work_keep_hours: u32,
    /// `[payouts]`: paying balances through the node's wallet; without it
    /// the payer keeps the books only.
    #[serde(default)]
    pub payouts: Option<PayoutConfig>,
}

/// `[payouts]`: how balances are paid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutConfig {
    /// `[payouts.node]`: the node whose wallet holds the pool's coinbases
    /// (jobmaker's payout_address is one of its addresses).
    pub node: NodeConfig,
    /// The wallet's name when the node has several (Core's `-wallet`).
    #[serde(default)]
    pub wallet: String,
    /// For an encrypted wallet: unlocked for each payout.
    #[serde(default)]
    pub wallet_passphrase: String,
    /// Balances below this are not paid (a user may set a higher one).
    #[serde(default = "default_min_payout")]
    pub min_payout_sat: u64,
    /// The payout transaction's fee rate, sat/vB (the pool pays it).
    #[serde(default = "default_fee_rate")]
    pub fee_rate_sat_vb: u64,
    /// How often due balances are paid.
    #[serde(default = "default_payout_interval")]
    pub interval_secs: u64,
    /// Users paid in one transaction at most.
    #[serde(default = "default_max_users")]
    pub max_users: u32,
    /// Confirmations that settle a payout.
    #[serde(default = "default_payout_confirmations")]
    pub confirmations: u32,
    /// One wallet RPC's time-out.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_secs: u64,
}

fn default_min_payout() -> u64 {
    1_000_000
}
fn default_fee_rate() -> u64 {
    2
}
fn default_payout_interval() -> u64 {
    600
}
fn default_max_users() -> u32 {
    500
}
fn default_payout_confirmations() -> u32 {
    1
}
fn default_rpc_timeout() -> u64 {
    30
}

fn default_window() -> f64 {
    2.0
}
fn default_settle() -> u64 {
    30
}
fn default_books_interval() -> u64 {
    5
}
fn default_pps_credit() -> u64 {
    600
}
fn default_fee_blocks() -> u32 {
    144
}
fn default_work_keep() -> u32 {
    24
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        sluice_core::network::parse_network(&self.network)?;
        if self.fee_bps > 10_000 {
            return Err(format!("fee_bps {} is over 10000 (100 %)", self.fee_bps));
        }
        if !(self.pplns_window > 0.0 && self.pplns_window <= 1e12) {
            return Err(format!(
                "pplns_window {} must be a number of network difficulties above 0 (2 is usual)",
                self.pplns_window
            ));
        }
        if self.books_interval_secs == 0 {
            return Err("books_interval_secs must be positive".into());
        }
        if self.scheme == Scheme::Fpps {
            if self.payouts.is_none() {
                return Err(
                    "scheme \"fpps\" reads recent blocks' fees from the node of [payouts.node]; add [payouts]"
                        .into(),
                );
            }
            if !(1..=52_560).contains(&self.fpps_fee_blocks) {
                return Err(format!(
                    "fpps_fee_blocks {} must be 1 to 52560 blocks (144 is a day)",
                    self.fpps_fee_blocks
                ));
            }
        }
        if let Some(p) = &self.payouts {
            sluice_node::validate_nodes(std::slice::from_ref(&p.node))
                .map_err(|e| format!("payouts.node: {e}"))?;
            if p.fee_rate_sat_vb == 0 || p.interval_secs == 0 || p.max_users == 0 {
                return Err(
                    "payouts: fee_rate_sat_vb, interval_secs and max_users must be positive".into(),
                );
            }
            if p.confirmations == 0 {
                return Err("payouts.confirmations must be at least 1".into());
            }
        }
        self.zookeeper.validate()?;
        self.mysql.validate()
    }
}

impl Config {
    /// The PPLNS window in thousandths of the block's work.
    pub fn window_milli(&self) -> u64 {
        (self.pplns_window * 1000.0).round() as u64
    }

    /// The network.
    pub fn network(&self) -> bitcoin::Network {
        sluice_core::network::parse_network(&self.network).unwrap_or(bitcoin::Network::Regtest)
    }
}

/// The service: campaign, keep the books while elected, campaign again.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let metrics = metrics::PayerMetrics::register(&ctx.metrics);
    let info = format!("{} pid {}", config.service.instance, std::process::id());
    let (health, leader) = (ctx.health.clone(), metrics.leader.clone());
    start_heartbeat(
        &ctx,
        Producer::new(&config.kafka, 0)?,
        &config.kafka,
        "payer",
        &config.service.instance,
        move || {
            (
                health.is_healthy(),
                vec![Figure::new("leader", leader.get() as f64)],
            )
        },
    );
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let zookeeper = config.zookeeper.coord();
    while !token.is_cancelled() {
        let coord = backoff
            .retry(
                &token,
                || Coord::connect(&zookeeper),
                |error, retry_in| {
                    ctx.health.set("zookeeper", false, error.to_string());
                    tracing::warn!(%error, ?retry_in, "zookeeper unavailable");
                },
            )
            .await;
        let Some(coord) = coord else { break };
        if let Err(error) = term::campaign(&config, &ctx, &metrics, &coord, info.as_bytes()).await {
            ctx.health.set("zookeeper", false, format!("{error:#}"));
            tracing::warn!(error = format!("{error:#}"), "campaign ended; reconnecting");
            if !backoff.wait(&token).await {
                break;
            }
        }
    }
    Ok(())
}
