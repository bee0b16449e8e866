//! The farm agent end to end, on the real broker, ZooKeeper and MariaDB,
//! with nodesim, blkmaker and statshttpd: the simulator's V1 miners (real
//! proof of work) connect to the agent, which carries them to sserver over
//! two upstream sessions. Every miner is its own worker at the pool, no two
//! miners do the same work, blocks reach the node, and statshttpd credits
//! exactly what the miners were told was accepted.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{
    InProcess, MINERS, ONE_POOL_AT_A_TIME, Pool, all_recorded, start_mining, start_pool_with,
    statshttpd_credits,
};
use sluice_core::record::{ShareRecord, ShareStatus};
use sluice_testkit::mysql_url;

/// The agent in this process, in front of `pool`: where miners connect.
async fn start_agent(pool: &Pool, sessions: usize) -> (SocketAddr, sluice_service::Context) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config: agent::Config = toml::from_str(&format!(
        r#"
listen = "{addr}"
[upstream]
pools = ["{}"]
account = "{}"
sessions = {sessions}
"#,
        pool.stratum, pool.user
    ))
    .unwrap();
    sluice_service::Validate::validate(&config).unwrap();
    let ctx = sluice_rig::context();
    tokio::spawn(agent::serve(listener, config, ctx.clone()));
    (addr, ctx)
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
    let (agent_addr, agent_ctx) = start_agent(&pool, 2).await;
    let rpc = format!("http://sluice:sluice@{}", pool.pipeline.node.endpoints.rpc);
    let (sim, counters) = start_mining(&pool, 12.0, |o| {
        o.server = agent_addr;
        o.node_rpc = Some(rpc);
        o.block_interval = 3.0;
    })
    .await;
    let report = sim.await.unwrap().unwrap();
    eprintln!("{}", report.table());
    assert_eq!(report.connected, MINERS as u64, "{report:?}");
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
    assert_eq!(workers.len(), MINERS, "{workers:?}");
    // Two upstream sessions carried them all.
    let sessions: HashSet<u32> = records.iter().map(|r| r.extranonce1).collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    agent_ctx.shutdown.token().cancel();
}
