//! The payer's rig: a Share topic of its own on the local stack's Kafka,
//! a ZooKeeper root of its own, a database of its own, found blocks as
//! blkmaker records them, and the payer in process.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget};
use payer::{Config, Scheme};
use sluice_bus::{BusConfig, Producer, Topic, TopicNames, TopicSpec, create_topics};
use sluice_coord::ZkConfig;
use sluice_core::record::ShareRecord;
use sluice_core::{JobId, ShareStatus};
use sluice_ledger::books::Account;
use sluice_service::Context;
use sluice_store::{FoundBlock, MysqlConfig, Store};
use sluice_testkit::{Database, eventually, kafka_brokers, unique_name, zookeeper};

/// Difficulty 1's network target: a block is one share of difficulty 1.
pub const BITS_DIFF1: u32 = 0x1d00_ffff;
pub const REWARD: u64 = 5_000_000_000;

pub struct Books {
    db: Database,
    pub store: Store,
    kafka: BusConfig,
    producer: Producer,
    zk: ZkConfig,
    pub ctxs: Vec<Context>,
    /// A minute ten minutes ago: every share is long settled.
    pub minute: u64,
    /// The height of the shares' job.
    pub height: u32,
}

impl Books {
    pub async fn new() -> Books {
        sluice_rig::trace_if_asked();
        let db = Database::create().await;
        let store = Store::new(&db.url).unwrap();
        store.migrate().await.unwrap();
        let kafka = BusConfig {
            brokers: kafka_brokers(),
            client_id: unique_name("sluice-test-"),
            topics: TopicNames {
                share: unique_name("sluice-test-share-"),
                event: unique_name("sluice-test-event-"),
                ..TopicNames::default()
            },
            ..BusConfig::default()
        };
        let specs = [
            TopicSpec::scratch(&kafka.topics.share, 2),
            TopicSpec::scratch(&kafka.topics.event, 1),
        ];
        create_topics(&kafka, &specs).await.unwrap();
        Books {
            producer: Producer::new(&kafka, 0).unwrap(),
            zk: ZkConfig {
                connect: zookeeper(),
                root: unique_name("/sluice-test-"),
                session_timeout_ms: 3_000,
            },
            kafka,
            store,
            db,
            ctxs: Vec::new(),
            minute: sluice_service::now_ms() / 60_000 - 10,
            height: 300,
        }
    }

    pub fn config(&self, scheme: Scheme) -> Config {
        Config {
            service: sluice_rig::local(),
            kafka: self.kafka.clone(),
            zookeeper: self.zk.clone(),
            mysql: MysqlConfig {
                url: self.db.url.clone(),
            },
            network: "regtest".into(),
            scheme,
            fee_bps: 100,
            pplns_window: 3.5,
            settle_secs: 0,
            books_interval_secs: 1,
            pps_credit_secs: 1,
            fpps_fee_blocks: 144,
            work_keep_hours: 24,
            payouts: None,
        }
    }

    /// The payer's config file for this rig (as `deploy/config/payer.toml`
    /// is written), PPLNS over a window of 4 shares, with `payouts` (a TOML
    /// `[payouts]` section) appended.
    pub fn config_toml(&self, admin_port: u16, payouts: &str) -> String {
        format!(
            r#"network = "regtest"
scheme = "pplns"
fee_bps = 100
pplns_window = 4.0
settle_secs = 0
books_interval_secs = 1

[service]
instance = "drill"
admin_listen = "127.0.0.1:{admin_port}"
shutdown_grace_secs = 5

[kafka]
brokers = "{brokers}"
client_id = "{client_id}"

[kafka.topics]
share = "{share}"
event = "{event}"

[zookeeper]
connect = "{zk}"
root = "{root}"
session_timeout_ms = 3000

[mysql]
url = "{mysql}"

{payouts}
"#,
            brokers = self.kafka.brokers,
            client_id = self.kafka.client_id,
            share = self.kafka.topics.share,
            event = self.kafka.topics.event,
            zk = self.zk.connect,
            root = self.zk.root,
            mysql = self.db.url,
        )
    }

    pub fn start(&mut self, config: Config) {
        let ctx = sluice_rig::context();
        tokio::spawn(payer::run(config, ctx.clone()));
        self.ctxs.push(ctx);
    }

    /// A share of `user` at difficulty 1, `second`s into minute `minute`
    /// of the test (0 = ten minutes ago).
    pub async fn share(&self, user: u32, minute: u64, second: u64, status: ShareStatus, hash: u8) {
        let share = ShareRecord {
            job_id: JobId(1),
            user_id: user,
            worker_id: 1,
            worker_name: "rig".into(),
            server_id: 1,
            extranonce1: 0,
            extranonce2: vec![0; 8],
            ntime: 0,
            nonce: u32::from(hash),
            version_bits: 0,
            share_difficulty: 1.0,
            network_bits: CompactTarget::from_consensus(BITS_DIFF1),
            height: self.height,
            status,
            hash: BlockHash::from_byte_array([hash; 32]),
            client_ip: [127, 0, 0, 1].into(),
            timestamp_ms: ((self.minute + minute) * 60 + second) * 1000,
            protocol: Default::default(),
            solo: false,
        };
        let topic = Topic::<ShareRecord>::new(self.kafka.topics.share.clone());
        self.producer
            .send(&topic, &user.to_be_bytes(), &share)
            .await
            .unwrap();
    }

    /// blkmaker's row for the block of share `hash`.
    pub async fn found(&self, hash: u8, user: u32) -> String {
        let hash = BlockHash::from_byte_array([hash; 32]).to_string();
        self.store
            .record_found_block(&FoundBlock {
                height: 300,
                hash: hash.clone(),
                prev_hash: "00".repeat(32),
                user_id: user,
                worker_id: 1,
                worker_name: "rig".into(),
                job_id: 1,
                reward: REWARD,
                fees: 0,
                size: 300,
                tx_count: 1,
                submit_results: Default::default(),
                is_orphaned: false,
                solo_address: None,
            })
            .await
            .unwrap();
        hash
    }

    pub async fn balance(&self, account: Account) -> i64 {
        let all = self.store.ledger_balances().await.unwrap();
        all.get(&account).copied().unwrap_or(0)
    }

    pub async fn until_balance(
        &self,
        account: Account,
        what: &str,
        pred: impl Fn(i64) -> bool,
    ) -> i64 {
        eventually(Duration::from_secs(30), what, || async {
            let v = self.balance(account).await;
            pred(v).then_some(v)
        })
        .await
    }

    pub async fn end(self) {
        for c in &self.ctxs {
            c.shutdown.token().cancel();
        }
        self.store.close().await;
        self.db.drop().await;
    }
}

/// Within a satoshi of `exact`.
pub fn near(v: i64, exact: f64) -> bool {
    (v as f64 - exact).abs() <= 1.0
}

/// A nodesim whose wallet the payer pays from (`passphrase`: locked until
/// unlocked; "" for none), no synthetic transactions.
pub struct Node {
    _ctx: Context,
    pub rpc: std::net::SocketAddr,
    client: std::sync::Arc<bitcoincore_rpc::Client>,
}

impl Node {
    pub async fn start(passphrase: &str) -> Node {
        Node::with_mempool(passphrase, 0).await
    }

    /// With `mempool_size` synthetic transactions: its blocks pay fees.
    pub async fn with_mempool(passphrase: &str, mempool_size: usize) -> Node {
        let ctx = sluice_rig::context();
        let config = nodesim::Config {
            mempool_size,
            wallet_passphrase: passphrase.into(),
            ..nodesim::Config::ephemeral()
        };
        let ep = nodesim::start(config, &ctx).await.unwrap();
        let client = bitcoincore_rpc::Client::new(
            &format!("http://{}", ep.rpc),
            bitcoincore_rpc::Auth::UserPass("sluice".into(), "sluice".into()),
        )
        .unwrap();
        Node {
            _ctx: ctx,
            rpc: ep.rpc,
            client: std::sync::Arc::new(client),
        }
    }

    /// The payouts section paying from this node's wallet.
    pub fn payouts(&self, passphrase: &str) -> payer::PayoutConfig {
        payer::PayoutConfig {
            node: payer::NodeConfig {
                name: "sim".into(),
                rpc_url: format!("http://{}", self.rpc),
                rpc_user: "sluice".into(),
                rpc_password: "sluice".into(),
                cookie_file: None,
                zmq_hashblock: None,
                zmq_rawblock: None,
            },
            wallet: "pool".into(),
            wallet_passphrase: passphrase.into(),
            min_payout_sat: 100_000,
            fee_rate_sat_vb: 3,
            interval_secs: 1,
            max_users: 500,
            confirmations: 1,
            rpc_timeout_secs: 10,
        }
    }

    /// `method` with `params`; a refusal fails the test.
    pub async fn call(
        &self,
        method: &'static str,
        params: Vec<serde_json::Value>,
    ) -> serde_json::Value {
        use bitcoincore_rpc::RpcApi;
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || client.call::<serde_json::Value>(method, &params))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }
}

/// Why `component` of `health` is down, once it is (30 s at most).
pub async fn unhealthy(health: &sluice_service::Health, component: &str) -> String {
    eventually(
        Duration::from_secs(30),
        &format!("{component} reported failing"),
        || async {
            health
                .snapshot()
                .get(component)
                .filter(|h| !h.ok)
                .map(|h| h.detail.clone())
        },
    )
    .await
}
