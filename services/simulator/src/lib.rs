//! simulator: many Stratum miners from one process, to load-test a pool and
//! to prove it end to end.
//!
//! Each miner is one TCP connection driven by `crates/stratum`'s client
//! session: subscribe, configure (BIP310 version rolling), authorize as
//! `<user>.<prefix>-NNNNN`, then submit real proof-of-work shares at its
//! share of the chosen rate: nonces are ground until the header meets the
//! difficulty the server set (at the fractional difficulties a regtest or
//! load-test sserver hands out that is one or a few hashes). A miner whose
//! connection drops, or who is told `client.reconnect`, connects again.
//!
//! It measures what an operator asks of a pool: connections, accepted and
//! rejected shares by reason, shares per second, the submit round trip
//! (p50/p99/p99.9), the accepted difficulty (what statshttpd should report
//! as hashrate), and — when it may make blocks on the node itself
//! (`--node-rpc`) — the time from each new block to each miner's clean
//! `mining.notify`.

mod miner;
mod node;
mod report;
mod sv2;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::BlockHash;
use tokio_util::sync::CancellationToken;

pub use crate::report::{Latency, Report, Totals};

/// What to simulate.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// sserver's Stratum address.
    #[arg(long, default_value = "127.0.0.1:3333")]
    pub server: SocketAddr,
    /// Miners (one connection each).
    #[arg(short = 'n', long, default_value_t = 100)]
    pub connections: usize,
    /// Account name of every miner.
    #[arg(long, default_value = "simulator")]
    pub user: String,
    /// Miners authorize as `<user>.<prefix>-NNNNN`.
    #[arg(long, default_value = "sim")]
    pub worker_prefix: String,
    /// `mining.authorize` password (`d=` asks for a start difficulty).
    #[arg(long, default_value = "x")]
    pub password: String,
    /// Shares per second submitted by all miners together at the difficulty
    /// the server starts them at (0: none). Each miner's hashrate is fixed:
    /// if vardiff raises its difficulty, it submits less often.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds to run once every miner has connected (0: until stopped).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 2_000.0)]
    pub connect_rate: f64,
    /// Loopback source addresses to spread the connections over
    /// (127.0.0.2, .3, …), for per-IP limits and ephemeral ports; 0 picks
    /// one per 400 connections.
    #[arg(long, default_value_t = 0)]
    pub source_ips: usize,
    /// Hashes tried per share before giving up on it (the difficulty is
    /// too high for a simulated miner; ask for a low one with `d=`).
    #[arg(long, default_value_t = 1 << 16)]
    pub max_hashes: u64,
    /// Submits in flight per miner before it waits.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// A node's RPC (`http://user:password@host:port`): make a block there
    /// every `--block-interval` seconds and time each miner's clean job.
    #[arg(long)]
    pub node_rpc: Option<String>,
    /// Seconds between blocks made with `--node-rpc`.
    #[arg(long, default_value_t = 10.0)]
    pub block_interval: f64,
    /// Address `generatetoaddress` pays (regtest).
    #[arg(long, default_value = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")]
    pub block_address: String,
    /// The miners' protocol: `v1` (Stratum V1) or `v2` (Stratum V2, one
    /// standard channel per connection; `--server` is then the SV2 port).
    #[arg(long, value_enum, default_value_t = Protocol::V1)]
    pub protocol: Protocol,
    /// The pool's SV2 authority public key (base58check), for `--protocol v2`.
    #[arg(long)]
    pub authority_key: Option<String>,
    /// List the header hash of every share the pool said it accepted in the
    /// report (`accepted_hashes`), for loss checks by identity: each must
    /// be on the Share topic exactly once.
    #[arg(long)]
    pub record_accepted: bool,
    /// With `--protocol v2`: set REQUIRES_STANDARD_JOBS, so the pool sends
    /// each channel its own jobs instead of its group's.
    #[arg(long)]
    pub sv2_standard_jobs: bool,
    /// Solo miners: each logs in with its own regtest P2WPKH address
    /// (instead of `--user`), so each is sent its own coinbase.
    #[arg(long)]
    pub solo: bool,
}

impl Options {
    /// Miner `index`'s login: `user.prefix-index`, or with `solo` its own
    /// address for `user`.
    pub fn login(&self, index: usize) -> String {
        let user = if self.solo {
            use bitcoin::hashes::{Hash, sha256};
            let seed = sha256::Hash::hash(&(index as u64).to_le_bytes()).to_byte_array();
            sluice_core::solo::address_of(
                sluice_core::solo::AddressType::P2wpkh,
                seed,
                bitcoin::Network::Regtest,
            )
            .to_string()
        } else {
            self.user.clone()
        };
        format!("{user}.{}-{:05}", self.worker_prefix, index)
    }
}

/// A miner's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    V1,
    V2,
}

impl Options {
    /// Defaults for `n` miners at `server`.
    pub fn new(server: SocketAddr, connections: usize) -> Self {
        Options {
            server,
            connections,
            user: "simulator".into(),
            worker_prefix: "sim".into(),
            password: "x".into(),
            rate: 100.0,
            duration: 60.0,
            connect_rate: 2_000.0,
            source_ips: 0,
            max_hashes: 1 << 16,
            max_in_flight: 64,
            node_rpc: None,
            block_interval: 10.0,
            block_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
            protocol: Protocol::V1,
            authority_key: None,
            record_accepted: false,
            sv2_standard_jobs: false,
            solo: false,
        }
    }

    /// Checks what cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !(positive(self.rate) || self.rate == 0.0) {
            return Err("--rate must be a non-negative number".into());
        }
        if !positive(self.connect_rate) || !(positive(self.duration) || self.duration == 0.0) {
            return Err("--connect-rate must be positive and --duration non-negative".into());
        }
        if self.source_ips > 250 {
            return Err("--source-ips is at most 250 (127.0.0.2 to 127.0.0.251)".into());
        }
        if self.node_rpc.is_some() && !positive(self.block_interval) {
            return Err("--block-interval must be positive".into());
        }
        if self.protocol == Protocol::V2 {
            let Some(key) = &self.authority_key else {
                return Err(
                    "--protocol v2 needs --authority-key (the pool's SV2 public key)".into(),
                );
            };
            key.parse::<sluice_sv2::AuthorityPublicKey>()
                .map_err(|e| format!("--authority-key: {e}"))?;
        }
        Ok(())
    }

    fn source(&self, miner: usize) -> Option<IpAddr> {
        if !self.server.ip().is_loopback() {
            return None;
        }
        let ips = if self.source_ips == 0 {
            self.connections.div_ceil(400).min(250)
        } else {
            self.source_ips
        };
        let k = (miner % ips.max(1)) as u8;
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k)))
    }
}

/// Counters every miner updates, read live by the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Miners connected and authorized now.
    pub connected: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// Connections lost or closed by the server, then made again.
    pub reconnects: AtomicU64,
    /// Shares sent.
    pub submitted: AtomicU64,
    /// Shares accepted.
    pub accepted: AtomicU64,
    /// Shares rejected.
    pub rejected: AtomicU64,
    /// Shares abandoned because the difficulty was out of reach.
    pub too_hard: AtomicU64,
    /// Clean jobs received.
    pub clean_jobs: AtomicU64,
    /// Accepted difficulty, summed (an `f64`'s bits).
    pub accepted_difficulty_bits: AtomicU64,
    /// The difficulty of the submits still waiting for their answer when
    /// their miner stopped or lost its connection, summed (an `f64`'s
    /// bits): the pool may have recorded and credited them.
    pub unanswered_difficulty_bits: AtomicU64,
    /// Bytes written to the server.
    pub bytes_sent: AtomicU64,
    /// Bytes read from the server.
    pub bytes_received: AtomicU64,
}

impl Counters {
    /// Adds `d` to the accepted difficulty.
    pub fn add_accepted_difficulty(&self, d: f64) {
        add_f64(&self.accepted_difficulty_bits, d);
    }

    /// The accepted difficulty so far.
    pub fn accepted_difficulty(&self) -> f64 {
        f64::from_bits(self.accepted_difficulty_bits.load(Ordering::Relaxed))
    }

    /// A miner ended with submits of difficulties `pending` unanswered.
    pub(crate) fn add_unanswered(&self, pending: impl Iterator<Item = f64>) {
        add_f64(&self.unanswered_difficulty_bits, pending.sum());
    }

    /// The difficulty of the submits miners ended without an answer to.
    pub fn unanswered_difficulty(&self) -> f64 {
        f64::from_bits(self.unanswered_difficulty_bits.load(Ordering::Relaxed))
    }
}

/// Adds `d` to the `f64` whose bits `sum` holds.
fn add_f64(sum: &AtomicU64, d: f64) {
    let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + d).to_bits())
    });
}

/// What the miners share besides the counters.
pub(crate) struct Shared {
    pub(crate) options: Options,
    pub(crate) counters: Arc<Counters>,
    /// Rejections by `code message`.
    pub(crate) rejections: Mutex<HashMap<String, u64>>,
    /// Submit round trips, microseconds, merged from the miners.
    pub(crate) round_trips: Mutex<Vec<u32>>,
    /// When each miner saw a clean job on top of each block.
    pub(crate) clean_seen: Mutex<Vec<(BlockHash, Instant)>>,
    /// Accepted shares that met the network target.
    pub(crate) blocks: Mutex<Vec<BlockHash>>,
    /// Every accepted share's header hash, with `record_accepted`.
    pub(crate) accepted: Mutex<Vec<BlockHash>>,
    /// The last `mining.notify` line and what it parsed to.
    pub(crate) last_notify: Mutex<Option<(String, sluice_stratum::message::ServerMessage)>>,
    pub(crate) stop: CancellationToken,
}

impl Shared {
    /// The pool accepted a share of difficulty `d` whose header hashes to
    /// `hash` (a block when `block`).
    pub(crate) fn on_accepted(&self, hash: BlockHash, d: f64, block: bool) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.add_accepted_difficulty(d);
        let push = |list: &Mutex<Vec<BlockHash>>| {
            list.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(hash);
        };
        if block {
            push(&self.blocks);
        }
        if self.options.record_accepted {
            push(&self.accepted);
        }
    }
}

/// Runs the miners until `duration` after they have all connected (or
/// `stop`), then reports. `counters` may be watched meanwhile.
pub async fn run(
    options: Options,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<Report> {
    options.validate().map_err(anyhow::Error::msg)?;
    let shared = Arc::new(Shared {
        options: options.clone(),
        counters: counters.clone(),
        rejections: Mutex::default(),
        round_trips: Mutex::default(),
        clean_seen: Mutex::default(),
        blocks: Mutex::default(),
        accepted: Mutex::default(),
        last_notify: Mutex::default(),
        // The miners stop after the final snapshot, not with `stop`: the
        // report counts every miner connected when the run ended.
        stop: CancellationToken::new(),
    });
    let started = Instant::now();
    let per_miner_rate = options.rate / options.connections as f64;
    let mut tasks = tokio::task::JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / options.connect_rate);
    for i in 0..options.connections {
        if stop.is_cancelled() {
            break;
        }
        tasks.spawn(miner::run(shared.clone(), i, per_miner_rate));
        tokio::time::sleep(gap).await;
    }
    // Wait (briefly) for the ramp-up to finish, then run for `duration`.
    let ramp_deadline = Instant::now() + Duration::from_secs(30);
    while counters.connected.load(Ordering::Relaxed) < options.connections as u64
        && Instant::now() < ramp_deadline
        && !stop.is_cancelled()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_up = started.elapsed();
    let measuring = Instant::now();
    let base = snapshot(&counters);
    let stop_blocks = shared.stop.child_token();
    let blocks = options
        .node_rpc
        .clone()
        .map(|rpc| tokio::spawn(node::make_blocks(rpc, options.clone(), stop_blocks.clone())));
    if options.duration > 0.0 {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs_f64(options.duration)) => {}
        }
    } else {
        stop.cancelled().await;
    }
    let elapsed = measuring.elapsed();
    let end = snapshot(&counters);
    // The last block's clean jobs get a second to arrive.
    stop_blocks.cancel();
    let made = match blocks {
        Some(handle) => handle.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if !made.is_empty() && !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    shared.stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(report::build(&shared, &base, &end, elapsed, ramp_up, &made))
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub(crate) connected: u64,
    pub(crate) submitted: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) accepted_difficulty: f64,
}

fn snapshot(c: &Counters) -> Snapshot {
    Snapshot {
        connected: c.connected.load(Ordering::Relaxed),
        submitted: c.submitted.load(Ordering::Relaxed),
        accepted: c.accepted.load(Ordering::Relaxed),
        rejected: c.rejected.load(Ordering::Relaxed),
        accepted_difficulty: c.accepted_difficulty(),
    }
}

/// Raises this process's open-file limit as far as allowed; returns it.
pub fn raise_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn options_that_cannot_work_are_refused() {
        let ok = Options::new("127.0.0.1:3333".parse().unwrap(), 10);
        assert!(ok.validate().is_ok());
        let refused = |f: fn(&mut Options), why: &str| {
            let mut o = ok.clone();
            f(&mut o);
            let e = o.validate().unwrap_err();
            assert!(e.contains(why), "{e}");
        };
        refused(|o| o.connections = 0, "--connections");
        refused(|o| o.rate = -1.0, "--rate");
        refused(|o| o.rate = f64::NAN, "--rate");
        refused(|o| o.connect_rate = 0.0, "--connect-rate");
        refused(|o| o.source_ips = 251, "--source-ips");
        refused(
            |o| {
                o.node_rpc = Some("http://h:1".into());
                o.block_interval = 0.0;
            },
            "--block-interval",
        );
    }

    #[test]
    fn connections_spread_over_loopback_sources() {
        let mut o = Options::new("127.0.0.1:3333".parse().unwrap(), 1_000);
        assert_eq!(o.source(0), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert_eq!(o.source(2), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4))));
        assert_eq!(
            o.source(3),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            "three sources for 1,000"
        );
        o.server = "192.0.2.1:3333".parse().unwrap();
        assert_eq!(
            o.source(0),
            None,
            "a remote server sees the host's own address"
        );
    }
}
