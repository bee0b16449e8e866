//! An in-process statshttpd on fresh topics, a fresh share log directory
//! and a hand-moved clock, against the real broker and MariaDB. Its shares
//! carry timestamps on a day of their own (far from today and from other
//! runs), so the pool's hourly rows of that day are this test's alone.
#![allow(
    clippy::unwrap_used,
    clippy::type_complexity,
    dead_code,
    unreachable_pub
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use bitcoin::hashes::Hash;
use mysql_async::prelude::Queryable;
use serde_json::Value;
use sluice_bus::{BusConfig, Producer, Topic, TopicSpec, create_topics};
use sluice_core::record::{Event, ShareRecord, ShareStatus};
use sluice_core::{Job, JobId};
use sluice_service::{CommonConfig, Context, Health, Metrics, Shutdown};
use sluice_store::Store;
use statshttpd::{Clock, Config};
use tokio::task::JoinHandle;

pub const MINUTE: u64 = 60_000;
pub const TWO_32: f64 = 4_294_967_296.0;

pub struct Rig {
    pub config: Config,
    pub clock: Clock,
    pub producer: Producer,
    pub shares: Topic<ShareRecord>,
    pub events: Topic<Event>,
    pub jobs: Topic<Job>,
    pub store: Store,
    pub user: (u32, String),
    /// Noon (UTC) of this test's day.
    pub t0: u64,
    running: Option<(Context, JoinHandle<anyhow::Result<()>>)>,
}

/// Whether any pool statistics row lies on `day` (YYYYMMDD).
async fn day_is_used(store: &Store, day: u32) -> bool {
    let mut conn = store.pool().get_conn().await.unwrap();
    let rows: Option<u64> = conn
        .exec_first(
            "SELECT (SELECT COUNT(*) FROM stats_pool_day WHERE day = ?) \
                  + (SELECT COUNT(*) FROM stats_pool_hour WHERE hour BETWEEN ? AND ?)",
            (day, day * 100, day * 100 + 23),
        )
        .await
        .unwrap();
    rows.unwrap_or(0) > 0
}

impl Rig {
    /// Fresh topics (Share with 3 partitions), a fresh user and directory;
    /// the clock at `t0 + 20 min`.
    pub async fn new() -> Rig {
        let brokers = sluice_testkit::kafka_brokers();
        let mut kafka = BusConfig {
            brokers,
            client_id: sluice_testkit::unique_name("stats-test-"),
            ..BusConfig::default()
        };
        let names = [
            sluice_testkit::unique_name("sluice-test-share-"),
            sluice_testkit::unique_name("sluice-test-event-"),
            sluice_testkit::unique_name("sluice-test-job-"),
        ];
        let specs: Vec<_> = names
            .iter()
            .zip([3, 1, 1])
            .map(|(name, partitions)| TopicSpec::scratch(name, partitions))
            .collect();
        create_topics(&kafka, &specs).await.unwrap();
        kafka.topics.share = names[0].clone();
        kafka.topics.event = names[1].clone();
        kafka.topics.job = names[2].clone();
        let store = Store::new(&sluice_testkit::mysql_url()).unwrap();
        let name = sluice_testkit::unique_name("statsuser");
        let user = store.ensure_user(&name).await.unwrap();
        // A day of its own between 2040 and 2090: one no earlier run left
        // pool rows on (the pool's statistics are shared by every test and
        // every run against this database; a day drawn again would count
        // an old run's shares).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ u64::from(std::process::id()) << 20;
        let mut day = 25_567 + seed % 18_000; // days since 1970: 2040-01-01 onward
        while day_is_used(&store, statshttpd::day_of(day * 86_400_000)).await {
            day = 25_567 + (day - 25_567 + 7_919) % 18_000;
        }
        let t0 = day * 86_400_000 + 12 * 3_600_000;
        let dir: PathBuf = std::env::temp_dir().join(sluice_testkit::unique_name("sharelog-"));
        let config = Config {
            service: CommonConfig {
                admin_listen: "127.0.0.1:0".parse().unwrap(),
                shutdown_grace_secs: 5,
                ..CommonConfig::default()
            },
            kafka: kafka.clone(),
            mysql: statshttpd::MysqlConfig {
                url: sluice_testkit::mysql_url(),
            },
            zookeeper: None,
            nodes: Vec::new(),
            listen: format!("127.0.0.1:{}", sluice_testkit::free_port())
                .parse()
                .unwrap(),
            data_dir: dir,
            group: sluice_testkit::unique_name("stats-group-"),
            network: "regtest".into(),
            flush_interval_secs: 1,
            events_tail: 1000,
            worker_minutes: true,
            web_dir: std::path::PathBuf::from("/nonexistent"),
        };
        Rig {
            config,
            clock: Clock::manual(t0 + 20 * MINUTE),
            producer: Producer::new(&kafka, 0).unwrap(),
            shares: Topic::new(names[0].clone()),
            events: Topic::new(names[1].clone()),
            jobs: Topic::new(names[2].clone()),
            store,
            user: (user.id, name),
            t0,
            running: None,
        }
    }

    pub fn uid(&self) -> u32 {
        self.user.0
    }

    /// The day of `t0`, YYYYMMDD.
    pub fn day(&self) -> u32 {
        statshttpd::day_of(self.t0)
    }

    /// A share of this rig's user.
    pub fn share(&self, worker: i64, status: ShareStatus, difficulty: f64, at: u64) -> ShareRecord {
        ShareRecord {
            job_id: JobId(1),
            user_id: self.uid(),
            worker_id: worker,
            worker_name: format!("rig{worker}"),
            server_id: 7,
            extranonce1: 0x0700_0001,
            extranonce2: vec![0; 8],
            ntime: (at / 1000) as u32,
            nonce: at as u32,
            version_bits: 0,
            share_difficulty: difficulty,
            network_bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
            height: 101,
            status,
            hash: bitcoin::BlockHash::all_zeros(),
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, worker as u8)),
            timestamp_ms: at,
            protocol: sluice_core::record::MiningProtocol::StratumV1,
            solo: false,
        }
    }

    pub async fn send(&self, share: &ShareRecord) {
        let key = share.user_id.to_be_bytes();
        self.producer.send(&self.shares, &key, share).await.unwrap();
    }

    pub async fn send_event(&self, event: &Event) {
        self.producer
            .send(&self.events, b"test", event)
            .await
            .unwrap();
    }

    /// Starts statshttpd in this process.
    pub fn start(&mut self) {
        assert!(self.running.is_none());
        let ctx = Context {
            shutdown: Shutdown::new(),
            health: Health::default(),
            metrics: Metrics::default(),
        };
        let handle = tokio::spawn(statshttpd::run_with_clock(
            self.config.clone(),
            ctx.clone(),
            self.clock.clone(),
        ));
        self.running = Some((ctx, handle));
    }

    /// Waits (30 s at most) for statshttpd to stop by itself with an error:
    /// the error.
    pub async fn refused(&mut self) -> String {
        let (ctx, handle) = self.running.take().unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("statshttpd stopped within 30 s")
            .unwrap();
        // Its API server lets go of the port before the next start.
        assert!(sluice_service::drain(&ctx.shutdown, Duration::from_secs(10)).await);
        format!("{:#}", ended.expect_err("statshttpd refused to start"))
    }

    /// Stops it as SIGTERM would, and waits for it.
    pub async fn stop(&mut self) {
        let (ctx, handle) = self.running.take().unwrap();
        ctx.shutdown.token().cancel();
        handle.await.unwrap().unwrap();
        assert!(sluice_service::drain(&ctx.shutdown, Duration::from_secs(10)).await);
    }

    /// `GET path`: status and JSON body (None while nothing listens).
    pub async fn get(&self, path: &str) -> Option<(u16, Value)> {
        let port = self.config.listen.port();
        let path = path.to_owned();
        let (status, text) =
            tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, &path))
                .await
                .unwrap()?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// `GET path` once statshttpd answers it with `status`.
    pub async fn get_when(
        &self,
        path: &str,
        what: &str,
        ok: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        sluice_testkit::eventually(Duration::from_secs(30), what, || async {
            self.get(path)
                .await
                .filter(|(s, v)| ok(*s, v))
                .map(|(_, v)| v)
        })
        .await
    }

    /// Waits until the btcpool root says the service is initialized.
    pub async fn initialized(&self) {
        self.get_when("/", "statshttpd initialized", |s, v| {
            s == 200 && v["err_no"] == 0
        })
        .await;
    }

    /// The `mining_workers` row of this user's `worker`: the window columns,
    /// accept_count, worker_name and miner_agent.
    pub async fn worker_row(&self, worker: i64) -> Option<WorkerRow> {
        let mut conn = self.store.pool().get_conn().await.unwrap();
        let row: Option<(f64, f64, f64, f64, f64, f64, f64, f64, u64, String, String)> = conn
            .exec_first(
                "SELECT accept_5m, accept_15m, stale_15m, reject_15m, accept_1h, stale_1h, \
                 reject_1h, hashrate_5m, accept_count, worker_name, miner_agent \
                 FROM mining_workers WHERE user_id = ? AND worker_id = ?",
                (self.uid(), worker),
            )
            .await
            .unwrap();
        row.map(|r| WorkerRow {
            accept: [r.0, r.1, r.4],
            stale: [r.2, r.5],
            reject: [r.3, r.6],
            hashrate_5m: r.7,
            accept_count: r.8,
            name: r.9,
            agent: r.10,
        })
    }

    /// Every `stats_*` row of this rig's day for its user and the pool, as
    /// text (every column but the timestamps), sorted.
    pub async fn stats_rows(&self) -> Vec<String> {
        let mut conn = self.store.pool().get_conn().await.unwrap();
        let day = self.day();
        let (h0, h1) = (day * 100, day * 100 + 23);
        let mut out = Vec::new();
        let value_columns = "share_accept, share_stale, share_reject, reject_rate, \
                             CAST(score AS CHAR), earn";
        for (table, keys, filter) in [
            (
                "stats_pool_hour",
                "0, 0, hour",
                "hour BETWEEN ? AND ? AND ? >= 0",
            ),
            (
                "stats_pool_day",
                "0, 0, day",
                "day BETWEEN ? AND ? AND ? >= 0",
            ),
            (
                "stats_users_hour",
                "user_id, 0, hour",
                "hour BETWEEN ? AND ? AND user_id = ?",
            ),
            (
                "stats_users_day",
                "user_id, 0, day",
                "day BETWEEN ? AND ? AND user_id = ?",
            ),
            (
                "stats_workers_hour",
                "user_id, worker_id, hour",
                "hour BETWEEN ? AND ? AND user_id = ?",
            ),
            (
                "stats_workers_day",
                "user_id, worker_id, day",
                "day BETWEEN ? AND ? AND user_id = ?",
            ),
        ] {
            let (lo, hi) = if table.ends_with("hour") {
                (h0, h1)
            } else {
                (day, day)
            };
            let rows: Vec<(u32, i64, u32, f64, f64, f64, f64, String, u64)> = conn
                .exec(
                    format!("SELECT {keys}, {value_columns} FROM {table} WHERE {filter}"),
                    (lo, hi, self.uid()),
                )
                .await
                .unwrap();
            out.extend(rows.into_iter().map(|r| format!("{table} {r:?}")));
        }
        out.sort();
        out
    }

    /// Deletes what [`Rig::stats_rows`] reads.
    pub async fn delete_stats_rows(&self) {
        let mut conn = self.store.pool().get_conn().await.unwrap();
        let day = self.day();
        let (h0, h1) = (day * 100, day * 100 + 23);
        for (table, filter, lo, hi) in [
            ("stats_pool_hour", "hour BETWEEN ? AND ? AND ? >= 0", h0, h1),
            ("stats_pool_day", "day BETWEEN ? AND ? AND ? >= 0", day, day),
            (
                "stats_users_hour",
                "hour BETWEEN ? AND ? AND user_id = ?",
                h0,
                h1,
            ),
            (
                "stats_users_day",
                "day BETWEEN ? AND ? AND user_id = ?",
                day,
                day,
            ),
            (
                "stats_workers_hour",
                "hour BETWEEN ? AND ? AND user_id = ?",
                h0,
                h1,
            ),
            (
                "stats_workers_day",
                "day BETWEEN ? AND ? AND user_id = ?",
                day,
                day,
            ),
        ] {
            conn.exec_drop(
                format!("DELETE FROM {table} WHERE {filter}"),
                (lo, hi, self.uid()),
            )
            .await
            .unwrap();
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// 5 m, 15 m, 1 h.
    pub accept: [f64; 3],
    /// 15 m, 1 h.
    pub stale: [f64; 2],
    /// 15 m, 1 h.
    pub reject: [f64; 2],
    pub hashrate_5m: f64,
    pub accept_count: u64,
    pub name: String,
    pub agent: String,
}

/// A JSON number as f64.
pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}
