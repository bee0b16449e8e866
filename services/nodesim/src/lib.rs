//! nodesim: the Bitcoin Core stand-in for tests and the local demo.
//!
//! It behaves like `bitcoind -regtest` for every call the pool makes
//! (ARCHITECTURE.md §10): JSON-RPC over HTTP with basic auth or a cookie file
//! (`rpc.rs`), templates from a synthetic segwit mempool (`mempool.rs`),
//! `submitblock` validated like Core with Core's reject reasons
//! (`validate.rs`), and a ZMQ `hashblock` publication for every new tip
//! (`zmq.rs`), and the wallet RPCs the payer uses (`wallet.rs`,
//! `accept.rs`: its coinbases spent by Core's maturity rule, transactions
//! accepted to the mempool with Core's checks). The block bits are
//! configurable so load tests can make blocks rare. Anything the pool does
//! against nodesim must work against Core.

mod accept;
mod chain;
mod coins;
mod mempool;
mod mine;
mod rpc;
mod validate;
mod wallet;
mod zmq;

pub use wallet::first_address;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{BlockHash, CompactTarget};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use sluice_service::{CommonConfig, Context, Validate};
use tokio::sync::{broadcast, watch};

use crate::chain::Chain;
use crate::mempool::Mempool;
use crate::wallet::Wallet;

/// nodesim's configuration (deploy/config/nodesim.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[service]`: admin port, grace period.
    pub service: CommonConfig,
    /// JSON-RPC listen address (Core's regtest default 127.0.0.1:18443).
    pub rpc_listen: SocketAddr,
    /// ZMQ `hashblock` publisher address (`tcp://127.0.0.1:28332`).
    pub zmq_hashblock: String,
    /// Basic-auth user; empty for cookie auth only.
    pub rpc_user: String,
    /// Basic-auth password.
    pub rpc_password: String,
    /// Where to write a Core-style cookie (`__cookie__:<hex>`); empty for none.
    pub cookie_file: PathBuf,
    /// Compact bits of every new block (regtest's limit 207fffff by default).
    pub bits: String,
    /// Transactions kept in the synthetic mempool.
    pub mempool_size: usize,
    /// Seed of the mempool generator (same seed, same transactions).
    pub seed: u64,
    /// Longest a long-poll `getblocktemplate` waits.
    pub longpoll_timeout_secs: u64,
    /// The wallet's passphrase: empty for an unencrypted wallet; otherwise
    /// it starts locked and signs only after `walletpassphrase`.
    pub wallet_passphrase: String,
    /// Core's `-maxtipage`: while the tip is older than this (and until it
    /// once was not), the node says it is in initial block download.
    pub max_tip_age_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service: CommonConfig {
                admin_listen: SocketAddr::from(([127, 0, 0, 1], 9105)),
                ..CommonConfig::default()
            },
            rpc_listen: SocketAddr::from(([127, 0, 0, 1], 18443)),
            zmq_hashblock: "tcp://127.0.0.1:28332".to_owned(),
            rpc_user: "sluice".to_owned(),
            rpc_password: "sluice".to_owned(),
            cookie_file: PathBuf::new(),
            bits: "207fffff".to_owned(),
            mempool_size: 200,
            seed: 1,
            longpoll_timeout_secs: 60,
            wallet_passphrase: String::new(),
            max_tip_age_secs: 24 * 3600,
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
        self.compact_bits()?;
        if self.rpc_user.is_empty() && self.cookie_file.as_os_str().is_empty() {
            return Err(
                "set rpc_user/rpc_password or cookie_file: RPC needs some authentication".into(),
            );
        }
        if self.mempool_size > 5_000 {
            return Err("mempool_size must be at most 5000".into());
        }
        Ok(())
    }
}

impl Config {
    /// A configuration for tests and benchmarks: every port chosen by the OS
    /// (read them from [`Endpoints`]), a 30-transaction mempool, basic auth
    /// `sluice`/`sluice`.
    pub fn ephemeral() -> Self {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        Config {
            service: CommonConfig {
                admin_listen: any,
                ..CommonConfig::default()
            },
            rpc_listen: any,
            zmq_hashblock: "tcp://127.0.0.1:0".to_owned(),
            mempool_size: 30,
            longpoll_timeout_secs: 30,
            ..Config::default()
        }
    }

    fn compact_bits(&self) -> Result<CompactTarget, String> {
        u32::from_str_radix(&self.bits, 16)
            .map(CompactTarget::from_consensus)
            .map_err(|_| format!("bits {:?} is not 8 hex digits like 207fffff", self.bits))
    }
}

/// The running node's shared state.
#[derive(Debug)]
pub(crate) struct Node {
    chain: Mutex<Chain>,
    /// Taken after `chain` when both are needed.
    wallet: Mutex<Wallet>,
    /// `submitblock` calls by answer.
    submits: Family<AnswerLabel, Counter>,
    /// The tip, for long polls.
    tip: watch::Sender<BlockHash>,
    /// Every new tip, for ZMQ (a watch would coalesce blocks).
    blocks: broadcast::Sender<BlockHash>,
    longpoll_timeout: Duration,
    max_tip_age: u64,
    /// Set once the tip was recent: Core's initial block download latches.
    synced: std::sync::atomic::AtomicBool,
}

/// The `answer` label of `nodesim_submitblock`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AnswerLabel {
    /// accepted (a new tip), inconclusive (a side branch), duplicate,
    /// duplicate-invalid, rejected
    pub(crate) answer: &'static str,
}

impl Node {
    /// Core's `IsInitialBlockDownload` as regtest sees it: true while the
    /// tip is older than `-maxtipage`, false for good once it was not.
    pub(crate) fn initial_download(&self, tip_time: u32) -> bool {
        use std::sync::atomic::Ordering;
        if self.synced.load(Ordering::Relaxed) {
            return false;
        }
        if u64::from(tip_time) + self.max_tip_age < u64::from(now()) {
            return true;
        }
        self.synced.store(true, Ordering::Relaxed);
        false
    }

    /// Counts one `submitblock` answer.
    pub(crate) fn count_submit(&self, answer: &'static str) {
        self.submits.get_or_create(&AnswerLabel { answer }).inc();
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wallet(&self) -> MutexGuard<'_, Wallet> {
        self.wallet.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces a new tip to long polls and ZMQ.
    fn announce(&self, tip: BlockHash) {
        self.tip.send_replace(tip);
        // No ZMQ subscriber task yet is not an error.
        let _ = self.blocks.send(tip);
    }
}

/// Seconds since the epoch, as block times are.
pub(crate) fn now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Where a started nodesim listens.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// JSON-RPC.
    pub rpc: SocketAddr,
    /// ZMQ hashblock, `tcp://host:port`.
    pub zmq: String,
    /// The tip, for in-process observers (benchmarks time block arrival by it).
    pub tip: watch::Receiver<BlockHash>,
}

/// Binds the RPC and ZMQ endpoints and serves them on `ctx`'s tracker until
/// its token is cancelled. Returns where they listen (port 0 picks one).
pub async fn start(config: Config, ctx: &Context) -> anyhow::Result<Endpoints> {
    let bits = config.compact_bits().map_err(anyhow::Error::msg)?;
    let chain = Chain::new(bits, Mempool::new(config.mempool_size, config.seed));
    let genesis = chain.tip().block.block_hash();
    let (tip, _) = watch::channel(genesis);
    let (blocks, _) = broadcast::channel(1024);
    let submits = Family::<AnswerLabel, Counter>::default();
    ctx.metrics.register(|r| {
        r.register(
            "nodesim_submitblock",
            "submitblock calls by answer: accepted (a new tip), inconclusive, duplicate, duplicate-invalid, rejected",
            submits.clone(),
        );
    });
    let node = Arc::new(Node {
        chain: Mutex::new(chain),
        wallet: Mutex::new(Wallet::new(config.seed, &config.wallet_passphrase)),
        submits,
        tip,
        blocks,
        longpoll_timeout: Duration::from_secs(config.longpoll_timeout_secs),
        max_tip_age: config.max_tip_age_secs,
        synced: std::sync::atomic::AtomicBool::new(false),
    });
    let zmq = zmq::start(
        &config.zmq_hashblock,
        node.blocks.subscribe(),
        node.clone(),
        ctx,
    )
    .await?;
    let tip = node.tip.subscribe();
    let auth = rpc::Auth::new(&config.rpc_user, &config.rpc_password, &config.cookie_file)?;
    let rpc = rpc::start(config.rpc_listen, node, auth, ctx).await?;
    ctx.health.set("rpc", true, format!("listening on {rpc}"));
    tracing::info!(%rpc, %zmq, bits = %config.bits, "nodesim serving regtest");
    Ok(Endpoints { rpc, zmq, tip })
}

/// The service: start, then run until shutdown.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    start(config, &ctx).await?;
    ctx.shutdown.token().cancelled().await;
    Ok(())
}
