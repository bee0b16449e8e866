//! blkmaker killed with SIGKILL after it took a solved share and before any
//! node got the block: the restarted process submits it, and the block is
//! recorded exactly once, also when a second blkmaker handles it too.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use common::{best, counter, counter_in, node_at, rig, solve, user};
use sluice_rig::{Node, node_config_at};
use sluice_testkit::{eventually, free_port, http_get, mysql_url, unique_name};

/// blkmaker as its own process, as supervisord runs it.
fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    sluice_testkit::spawn_service(env!("CARGO_BIN_EXE_blkmaker"), config, log)
}

fn metric(admin: u16, name: &str) -> Option<u64> {
    counter_in(&http_get(admin, "/metrics")?.1, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_taken_before_a_sigkill_is_submitted_after_the_restart_and_recorded_once() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    let node_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = free_port();
    let t = &rig.pipeline.kafka.topics;
    let dir = std::env::temp_dir().join(unique_name("blkmaker-kill-"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("blkmaker.toml");
    std::fs::write(
        &config,
        format!(
            r#"group = "{group}"
retry_window_secs = 300

[service]
instance = "kill-test"
admin_listen = "127.0.0.1:{admin}"
shutdown_grace_secs = 5

[kafka]
brokers = "{brokers}"
client_id = "blkmaker-kill-test"

[kafka.topics]
raw_gbt = "{raw_gbt}"
job = "{job}"
share = "{share}"
solved_share = "{solved}"
event = "{event}"

[mysql]
url = "{mysql}"

[[nodes]]
name = "node"
rpc_url = "http://{node_addr}"
rpc_user = "sluice"
rpc_password = "sluice"
"#,
            group = unique_name("sluice-test-blkmaker-"),
            brokers = rig.pipeline.kafka.brokers,
            raw_gbt = t.raw_gbt,
            job = t.job,
            share = t.share,
            solved = t.solved_share,
            event = t.event,
            mysql = mysql_url(),
        ),
    )
    .unwrap();

    // The only node is down: blkmaker takes the share and keeps retrying.
    let mut first = spawn(&config, &dir.join("first.log"));
    let share = solve(&rig.job_at(1).await, user_id, "rig1");
    rig.send(&share).await;
    eventually(Duration::from_secs(30), "the share taken", || async {
        (metric(admin, "blkmaker_solved_shares") == Some(1)).then_some(())
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let hash = share.block_hash.to_string();
    assert_eq!(rig.store.found_block_count(&hash).await.unwrap(), 0);

    // The node comes up; the restarted blkmaker replays the unacknowledged share.
    let node = Node::start(node_at(node_addr)).await;
    let mut second = spawn(&config, &dir.join("second.log"));
    let row = rig
        .row_where(&share, "the row after the restart", |r| {
            r.submit_results
                .get("node")
                .is_some_and(|a| a == "accepted")
        })
        .await;
    assert_eq!(best(&node.endpoints).await, share.block_hash);
    assert!(row.tx_count > 1, "the block has its transactions");

    // Another blkmaker (its own group) submits the same block too: the node
    // says duplicate, and the row stays one row.
    let other = rig.start(rig.config(vec![node_config_at("node", node_addr)]));
    eventually(
        Duration::from_secs(30),
        "the other blkmaker's row write",
        || async { (counter(&other, "blkmaker_rows_recorded") >= 1).then_some(()) },
    )
    .await;
    assert_eq!(rig.store.found_block_count(&hash).await.unwrap(), 1);
    second.kill().unwrap();
    second.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
