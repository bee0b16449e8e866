//! The whole pool, end to end, on the local stack's broker, ZooKeeper and
//! MariaDB: nodesim → gbtmaker → jobmaker → sserver ← simulated miners with
//! real proof of work → blkmaker → nodesim, and statshttpd watching. Blocks
//! found by the miners are accepted by the node and recorded, statshttpd
//! credits exactly the work the miners did, and blocks mined outside the
//! pool reach every miner as a clean job. Two drills take MariaDB away (a
//! closed gate) and the broker (killed) for 30 s under mining miners, and
//! check that no block and no share is lost.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use bitcoin::hashes::Hash;
use std::sync::Arc;
use std::time::Duration;

use bitcoincore_rpc::RpcApi;
use sluice_rig::Options;
use sluice_testkit::{mysql_url, unique_name};
use tokio_util::sync::CancellationToken;

/// Network target 2^250: one hash in about 64 is a block, so the 2,400 or
/// more hashes of a run (200 shares/s for 12 s, at least a hash each) find
/// about 37 (fewer than 2 has odds below 1 in 10^14).
const BITS: &str = "2003ffff";
/// Every hash meets it: a simulated miner's share costs one hash.
const SHARE_DIFFICULTY: f64 = 2e-10;
const MINERS: usize = 50;

/// The pool in this process on fresh topics: nodesim, gbtmaker and jobmaker
/// (the rig), sserver, blkmaker and statshttpd, all using `mysql` for MySQL.
struct Pool {
    pipeline: sluice_rig::Pipeline,
    store: sluice_store::Store,
    user: String,
    user_id: u32,
    stratum: SocketAddr,
    api_port: u16,
    stats: statshttpd::Config,
    solved_log: std::path::PathBuf,
    ctxs: Vec<sluice_service::Context>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for c in &self.ctxs {
            c.shutdown.token().cancel();
        }
        let _ = std::fs::remove_dir_all(&self.stats.data_dir);
        let _ = std::fs::remove_file(&self.solved_log);
    }
}

/// The tests each run a whole pool on two cores: one at a time.
static ONE_POOL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start_pool(mysql: &str) -> Pool {
    let pipeline = sluice_rig::pipeline(Options {
        bits: BITS.into(),
        ..Options::default()
    })
    .await;
    let store = sluice_store::Store::new(&mysql_url()).unwrap();
    let user = unique_name("e2e");
    let user_id = store.ensure_user(&user).await.unwrap().id;

    // sserver, blkmaker and statshttpd, in this process.
    let stratum: SocketAddr = format!("127.0.0.1:{}", sluice_testkit::free_port())
        .parse()
        .unwrap();
    let sserver = sserver::Config {
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
    };
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
    };
    let ctxs: Vec<_> = (0..3).map(|_| sluice_rig::context()).collect();
    tokio::spawn(sserver::run(sserver.clone(), ctxs[0].clone()));
    tokio::spawn(blkmaker::run(blkmaker, ctxs[1].clone()));
    tokio::spawn(statshttpd::run(stats.clone(), ctxs[2].clone()));

    Pool {
        pipeline,
        store,
        user,
        user_id,
        stratum,
        api_port,
        stats,
        solved_log: sserver.solved_log,
        ctxs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_find_blocks_the_node_accepts_and_statshttpd_credits_their_work() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let pool = start_pool(&mysql_url()).await;
    let Pool {
        pipeline,
        store,
        user,
        user_id,
        stratum,
        api_port,
        ..
    } = &pool;
    let (user_id, stratum, api_port) = (*user_id, *stratum, *api_port);

    // The miners, with a block made on the node from outside every 3 s.
    let height_before = pipeline.node.client().get_block_count().unwrap();
    let mut options = simulator::Options::new(stratum, MINERS);
    options.user = user.clone();
    options.password = format!("d={SHARE_DIFFICULTY}");
    options.rate = 200.0;
    options.duration = 12.0;
    options.node_rpc = Some(format!(
        "http://sluice:sluice@{}",
        pipeline.node.endpoints.rpc
    ));
    options.block_interval = 3.0;
    let counters = Arc::new(simulator::Counters::default());
    let report = simulator::run(options, counters.clone(), CancellationToken::new())
        .await
        .unwrap();
    eprintln!("{}", report.table());
    assert_eq!(report.connected, MINERS as u64, "{report:?}");
    assert!(report.accepted >= 200, "{report:?}");
    for why in report.rejected_by_reason.keys() {
        assert!(
            why.starts_with("21 "),
            "only stale shares (new blocks) are rejected: {report:?}"
        );
    }

    // Blocks made outside reach every miner as a clean job.
    assert!(report.blocks_made >= 3, "{report:?}");
    assert_eq!(report.new_block_missed, 0, "{report:?}");
    assert_eq!(
        report.new_block_to_notify.count,
        report.blocks_made * MINERS
    );

    // Blocks the miners found: accepted by the node, one row each, listed by
    // the API.
    let rows =
        sluice_testkit::eventually(Duration::from_secs(30), "found blocks recorded", || async {
            let rows = store
                .recent_found_blocks(1000, Some(user_id))
                .await
                .unwrap();
            (rows.len() >= 2).then_some(rows)
        })
        .await;
    // A block the pool finds just as one made outside arrives loses the race:
    // nodesim, like Core, stores it on a side branch ("inconclusive").
    let client = pipeline.node.client();
    let mut accepted = 0;
    for (block, _) in &rows {
        let result = &block.submit_results;
        assert!(
            result.contains("accepted") || result.contains("inconclusive"),
            "{block:?}"
        );
        if result.contains("accepted") {
            accepted += 1;
            let hash: bitcoin::BlockHash = block.hash.parse().unwrap();
            let header = client.get_block_header_info(&hash).unwrap();
            assert!(
                header.confirmations >= 1,
                "{hash} is on nodesim's best chain"
            );
            assert_eq!(header.height as u32, block.height);
        }
    }
    assert!(accepted >= 1, "{rows:?}");
    let height_after = client.get_block_count().unwrap();
    assert!(
        height_after >= height_before + report.blocks_made as u64 + accepted,
        "the chain grew by the blocks made outside and those the pool found"
    );
    let listed = sluice_testkit::eventually(Duration::from_secs(30), "the blocks API", || async {
        let (status, body) = http_json(
            api_port,
            &format!("/api/v1/blocks?user_id={user_id}&limit=1000"),
        )
        .await?;
        (status == 200).then_some(body)
    })
    .await;
    let mut api: Vec<String> = listed["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["hash"].as_str().unwrap().to_owned())
        .collect();
    let mut table: Vec<String> = store
        .recent_found_blocks(1000, Some(user_id))
        .await
        .unwrap()
        .into_iter()
        .map(|(b, _)| b.hash)
        .collect();
    api.sort();
    table.sort();
    assert_eq!(api, table, "found_blocks and /api/v1/blocks agree");

    // statshttpd credits the work the miners did: its pool's accepted
    // difficulty over the hour equals what the simulator had accepted.
    let simulated = counters.accepted_difficulty();
    let credited =
        sluice_testkit::eventually(Duration::from_secs(30), "statshttpd caught up", || async {
            let (status, pool) = http_json(api_port, "/api/v1/pool").await?;
            let credited = pool["shares"]["1h"]["accept"].as_f64()?;
            (status == 200 && (credited - simulated).abs() <= simulated * 0.01).then_some(credited)
        })
        .await;
    let ratio = credited / simulated;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "statshttpd {credited} vs simulator {simulated}"
    );
    let (_, figures) = http_json(api_port, "/api/v1/pool").await.unwrap();
    assert_eq!(figures["workers"], MINERS);
    assert_eq!(figures["users"], 1);
}

/// Drill: MariaDB unreachable for 30 s under a mining pool (every service's
/// MySQL connection goes through a gate that is closed, then opened). The
/// miners go on mining, every block the pool adds to the node's chain gets
/// its row, and statshttpd's figures catch up with all the work done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_outage_loses_no_block_and_no_share() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let direct = mysql_url();
    let host = direct
        .rsplit_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host, _)| host.to_owned())
        .unwrap();
    let gate = sluice_testkit::Gate::start(host.parse().unwrap())
        .await
        .unwrap();
    let pool = start_pool(&direct.replace(&host, &gate.addr().to_string())).await;

    let mut options = simulator::Options::new(pool.stratum, MINERS);
    options.user = pool.user.clone();
    options.password = format!("d={SHARE_DIFFICULTY}");
    options.rate = 200.0;
    options.duration = 45.0;
    let counters = Arc::new(simulator::Counters::default());
    let sim = tokio::spawn(simulator::run(
        options,
        counters.clone(),
        CancellationToken::new(),
    ));
    let c = counters.clone();
    sluice_testkit::eventually(Duration::from_secs(30), "mining under way", || {
        let c = c.clone();
        async move { (c.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 200).then_some(()) }
    })
    .await;

    gate.close();
    let at_close = counters.accepted.load(std::sync::atomic::Ordering::Relaxed);
    // The outage lasts 30 s (the scenario, not a wait for something).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = counters.accepted.load(std::sync::atomic::Ordering::Relaxed) - at_close;
    // Vardiff settles at a share per 10 s per miner: 150 in 30 s if nothing stalls.
    assert!(
        during >= MINERS as u64,
        "miners kept mining while MariaDB was away: {during} shares"
    );
    let (status, health) = http_json(pool.api_port, "/api/v1/health").await.unwrap();
    assert_eq!(
        (status, &health["components"]["mysql"]["ok"]),
        (503, &false.into()),
        "{health}"
    );
    gate.open();
    let report = sim.await.unwrap().unwrap();
    assert_eq!(report.connected, MINERS as u64, "{report:?}");

    // Every block of the pool on nodesim's best chain has its row.
    let client = pipeline_client(&pool);
    let ours = tokio::task::spawn_blocking(move || {
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
    .unwrap();
    assert!(ours.len() >= 2, "the pool found blocks: {ours:?}");
    let recorded =
        sluice_testkit::eventually(Duration::from_secs(60), "every block recorded", || async {
            let rows = pool
                .store
                .recent_found_blocks(1000, Some(pool.user_id))
                .await
                .ok()?;
            let hashes: std::collections::HashSet<String> =
                rows.into_iter().map(|(b, _)| b.hash).collect();
            ours.iter().all(|h| hashes.contains(h)).then_some(hashes)
        })
        .await;
    assert!(recorded.len() >= ours.len());

    // statshttpd credits every accepted share, outage or not.
    let simulated = counters.accepted_difficulty();
    sluice_testkit::eventually(Duration::from_secs(60), "statshttpd caught up", || async {
        let (status, figures) = http_json(pool.api_port, "/api/v1/pool").await?;
        let credited = figures["shares"]["1h"]["accept"].as_f64()?;
        (status == 200 && (credited - simulated).abs() <= simulated * 0.01).then_some(())
    })
    .await;
    let flushed = sluice_testkit::eventually(
        Duration::from_secs(30),
        "a flush after the outage",
        || async {
            let (status, health) = http_json(pool.api_port, "/api/v1/health").await?;
            (status == 200).then_some(health)
        },
    )
    .await;
    assert_eq!(flushed["components"]["mysql"]["ok"], true);
}

/// Drill: the Kafka broker killed for 30 s under a mining pool. sserver
/// keeps serving the last job, so the miners go on mining; its /health says
/// shares wait for the broker. When the broker is back, every block
/// candidate sserver logged reaches blkmaker and gets its found_blocks row,
/// and statshttpd credits every share accepted during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_no_block_and_no_share() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let pool = start_pool(&mysql_url()).await;
    let sserver = pool.ctxs[0].health.clone();

    let mut options = simulator::Options::new(pool.stratum, MINERS);
    options.user = pool.user.clone();
    options.password = format!("d={SHARE_DIFFICULTY}");
    options.rate = 200.0;
    options.duration = 45.0;
    let counters = Arc::new(simulator::Counters::default());
    let sim = tokio::spawn(simulator::run(
        options,
        counters.clone(),
        CancellationToken::new(),
    ));
    let c = counters.clone();
    sluice_testkit::eventually(Duration::from_secs(30), "mining under way", || {
        let c = c.clone();
        async move { (c.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 200).then_some(()) }
    })
    .await;

    let outage = sluice_testkit::Outage::begin("kafka", 9092).await;
    let at_stop = counters.accepted.load(std::sync::atomic::Ordering::Relaxed);
    let health = sserver.clone();
    sluice_testkit::eventually(
        Duration::from_secs(30),
        "sserver to report the broker away",
        || {
            let away = health.snapshot().get("kafka_shares").is_some_and(|c| !c.ok);
            async move { away.then_some(()) }
        },
    )
    .await;
    // The outage lasts 30 s (the scenario, not a wait for something).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = counters.accepted.load(std::sync::atomic::Ordering::Relaxed) - at_stop;
    assert!(
        during >= MINERS as u64,
        "miners kept mining on the last job while the broker was away: {during} shares"
    );
    outage.end().await;
    let report = sim.await.unwrap().unwrap();
    assert_eq!(report.connected, MINERS as u64, "{report:?}");

    // Every candidate sserver logged was acknowledged by the broker...
    let log = pool.solved_log.clone();
    let sent = sluice_testkit::eventually(Duration::from_secs(60), "every candidate sent", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let solved = text.lines().filter(|l| l.starts_with("solved ")).count();
        let sent: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("sent "))
            .map(str::to_owned)
            .collect();
        async move { (solved > 0 && sent.len() == solved).then_some(sent) }
    })
    .await;
    assert!(sent.len() >= 2, "the pool found blocks: {sent:?}");
    eprintln!(
        "broker drill: {during} shares accepted during the 30 s outage, {} block candidates",
        sent.len()
    );
    // ... and recorded by blkmaker.
    sluice_testkit::eventually(
        Duration::from_secs(60),
        "every candidate recorded",
        || async {
            let rows = pool
                .store
                .recent_found_blocks(1000, Some(pool.user_id))
                .await
                .ok()?;
            let hashes: std::collections::HashSet<String> =
                rows.into_iter().map(|(b, _)| b.hash).collect();
            sent.iter().all(|h| hashes.contains(h)).then_some(())
        },
    )
    .await;

    // statshttpd credits every accepted share, outage or not.
    let simulated = counters.accepted_difficulty();
    sluice_testkit::eventually(Duration::from_secs(60), "statshttpd caught up", || async {
        let (status, figures) = http_json(pool.api_port, "/api/v1/pool").await?;
        let credited = figures["shares"]["1h"]["accept"].as_f64()?;
        (status == 200 && (credited - simulated).abs() <= simulated * 0.01).then_some(())
    })
    .await;
    sluice_testkit::eventually(Duration::from_secs(30), "sserver healthy again", || {
        let back = sserver.snapshot().get("kafka_shares").is_some_and(|c| c.ok);
        async move { back.then_some(()) }
    })
    .await;
}

fn pipeline_client(pool: &Pool) -> bitcoincore_rpc::Client {
    pool.pipeline.node.client()
}

async fn http_json(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let path = path.to_owned();
    let (status, text) = tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, &path))
        .await
        .unwrap()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, serde_json::from_str(body).ok()?))
}
