//! jobmaker mines on the chain its nodes hold, whatever RawGbt's tail says:
//! the pool ran on one node (a chain at height 12), then on another (a
//! chain of its own at height 2), as an operator moving from the demo's
//! nodesim to their own bitcoind does.

#![allow(clippy::unwrap_used)]

mod common;
use common::RigExt as _;

use std::time::{Duration, Instant};

use sluice_rig::Node;

/// Waits (a minute at most: gbtmaker finds a node when its backoff lets
/// it) for a template on `tip`.
async fn template_on(
    templates: &sluice_bus::TailConsumer<sluice_core::BlockTemplate>,
    tip: bitcoin::BlockHash,
) {
    common::job_where(
        templates,
        Duration::from_secs(60),
        "from the new node",
        |t| t.prev_blockhash == tip,
    )
    .await;
}

/// A job on `tip` within `within`; how long it took. Panics naming any job
/// made on another tip first.
async fn first_job_on(
    jobs: &sluice_bus::TailConsumer<sluice_core::Job>,
    tip: bitcoin::BlockHash,
    within: Duration,
) -> (sluice_core::Job, Duration) {
    let started = Instant::now();
    let job = common::job_where(jobs, within, "on the new node's tip", |_| true).await;
    assert_eq!(
        (job.prev_blockhash, job.height),
        (tip, 3),
        "the first job is on the node's tip, not the tail's old chain"
    );
    (job, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_mines_on_its_node_s_tip_not_the_tail_s_other_chain() {
    let mut rig = common::rig(500).await;
    rig.node.generate_n(11).await;
    let templates = rig.templates().await;
    common::job_where(&templates, Duration::from_secs(60), "at height 12", |t| {
        t.height == 12
    })
    .await;
    // The pool moves to another node under the same name: the old node and
    // its gbtmaker stop, the new node's gbtmaker publishes, and only then
    // does a jobmaker begin to lead, with RawGbt's tail ending in both.
    for ctx in &rig.ctxs {
        ctx.shutdown.token().cancel();
    }
    let other = Node::ephemeral().await;
    let tip = other.generate_n(2).await;
    let _gbt = rig.start_gbtmaker(other.config("sim"), 500);
    template_on(&templates, tip).await;
    rig.node = other;

    let jobs = rig.jobs().await;
    let ctx = common::context();
    tokio::spawn(jobmaker::run(rig.jobmaker_config(), ctx.clone()));
    let (job, took) = first_job_on(&jobs, tip, Duration::from_secs(20)).await;
    println!("first job on the new node's tip {took:?} after jobmaker started");
    assert!(job.clean, "a tip no earlier job was on");
    let text = ctx.metrics.encode();
    assert!(
        text.contains("jobmaker_templates_skipped_total{reason=\"unconfirmed_tip\"}"),
        "the old chain's templates were skipped and counted: {text}"
    );
    ctx.shutdown.token().cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_follows_its_node_replaced_by_one_on_a_shorter_chain() {
    let mut rig = common::rig(500).await;
    let (ctx, jobs, _) = rig.start_jobmaker().await;
    rig.node.generate_n(11).await;
    common::job_where(&jobs, Duration::from_secs(60), "at height 12", |j| {
        j.height == 12
    })
    .await;
    // bitcoind stopped and another started at the same address with a
    // chain of its own (fewer blocks, less work): gbtmaker and jobmaker go
    // on running.
    rig.node.replace("207fffff").await;
    let tip = rig.node.generate_n(2).await;
    // gbtmaker finds the new node when its backoff lets it (seconds under
    // load: that is gbtmaker's business); from its template on, the job is
    // jobmaker's, within seconds, not the two job intervals (60 s) a stale
    // tip takes.
    let templates = rig.templates().await;
    template_on(&templates, tip).await;
    let seen = Instant::now();
    let job = common::job_where(
        &jobs,
        Duration::from_secs(10),
        "on the new node's tip",
        |j| j.prev_blockhash == tip,
    )
    .await;
    assert_eq!(job.height, 3);
    assert!(job.clean);
    println!(
        "a job on the replaced node's tip {:?} after its template",
        seen.elapsed()
    );
    ctx.shutdown.token().cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_of_a_node_not_in_its_config_are_never_mined_on_and_health_says_why() {
    let rig = common::rig(500).await;
    let mut config = rig.jobmaker_config();
    // gbtmaker calls its node "sim"; this jobmaker knows only another.
    config.nodes[0].name = "core-fra-1".into();
    let ctx = common::context();
    tokio::spawn(jobmaker::run(config, ctx.clone()));
    let why = sluice_testkit::eventually(Duration::from_secs(30), "health to say why", || {
        let health = ctx.health.snapshot();
        async move {
            let t = health.get("templates")?;
            (!t.ok && t.detail.contains("not in [[nodes]]")).then(|| t.detail.clone())
        }
    })
    .await;
    assert!(
        why.contains("\"sim\"") && why.contains("core-fra-1"),
        "{why}"
    );
    let text = ctx.metrics.encode();
    assert!(
        text.contains("jobmaker_templates_skipped_total{reason=\"unknown_node\"}"),
        "{text}"
    );
    let marks = sluice_bus::fetch_watermarks(&rig.kafka, &rig.kafka.topics.job)
        .await
        .unwrap();
    assert!(
        marks.iter().all(|(_, _, high)| *high == 0),
        "no job was made: {marks:?}"
    );
    ctx.shutdown.token().cancel();
}
