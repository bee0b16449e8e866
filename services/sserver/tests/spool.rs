//! Drill: the broker stopped, then sserver killed with SIGKILL while it is
//! down, then both back. Shares answered "accepted" during the outage were
//! on sserver's disk only (the spool); the restarted sserver sends them, and
//! every share a miner was told was accepted is on the Share topic exactly
//! once — checked by header hash, share by share, not by counts.
//!
//! It stops the local stack's broker: the only test of its binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_testkit::{Outage, eventually};

const MINERS: u64 = 200;

fn segments(spool: &Path) -> usize {
    std::fs::read_dir(spool).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
            .count()
    })
}

/// Waits until the miners have had `more` shares accepted beyond `from`.
async fn accepted_beyond(counters: &Arc<simulator::Counters>, from: u64, more: u64, what: &str) {
    let c = counters.clone();
    eventually(Duration::from_secs(60), what, || {
        let c = c.clone();
        async move { (c.accepted.load(Ordering::Relaxed) >= from + more).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_accepted_while_the_broker_is_down_survive_a_kill_9_of_sserver() {
    // Hard bits: shares are never blocks here.
    let rig = common::process_rig("1d00ffff", "spool", |_| {
        "[difficulty]\ndefault = 0.0000000002\nmin = 0.0000000001\nmax = 0.000001\n".into()
    })
    .await;
    let (pipeline, admin) = (&rig.pipeline, rig.admin);
    // The default spool: next to the solved log.
    let spool = rig.dir.join("solved.spool");
    let mut server = rig.start("first.log");
    let mut options = simulator::Options::new(
        format!("127.0.0.1:{}", rig.port).parse().unwrap(),
        MINERS as usize,
    );
    options.user = rig.user.clone();
    options.rate = 200.0;
    let (sim, counters, stop) = common::miners_mining(options, 200).await;

    // The broker goes away; the miners' shares are answered from the spool.
    let outage = Outage::begin("kafka", 9092).await;
    let at_stop = counters.accepted.load(Ordering::Relaxed);
    accepted_beyond(
        &counters,
        at_stop,
        300,
        "shares accepted while the broker is away",
    )
    .await;
    assert!(
        segments(&spool) > 0,
        "the shares answered during the outage are in the spool"
    );
    // SIGKILL, the broker still away.
    common::kill_under_miners(&mut server, &counters).await;
    let accepted_by_the_first = counters.accepted.load(Ordering::Relaxed);

    // Both back: the new sserver replays what the first one spooled.
    outage.end().await;
    let mut server = rig.start("second.log");
    let replayed = eventually(
        Duration::from_secs(120),
        "the restarted sserver to send the spooled shares",
        || async move {
            let (_, body) = sluice_testkit::http_get(admin, "/health")?;
            let at = body.find(" shares the last run spooled sent")?;
            let n: u64 = body[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some(n)
        },
    )
    .await;
    assert!(replayed > 0, "the spool held shares the broker never had");
    accepted_beyond(
        &counters,
        accepted_by_the_first,
        200,
        "the miners back and mining",
    )
    .await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();

    // Every share a miner was told was accepted is on the topic once.
    let on_topic = pipeline.accepted_on_topic().await;
    let told = &report.accepted_hashes;
    assert_eq!(
        told.len() as u64,
        report.totals.accepted,
        "every accepted hash listed"
    );
    let missing: Vec<&String> = told.iter().filter(|h| !on_topic.contains_key(*h)).collect();
    let twice: Vec<(&String, &u32)> = on_topic.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "spool drill: {} shares accepted ({} during the outage, answered from the spool), {replayed} replayed by the restarted sserver; {} on the topic",
        told.len(),
        accepted_by_the_first - at_stop,
        on_topic.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {} accepted shares are not on the topic, e.g. {:?}",
        missing.len(),
        told.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "shares on the topic twice: {twice:?}");
    std::fs::remove_dir_all(&rig.dir).unwrap();
}
