//! Failure drill: `kill -9` of a running sserver process under 2,000 mining
//! miners (the simulator's, over TCP, all from one address as a farm behind
//! a NAT), Stratum V1 and Stratum V2 alike. They notice, reconnect to the
//! restarted server and go on mining; nothing on their side needs a hand.
//! And "accepted" is durable: every share a miner saw accepted, before the
//! kill or after, is on the Share topic, once.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_testkit::{eventually, free_port};

const MINERS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_reconnect_and_go_on_after_sserver_is_killed() {
    drill(simulator::Protocol::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv2_miners_reconnect_and_go_on_after_sserver_is_killed() {
    drill(simulator::Protocol::V2).await;
}

async fn drill(protocol: simulator::Protocol) {
    // Hard bits: shares are never blocks here.
    let sv2_port = free_port();
    let keys = sluice_sv2::AuthorityKeys::generate();
    let rig = common::process_rig("1d00ffff", "drill", |dir| {
        let key_file = dir.join("sv2-authority.toml");
        keys.save_new(&key_file).unwrap();
        format!(
            "[difficulty]\ndefault = 0.0000000002\nmin = 0.0000000001\nmax = 0.000001\n\
             [sv2]\nlisten = \"127.0.0.1:{sv2_port}\"\nauthority_key_file = \"{}\"",
            key_file.display()
        )
    })
    .await;
    let (pipeline, dir) = (&rig.pipeline, &rig.dir);
    let mut server = rig.start("first.log");

    let server_port = match protocol {
        simulator::Protocol::V1 => rig.port,
        simulator::Protocol::V2 => sv2_port,
    };
    let mut options = simulator::Options::new(
        format!("127.0.0.1:{server_port}").parse().unwrap(),
        MINERS as usize,
    );
    options.protocol = protocol;
    options.authority_key = Some(keys.public().to_string());
    options.user = rig.user.clone();
    options.rate = 500.0;
    let (sim, counters, stop) = common::miners_mining(options, 2_000).await;

    common::kill_under_miners(&mut server, &counters).await;
    let before = counters.accepted.load(Ordering::Relaxed);

    let restarted = std::time::Instant::now();
    let mut server = rig.start("second.log");
    let c = counters.clone();
    // All 2,000 from one address within 30 s, with the default limits.
    eventually(
        Duration::from_secs(30),
        "every miner back and mining",
        || {
            let c = c.clone();
            async move {
                (c.connected.load(Ordering::Relaxed) == MINERS
                    && c.accepted.load(Ordering::Relaxed) >= before + 2_000)
                    .then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "drill ({protocol:?}): {MINERS} miners from one address back and mining {:?} after the restart",
        restarted.elapsed()
    );
    assert!(counters.reconnects.load(Ordering::Relaxed) >= MINERS);
    // The reconnect storm (thousands of handshakes queued at once) does not
    // starve the new server's ZooKeeper session: it keeps its id.
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert!(
        !log.contains("server id lost"),
        "the restarted server lost its ZooKeeper session: {:?}",
        log.lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect::<Vec<_>>()
    );
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    // Only shares for jobs the new server never sent (V1 miners submit the
    // work they had; a V2 channel's jobs die with its connection).
    for why in report.rejected_by_reason.keys() {
        assert!(
            why.starts_with("21 ") || why == "invalid-job-id",
            "only shares for jobs the new server never sent: {report:?}"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Every accepted share is on the topic, once: each header hash a miner
    // was told was accepted, looked up by identity (a lost share cannot hide
    // behind an unanswered one that was recorded). More records only by
    // submits the kill left unanswered (recorded, the answer never written):
    // the miner did that work and is credited for it.
    let accepted = report.totals.accepted;
    let unanswered = report.totals.submitted - accepted - report.totals.rejected;
    let on_topic = pipeline.accepted_on_topic().await;
    let records: u32 = on_topic.values().sum();
    eprintln!(
        "drill ({protocol:?}): {accepted} shares accepted by two servers, the first killed; {records} on the topic; {unanswered} submits unanswered"
    );
    assert_eq!(
        report.accepted_hashes.len() as u64,
        accepted,
        "every accepted share listed"
    );
    let missing = report
        .accepted_hashes
        .iter()
        .filter(|h| !on_topic.contains_key(*h))
        .count();
    assert_eq!(missing, 0, "accepted shares missing from the topic");
    let twice: Vec<_> = on_topic.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "shares recorded twice: {twice:?}");
    assert!(
        u64::from(records) - accepted <= unanswered,
        "{records} records for {accepted} accepted shares and {unanswered} unanswered submits"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
