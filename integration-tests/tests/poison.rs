//! Poison on every topic under a mining pool (real broker, ZooKeeper,
//! MariaDB, nodesim): a record that does not decode is logged, counted on
//! /metrics by topic and skipped by every consumer (jobmaker and blkmaker on
//! RawGbt, sserver on Job, statshttpd on Share and Event, blkmaker on
//! SolvedShare); the pool mines on, every block is recorded and every
//! accepted share is credited.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    InProcess, ONE_POOL_AT_A_TIME, accepted_at_least, all_recorded, candidates_all_sent,
    start_mining, start_pool, statshttpd_credits,
};
use sluice_bus::Producer;
use sluice_testkit::{eventually, mysql_url};

/// `sluice_bus_poison_messages_total{topic="…"}` in a Prometheus exposition.
fn poison_of(text: &str, topic: &str) -> u64 {
    let prefix = format!("sluice_bus_poison_messages_total{{topic=\"{topic}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_on_every_topic_is_counted_and_skipped_while_the_pool_mines() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let pool = start_pool(&mysql_url(), InProcess::ALL).await;
    let (sim, counters) = start_mining(&pool, 15.0, |_| {}).await;

    let topics = pool.pipeline.kafka.topics.clone();
    let names = [
        topics.raw_gbt.clone(),
        topics.job.clone(),
        topics.share.clone(),
        topics.solved_share.clone(),
        topics.event.clone(),
    ];
    let producer = Producer::new(&pool.pipeline.kafka, 0).unwrap();
    // Not protobuf (a field number 0 and a truncated varint), then an
    // empty record: the two ways a foreign or broken producer writes.
    for topic in &names {
        for payload in [&[0x00, 0xff, 0xff][..], &[0x0a, 0x85][..]] {
            producer
                .send_bytes(topic, b"poison", payload)
                .await
                .unwrap();
        }
    }
    // sserver's /metrics (the counter is the process's: every consumer in it).
    let metrics = pool.ctxs[0].metrics.clone();
    eventually(
        Duration::from_secs(30),
        "every topic's poison counted",
        || {
            let text = metrics.encode();
            let counts: Vec<u64> = names.iter().map(|t| poison_of(&text, t)).collect();
            async move { counts.iter().all(|&c| c >= 2).then_some(()) }
        },
    )
    .await;

    // The pool mines on after the poison...
    let after_poison = counters.accepted.load(Ordering::Relaxed);
    accepted_at_least(&counters, after_poison + 200).await;
    let report = sim.await.unwrap().unwrap();
    assert!(report.accepted > 0, "{report:?}");
    assert_eq!(
        report.reconnects, 0,
        "no miner lost its session: {report:?}"
    );
    // ... every block it found is recorded, and statshttpd credits every
    // accepted share (none lost behind a poison record on Share).
    let sent = candidates_all_sent(&pool).await;
    all_recorded(&pool, &sent).await;
    statshttpd_credits(&pool, &counters).await;
}
