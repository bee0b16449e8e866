//! Two jobmaker processes: SIGKILL the leader and the standby takes over
//! within 10 s with a higher epoch, its first job on the newest template
//! (clean only on another tip than the last leader's); the old leader,
//! restarted, stays standby.

#![allow(clippy::unwrap_used)]

mod common;
use common::RigExt as _;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A jobmaker process, killed when dropped.
struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(rig: &common::Rig, name: &str) -> Proc {
    let port = sluice_testkit::free_port();
    let t = &rig.kafka.topics;
    let config = format!(
        "payout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\nnetwork = \"regtest\"\n\
         [service]\ninstance = \"{name}\"\nadmin_listen = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 2\n\
         [kafka]\nbrokers = \"{}\"\nclient_id = \"{name}\"\n[kafka.topics]\nraw_gbt = \"{}\"\njob = \"{}\"\nevent = \"{}\"\n\
         [zookeeper]\nconnect = \"{}\"\nroot = \"{}\"\nsession_timeout_ms = 3000\n\
         [[nodes]]\nname = \"sim\"\nrpc_url = \"http://{}\"\nrpc_user = \"sluice\"\nrpc_password = \"sluice\"\n",
        rig.kafka.brokers,
        t.raw_gbt,
        t.job,
        t.event,
        sluice_testkit::zookeeper(),
        rig.zk.root,
        rig.node.endpoints.rpc,
    );
    let path = std::env::temp_dir().join(format!(
        "jobmaker-{}-{name}-{port}.toml",
        std::process::id()
    ));
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jobmaker"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child, port }
}

async fn wait_health(p: &Proc, contains: &str) {
    let port = p.port;
    sluice_testkit::eventually(Duration::from_secs(20), contains, || async move {
        sluice_testkit::http_get(port, "/health")
            .filter(|(_, h)| h.contains(contains))
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_the_leader_hands_over_within_seconds_and_the_old_leader_stays_standby() {
    let rig = common::rig(500).await;
    let jobs = rig.jobs().await;
    let a = spawn(&rig, "a");
    let first = common::job_where(
        &jobs,
        Duration::from_secs(30),
        "from the first leader",
        |_| true,
    )
    .await;
    let epoch_a = first.leader_epoch;
    wait_health(&a, "leader, epoch").await;

    let b = spawn(&rig, "b");
    wait_health(&b, "standby").await;

    drop(a); // SIGKILL: no resignation, ZooKeeper must notice the dead session
    let killed = Instant::now();
    // A block while nobody leads: the new leader finds its template at the
    // end of RawGbt's tail, behind the ones of height 1.
    rig.generate().await;
    let taken_over = common::job_where(&jobs, Duration::from_secs(10), "from a new leader", |j| {
        j.leader_epoch > epoch_a
    })
    .await;
    println!(
        "SIGKILL of the leader to a job from the standby: {:?}",
        killed.elapsed()
    );
    assert_eq!(
        taken_over.height, 2,
        "the new leader's first job is on the tail's best template, not on each one before it"
    );
    assert!(
        taken_over.clean,
        "on a tip the last leader's jobs were not on, the first job is clean"
    );
    assert!(
        taken_over.id > first.id,
        "job ids keep increasing across leaders"
    );
    let epoch_b = taken_over.leader_epoch;
    wait_health(&b, &format!("leader, epoch {epoch_b}")).await;

    // The old leader comes back: it is a standby now.
    let a2 = spawn(&rig, "a2");
    wait_health(&a2, "standby").await;
    rig.generate().await;
    let next = common::job_where(&jobs, Duration::from_secs(10), "for the new block", |j| {
        j.height == 3
    })
    .await;
    assert_eq!(next.leader_epoch, epoch_b, "B still leads");

    // B killed on a quiet tip: A2 leads on the tip B's jobs were on, and
    // its first job lets miners keep the work they have.
    drop(b);
    let third = common::job_where(&jobs, Duration::from_secs(10), "from a third leader", |j| {
        j.leader_epoch > epoch_b
    })
    .await;
    assert_eq!(
        (third.height, third.prev_blockhash),
        (next.height, next.prev_blockhash)
    );
    assert!(
        !third.clean,
        "on the tip the last leader's jobs were on, miners keep their work"
    );
    drop(a2);
}
