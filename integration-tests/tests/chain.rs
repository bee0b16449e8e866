//! The pool moved to another node: it mines on nodesim A's chain, then its
//! node-facing services (gbtmaker, jobmaker, blkmaker) are restarted on
//! nodesim B, a chain of its own at a lower height, under the same node
//! name, as an operator moving the demo to their own bitcoind does (README
//! command 1 again). sserver and statshttpd run on. The new leader's first
//! job is on B's tip although RawGbt's tail ends in A's higher templates,
//! every share accepted from then on is on B's jobs, and every block found
//! goes to B and is taken: none refused as prev-blk-not-found.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{BITS, InProcess, ONE_POOL_AT_A_TIME, start_mining, start_pool};
use sluice_core::record::{ShareRecord, SolvedShare};
use sluice_core::{Job, JobId};
use sluice_rig::Node;
use sluice_testkit::{eventually, mysql_url};

/// The value of counter `name` (with `labels`) in `text`, 0 if absent.
fn counter(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_restarted_on_another_node_mines_on_that_node_s_chain_at_once() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let pool = start_pool(
        &mysql_url(),
        InProcess {
            jobmaker: true,
            blkmaker: false,
        },
    )
    .await;
    let blk_a = sluice_rig::context();
    let blk_a_task = tokio::spawn(blkmaker::run(pool.blkmaker.clone(), blk_a.clone()));

    // On A: twenty blocks from outside, then miners for a few seconds.
    pool.pipeline.node.generate_n(20).await;
    let (sim, _) = start_mining(&pool, 3.0, |_| {}).await;
    sim.await.unwrap().unwrap();
    let a_height = pool.pipeline.node.height().await;
    let jobs = pool
        .pipeline
        .tail::<Job>(&pool.pipeline.kafka.topics.job, 1)
        .await;
    let last_a =
        sluice_rig::next_where(&jobs, Duration::from_secs(10), "A's last job", |_| true).await;
    assert!(last_a.height > 20, "{last_a:?}");

    // Restart on B under the same node name: the old services stop first.
    for ctx in &pool.pipeline.ctxs {
        ctx.shutdown.token().cancel();
    }
    blk_a.shutdown.token().cancel();
    blk_a_task.await.unwrap().unwrap();
    pool.pipeline.node.ctx.shutdown.token().cancel();
    let b = Node::start(nodesim::Config {
        bits: BITS.into(),
        ..nodesim::Config::ephemeral()
    })
    .await;
    let b_tip = b.generate_n(3).await;
    let restarted = Instant::now();
    let _gbt_b = pool.pipeline.start_gbtmaker(b.config("sim"), 1000);
    let jm_b = sluice_rig::context();
    tokio::spawn(jobmaker::run(
        jobmaker::Config {
            nodes: vec![b.config("sim")],
            ..pool.pipeline.jobmaker_config()
        },
        jm_b.clone(),
    ));
    let blk_b = sluice_rig::context();
    tokio::spawn(blkmaker::run(
        blkmaker::Config {
            nodes: vec![b.config("sim")],
            ..pool.blkmaker.clone()
        },
        blk_b.clone(),
    ));

    // The new leader's first job is B's tip, not A's higher one.
    let first_b = sluice_rig::next_where(
        &jobs,
        Duration::from_secs(15),
        "the new leader's job",
        |j| j.leader_epoch > last_a.leader_epoch,
    )
    .await;
    let first_job_after = restarted.elapsed();
    assert_eq!(
        (first_b.prev_blockhash, first_b.height),
        (b_tip, 4),
        "the first job is on B's tip (A was at {a_height})"
    );
    assert!(first_b.clean);
    let server = &pool.ctxs[0];
    eventually(Duration::from_secs(10), "sserver on B's job", || async {
        let jobs = server.health.snapshot().get("jobs").cloned()?;
        jobs.detail.ends_with("newest height 4").then_some(())
    })
    .await;

    // Miners mine on B: every share accepted from now on is on its jobs.
    let shares = pool
        .pipeline
        .tail::<ShareRecord>(&pool.pipeline.kafka.topics.share, 0)
        .await;
    let solved = pool
        .pipeline
        .tail::<SolvedShare>(&pool.pipeline.kafka.topics.solved_share, 0)
        .await;
    let mining = Instant::now();
    let (sim, _) = start_mining(&pool, 6.0, |_| {}).await;
    let first_share = shares
        .next_matching(Duration::from_secs(10), |s| s.status.is_accepted())
        .await
        .unwrap()
        .expect("an accepted share");
    let first_share_after = mining.elapsed();
    let report = sim.await.unwrap().unwrap();
    eprintln!(
        "first job on B {first_job_after:?} after the restart, first accepted share \
         {first_share_after:?} after the miners started; {}",
        report.table()
    );
    assert!(first_share.job_id >= first_b.id, "{first_share:?}");
    let mut accepted = 1;
    let mut off_b = Vec::new();
    while let Some(s) = shares
        .next_matching(Duration::from_secs(3), |s| s.status.is_accepted())
        .await
        .unwrap()
    {
        accepted += 1;
        if s.job_id < first_b.id {
            off_b.push((s.job_id, s.height));
        }
    }
    assert!(accepted >= 200, "{accepted} accepted");
    assert_eq!(
        off_b,
        Vec::<(JobId, u32)>::new(),
        "shares accepted on A's jobs"
    );

    // Every block the miners found went to B and was taken.
    let mut found = Vec::new();
    while let Some(s) = solved
        .next_matching(Duration::from_secs(3), |_| true)
        .await
        .unwrap()
    {
        found.push(s.block_hash.to_string());
    }
    assert!(!found.is_empty(), "the miners found blocks on B");
    let results = eventually(Duration::from_secs(60), "every block recorded", || async {
        let mut results = BTreeMap::new();
        for hash in &found {
            let row = pool.store.found_block(hash).await.ok()??;
            results.insert(hash.clone(), row.submit_results.get("sim")?.clone());
        }
        Some(results)
    })
    .await;
    for (hash, answer) in &results {
        assert!(
            !answer.contains("prev-blk-not-found"),
            "block {hash} was refused for a parent B lacks: {answer}"
        );
    }
    let b_metrics = b.ctx.metrics.encode();
    assert!(
        counter(&b_metrics, "nodesim_submitblock_total{answer=\"accepted\"}") >= 1,
        "{b_metrics}"
    );
    assert_eq!(
        counter(&b_metrics, "nodesim_submitblock_total{answer=\"rejected\"}"),
        0,
        "{b_metrics}"
    );
    assert_eq!(
        counter(&blk_b.metrics.encode(), "blkmaker_blocks_wrong_chain_total"),
        0
    );
    assert!(blk_b.health.snapshot()["wrong_chain"].ok);
    for ctx in [&jm_b, &blk_b] {
        ctx.shutdown.token().cancel();
    }
}
