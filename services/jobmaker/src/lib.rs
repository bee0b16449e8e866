//! jobmaker: Stratum jobs from block templates, by exactly one elected leader.
//!
//! Every instance campaigns in ZooKeeper (`<root>/jobmaker/election`); the
//! leader reads templates from RawGbt, keeps those of its `[[nodes]]` on its
//! network whose tip the node holds (`nodes.rs`), picks one by chain work
//! with btcpool's anti-jitter rules (`select.rs`), and publishes Jobs built
//! with crates/core
//! (`jobs.rs`): a clean job at once on a new block, otherwise one every
//! `job_interval_secs` from the current template, even if gbtmaker goes
//! quiet (reported in /health). Every Job carries the leader's epoch, so
//! consumers can ignore a deposed leader; a leader that loses its node stops
//! producing and campaigns again as a standby.

mod announce;
mod jobs;
mod leader;
mod metrics;
mod nodes;
mod select;
mod term;

use std::str::FromStr;
use std::time::Duration;

use bitcoin::{Address, ScriptBuf};
use serde::Deserialize;
use sluice_bus::{BusConfig, Producer, start_heartbeat};
use sluice_coord::Coord;
pub use sluice_coord::ZkConfig;
use sluice_core::record::Figure;
pub use sluice_node::NodeConfig;
use sluice_service::{Backoff, CommonConfig, Context, Validate};

/// jobmaker's configuration (deploy/config/jobmaker.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9102>")]
    pub service: CommonConfig,
    /// `[kafka]`.
    #[serde(default)]
    pub kafka: BusConfig,
    /// `[zookeeper]`.
    #[serde(default)]
    pub zookeeper: ZkConfig,
    /// Seconds between jobs when no block arrives.
    #[serde(default = "default_job_interval")]
    pub job_interval_secs: u64,
    /// /health turns unhealthy when no template arrived for this long.
    #[serde(default = "default_stale")]
    pub stale_template_secs: u64,
    /// Text in every coinbase (at most 75 bytes; keep it short).
    #[serde(default = "default_tag")]
    pub pool_tag: String,
    /// Where block rewards go.
    pub payout_address: String,
    /// `mainnet`, `testnet`, `testnet4`, `signet` or `regtest`: the address
    /// must belong to it, and templates of another network are skipped.
    pub network: String,
    /// The nodes whose templates are mined on (gbtmaker's `[[nodes]]`):
    /// a template from another node is skipped, and one read back from
    /// RawGbt's tail only if its node holds its tip as the best block.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// A clean job for an empty block the moment the followed node
    /// announces a block on ZMQ (its `zmq_rawblock`, else `zmq_hashblock`),
    /// before its full template exists; the full job follows (`announce.rs`).
    #[serde(default = "sluice_service::default_true")]
    pub empty_jobs: bool,
    /// `[solo]`: solo mining beside the pool.
    #[serde(default)]
    pub solo: SoloConfig,
}

/// `[solo]`: miners who log in with a Bitcoin address of the pool's network
/// (`ADDRESS.worker`) mine solo: the coinbase of their block pays that
/// address the whole reward less `fee_bps`. Every job carries what their
/// coinbases share; sserver fills in each one's output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoloConfig {
    /// Whether address logins mine solo.
    #[serde(default)]
    pub enabled: bool,
    /// The pool's fee on a solo block, in basis points of the coinbase
    /// value (subsidy and fees), floored to the satoshi: 0 to 10,000.
    #[serde(default)]
    pub fee_bps: u16,
    /// Where the fee goes; `payout_address` when unset.
    #[serde(default)]
    pub fee_address: Option<String>,
}

/// Where a job's coinbase pays: the pool's script, and what solo
/// coinbases share when solo mining is on.
#[derive(Debug, Clone)]
pub(crate) struct Payout {
    pub(crate) script: ScriptBuf,
    pub(crate) solo: Option<SoloTerms>,
}

/// Solo mining's terms, checked.
#[derive(Debug, Clone)]
pub(crate) struct SoloTerms {
    pub(crate) network: bitcoin::Network,
    pub(crate) fee_bps: u16,
    pub(crate) fee_script: ScriptBuf,
}

fn default_job_interval() -> u64 {
    30
}
fn default_stale() -> u64 {
    60
}
fn default_tag() -> String {
    "/sluice/".into()
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.payout()?;
        if self.pool_tag.len() > 60 {
            return Err(format!(
                "pool_tag is {} bytes; at most 60 fit the coinbase",
                self.pool_tag.len()
            ));
        }
        if self.job_interval_secs == 0 || self.stale_template_secs == 0 {
            return Err("job_interval_secs and stale_template_secs must be positive".into());
        }
        sluice_node::validate_nodes(&self.nodes).map_err(|e| {
            format!("{e} (jobmaker mines only on templates of its nodes: list gbtmaker's)")
        })?;
        self.zookeeper.validate()?;
        Ok(())
    }
}

impl Config {
    /// The payout address's script, checked against the configured network.
    pub fn payout_script(&self) -> Result<ScriptBuf, String> {
        self.script_of("payout_address", &self.payout_address)
    }

    fn script_of(&self, key: &str, address: &str) -> Result<ScriptBuf, String> {
        let network = sluice_core::network::parse_network(&self.network)?;
        let parsed = Address::from_str(address).map_err(|e| format!("{key} {address:?}: {e}"))?;
        parsed
            .require_network(network)
            .map(|a| a.script_pubkey())
            .map_err(|_| format!("{key} {address:?} is not a {} address", self.network))
    }

    /// The pool's script and the solo terms, checked.
    pub(crate) fn payout(&self) -> Result<Payout, String> {
        let script = self.payout_script()?;
        let solo = if self.solo.enabled {
            if self.solo.fee_bps > sluice_core::solo::MAX_FEE_BPS {
                return Err(format!(
                    "solo.fee_bps is {}; at most 10000 (all of it)",
                    self.solo.fee_bps
                ));
            }
            let fee_script = match &self.solo.fee_address {
                Some(a) => self.script_of("solo.fee_address", a)?,
                None => script.clone(),
            };
            Some(SoloTerms {
                network: sluice_core::network::parse_network(&self.network)?,
                fee_bps: self.solo.fee_bps,
                fee_script,
            })
        } else {
            None
        };
        Ok(Payout { script, solo })
    }
}

/// The service: campaign, lead while elected, campaign again when deposed.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    let payout = config.payout().map_err(anyhow::Error::msg)?;
    let token = ctx.shutdown.token().clone();
    let metrics = metrics::JobMetrics::register(&ctx.metrics);
    let info = format!("{} pid {}", config.service.instance, std::process::id());
    let (health, leader) = (ctx.health.clone(), metrics.leader.clone());
    start_heartbeat(
        &ctx,
        Producer::new(&config.kafka, 0)?,
        &config.kafka,
        "jobmaker",
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
        if let Err(error) =
            leader::campaign(&config, &ctx, &metrics, &coord, &payout, info.as_bytes()).await
        {
            ctx.health.set("zookeeper", false, format!("{error:#}"));
            tracing::warn!(error = format!("{error:#}"), "campaign ended; reconnecting");
            if !backoff.wait(&token).await {
                break;
            }
        }
    }
    Ok(())
}
