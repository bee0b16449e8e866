//! Poison on every topic under a mining pool (real broker, ZooKeeper,
//! MariaDB, nodesim): a record that does not decode is logged, counted on
//! /metrics by topic and skipped by every consumer (jobmaker and blkmaker on
//! RawGbt, sserver on Job, statshttpd on Share and Event, blkmaker on
//! SolvedShare), and so is a record that decodes but cannot be real (a share
//! timed hours ahead, a job with an impossible merkle branch, a template whose
//! id is not its content's); the pool mines
//! on, every block is recorded and every accepted share is credited.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bitcoin::hashes::Hash;
use common::{
    InProcess, MINERS, ONE_POOL_AT_A_TIME, accepted_at_least, all_recorded, candidates_all_sent,
    start_mining, start_pool, statshttpd_credits,
};
use sluice_bus::{Producer, Topic};
use sluice_core::record::ShareRecord;
use sluice_core::{BlockTemplate, Job, JobId};
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
    let (sim, counters) = start_mining(&pool, 30.0, |_| {}).await;

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
    // Records that decode but cannot be real: a share timed two hours ahead
    // (it would sit in statshttpd's windows; a NaN difficulty does not even
    // decode), a job with a merkle
    // branch deeper than any block (miners would hash for nothing), a
    // template forged from a real one (its id is not its content's).
    let future_share = ShareRecord {
        job_id: JobId(1),
        user_id: pool.user_id,
        worker_id: 1,
        worker_name: "sim-00000".into(),
        server_id: 1,
        extranonce1: 1,
        extranonce2: vec![0; 8],
        ntime: 0,
        nonce: 0,
        version_bits: 0,
        share_difficulty: 1e-9,
        network_bits: bitcoin::CompactTarget::from_consensus(0x2003_ffff),
        height: 1,
        status: sluice_core::ShareStatus::Accepted,
        hash: bitcoin::BlockHash::all_zeros(),
        client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        timestamp_ms: sluice_service::now_ms() + 2 * 3_600_000,
        protocol: sluice_core::record::MiningProtocol::StratumV1,
        solo: false,
    };
    let share_key = pool.user_id.to_be_bytes();
    producer
        .send(&Topic::new(topics.share.clone()), &share_key, &future_share)
        .await
        .unwrap();
    let jobs = pool.pipeline.tail::<Job>(&topics.job, 1).await;
    let real = jobs.next().await.unwrap().value;
    let deep = Job {
        id: JobId(real.id.0 + 1_000),
        merkle_branch: vec![bitcoin::TxMerkleNode::all_zeros(); 40],
        ..real
    };
    producer
        .send(&Topic::new(topics.job.clone()), b"poison", &deep)
        .await
        .unwrap();
    let gbts = pool
        .pipeline
        .tail::<BlockTemplate>(&topics.raw_gbt, 1)
        .await;
    let real = gbts.next().await.unwrap().value;
    let forged = BlockTemplate {
        height: real.height + 1_000,
        created_at_ms: sluice_service::now_ms(),
        ..real
    };
    producer
        .send(&Topic::new(topics.raw_gbt.clone()), b"poison", &forged)
        .await
        .unwrap();

    // sserver's /metrics (the counter is the process's: every consumer in it).
    let metrics = pool.ctxs[0].metrics.clone();
    eventually(
        Duration::from_secs(30),
        "every topic's poison counted",
        || {
            let text = metrics.encode();
            let counts: Vec<u64> = names.iter().map(|t| poison_of(&text, t)).collect();
            // Share and Job have one consumer each here, RawGbt two (jobmaker
            // and blkmaker): two undecodable records each, and the nonsense.
            let nonsense = [(&topics.share, 3), (&topics.job, 3), (&topics.raw_gbt, 6)]
                .map(|(t, n)| poison_of(&text, t) >= n);
            async move {
                (counts.iter().all(|&c| c >= 2) && nonsense.iter().all(|&ok| ok)).then_some(())
            }
        },
    )
    .await;

    // The pool mines on after the poison (a share a miner: vardiff aims
    // each at one every 10 s)...
    let after_poison = counters.accepted.load(Ordering::Relaxed);
    accepted_at_least(&counters, after_poison + MINERS as u64).await;
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
