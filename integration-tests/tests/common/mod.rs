//! The whole pool for the end-to-end tests, and what they check on it.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bitcoin::hashes::Hash;
use sluice_rig::Options;
use sluice_testkit::unique_name;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Network target 2^250: one hash in about 64 is a block, so the 2,400 or
/// more hashes of a run (200 shares/s for 12 s, at least a hash each) find
/// about 37 (fewer than 2 has odds below 1 in 10^14).
pub(crate) const BITS: &str = "2003ffff";
/// Every hash meets it: a simulated miner's share costs one hash.
pub(crate) const SHARE_DIFFICULTY: f64 = 2e-10;
pub(crate) const MINERS: usize = 50;

/// The pool on fresh topics: nodesim and gbtmaker (the rig), sserver and
/// statshttpd in this process, jobmaker and blkmaker in this process unless
/// a drill runs them as processes; all use `mysql` for MySQL.
pub(crate) struct Pool {
    pub(crate) pipeline: sluice_rig::Pipeline,
    pub(crate) store: sluice_store::Store,
    pub(crate) user: String,
    pub(crate) user_id: u32,
    pub(crate) stratum: SocketAddr,
    pub(crate) api_port: u16,
    pub(crate) stats: statshttpd::Config,
    /// sserver's, to start it again.
    pub(crate) sserver: sserver::Config,
    /// blkmaker's, to start it again (on other nodes, in the same group).
    pub(crate) blkmaker: blkmaker::Config,
    pub(crate) solved_log: std::path::PathBuf,
    /// sserver's, blkmaker's (unused when it runs as a process) and
    /// statshttpd's, in this order.
    pub(crate) ctxs: Vec<sluice_service::Context>,
}

/// What runs in this process besides the rig, sserver and statshttpd.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InProcess {
    pub(crate) jobmaker: bool,
    pub(crate) blkmaker: bool,
}

impl InProcess {
    pub(crate) const ALL: InProcess = InProcess {
        jobmaker: true,
        blkmaker: true,
    };
}

impl Drop for Pool {
    fn drop(&mut self) {
        for c in &self.ctxs {
            c.shutdown.token().cancel();
        }
        let _ = std::fs::remove_dir_all(&self.stats.data_dir);
        let _ = std::fs::remove_file(&self.solved_log);
        if let Some(spool) = self.sserver.spool_dir() {
            let _ = std::fs::remove_dir_all(spool);
        }
    }
}

/// The tests each run a whole pool on two cores: one at a time.
pub(crate) static ONE_POOL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn start_pool(mysql: &str, in_process: InProcess) -> Pool {
    start_pool_with(mysql, in_process, |_| {}).await
}

/// [`start_pool`] with sserver's configuration changed by `tweak`.
pub(crate) async fn start_pool_with(
    mysql: &str,
    in_process: InProcess,
    tweak: impl FnOnce(&mut sserver::Config),
) -> Pool {
    start_pool_on(BITS, mysql, in_process, tweak).await
}

/// [`start_pool_with`] on a chain of network difficulty `bits` (compact,
/// hex): `"1d00ffff"` (difficulty 1) for a run that finds no block.
pub(crate) async fn start_pool_on(
    bits: &str,
    mysql: &str,
    in_process: InProcess,
    tweak: impl FnOnce(&mut sserver::Config),
) -> Pool {
    let pipeline = sluice_rig::pipeline(Options {
        bits: bits.into(),
        jobmaker: in_process.jobmaker,
        ..Options::default()
    })
    .await;
    let store = sluice_store::Store::new(mysql).unwrap();
    let user = unique_name("e2e");
    let user_id = store.ensure_user(&user).await.unwrap().id;

    // sserver, blkmaker (unless a drill runs it) and statshttpd.
    let stratum: SocketAddr = format!("127.0.0.1:{}", sluice_testkit::free_port())
        .parse()
        .unwrap();
    let mut sserver = sserver::Config {
        service: sluice_rig::local(),
        kafka: pipeline.kafka.clone(),
        zookeeper: pipeline.zk.clone(),
        mysql: sserver::MysqlConfig {
            url: mysql.to_owned(),
        },
        listen: stratum,
        server_id: 0,
        extranonce2_size: 8,
        version_mask: "1fffe000".into(),
        solved_log: std::env::temp_dir().join(unique_name("e2e-solved-")),
        proxy_protocol: false,
        accept_wait_ms: 2_000,
        spool: Default::default(),
        difficulty: sserver::DifficultyConfig {
            default: SHARE_DIFFICULTY,
            min: SHARE_DIFFICULTY / 2.0,
            max: 1e-6,
            share_interval_secs: 10.0,
            retarget_secs: 300.0,
        },
        jobs: sserver::JobsConfig::default(),
        users: sserver::UsersConfig::default(),
        limits: sserver::Limits::default(),
        tls: None,
        sv2: None,
    };
    tweak(&mut sserver);
    let blkmaker = blkmaker::Config {
        service: sluice_rig::local(),
        kafka: pipeline.kafka.clone(),
        mysql: blkmaker::MysqlConfig {
            url: mysql.to_owned(),
        },
        nodes: vec![pipeline.node.config("sim")],
        group: unique_name("e2e-blkmaker-"),
        templates_kept: 100,
        template_wait_ms: 3_000,
        retry_window_secs: 30,
        rpc_timeout_secs: 10,
        max_share_age_secs: 3_600,
        confirm_interval_secs: 2,
        mature_confirmations: 101,
        watch_hours: 1,
    };
    let api_port = sluice_testkit::free_port();
    let stats = statshttpd::Config {
        service: sluice_rig::local(),
        kafka: pipeline.kafka.clone(),
        mysql: statshttpd::MysqlConfig {
            url: mysql.to_owned(),
        },
        zookeeper: Some(pipeline.zk.clone()),
        nodes: vec![pipeline.node.config("sim")],
        listen: format!("127.0.0.1:{api_port}").parse().unwrap(),
        data_dir: std::env::temp_dir().join(unique_name("e2e-sharelog-")),
        group: unique_name("e2e-stats-"),
        network: "regtest".into(),
        flush_interval_secs: 1,
        events_tail: 1_000,
        worker_minutes: true,
        web_dir: std::path::PathBuf::from("/nonexistent"),
    };
    let ctxs: Vec<_> = (0..3).map(|_| sluice_rig::context()).collect();
    tokio::spawn(sserver::run(sserver.clone(), ctxs[0].clone()));
    if in_process.blkmaker {
        tokio::spawn(blkmaker::run(blkmaker.clone(), ctxs[1].clone()));
    }
    tokio::spawn(statshttpd::run(stats.clone(), ctxs[2].clone()));

    Pool {
        pipeline,
        store,
        user,
        user_id,
        stratum,
        api_port,
        stats,
        solved_log: sserver.solved_log.clone(),
        sserver,
        blkmaker,
        ctxs,
    }
}

/// A pool whose sserver also serves SV2: its address and authority key.
pub(crate) async fn sv2_pool() -> (Pool, SocketAddr, sluice_sv2::AuthorityPublicKey) {
    sv2_pool_with(|_| {}).await
}

pub(crate) async fn sv2_pool_with(
    tweak: impl FnOnce(&mut sserver::Config),
) -> (Pool, SocketAddr, sluice_sv2::AuthorityPublicKey) {
    let keys = sluice_sv2::AuthorityKeys::generate();
    let path = std::env::temp_dir().join(sluice_testkit::unique_name("e2e-sv2-authority-"));
    keys.save_new(&path).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], sluice_testkit::free_port()).into();
    let pool = start_pool_with(&sluice_testkit::mysql_url(), InProcess::ALL, |c| {
        c.sv2 = Some(sserver::sv2::Sv2Config::new(addr, path));
        tweak(c);
    })
    .await;
    sluice_testkit::eventually(Duration::from_secs(30), "the SV2 port", || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
    (pool, addr, keys.public())
}

/// Simulated miners on `pool` for `seconds` at 200 shares/s in all, started
/// and mining (200 shares accepted) when this returns.
pub(crate) async fn start_mining(
    pool: &Pool,
    seconds: f64,
    configure: impl FnOnce(&mut simulator::Options),
) -> (
    JoinHandle<anyhow::Result<simulator::Report>>,
    Arc<simulator::Counters>,
) {
    start_mining_until(pool, seconds, CancellationToken::new(), configure).await
}

/// [`start_mining`] that also ends when `stop` is cancelled.
pub(crate) async fn start_mining_until(
    pool: &Pool,
    seconds: f64,
    stop: CancellationToken,
    configure: impl FnOnce(&mut simulator::Options),
) -> (
    JoinHandle<anyhow::Result<simulator::Report>>,
    Arc<simulator::Counters>,
) {
    let mut options = simulator::Options::new(pool.stratum, MINERS);
    options.user = pool.user.clone();
    options.password = format!("d={SHARE_DIFFICULTY}");
    options.rate = 200.0;
    options.duration = seconds;
    // Each accepted share's header hash, for the checks by identity.
    options.record_accepted = true;
    configure(&mut options);
    let counters = Arc::new(simulator::Counters::default());
    let sim = tokio::spawn(simulator::run(options, counters.clone(), stop));
    accepted_at_least(&counters, 200).await;
    (sim, counters)
}

/// Waits (30 s at most) until the miners have `n` shares accepted.
pub(crate) async fn accepted_at_least(counters: &Arc<simulator::Counters>, n: u64) {
    let c = counters.clone();
    sluice_testkit::eventually(Duration::from_secs(30), "shares accepted", || {
        let c = c.clone();
        async move { (c.accepted.load(Ordering::Relaxed) >= n).then_some(()) }
    })
    .await;
}

/// The pool's blocks on nodesim's best chain (its coinbase tag), newest first.
pub(crate) async fn pool_blocks_on_best_chain(pool: &Pool) -> Vec<String> {
    let client = pool.pipeline.node.client();
    tokio::task::spawn_blocking(move || {
        use bitcoincore_rpc::RpcApi;
        let mut ours = Vec::new();
        let mut hash = client.get_best_block_hash().unwrap();
        loop {
            let block = client.get_block(&hash).unwrap();
            if block.header.prev_blockhash == bitcoin::BlockHash::all_zeros() {
                break;
            }
            let sig = block.txdata[0].input[0].script_sig.as_bytes();
            if sig
                .windows(b"/sluice-test/".len())
                .any(|w| w == b"/sluice-test/")
            {
                ours.push(hash.to_string());
            }
            hash = block.header.prev_blockhash;
        }
        ours
    })
    .await
    .unwrap()
}

/// Waits (60 s at most) until every block candidate in sserver's local log
/// is marked acknowledged by the broker; their hashes.
pub(crate) async fn candidates_all_sent(pool: &Pool) -> Vec<String> {
    let log = pool.solved_log.clone();
    sluice_testkit::eventually(Duration::from_secs(60), "every candidate sent", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let solved = text.lines().filter(|l| l.starts_with("solved ")).count();
        let sent: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("sent "))
            .map(str::to_owned)
            .collect();
        async move { (solved > 0 && sent.len() == solved).then_some(sent) }
    })
    .await
}

/// Checks by identity: every share the miners were told was accepted is on
/// the pool's Share topic exactly once (accepted or block), and every block
/// they found is known to the node (on its best chain or a side branch).
/// Waits up to 60 s for the topic to have them all (a broker catching up).
pub(crate) async fn nothing_lost(pool: &Pool, report: &simulator::Report) {
    let told = &report.accepted_hashes;
    assert_eq!(
        told.len() as u64,
        report.totals.accepted,
        "the simulator listed every accepted share"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let on_topic = pool.pipeline.accepted_on_topic().await;
        let missing: Vec<&String> = told.iter().filter(|h| !on_topic.contains_key(*h)).collect();
        let twice: Vec<&String> = told
            .iter()
            .filter(|h| on_topic.get(*h).is_some_and(|n| *n > 1))
            .collect();
        assert!(
            twice.is_empty(),
            "accepted shares on the topic twice: {twice:?}"
        );
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} accepted shares are not on the Share topic, e.g. {:?}",
            missing.len(),
            told.len(),
            &missing[..missing.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let client = pool.pipeline.node.client();
    let blocks = report.blocks_found.clone();
    let unknown = tokio::task::spawn_blocking(move || {
        use bitcoincore_rpc::RpcApi;
        blocks
            .into_iter()
            .filter(|h| {
                let hash: bitcoin::BlockHash = h.parse().unwrap();
                client.get_block_header(&hash).is_err()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        unknown.is_empty(),
        "blocks the miners found that the node does not have: {unknown:?}"
    );
}

/// Waits (60 s at most) until every hash in `hashes` has its found_blocks
/// row; the rows' hashes.
pub(crate) async fn all_recorded(pool: &Pool, hashes: &[String]) -> HashSet<String> {
    sluice_testkit::eventually(Duration::from_secs(60), "every block recorded", || async {
        let rows = pool
            .store
            .recent_found_blocks(1000, Some(pool.user_id))
            .await
            .ok()?;
        let recorded: HashSet<String> = rows.into_iter().map(|l| l.block.hash).collect();
        hashes
            .iter()
            .all(|h| recorded.contains(h))
            .then_some(recorded)
    })
    .await
}

/// Waits (60 s at most) until statshttpd's pool figures credit the
/// difficulty the simulator had accepted (within 1%), and no more than that
/// plus the difficulty of the submits the run's end left unanswered
/// (recorded and credited, their answers never read); the credited figure.
pub(crate) async fn statshttpd_credits(pool: &Pool, counters: &simulator::Counters) -> f64 {
    let simulated = counters.accepted_difficulty();
    let unanswered = counters.unanswered_difficulty();
    let most = (simulated + unanswered) * 1.01;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        if let Some((status, figures)) = http_json(pool.api_port, "/api/v1/pool").await {
            let credited = figures["shares"]["1h"]["accept"].as_f64();
            if let Some(credited) = credited
                && status == 200
                && credited >= simulated * 0.99
                && credited <= most
            {
                eprintln!(
                    "statshttpd credits {credited:e}: the simulator accepted {simulated:e}, left {unanswered:e} unanswered"
                );
                return credited;
            }
            last = Some(figures);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statshttpd did not catch up in 60 s: it credits {last:?}; the simulator accepted {simulated} (unanswered submits of difficulty {unanswered}: at most {most})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on 127.0.0.1:`port` as JSON: the status and the body.
pub(crate) async fn http_json(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let path = path.to_owned();
    let (status, text) = tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, &path))
        .await
        .unwrap()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, serde_json::from_str(body).ok()?))
}
