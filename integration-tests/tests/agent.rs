//! The farm agent end to end, on the real broker, ZooKeeper and MariaDB,
//! with nodesim, blkmaker and statshttpd: the simulator's 1,000 V1 miners
//! (real proof of work) connect to the agent, which carries them to sserver
//! over two upstream sessions. Every miner is its own worker at the pool, no two
//! miners do the same work, blocks reach the node, and statshttpd credits
//! exactly what the miners were told was accepted.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{
    InProcess, MINERS, ONE_POOL_AT_A_TIME, Pool, all_recorded, start_mining, start_mining_until,
    start_pool_on, start_pool_with, statshttpd_credits,
};
use sluice_core::record::{ShareRecord, ShareStatus};
use sluice_testkit::mysql_url;

/// The farm's machines in the end-to-end run.
const FARM: usize = 1_000;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// The agent in this process, in front of `pool` reached at `upstreams`
/// (tried in order: a gate in front of it, a dead address first): where
/// miners connect.
async fn start_agent_to(
    upstreams: &[SocketAddr],
    pool: &Pool,
    sessions: usize,
) -> (SocketAddr, sluice_service::Context) {
    let pools: Vec<String> = upstreams.iter().map(|a| format!("\"{a}\"")).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config: agent::Config = toml::from_str(&format!(
        r#"
listen = "{addr}"
[upstream]
pools = [{}]
account = "{}"
sessions = {sessions}
"#,
        pools.join(", "),
        pool.user
    ))
    .unwrap();
    sluice_service::Validate::validate(&config).unwrap();
    let ctx = sluice_rig::context();
    tokio::spawn(agent::serve(listener, config, ctx.clone()));
    (addr, ctx)
}

/// One figure of the agent's `/metrics`.
fn metric(ctx: &sluice_service::Context, name: &str) -> f64 {
    let text = ctx.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The accepted share records of the run, all of them.
async fn accepted_records(pool: &Pool) -> Vec<ShareRecord> {
    let tail = pool
        .pipeline
        .tail::<ShareRecord>(&pool.pipeline.kafka.topics.share, 1_000_000)
        .await;
    let mut out = Vec::new();
    while let Ok(Some(r)) = tail
        .next_matching(Duration::from_millis(1500), |_| true)
        .await
    {
        if matches!(r.status, ShareStatus::Accepted | ShareStatus::Block) {
            out.push(r);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_mines_through_the_agent_each_miner_its_own_worker() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let pool = start_pool_with(&mysql_url(), InProcess::ALL, |_| {}).await;
    // The first pool listed is down: the agent fails over to the next.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (agent_addr, agent_ctx) = start_agent_to(&[dead_addr, pool.stratum], &pool, 2).await;
    let rpc = format!("http://sluice:sluice@{}", pool.pipeline.node.endpoints.rpc);
    // A farm: 1,000 machines (the pool sees two connections), each with a
    // share every two seconds for 30 s: 15 each, so that every miner has
    // accepted work even with the regtest chain's stale shares (about one in
    // five here: with 12 s, 6 shares a miner, one miner had none accepted
    // once in ~15 runs).
    let (sim, counters) = start_mining(&pool, 30.0, |o| {
        o.server = agent_addr;
        o.connections = FARM;
        o.rate = 500.0;
        o.node_rpc = Some(rpc);
        o.block_interval = 3.0;
    })
    .await;
    let report = sim.await.unwrap().unwrap();
    eprintln!("{}", report.table());
    assert_eq!(report.connected, FARM as u64, "{report:?}");
    assert!(report.accepted >= 200, "{report:?}");
    for why in report.rejected_by_reason.keys() {
        assert!(
            why.starts_with("21 "),
            "only stale shares (new blocks): {report:?}"
        );
    }
    assert!(report.blocks_made >= 3, "{report:?}");
    assert_eq!(report.new_block_missed, 0, "{report:?}");
    assert!(!report.blocks_found.is_empty(), "{report:?}");
    all_recorded(&pool, &report.blocks_found).await;
    statshttpd_credits(&pool, &counters).await;

    // Every miner is its own worker; each rolls its own extranonce space
    // (its session id in the pool's extranonce2), so no two did the same work.
    let records = accepted_records(&pool).await;
    assert!(
        records.len() as u64 >= report.accepted,
        "{} records",
        records.len()
    );
    let mut owner: HashMap<(u32, [u8; 4]), String> = HashMap::new();
    let mut hashes = HashSet::new();
    for r in &records {
        assert!(hashes.insert(r.hash), "the same header twice: {r:?}");
        let space = (r.extranonce1, r.extranonce2[..4].try_into().unwrap());
        let who = owner.entry(space).or_insert_with(|| r.worker_name.clone());
        assert_eq!(*who, r.worker_name, "two miners on one extranonce space");
    }
    let workers: HashSet<&String> = owner.values().collect();
    assert_eq!(workers.len(), FARM, "{workers:?}");
    // And statshttpd shows each as a worker with its own accepted work; the
    // workers' credit adds up to what the miners were told was accepted
    // (their hashrates are that credit over each window).
    let (status, listed) = common::http_json(
        pool.api_port,
        &format!("/api/v1/users/{}/workers", pool.user),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let listed = listed["workers"].as_array().unwrap();
    assert_eq!(listed.len(), FARM, "every miner a worker");
    let mut credited = 0.0;
    for w in listed {
        assert!(w["accept_count"].as_u64().unwrap() > 0, "{w}");
        assert!(w["hashrate"]["5m"].as_f64().unwrap() > 0.0, "{w}");
        credited += w["shares"]["1h"]["accept"].as_f64().unwrap();
    }
    let simulated = counters.accepted_difficulty();
    assert!(
        credited >= simulated * 0.99 && credited <= simulated * 1.05,
        "the workers are credited {credited}, the miners were told {simulated}"
    );
    // Two upstream sessions carried them all.
    let sessions: HashSet<u32> = records.iter().map(|r| r.extranonce1).collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    agent_ctx.shutdown.token().cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uplink_cut_for_30_s_disconnects_no_miner_and_loses_no_share() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    // Difficulty 1: no block moves the tip, so the gap's shares stay good.
    let pool = start_pool_on("1d00ffff", &mysql_url(), InProcess::ALL, |_| {}).await;
    let gate = sluice_testkit::Gate::start(pool.stratum).await.unwrap();
    let (agent_addr, agent_ctx) = start_agent_to(&[gate.addr()], &pool, 2).await;
    let stop = CancellationToken::new();
    let (sim, counters) = start_mining_until(&pool, 600.0, stop.clone(), |o| {
        o.server = agent_addr;
        o.rate = 100.0;
    })
    .await;

    // The uplink goes: both sessions notice; the miners keep mining.
    gate.close();
    let ctx = agent_ctx.clone();
    sluice_testkit::eventually(Duration::from_secs(10), "both sessions down", || {
        let ctx = ctx.clone();
        async move { (metric(&ctx, "agent_upstream_connected") == 0.0).then_some(()) }
    })
    .await;
    let answered_at_cut = counters.accepted.load(Ordering::Relaxed);
    let submitted_at_cut = counters.submitted.load(Ordering::Relaxed);
    // The outage itself (the scenario, not a wait for anything).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let waiting = metric(&agent_ctx, "agent_gap_shares");
    let submitted_in_gap = counters.submitted.load(Ordering::Relaxed) - submitted_at_cut;
    assert_eq!(counters.connected.load(Ordering::Relaxed), MINERS as u64);
    assert!(
        waiting > 0.0 && submitted_in_gap > 0,
        "the miners mined on in the gap"
    );

    // Back: mining resumes within 2 s, the gap's shares accepted.
    gate.open();
    let back = std::time::Instant::now();
    let c = counters.clone();
    sluice_testkit::eventually(Duration::from_secs(2), "mining resumed", || {
        let c = c.clone();
        async move { (c.accepted.load(Ordering::Relaxed) > answered_at_cut).then_some(()) }
    })
    .await;
    let resumed = back.elapsed();
    // Every share found before the return is answered.
    let submitted_at_return = submitted_at_cut + submitted_in_gap;
    let c = counters.clone();
    sluice_testkit::eventually(Duration::from_secs(30), "the gap's shares answered", || {
        let c = c.clone();
        async move {
            let answered = c.accepted.load(Ordering::Relaxed) + c.rejected.load(Ordering::Relaxed);
            (answered >= submitted_at_return).then_some(())
        }
    })
    .await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    eprintln!("{}", report.table());
    eprintln!(
        "uplink cut 30 s: {submitted_in_gap} shares found in the gap ({waiting} waiting at the agent); first accepted share {resumed:?} after the uplink's return"
    );
    assert_eq!(report.reconnects, 0, "no miner disconnected: {report:?}");
    assert_eq!(report.connected, MINERS as u64);
    // Shares in flight at the cut went up again: the pool may have had them.
    for why in report.rejected_by_reason.keys() {
        assert!(
            why.starts_with("22 "),
            "only re-sent duplicates: {report:?}"
        );
    }
    statshttpd_credits(&pool, &counters).await;
    let records = accepted_records(&pool).await;
    assert!(records.len() as u64 >= report.accepted);
    let distinct: HashSet<_> = records.iter().map(|r| r.hash).collect();
    assert_eq!(distinct.len(), records.len(), "a share credited twice");
    agent_ctx.shutdown.token().cancel();
}
