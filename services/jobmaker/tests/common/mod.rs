//! The rig shared by jobmaker's tests: nodesim and gbtmaker in process, fresh
//! topics and a fresh ZooKeeper root on the local stack.

#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use bitcoincore_rpc::{Auth, Client, RpcApi};
use serde_json::{Value, json};
use sluice_bus::{BusConfig, TailConsumer, Topic, TopicNames, TopicSpec, create_topics};
use sluice_core::{BlockTemplate, Job};
use sluice_service::{CommonConfig, Context, Health, Metrics, Shutdown};
use sluice_testkit::{kafka_brokers, unique_name, zookeeper};

pub(crate) fn context() -> Context {
    Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    }
}

pub(crate) struct Rig {
    pub(crate) ctxs: Vec<Context>,
    pub(crate) node: nodesim::Endpoints,
    pub(crate) kafka: BusConfig,
    pub(crate) zk_root: String,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in &self.ctxs {
            c.shutdown.token().cancel();
        }
    }
}

fn local() -> CommonConfig {
    CommonConfig {
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        ..CommonConfig::default()
    }
}

/// nodesim + gbtmaker (polling every `poll_ms`) publishing to fresh topics.
pub(crate) async fn rig(poll_ms: u64) -> Rig {
    let node_ctx = context();
    let node = nodesim::start(nodesim::Config::ephemeral(), &node_ctx)
        .await
        .unwrap();
    let topics = TopicNames {
        raw_gbt: unique_name("sluice-test-rawgbt-"),
        job: unique_name("sluice-test-job-"),
        ..TopicNames::default()
    };
    let kafka = BusConfig {
        brokers: kafka_brokers(),
        client_id: unique_name("jobmaker-test-"),
        topics,
        ..BusConfig::default()
    };
    let specs: Vec<TopicSpec> = [&kafka.topics.raw_gbt, &kafka.topics.job]
        .iter()
        .map(|name| TopicSpec {
            name: (*name).clone(),
            partitions: 1,
            replication: 1,
            retention_ms: 3_600_000,
        })
        .collect();
    create_topics(&kafka, &specs)
        .await
        .expect("the local stack's broker is up");
    let gbt_ctx = context();
    let gbt = gbtmaker::Config {
        service: local(),
        kafka: kafka.clone(),
        nodes: vec![gbtmaker::NodeConfig {
            name: "sim".into(),
            rpc_url: format!("http://{}", node.rpc),
            rpc_user: "sluice".into(),
            rpc_password: "sluice".into(),
            cookie_file: None,
            zmq_hashblock: Some(node.zmq.clone()),
        }],
        poll_interval_ms: poll_ms,
        rpc_timeout_secs: 10,
    };
    tokio::spawn(gbtmaker::run(gbt, gbt_ctx.clone()));
    Rig {
        ctxs: vec![node_ctx, gbt_ctx],
        node,
        kafka,
        zk_root: unique_name("/sluice-test-"),
    }
}

impl Rig {
    pub(crate) fn jobmaker_config(&self) -> jobmaker::Config {
        jobmaker::Config {
            service: local(),
            kafka: self.kafka.clone(),
            zookeeper: jobmaker::ZkConfig {
                connect: zookeeper(),
                root: self.zk_root.clone(),
                session_timeout_ms: 3_000,
            },
            job_interval_secs: 30,
            stale_template_secs: 60,
            pool_tag: "/sluice-test/".into(),
            payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
            network: "regtest".into(),
        }
    }

    pub(crate) async fn jobs(&self) -> TailConsumer<Job> {
        TailConsumer::new(
            &self.kafka,
            &Topic::new(self.kafka.topics.job.clone()),
            1000,
        )
        .await
        .unwrap()
    }

    pub(crate) async fn templates(&self) -> TailConsumer<BlockTemplate> {
        TailConsumer::new(
            &self.kafka,
            &Topic::new(self.kafka.topics.raw_gbt.clone()),
            1000,
        )
        .await
        .unwrap()
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(
            &format!("http://{}", self.node.rpc),
            Auth::UserPass("sluice".into(), "sluice".into()),
        )
        .unwrap()
    }

    pub(crate) async fn generate(&self) {
        let client = self.client();
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
}

impl Rig {
    /// Starts jobmaker in process and waits for its first job (height 1).
    pub(crate) async fn start_jobmaker(&self) -> (Context, TailConsumer<Job>, Job) {
        let ctx = context();
        tokio::spawn(jobmaker::run(self.jobmaker_config(), ctx.clone()));
        let jobs = self.jobs().await;
        let first = job_where(&jobs, Duration::from_secs(30), "at height 1", |j| {
            j.height == 1
        })
        .await;
        (ctx, jobs, first)
    }
}

/// The next job matching `pred`, within `within`.
pub(crate) async fn job_where(
    jobs: &TailConsumer<Job>,
    within: Duration,
    what: &str,
    pred: impl Fn(&Job) -> bool,
) -> Job {
    jobs.next_matching(within, pred)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no job {what} within {within:?}"))
}
