//! gbtmaker against nodesim (in process) and the real Kafka broker of the
//! local stack: templates reach the RawGbt topic at start, at once on a new
//! block (ZMQ, or long poll without ZMQ), and a dead node only shows in /health.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bitcoincore_rpc::{Auth, Client, RpcApi};
use gbtmaker::{Config, NodeConfig};
use serde_json::{Value, json};
use sluice_bus::{BusConfig, TailConsumer, Topic, TopicNames, TopicSpec, create_topics};
use sluice_core::BlockTemplate;
use sluice_service::{CommonConfig, Context, Health, Metrics, Shutdown};
use sluice_testkit::{kafka_brokers, unique_name};

fn context() -> Context {
    Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    }
}

struct Rig {
    node_ctx: Context,
    gbt_ctx: Context,
    node: nodesim::Endpoints,
    templates: TailConsumer<BlockTemplate>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.node_ctx.shutdown.token().cancel();
        self.gbt_ctx.shutdown.token().cancel();
    }
}

/// nodesim, a fresh RawGbt topic, and gbtmaker with `nodes(node endpoints)`.
async fn rig(poll_ms: u64, nodes: impl FnOnce(&nodesim::Endpoints) -> Vec<NodeConfig>) -> Rig {
    let node_ctx = context();
    let config = nodesim::Config {
        mempool_size: 20,
        ..nodesim::Config::ephemeral()
    };
    let node = nodesim::start(config, &node_ctx).await.unwrap();
    let topic = unique_name("sluice-test-rawgbt-");
    let kafka = BusConfig {
        brokers: kafka_brokers(),
        client_id: unique_name("gbtmaker-test-"),
        topics: TopicNames {
            raw_gbt: topic.clone(),
            // Its heartbeats stay out of the local pool's Event topic.
            event: unique_name("sluice-test-event-"),
            ..TopicNames::default()
        },
        ..BusConfig::default()
    };
    create_topics(
        &kafka,
        &[
            TopicSpec::scratch(&topic, 1),
            TopicSpec::scratch(&kafka.topics.event, 1),
        ],
    )
    .await
    .expect("the local stack's broker is up");
    let config = Config {
        service: CommonConfig {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..CommonConfig::default()
        },
        kafka: kafka.clone(),
        nodes: nodes(&node),
        poll_interval_ms: poll_ms,
        rpc_timeout_secs: 10,
        empty_block_jobs: false,
    };
    let gbt_ctx = context();
    tokio::spawn(gbtmaker::run(config, gbt_ctx.clone()));
    let templates = TailConsumer::new(&kafka, &Topic::new(topic), 100)
        .await
        .unwrap();
    Rig {
        node_ctx,
        gbt_ctx,
        node,
        templates,
    }
}

fn sim_node(ep: &nodesim::Endpoints, zmq: bool) -> NodeConfig {
    NodeConfig {
        name: "sim".into(),
        rpc_url: format!("http://{}", ep.rpc),
        rpc_user: "sluice".into(),
        rpc_password: "sluice".into(),
        cookie_file: None,
        zmq_hashblock: zmq.then(|| ep.zmq.clone()),
        zmq_rawblock: None,
    }
}

async fn generate(ep: &nodesim::Endpoints) {
    let client = Client::new(
        &format!("http://{}", ep.rpc),
        Auth::UserPass("sluice".into(), "sluice".into()),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        client
            .call::<Value>(
                "generatetoaddress",
                &[
                    json!(1),
                    json!("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"),
                ],
            )
            .unwrap()
    })
    .await
    .unwrap();
}

/// The next template for `height`, skipping older ones, within `within`.
async fn template_at(rig: &Rig, height: u32, within: Duration) -> BlockTemplate {
    tokio::time::timeout(within, async {
        loop {
            let t = rig.templates.next().await.unwrap().value;
            if t.height == height {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no template for height {height} within {within:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_published_at_start_and_at_once_on_zmq_hashblock() {
    // Polling every minute: only ZMQ can explain a prompt second template.
    let rig = rig(60_000, |ep| vec![sim_node(ep, true)]).await;
    let first = template_at(&rig, 1, Duration::from_secs(20)).await;
    assert_eq!(first.node_id, "sim");
    assert_eq!(first.transactions.len(), 20);
    assert_eq!(first.id, first.compute_id());
    assert!(first.default_witness_commitment.is_some());
    let fees: bitcoin::Amount = first.transactions.iter().map(|t| t.fee).sum();
    assert_eq!(
        first.coinbase_value,
        bitcoin::Amount::from_btc(50.0).unwrap() + fees
    );

    let started = Instant::now();
    generate(&rig.node).await;
    let second = template_at(&rig, 2, Duration::from_secs(10)).await;
    println!("new block to RawGbt consumed: {:?}", started.elapsed());
    assert_ne!(second.prev_blockhash, first.prev_blockhash);
    let m = rig.gbt_ctx.metrics.encode();
    assert!(m.contains("gbtmaker_templates_published_total"), "{m}");
    assert!(
        rig.gbt_ctx.health.is_healthy(),
        "{:?}",
        rig.gbt_ctx.health.snapshot()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_zmq_a_long_poll_brings_the_new_block() {
    let rig = rig(60_000, |ep| vec![sim_node(ep, false)]).await;
    template_at(&rig, 1, Duration::from_secs(20)).await;
    generate(&rig.node).await;
    template_at(&rig, 2, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_node_is_reported_and_the_live_one_keeps_publishing() {
    let rig = rig(300, |ep| {
        let dead = NodeConfig {
            name: "dead".into(),
            rpc_url: "http://127.0.0.1:1".into(),
            ..sim_node(ep, true)
        };
        vec![sim_node(ep, true), dead]
    })
    .await;
    template_at(&rig, 1, Duration::from_secs(20)).await;
    // The live node's health is set once the broker acknowledged its
    // template, which may come after the template reached our consumer.
    let health = rig.gbt_ctx.health.clone();
    sluice_testkit::eventually(
        Duration::from_secs(10),
        "the dead node reported, the live one and the broker healthy",
        || {
            let snapshot = health.snapshot();
            let ok = |name: &str| snapshot.get(name).map(|c| c.ok);
            let reported = ok("node:dead") == Some(false)
                && ok("node:sim") == Some(true)
                && ok("kafka_templates") == Some(true);
            async move { reported.then_some(()) }
        },
    )
    .await;
    let snapshot = rig.gbt_ctx.health.snapshot();
    assert!(
        snapshot["node:dead"].detail.contains("Connection refused"),
        "{snapshot:?}"
    );
    assert!(!rig.gbt_ctx.health.is_healthy());
    generate(&rig.node).await;
    template_at(&rig, 2, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_zmq_subscription_is_noticed_and_reconnected() {
    // ZMQ pointed where nothing publishes: polling finds the new tip instead.
    let rig = rig(300, |ep| {
        vec![NodeConfig {
            zmq_hashblock: Some("tcp://127.0.0.1:1".into()),
            zmq_rawblock: None,
            ..sim_node(ep, true)
        }]
    })
    .await;
    template_at(&rig, 1, Duration::from_secs(20)).await;
    generate(&rig.node).await;
    template_at(&rig, 2, Duration::from_secs(10)).await;
    let metrics = rig.gbt_ctx.metrics.clone();
    sluice_testkit::eventually(Duration::from_secs(5), "a counted ZMQ miss", || {
        let text = metrics.encode();
        async move { text.contains("gbtmaker_zmq_misses_total 1").then_some(()) }
    })
    .await;
}

#[test]
fn configs_without_nodes_or_with_bad_urls_are_refused() {
    use sluice_service::Validate;
    let parse = |text: &str| toml::from_str::<Config>(text).unwrap();
    assert!(
        parse("nodes = []")
            .validate()
            .unwrap_err()
            .contains("at least one")
    );
    let bad = parse("[[nodes]]\nname = \"a\"\nrpc_url = \"127.0.0.1:18443\"\n");
    assert!(bad.validate().unwrap_err().contains("http://"));
    let dup = parse(
        "[[nodes]]\nname = \"a\"\nrpc_url = \"http://x\"\n[[nodes]]\nname = \"a\"\nrpc_url = \"http://y\"\n",
    );
    assert!(dup.validate().unwrap_err().contains("unique"));
}

/// The commented example config loads and validates.
#[test]
fn the_example_config_is_valid() {
    let path = sluice_testkit::repo_root().join("deploy/config/gbtmaker.toml");
    let config: Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(
        config.nodes[0].zmq_hashblock.as_deref(),
        Some("tcp://127.0.0.1:28332")
    );
}
