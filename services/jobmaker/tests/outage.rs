//! Stop ZooKeeper of the local stack while gbtmaker and jobmaker run: the
//! leader keeps making jobs through the outage and leads again afterwards,
//! with no restart.
//!
//! The same with the Kafka broker, killed (the local stack stops tansu with
//! SIGKILL: see deploy/supervisor/programs/infra.conf for why).
//!
//! These tests stop shared servers: they take turns, and cargo runs test
//! binaries one after another, so no other test sees an outage.

#![allow(clippy::unwrap_used)]

mod common;
use common::RigExt as _;

use std::process::Command;
use std::time::Duration;

/// Runs `supervisorctl <action> <program>` on the local stack's supervisord.
fn stack(action: &str, program: &str) {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../install/lib.sh");
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source {lib} && supervisorctl_ {action} {program}"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "supervisorctl {action} {program} (is install/stack.sh up running?)"
    );
}

/// Starts the program again however the test ends.
struct Restart(&'static str);

impl Drop for Restart {
    fn drop(&mut self) {
        stack("start", self.0);
    }
}

/// The two outages stop different servers; one at a time keeps each test's
/// outage its own.
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

async fn until_port(port: u16, open: bool) {
    let what = format!("port {port} {}", if open { "open" } else { "closed" });
    sluice_testkit::eventually(Duration::from_secs(30), &what, || async move {
        (port_open(port) == open).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zookeeper_outage_is_survived_without_restarts() {
    let _one = ONE_OUTAGE_AT_A_TIME.lock().await;
    let rig = common::rig(500).await;
    let (ctx, jobs, _) = rig.start_jobmaker().await;

    // ZooKeeper goes away; a block is found meanwhile; ZooKeeper returns.
    {
        let _guard = Restart("zookeeper");
        stack("stop", "zookeeper");
        until_port(2181, false).await;
        rig.generate().await;
    }
    until_port(2181, true).await;
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
    // And it keeps working afterwards.
    rig.generate().await;
    common::job_where(
        &jobs,
        Duration::from_secs(30),
        "at height 3 after the outage",
        |j| j.height == 3,
    )
    .await;
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
        let _guard = Restart("kafka");
        stack("stop", "kafka");
        until_port(9092, false).await;
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
    }
    until_port(9092, true).await;
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
    // And it keeps working afterwards, with no restart.
    rig.generate().await;
    common::job_where(
        &jobs,
        Duration::from_secs(30),
        "at height 3 after the outage",
        |j| j.height == 3,
    )
    .await;
    ctx.shutdown.token().cancel();
}
