//! Stop ZooKeeper of the local stack while gbtmaker and jobmaker run: the
//! leader keeps making jobs through the outage and leads again afterwards,
//! with no restart.
//!
//! The same with the Kafka broker, stopped by supervisord (TERM, Kafka's
//! controlled shutdown).
//!
//! These tests stop shared servers: they take turns, and cargo runs test
//! binaries one after another, so no other test sees an outage.

#![allow(clippy::unwrap_used)]

mod common;
use common::RigExt as _;

use std::time::Duration;

use sluice_testkit::Outage;

/// The two outages stop different servers; one at a time keeps each test's
/// outage its own.
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// After an outage, with no restart: the next block becomes a job at height 3.
async fn keeps_making_jobs(rig: &common::Rig, jobs: &sluice_bus::TailConsumer<sluice_core::Job>) {
    rig.generate().await;
    common::job_where(
        jobs,
        Duration::from_secs(30),
        "at height 3 after the outage",
        |j| j.height == 3,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zookeeper_outage_is_survived_without_restarts() {
    let _one = ONE_OUTAGE_AT_A_TIME.lock().await;
    let rig = common::rig(500).await;
    let (ctx, jobs, _) = rig.start_jobmaker().await;

    // ZooKeeper goes away; a block is found meanwhile; ZooKeeper returns.
    let outage = Outage::begin("zookeeper", 2181).await;
    rig.generate().await;
    outage.end().await;
    common::job_where(
        &jobs,
        Duration::from_secs(60),
        "at height 2 around the ZooKeeper outage",
        |j| j.height == 2,
    )
    .await;
    let health = ctx.health.clone();
    sluice_testkit::eventually(Duration::from_secs(30), "jobmaker to lead again", || {
        let detail = health
            .snapshot()
            .get("zookeeper")
            .map(|c| c.detail.clone())
            .unwrap_or_default();
        async move { detail.starts_with("leader").then_some(()) }
    })
    .await;
    keeps_making_jobs(&rig, &jobs).await;
    ctx.shutdown.token().cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_is_survived_without_restarts() {
    let _one = ONE_OUTAGE_AT_A_TIME.lock().await;
    let rig = common::rig(500).await;
    let (ctx, jobs, _) = rig.start_jobmaker().await;
    let gbtmaker = rig.ctxs[0].health.clone();

    // The broker is killed; a block is found while it is away; gbtmaker's
    // template waits in its producer, and /health says so; then the broker
    // returns with everything it had.
    {
        let outage = Outage::begin("kafka", 9092).await;
        rig.generate().await;
        let health = gbtmaker.clone();
        sluice_testkit::eventually(
            Duration::from_secs(30),
            "gbtmaker to report the broker away",
            || {
                let away = health
                    .snapshot()
                    .get("kafka_templates")
                    .is_some_and(|c| !c.ok);
                async move { away.then_some(()) }
            },
        )
        .await;
        outage.end().await;
    }
    let job = common::job_where(
        &jobs,
        Duration::from_secs(60),
        "at height 2 after the broker returned",
        |j| j.height == 2,
    )
    .await;
    assert!(job.clean, "the first job at a new height is clean");
    sluice_testkit::eventually(
        Duration::from_secs(30),
        "gbtmaker to report the broker back",
        || {
            let back = gbtmaker
                .snapshot()
                .get("kafka_templates")
                .is_some_and(|c| c.ok);
            async move { back.then_some(()) }
        },
    )
    .await;
    keeps_making_jobs(&rig, &jobs).await;
    ctx.shutdown.token().cancel();
}
