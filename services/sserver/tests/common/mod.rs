//! The rig of sserver's tests: the real pipeline in process (nodesim →
//! gbtmaker → jobmaker → sserver) on the local stack's broker, ZooKeeper and
//! MariaDB, with fresh topics, ZooKeeper root and users per test; and a
//! scripted miner speaking Stratum over TCP through crates/stratum's client.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::BlockHash;
use serde_json::Value;
use sluice_bus::TailConsumer;
use sluice_core::Difficulty;
use sluice_core::record::{Event, ShareRecord, SolvedShare};
use sluice_rig::{Options, Pipeline};
use sluice_service::Context;
use sluice_store::Store;
use sluice_stratum::client::{ClientEvent, ClientSession, header};
use sluice_stratum::message::Submit;
use sluice_stratum::{LineFramer, Notify, Request, ServerMessage};
use sluice_testkit::{mysql_url, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const MASK: u32 = 0x1fff_e000;
/// Network target 2^236: one hash in about a million is a block.
pub const BITS: &str = "1e0fffff";
/// Share difficulty 2^-20 (target 2^244): one hash in about 4,096 is a share.
pub const DIFF: f64 = 1.0 / 1_048_576.0;

pub struct Rig {
    pub pipeline: Pipeline,
    pub server_ctx: Context,
    pub stratum: SocketAddr,
    pub user: String,
    pub user_id: u32,
    pub config: sserver::Config,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.server_ctx.shutdown.token().cancel();
    }
}

/// The pipeline with an sserver configured by `tweak`.
pub async fn rig(tweak: impl FnOnce(&mut sserver::Config)) -> Rig {
    let pipeline = sluice_rig::pipeline(Options {
        bits: BITS.into(),
        ..Options::default()
    })
    .await;
    let user = unique_name("miner");
    let store = Store::new(&mysql_url()).unwrap();
    let user_id = store.ensure_user(&user).await.unwrap().id;
    store.close().await;

    let stratum: SocketAddr = format!("127.0.0.1:{}", sluice_testkit::free_port())
        .parse()
        .unwrap();
    let mut config = sserver::Config {
        service: sluice_rig::local(),
        kafka: pipeline.kafka.clone(),
        zookeeper: pipeline.zk.clone(),
        mysql: sserver::MysqlConfig { url: mysql_url() },
        listen: stratum,
        server_id: 0,
        extranonce2_size: 8,
        version_mask: format!("{MASK:08x}"),
        solved_log: std::env::temp_dir().join(unique_name("sserver-solved-")),
        proxy_protocol: false,
        accept_wait_ms: 2_000,
        spool: Default::default(),
        difficulty: sserver::DifficultyConfig {
            default: DIFF,
            min: DIFF / 4.0,
            max: 1e9,
            share_interval_secs: 10.0,
            retarget_secs: 300.0,
        },
        jobs: sserver::JobsConfig::default(),
        users: sserver::UsersConfig::default(),
        limits: sserver::Limits::default(),
        tls: None,
        sv2: None,
    };
    tweak(&mut config);
    let server_ctx = sluice_rig::context();
    tokio::spawn(sserver::run(config.clone(), server_ctx.clone()));
    Rig {
        pipeline,
        server_ctx,
        stratum,
        user,
        user_id,
        config,
    }
}

impl Rig {
    /// A block mined outside the pool (a new tip).
    pub async fn generate(&self) -> BlockHash {
        self.pipeline.generate().await
    }

    pub async fn shares(&self) -> TailConsumer<ShareRecord> {
        self.pipeline
            .tail(&self.pipeline.kafka.topics.share, 100_000)
            .await
    }

    pub async fn solved(&self) -> TailConsumer<SolvedShare> {
        self.pipeline
            .tail(&self.pipeline.kafka.topics.solved_share, 1000)
            .await
    }

    pub async fn events(&self) -> TailConsumer<Event> {
        self.pipeline
            .tail(&self.pipeline.kafka.topics.event, 100_000)
            .await
    }

    /// A miner connected to the server (retrying while it starts).
    pub async fn miner(&self) -> Miner {
        let addr = self.stratum;
        let stream = sluice_testkit::eventually(
            Duration::from_secs(30),
            "sserver listening",
            || async move { TcpStream::connect(addr).await.ok() },
        )
        .await;
        Miner::new(stream)
    }

    /// A miner through subscribe, configure (version rolling) and authorize,
    /// with its first job.
    pub async fn ready_miner(&self) -> (Miner, Notify) {
        let mut m = self.miner().await;
        let job = m.handshake(&format!("{}.rig1", self.user)).await;
        (m, job)
    }
}

#[allow(unused_imports)]
pub use sluice_rig::next_where as record_where;

/// A plain or TLS connection.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub struct Miner {
    stream: Box<dyn Io>,
    framer: LineFramer,
    pub session: ClientSession,
    backlog: VecDeque<ClientEvent>,
    pub closed: bool,
    en2: u64,
}

impl Miner {
    pub fn new(stream: impl Io + 'static) -> Self {
        Miner {
            stream: Box::new(stream),
            framer: LineFramer::new(1 << 20),
            session: ClientSession::new(),
            backlog: VecDeque::new(),
            closed: false,
            en2: 0,
        }
    }

    pub async fn send(&mut self, request: Request) {
        self.raw(&request.to_line()).await;
    }

    pub async fn raw(&mut self, line: &str) {
        let _ = self.stream.write_all(format!("{line}\n").as_bytes()).await;
        let _ = self.stream.flush().await;
    }

    pub async fn raw_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next event from the server; `None` once it closed the connection.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        let line = self.read_line().await?;
        let msg = ServerMessage::parse(&line).unwrap();
        Some(self.session.on_message(msg))
    }

    /// The next line from the server as sent (nothing must be pending in
    /// the backlog); `None` once it closed the connection.
    pub async fn raw_line(&mut self) -> Option<String> {
        assert!(self.backlog.is_empty(), "raw_line after parsed events");
        self.read_line().await
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            match self.framer.next_line() {
                Ok(Some(line)) => return Some(line.to_string()),
                Ok(None) => {}
                Err(e) => panic!("server sent a bad line: {e}"),
            }
            let mut buf = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut buf))
                .await
                .expect("the server said nothing for 20 s")
                .unwrap_or(0);
            if n == 0 {
                self.closed = true;
                return None;
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// Skips events until `pick` accepts one; others are kept for later.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> T {
        let mut skipped = VecDeque::new();
        loop {
            let Some(e) = self.next().await else {
                panic!("connection closed while waiting for {what}; skipped {skipped:?}")
            };
            if let Some(t) = pick(&e) {
                skipped.extend(self.backlog.drain(..));
                self.backlog = skipped;
                return t;
            }
            skipped.push_back(e);
        }
    }

    /// Waits for the server to close the connection.
    pub async fn until_closed(&mut self) -> Vec<ClientEvent> {
        let mut seen = vec![];
        while let Some(e) = self.next().await {
            seen.push(e);
        }
        seen
    }

    /// The answer to the last request (any answer, events in between kept).
    pub async fn answer(&mut self) -> Result<Value, sluice_stratum::StratumError> {
        self.expect("an answer", |e| match e {
            ClientEvent::Answer(r) => Some(r.result.clone()),
            ClientEvent::Authorized(r) => Some(r.clone().map(|()| Value::Bool(true))),
            ClientEvent::ShareResult { result, .. } => {
                Some(result.clone().map(|()| Value::Bool(true)))
            }
            ClientEvent::Subscribed(_) | ClientEvent::Configured(_) => Some(Ok(Value::Null)),
            _ => None,
        })
        .await
    }

    pub async fn job(&mut self) -> Notify {
        self.expect("a job", |e| match e {
            ClientEvent::Job(n) => Some(n.clone()),
            _ => None,
        })
        .await
    }

    pub async fn handshake(&mut self, login: &str) -> Notify {
        let r = self.session.subscribe("sluice-test/1.0");
        self.send(r).await;
        self.expect("subscribed", |e| {
            matches!(e, ClientEvent::Subscribed(_)).then_some(())
        })
        .await;
        let r = self.session.configure(sluice_stratum::message::Configure {
            version_rolling_mask: Some(0xffff_ffff),
            ..Default::default()
        });
        self.send(r).await;
        self.expect("configured", |e| {
            matches!(e, ClientEvent::Configured(_)).then_some(())
        })
        .await;
        let r = self.session.authorize(login, "x");
        self.send(r).await;
        let ok = self
            .expect("authorized", |e| match e {
                ClientEvent::Authorized(r) => Some(r.clone()),
                _ => None,
            })
            .await;
        ok.unwrap();
        self.job().await
    }

    pub fn extranonce1(&self) -> Vec<u8> {
        self.session
            .subscribed
            .as_ref()
            .unwrap()
            .extranonce1
            .clone()
    }

    /// Searches nonces for a header whose hash meets (`want_share`) or misses
    /// the target of `difficulty`, with fresh extranonce2 each call.
    pub fn mine(
        &mut self,
        job: &Notify,
        difficulty: f64,
        version_bits: Option<u32>,
        want: Want,
    ) -> Submit {
        let target = Difficulty::new(difficulty).unwrap().to_target();
        let network = bitcoin::Target::from_compact(job.bits);
        self.en2 += 1;
        let en2 = self.en2.to_be_bytes().to_vec();
        let en1 = self.extranonce1();
        let mut h = header(job, &en1, &en2, job.time, 0, version_bits, MASK);
        for nonce in 0..u32::MAX {
            h.nonce = nonce;
            let hash = h.block_hash();
            let ok = match want {
                Want::Share => target.is_met_by(hash) && !network.is_met_by(hash),
                Want::Block => network.is_met_by(hash),
                Want::Low => !target.is_met_by(hash),
            };
            if ok {
                return Submit {
                    worker: "w".into(),
                    job_id: job.job_id.clone(),
                    extranonce2: en2,
                    ntime: job.time,
                    nonce,
                    version_bits,
                };
            }
        }
        unreachable!("no nonce found")
    }

    /// Submits and returns the answer.
    pub async fn submit(&mut self, submit: Submit) -> Result<(), sluice_stratum::StratumError> {
        let r = self.session.submit(submit, 0);
        self.send(r).await;
        self.expect("a share result", |e| match e {
            ClientEvent::ShareResult { result, .. } => Some(result.clone()),
            _ => None,
        })
        .await
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Want {
    Share,
    Block,
    Low,
}

/// sserver as its own process, not started yet: a pipeline of network
/// `bits`, a fresh user, a work directory and the configuration.
pub struct ProcessRig {
    pub pipeline: Pipeline,
    pub user: String,
    pub dir: std::path::PathBuf,
    pub port: u16,
    pub admin: u16,
    pub config: std::path::PathBuf,
}

/// A [`ProcessRig`] named `name`; `tables(dir)` gives the TOML tables its
/// configuration ends with.
pub async fn process_rig(
    bits: &str,
    name: &str,
    tables: impl FnOnce(&std::path::Path) -> String,
) -> ProcessRig {
    let pipeline = sluice_rig::pipeline(Options {
        bits: bits.into(),
        ..Options::default()
    })
    .await;
    let user = unique_name(name);
    let store = Store::new(&mysql_url()).unwrap();
    store.ensure_user(&user).await.unwrap();
    store.close().await;
    let dir = std::env::temp_dir().join(unique_name(&format!("sserver-{name}-")));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, admin) = (sluice_testkit::free_port(), sluice_testkit::free_port());
    let config = process_config(&pipeline, &dir, port, admin, &tables(&dir));
    ProcessRig {
        pipeline,
        user,
        dir,
        port,
        admin,
        config,
    }
}

impl ProcessRig {
    /// Starts the sserver process, its log in the work directory.
    pub fn start(&self, log: &str) -> std::process::Child {
        sluice_testkit::spawn_service(
            env!("CARGO_BIN_EXE_sserver"),
            &self.config,
            &self.dir.join(log),
        )
    }
}

/// Simulated miners at `server` as `user` (difficulty 2e-10, running until
/// stopped, every accepted hash listed), and their counters; returns once
/// all `n` are connected and `accepted` shares are accepted.
pub async fn miners_mining(
    mut options: simulator::Options,
    accepted: u64,
) -> (
    tokio::task::JoinHandle<anyhow::Result<simulator::Report>>,
    std::sync::Arc<simulator::Counters>,
    tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering;
    options.password = "d=0.0000000002".into();
    options.duration = 0.0;
    options.record_accepted = true;
    let n = options.connections as u64;
    let counters = std::sync::Arc::new(simulator::Counters::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let sim = tokio::spawn(simulator::run(options, counters.clone(), stop.clone()));
    let c = counters.clone();
    sluice_testkit::eventually(Duration::from_secs(30), "every miner mining", || {
        let c = c.clone();
        async move {
            (c.connected.load(Ordering::Relaxed) == n
                && c.accepted.load(Ordering::Relaxed) >= accepted)
                .then_some(())
        }
    })
    .await;
    (sim, counters, stop)
}

/// Kills `server` with SIGKILL and waits until every miner has seen it go.
pub async fn kill_under_miners(
    server: &mut std::process::Child,
    counters: &std::sync::Arc<simulator::Counters>,
) {
    use std::sync::atomic::Ordering;
    server.kill().unwrap();
    server.wait().unwrap();
    let c = counters.clone();
    sluice_testkit::eventually(
        Duration::from_secs(10),
        "the miners see the server gone",
        || {
            let c = c.clone();
            async move { (c.connected.load(Ordering::Relaxed) == 0).then_some(()) }
        },
    )
    .await;
}

/// An sserver configuration file for the binary run as its own process on
/// `pipeline`'s topics and ZooKeeper root; `tables` (TOML tables such as
/// `[difficulty]` and `[limits]`) are appended.
pub fn process_config(
    pipeline: &Pipeline,
    dir: &std::path::Path,
    port: u16,
    admin: u16,
    tables: &str,
) -> std::path::PathBuf {
    let t = &pipeline.kafka.topics;
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
solved_log = "{solved}"
[service]
admin_listen = "127.0.0.1:{admin}"
shutdown_grace_secs = 2
[kafka]
brokers = "{brokers}"
client_id = "sserver-process"
[kafka.topics]
job = "{job}"
share = "{share}"
solved_share = "{solved_share}"
event = "{event}"
[zookeeper]
connect = "{zk}"
root = "{root}"
session_timeout_ms = 3000
[mysql]
url = "{mysql}"
{tables}
"#,
        solved = dir.join("solved.log").display(),
        brokers = pipeline.kafka.brokers,
        job = t.job,
        share = t.share,
        solved_share = t.solved_share,
        event = t.event,
        zk = pipeline.zk.connect,
        root = pipeline.zk.root,
        mysql = mysql_url(),
    );
    let path = dir.join("sserver.toml");
    std::fs::write(&path, config).unwrap();
    path
}
