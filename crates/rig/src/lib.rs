//! The rig of the pipeline's tests and benchmarks: the real services up to
//! jobmaker, in process, on the local stack (`install/stack.sh up`).
//!
//! [`pipeline`] starts nodesim, gbtmaker and (optionally) jobmaker on fresh
//! topics and a fresh ZooKeeper root, so tests never see each other's
//! messages. Tests of sserver and blkmaker start their own service on top.
//! Test code: it panics on a broken stack rather than returning errors.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::Duration;

use bitcoin::BlockHash;
use bitcoincore_rpc::{Auth, Client, RpcApi};
use serde_json::json;
use sluice_bus::{BusConfig, TailConsumer, Topic, TopicNames, TopicSpec, create_topics};
use sluice_coord::ZkConfig;
use sluice_service::{CommonConfig, Context, Health, Metrics, Shutdown};
use sluice_testkit::{kafka_brokers, unique_name, zookeeper};

/// A regtest address the rig's coinbases and `generatetoaddress` pay: the
/// rig nodesim's wallet's first (seed 1), so the pool's block rewards are
/// the wallet's to pay out, as on a pool's own node.
pub const PAYOUT: &str = "bcrt1q9yze2dhpetvcqhl3h534me4mqplm9ts2wdmzl5";
/// The pool's fee on a solo block in the rig's jobmaker (solo mining is on):
/// 1.5 %, to [`PAYOUT`].
pub const SOLO_FEE_BPS: u16 = 150;

/// A fresh service context.
pub fn context() -> Context {
    Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    }
}

/// `[service]` for an in-process service: admin port chosen by the OS, 5 s grace.
pub fn local() -> CommonConfig {
    CommonConfig {
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace_secs: 5,
        ..CommonConfig::default()
    }
}

/// Initializes logging when `RUST_LOG` is set (once per process).
pub fn trace_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        sluice_service::init_tracing(sluice_service::LogFormat::Human);
    }
}

/// A nodesim running in process until dropped.
pub struct Node {
    /// Its context (cancel its token to stop it).
    pub ctx: Context,
    /// Where it listens.
    pub endpoints: nodesim::Endpoints,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.ctx.shutdown.token().cancel();
    }
}

impl Node {
    /// Starts nodesim with `config`.
    pub async fn start(config: nodesim::Config) -> Node {
        let ctx = context();
        let endpoints = nodesim::start(config, &ctx).await.unwrap();
        Node { ctx, endpoints }
    }

    /// Starts nodesim as tests do: every port chosen by the OS, regtest's
    /// easiest blocks, a chain of its own from genesis.
    pub async fn ephemeral() -> Node {
        Node::start(nodesim::Config::ephemeral()).await
    }

    /// Stops this nodesim and starts a fresh one (a chain of its own from
    /// genesis, blocks of `bits`) where it listened, once its ports are free
    /// again: a node replaced under the same address (30 s at most).
    pub async fn replace(&mut self, bits: &str) {
        let rpc = self.endpoints.rpc;
        let zmq = self.endpoints.zmq.clone();
        self.ctx.shutdown.token().cancel();
        let config = nodesim::Config {
            rpc_listen: rpc,
            zmq_hashblock: zmq,
            bits: bits.to_owned(),
            ..nodesim::Config::ephemeral()
        };
        let started = sluice_testkit::eventually(
            Duration::from_secs(30),
            "the old node's ports free",
            || {
                let config = config.clone();
                async move {
                    let ctx = context();
                    match nodesim::start(config, &ctx).await {
                        Ok(endpoints) => Some((ctx, endpoints)),
                        Err(_) => {
                            // What did bind (ZMQ, first) lets go of its port.
                            ctx.shutdown.token().cancel();
                            None
                        }
                    }
                }
            },
        );
        (self.ctx, self.endpoints) = started.await;
    }

    /// `n` blocks mined outside the pool; the last one's hash.
    pub async fn generate_n(&self, n: u32) -> BlockHash {
        let mut last = self.generate().await;
        for _ in 1..n {
            last = self.generate().await;
        }
        last
    }

    /// A `[[nodes]]` entry for it, called `name`.
    pub fn config(&self, name: &str) -> gbtmaker::NodeConfig {
        node_config(name, &self.endpoints)
    }

    /// A blocking RPC client.
    pub fn client(&self) -> Client {
        client(&self.endpoints)
    }

    /// A block mined outside the pool (a new tip).
    pub async fn generate(&self) -> BlockHash {
        generate(&self.endpoints).await
    }

    /// `getblockcount`.
    pub async fn height(&self) -> u32 {
        let client = self.client();
        let count = tokio::task::spawn_blocking(move || client.get_block_count())
            .await
            .expect("the RPC task ran")
            .expect("nodesim answers getblockcount");
        u32::try_from(count).expect("a height fits u32")
    }
}

/// A `[[nodes]]` entry for the nodesim at `endpoints`.
pub fn node_config(name: &str, endpoints: &nodesim::Endpoints) -> gbtmaker::NodeConfig {
    gbtmaker::NodeConfig {
        zmq_hashblock: Some(endpoints.zmq.clone()),
        zmq_rawblock: Some(endpoints.zmq.clone()),
        ..node_config_at(name, endpoints.rpc)
    }
}

/// A `[[nodes]]` entry (RPC only) for a nodesim that is, or will be,
/// listening at `rpc`.
pub fn node_config_at(name: &str, rpc: std::net::SocketAddr) -> gbtmaker::NodeConfig {
    gbtmaker::NodeConfig {
        name: name.into(),
        rpc_url: format!("http://{rpc}"),
        rpc_user: "sluice".into(),
        rpc_password: "sluice".into(),
        cookie_file: None,
        zmq_hashblock: None,
        zmq_rawblock: None,
    }
}

/// A blocking RPC client of the nodesim at `endpoints`.
pub fn client(endpoints: &nodesim::Endpoints) -> Client {
    Client::new(
        &format!("http://{}", endpoints.rpc),
        Auth::UserPass("sluice".into(), "sluice".into()),
    )
    .unwrap()
}

/// `generatetoaddress 1` on the nodesim at `endpoints`: a new tip from outside the pool.
pub async fn generate(endpoints: &nodesim::Endpoints) -> BlockHash {
    let client = client(endpoints);
    let hashes: Vec<String> = tokio::task::spawn_blocking(move || {
        client
            .call("generatetoaddress", &[json!(1), json!(PAYOUT)])
            .unwrap()
    })
    .await
    .unwrap();
    hashes[0].parse().unwrap()
}

/// What [`pipeline`] starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// nodesim's block bits.
    pub bits: String,
    /// gbtmaker's poll interval.
    pub poll_ms: u64,
    /// Whether to start jobmaker too.
    pub jobmaker: bool,
    /// gbtmaker's `empty_block_jobs`.
    pub empty_block_jobs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bits: "207fffff".into(),
            poll_ms: 1000,
            jobmaker: true,
            empty_block_jobs: false,
        }
    }
}

/// The pipeline up to jobmaker, stopped when dropped.
pub struct Pipeline {
    /// The contexts of what it started (the node's is in `node`).
    pub ctxs: Vec<Context>,
    /// nodesim.
    pub node: Node,
    /// Fresh topics on the local broker.
    pub kafka: BusConfig,
    /// A fresh ZooKeeper root.
    pub zk: ZkConfig,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for c in &self.ctxs {
            c.shutdown.token().cancel();
        }
    }
}

/// Starts nodesim and gbtmaker (and jobmaker, unless `opts` says not) on
/// fresh topics, all five created with one partition.
pub async fn pipeline(opts: Options) -> Pipeline {
    trace_if_asked();
    let node = Node::start(nodesim::Config {
        bits: opts.bits.clone(),
        ..nodesim::Config::ephemeral()
    })
    .await;
    let kafka = BusConfig {
        brokers: kafka_brokers(),
        client_id: unique_name("sluice-test-"),
        topics: TopicNames {
            raw_gbt: unique_name("sluice-test-rawgbt-"),
            job: unique_name("sluice-test-job-"),
            share: unique_name("sluice-test-share-"),
            solved_share: unique_name("sluice-test-solved-"),
            event: unique_name("sluice-test-event-"),
        },
        ..BusConfig::default()
    };
    let specs: Vec<TopicSpec> = kafka
        .topics
        .all()
        .iter()
        .map(|name| TopicSpec::scratch(name, 1))
        .collect();
    create_topics(&kafka, &specs)
        .await
        .expect("the local stack's broker is up (install/stack.sh up)");
    let gbt_ctx = start_gbtmaker(&kafka, node.config("sim"), &opts);
    let mut pipeline = Pipeline {
        ctxs: vec![gbt_ctx],
        node,
        kafka,
        zk: ZkConfig {
            connect: zookeeper(),
            root: unique_name("/sluice-test-"),
            session_timeout_ms: 3_000,
        },
    };
    if opts.jobmaker {
        let ctx = context();
        tokio::spawn(jobmaker::run(pipeline.jobmaker_config(), ctx.clone()));
        pipeline.ctxs.push(ctx);
    }
    pipeline
}

/// A gbtmaker taking templates from `node` to `kafka`'s RawGbt.
fn start_gbtmaker(kafka: &BusConfig, node: gbtmaker::NodeConfig, opts: &Options) -> Context {
    let ctx = context();
    tokio::spawn(gbtmaker::run(
        gbtmaker::Config {
            service: local(),
            kafka: kafka.clone(),
            nodes: vec![node],
            poll_interval_ms: opts.poll_ms,
            rpc_timeout_secs: 10,
            empty_block_jobs: opts.empty_block_jobs,
        },
        ctx.clone(),
    ));
    ctx
}

impl Pipeline {
    /// Another gbtmaker on this pipeline's topics, taking templates from
    /// `node` every `poll_ms`; it stops when its context is cancelled.
    pub fn start_gbtmaker(&self, node: gbtmaker::NodeConfig, poll_ms: u64) -> Context {
        let opts = Options {
            poll_ms,
            ..Options::default()
        };
        start_gbtmaker(&self.kafka, node, &opts)
    }

    /// A jobmaker configuration for this pipeline.
    pub fn jobmaker_config(&self) -> jobmaker::Config {
        jobmaker::Config {
            service: local(),
            kafka: self.kafka.clone(),
            zookeeper: self.zk.clone(),
            job_interval_secs: 30,
            stale_template_secs: 60,
            pool_tag: "/sluice-test/".into(),
            payout_address: PAYOUT.into(),
            network: "regtest".into(),
            nodes: vec![self.node.config("sim")],
            empty_jobs: true,
            solo: jobmaker::SoloConfig {
                enabled: true,
                fee_bps: SOLO_FEE_BPS,
                fee_address: None,
            },
        }
    }

    /// Reads `topic` from its last `n` messages on.
    pub async fn tail<T: sluice_proto::Payload>(&self, topic: &str, n: i64) -> TailConsumer<T> {
        TailConsumer::new(&self.kafka, &Topic::new(topic), n)
            .await
            .unwrap()
    }

    /// How many accepted (or block) records each header hash has on the
    /// Share topic, read whole: what the checks by identity compare the
    /// hashes miners were told were accepted with.
    pub async fn accepted_on_topic(&self) -> std::collections::HashMap<String, u32> {
        let topic = Topic::<sluice_core::record::ShareRecord>::new(self.kafka.topics.share.clone());
        let mut on_topic = std::collections::HashMap::new();
        sluice_bus::read_to_end(
            &self.kafka,
            &topic,
            &std::collections::HashMap::new(),
            Duration::from_secs(30),
            |r| {
                if r.value.status.is_accepted() {
                    *on_topic.entry(r.value.hash.to_string()).or_default() += 1;
                }
            },
        )
        .await
        .unwrap();
        on_topic
    }

    /// A new tip mined outside the pool.
    pub async fn generate(&self) -> BlockHash {
        self.node.generate().await
    }
}

/// The next record of `c` matching `pred` within `within`; panics naming `what` if none came.
pub async fn next_where<T: sluice_proto::Payload>(
    c: &TailConsumer<T>,
    within: Duration,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> T {
    c.next_matching(within, pred)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no record {what} within {within:?}"))
}
