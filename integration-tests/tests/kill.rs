//! Drills with SIGKILL under a mining pool: the jobmaker leader and then
//! blkmaker, each its own process as supervisord runs them, are killed while
//! 50 simulated miners mine and blocks arrive from outside. The standby
//! jobmaker leads within 10 s with a higher epoch, every miner has shares
//! accepted on its jobs, and every miner still gets every outside block as a
//! clean job; the restarted blkmaker records every
//! block candidate sserver logged, the ones found while it was dead
//! included; statshttpd credits every accepted share.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{
    InProcess, MINERS, Pool, all_recorded, candidates_all_sent, http_json,
    pool_blocks_on_best_chain, start_mining, start_pool, statshttpd_credits,
};
use sluice_core::record::ShareRecord;
use sluice_testkit::{eventually, free_port, mysql_url, spawn_service, unique_name};

/// Children killed when the test ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[kafka]` section for `pool`'s fresh topics.
fn kafka_section(pool: &Pool, client_id: &str) -> String {
    let k = &pool.pipeline.kafka;
    let t = &k.topics;
    format!(
        r#"
[kafka]
brokers = "{brokers}"
client_id = "{client_id}"

[kafka.topics]
raw_gbt = "{raw_gbt}"
job = "{job}"
share = "{share}"
solved_share = "{solved}"
event = "{event}"
"#,
        brokers = k.brokers,
        raw_gbt = t.raw_gbt,
        job = t.job,
        share = t.share,
        solved = t.solved_share,
        event = t.event,
    )
}

/// The `[zookeeper]` section for `pool`'s fresh root.
fn zookeeper_section(pool: &Pool) -> String {
    let zk = &pool.pipeline.zk;
    format!(
        r#"
[zookeeper]
connect = "{connect}"
root = "{root}"
session_timeout_ms = {session}
"#,
        connect = zk.connect,
        root = zk.root,
        session = zk.session_timeout_ms,
    )
}

fn jobmaker_config(pool: &Pool, dir: &Path, instance: &str, admin: u16) -> PathBuf {
    let c = pool.pipeline.jobmaker_config();
    let path = dir.join(format!("{instance}.toml"));
    let text = format!(
        r#"payout_address = "{payout}"
network = "{network}"
pool_tag = "{tag}"
job_interval_secs = {interval}
stale_template_secs = {stale}

[service]
instance = "{instance}"
admin_listen = "127.0.0.1:{admin}"
shutdown_grace_secs = 5
{kafka}{zookeeper}
[[nodes]]
name = "{node}"
rpc_url = "{rpc_url}"
rpc_user = "{rpc_user}"
rpc_password = "{rpc_password}"
"#,
        node = c.nodes[0].name,
        rpc_url = c.nodes[0].rpc_url,
        rpc_user = c.nodes[0].rpc_user,
        rpc_password = c.nodes[0].rpc_password,
        payout = c.payout_address,
        network = c.network,
        tag = c.pool_tag,
        interval = c.job_interval_secs,
        stale = c.stale_template_secs,
        kafka = kafka_section(pool, "e2e-jobmaker"),
        zookeeper = zookeeper_section(pool),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn blkmaker_config(pool: &Pool, dir: &Path, admin: u16) -> PathBuf {
    let node = pool.pipeline.node.config("sim");
    let path = dir.join("blkmaker.toml");
    let text = format!(
        r#"group = "{group}"
retry_window_secs = 30

[service]
instance = "e2e-blkmaker"
admin_listen = "127.0.0.1:{admin}"
shutdown_grace_secs = 5
{kafka}
[mysql]
url = "{mysql}"

[[nodes]]
name = "sim"
rpc_url = "{rpc_url}"
rpc_user = "{rpc_user}"
rpc_password = "{rpc_password}"
"#,
        group = unique_name("e2e-blkmaker-"),
        kafka = kafka_section(pool, "e2e-blkmaker"),
        mysql = mysql_url(),
        rpc_url = node.rpc_url,
        rpc_user = node.rpc_user,
        rpc_password = node.rpc_password,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// jobmaker's ZooKeeper status on its admin port ("leader, epoch N" or
/// "standby ...").
async fn zookeeper_status(admin: u16) -> Option<String> {
    let (_, health) = http_json(admin, "/health").await?;
    Some(health["zookeeper"]["detail"].as_str()?.to_owned())
}

fn leader_epoch(status: &str) -> Option<u64> {
    status.strip_prefix("leader, epoch ")?.parse().ok()
}

/// Block candidates sserver has logged as acknowledged by the broker.
fn candidates_sent(pool: &Pool) -> usize {
    std::fs::read_to_string(&pool.solved_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("sent "))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_jobmaker_leader_and_a_killed_blkmaker_lose_nothing() {
    let pool = start_pool(
        &mysql_url(),
        InProcess {
            jobmaker: false,
            blkmaker: false,
        },
    )
    .await;
    let dir = std::env::temp_dir().join(unique_name("e2e-kill-"));
    std::fs::create_dir_all(&dir).unwrap();
    let (admin_a, admin_b, admin_blk) = (free_port(), free_port(), free_port());
    let jobmaker = env!("CARGO_BIN_EXE_e2e-jobmaker");
    let blkmaker = env!("CARGO_BIN_EXE_e2e-blkmaker");
    let blk_config = blkmaker_config(&pool, &dir, admin_blk);
    let mut children = Children(vec![]);

    // jobmaker a leads, b stands by; blkmaker runs.
    children.0.push(spawn_service(
        jobmaker,
        &jobmaker_config(&pool, &dir, "a", admin_a),
        &dir.join("a.log"),
    ));
    let epoch_a = eventually(Duration::from_secs(30), "jobmaker a to lead", || async {
        leader_epoch(&zookeeper_status(admin_a).await?)
    })
    .await;
    children.0.push(spawn_service(
        jobmaker,
        &jobmaker_config(&pool, &dir, "b", admin_b),
        &dir.join("b.log"),
    ));
    eventually(
        Duration::from_secs(30),
        "jobmaker b to stand by",
        || async {
            zookeeper_status(admin_b)
                .await?
                .starts_with("standby")
                .then_some(())
        },
    )
    .await;
    children.0.push(spawn_service(
        blkmaker,
        &blk_config,
        &dir.join("blkmaker-1.log"),
    ));

    // The miners, with a block made on the node from outside every 6 s.
    let rpc = format!("http://sluice:sluice@{}", pool.pipeline.node.endpoints.rpc);
    let (sim, counters) = start_mining(&pool, 45.0, |o| {
        o.node_rpc = Some(rpc);
        o.block_interval = 6.0;
    })
    .await;

    // kill -9 the leader: b leads within 10 s, with a higher epoch, and
    // every miner has shares accepted on b's jobs.
    let leader = &mut children.0[0];
    leader.kill().unwrap();
    leader.wait().unwrap();
    let killed = Instant::now();
    // Job ids begin with their second: one made after this second is b's.
    let killed_secs = u32::try_from(sluice_service::now_ms() / 1000).unwrap();
    let epoch_b = eventually(Duration::from_secs(10), "jobmaker b to lead", || async {
        leader_epoch(&zookeeper_status(admin_b).await?)
    })
    .await;
    let takeover = killed.elapsed();
    assert!(epoch_b > epoch_a, "epoch {epoch_b} after {epoch_a}");
    // Vardiff aims each miner at a share every 10 s: three each in 30 s.
    let shares = pool
        .pipeline
        .tail::<ShareRecord>(&pool.pipeline.kafka.topics.share, 100_000)
        .await;
    let mut on_b = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while on_b.len() < MINERS {
        let left = deadline.saturating_duration_since(Instant::now());
        let share = shares
            .next_matching(left, |r: &ShareRecord| {
                r.status.is_accepted() && r.job_id.created_secs() > killed_secs
            })
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "30 s after b led, {} of {MINERS} miners had a share accepted on its jobs",
                    on_b.len()
                )
            });
        on_b.insert(share.worker_name);
    }
    let all_on_b = killed.elapsed();

    // kill -9 blkmaker once it has taken candidates; more are found while it
    // is dead; the restarted one (same consumer group) takes them all.
    eventually(Duration::from_secs(30), "blkmaker's first rows", || async {
        let rows = pool
            .store
            .recent_found_blocks(10, Some(pool.user_id))
            .await
            .ok()?;
        (!rows.is_empty()).then_some(())
    })
    .await;
    let blk = &mut children.0[2];
    blk.kill().unwrap();
    blk.wait().unwrap();
    let sent_at_kill = candidates_sent(&pool);
    eventually(
        Duration::from_secs(30),
        "candidates found while blkmaker is dead",
        || async { (candidates_sent(&pool) >= sent_at_kill + 3).then_some(()) },
    )
    .await;
    children.0.push(spawn_service(
        blkmaker,
        &blk_config,
        &dir.join("blkmaker-2.log"),
    ));

    let report = sim.await.unwrap().unwrap();
    eprintln!(
        "kill drill: takeover {takeover:?} (epoch {epoch_a} -> {epoch_b}), every miner's shares \
         accepted on the new leader's jobs {all_on_b:?} after the kill; {}",
        report.table()
    );
    assert_eq!(report.connected, MINERS as u64, "{report:?}");
    // Every outside block reached every miner as a clean job, the ones made
    // around the failover included.
    assert!(report.blocks_made >= 4, "{report:?}");
    assert_eq!(report.new_block_missed, 0, "{report:?}");

    // Every candidate, and every pool block on the node's best chain, has
    // its found_blocks row.
    let sent = candidates_all_sent(&pool).await;
    assert!(sent.len() > sent_at_kill, "{} candidates", sent.len());
    all_recorded(&pool, &sent).await;
    let ours = pool_blocks_on_best_chain(&pool).await;
    assert!(!ours.is_empty(), "the pool's blocks are on the best chain");
    all_recorded(&pool, &ours).await;
    // Share by share, block by block: nothing the miners were told lost.
    common::nothing_lost(&pool, &report).await;
    statshttpd_credits(&pool, &counters).await;
    drop(children);
    std::fs::remove_dir_all(&dir).ok();
}
