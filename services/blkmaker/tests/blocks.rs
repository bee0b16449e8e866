//! blkmaker on the real pipeline (broker, ZooKeeper, MariaDB, nodesim): a
//! solved share becomes a block with transactions on every node and exactly
//! one found_blocks row, whatever is down for a while.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bitcoin::Block;
use bitcoincore_rpc::RpcApi;
use common::{best, counter, node_at, rig, solve, user};
use sluice_core::TemplateId;
use sluice_core::record::{BlockStatus, Event, EventKind};
use sluice_rig::{Node, node_config_at};
use sluice_testkit::{Gate, eventually, free_port, mysql_url};

fn results(row: &sluice_store::FoundBlock) -> BTreeMap<String, String> {
    row.submit_results.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solved_share_becomes_a_block_with_transactions_and_one_row() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    let events = rig
        .pipeline
        .tail::<Event>(&rig.pipeline.kafka.topics.event, 1000)
        .await;
    let ctx = rig.start(rig.config(vec![rig.pipeline.node.config("sim")]));
    let job = rig.job_at(1).await;
    let share = solve(&job, user_id, "rig1");
    // Sent twice at once (sserver resending): the second copy arrives while
    // the first is in flight and is acknowledged, not submitted again.
    rig.send(&share).await;
    rig.send(&share).await;

    let row = rig
        .row_where(&share, "the row with the node's answer", |r| {
            results(r).get("sim").map(String::as_str) == Some("accepted")
        })
        .await;
    let endpoints = &rig.pipeline.node.endpoints;
    assert_eq!(
        best(endpoints).await,
        share.block_hash,
        "nodesim's tip is the block"
    );
    let client = sluice_rig::client(endpoints);
    let hash = share.block_hash;
    let block: Block = tokio::task::spawn_blocking(move || client.get_block(&hash))
        .await
        .unwrap()
        .unwrap();
    assert!(
        block.txdata.len() > 1,
        "the template's transactions are in the block"
    );
    assert_eq!(row.tx_count as usize, block.txdata.len());
    assert_eq!(
        row.size as usize,
        bitcoin::consensus::serialize(&block).len()
    );
    assert_eq!(row.height, 1);
    assert_eq!(row.prev_hash, job.prev_blockhash.to_string());
    assert_eq!((row.user_id, row.worker_id), (user_id, 77));
    assert_eq!(row.worker_name, "rig1");
    assert_eq!(row.job_id, job.id.0);
    let paid: u64 = block.txdata[0]
        .output
        .iter()
        .map(|o| o.value.to_sat())
        .sum();
    assert_eq!(row.reward, paid);
    assert!(row.fees > 0, "template transactions pay fees");
    assert!(
        !block.txdata[0].input[0].witness.is_empty(),
        "witness reserved value"
    );

    let found = sluice_rig::next_where(
        &events,
        Duration::from_secs(20),
        "BlockFound",
        |e| matches!(&e.kind, EventKind::BlockFound(b) if b.hash == share.block_hash),
    )
    .await;
    let EventKind::BlockFound(found) = found.kind else {
        unreachable!()
    };
    assert!(found.accepted);
    assert_eq!(found.reward_sat, paid);

    eventually(
        Duration::from_secs(20),
        "the copy in flight handled",
        || async { (counter(&ctx, "blkmaker_replays") == 1).then_some(()) },
    )
    .await;

    // A later replay (a rebalance) is acknowledged, not re-recorded.
    rig.send(&share).await;
    eventually(Duration::from_secs(20), "the replay handled", || async {
        (counter(&ctx, "blkmaker_replays") == 2).then_some(())
    })
    .await;
    assert_eq!(counter(&ctx, "blkmaker_blocks_submitted"), 1);
    assert_eq!(rig.store.found_block_count(&row.hash).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_found_block_is_confirmed_when_mature_and_orphaned_when_the_chain_leaves_it() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    let events = rig
        .pipeline
        .tail::<Event>(&rig.pipeline.kafka.topics.event, 1000)
        .await;
    let config = blkmaker::Config {
        mature_confirmations: 3,
        ..rig.config(vec![rig.pipeline.node.config("sim")])
    };
    let ctx = rig.start(config);
    let standing = |hash: bitcoin::BlockHash, status: BlockStatus| move |e: &Event| matches!(&e.kind, EventKind::BlockStanding(b) if b.hash == hash && b.status == status);

    // Found, then buried under two more blocks: 3 confirmations, mature.
    let job = rig.job_at(rig.pipeline.node.height().await + 1).await;
    let first = solve(&job, user_id, "rig1");
    rig.send(&first).await;
    let listed = rig
        .listed_where(&first, "pending with one confirmation", |l| {
            l.status == BlockStatus::Pending && l.confirmations == 1
        })
        .await;
    assert!(!listed.block.is_orphaned);
    rig.pipeline.generate().await;
    rig.listed_where(&first, "two confirmations", |l| l.confirmations == 2)
        .await;
    rig.pipeline.generate().await;
    rig.listed_where(&first, "confirmed at maturity", |l| {
        l.status == BlockStatus::Confirmed && l.confirmations == 3
    })
    .await;
    let told = sluice_rig::next_where(
        &events,
        Duration::from_secs(20),
        "BlockStanding confirmed",
        standing(first.block_hash, BlockStatus::Confirmed),
    )
    .await;
    let EventKind::BlockStanding(told) = told.kind else {
        unreachable!()
    };
    assert_eq!((told.height, told.confirmations), (job.height, 3));
    assert_eq!(told.worker_name, "rig1");

    // Found, then the node leaves it (invalidateblock) for a longer chain.
    let job = rig.job_at(rig.pipeline.node.height().await + 1).await;
    let second = solve(&job, user_id, "rig2");
    rig.send(&second).await;
    rig.listed_where(&second, "the second block pending", |l| {
        l.status == BlockStatus::Pending
    })
    .await;
    let client = rig.pipeline.node.client();
    let hash = second.block_hash;
    tokio::task::spawn_blocking(move || {
        client.call::<serde_json::Value>("invalidateblock", &[serde_json::json!(hash)])
    })
    .await
    .unwrap()
    .unwrap();
    rig.pipeline.generate().await;
    let orphaned = rig
        .listed_where(&second, "orphaned", |l| l.status == BlockStatus::Orphaned)
        .await;
    assert!(orphaned.block.is_orphaned);
    assert_eq!(orphaned.confirmations, 0);
    sluice_rig::next_where(
        &events,
        Duration::from_secs(20),
        "BlockStanding orphaned",
        standing(second.block_hash, BlockStatus::Orphaned),
    )
    .await;
    // The mature block is not looked at again; the orphan is, and stays.
    let confirmed = rig
        .listed_where(&first, "still confirmed", |l| {
            l.status == BlockStatus::Confirmed
        })
        .await;
    assert_eq!(confirmed.confirmations, 3, "settled blocks are left alone");
    assert_eq!(counter(&ctx, "blkmaker_block_standing_changes"), 0);
    let text = ctx.metrics.encode();
    for status in ["confirmed", "orphaned"] {
        assert!(
            text.contains(&format!(
                "blkmaker_block_standing_changes_total{{status=\"{status}\"}} 1"
            )),
            "{status} counted once:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_gets_the_block_and_a_down_node_gets_it_when_back() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    let second = Node::start(nodesim::Config::ephemeral()).await;
    let late_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = rig.config(vec![
        rig.pipeline.node.config("sim"),
        second.config("second"),
        node_config_at("late", late_addr),
    ]);
    config.retry_window_secs = 60;
    rig.start(config);
    let share = solve(&rig.job_at(1).await, user_id, "rig1");
    rig.send(&share).await;

    let row = rig
        .row_where(&share, "a row while one node is down", |r| {
            let res = results(r);
            res.get("sim").map(String::as_str) == Some("accepted")
                && res.get("second").map(String::as_str) == Some("accepted")
        })
        .await;
    assert_eq!(best(&second.endpoints).await, share.block_hash);
    assert_eq!(
        results(&row).get("late").map(String::as_str),
        Some("pending")
    );

    let late = Node::start(node_at(late_addr)).await;
    rig.row_where(&share, "the late node's answer", |r| {
        results(r).get("late").map(String::as_str) == Some("accepted")
    })
    .await;
    assert_eq!(best(&late.endpoints).await, share.block_hash);
    assert_eq!(rig.store.found_block_count(&row.hash).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_template_is_reported_and_recovered_from_the_node() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    let ctx = rig.start(rig.config(vec![rig.pipeline.node.config("sim")]));
    let mut share = solve(&rig.job_at(1).await, user_id, "rig1");
    // A template blkmaker never saw (restarted, or older than it keeps).
    share.template_id = TemplateId([0xee; 32]);
    rig.send(&share).await;

    let row = rig
        .row_where(&share, "the recovered block", |r| {
            results(r).get("sim").map(String::as_str) == Some("accepted")
        })
        .await;
    assert!(row.tx_count > 1);
    assert_eq!(counter(&ctx, "blkmaker_template_unknown"), 1);
    assert_eq!(best(&rig.pipeline.node.endpoints).await, share.block_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mysql_away_the_block_is_submitted_and_recorded_when_it_is_back() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    let url = mysql_url();
    let (head, tail) = url.rsplit_once('@').unwrap();
    let (host, db) = tail.split_once('/').unwrap();
    let gate = Gate::start(tokio::net::lookup_host(host).await.unwrap().next().unwrap())
        .await
        .unwrap();
    gate.close();
    let mut config = rig.config(vec![rig.pipeline.node.config("sim")]);
    config.mysql.url = format!("{head}@{}/{db}", gate.addr());
    let ctx = rig.start(config);
    let share = solve(&rig.job_at(1).await, user_id, "rig1");
    rig.send(&share).await;

    let endpoints = rig.pipeline.node.endpoints.clone();
    eventually(Duration::from_secs(30), "the block on the node", || async {
        (best(&endpoints).await == share.block_hash).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "mysql reported down", || async {
        ctx.health
            .snapshot()
            .get("mysql")
            .is_some_and(|m| !m.ok)
            .then_some(())
    })
    .await;
    let hash = share.block_hash.to_string();
    assert_eq!(rig.store.found_block_count(&hash).await.unwrap(), 0);

    gate.open();
    rig.row_where(&share, "the row once MySQL is back", |r| {
        results(r).get("sim").map(String::as_str) == Some("accepted")
    })
    .await;
    assert_eq!(rig.store.found_block_count(&hash).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_on_a_chain_no_node_holds_raises_wrong_chain_until_the_jobs_are_on_theirs() {
    let mut rig = rig().await;
    let user_id = user(&rig.store).await;
    // The pool's jobs are nodesim A's; blkmaker's only node is B, a chain
    // of its own (an operator who moved the pool to another node while the
    // jobs still came from the old one).
    let other = Node::ephemeral().await;
    let ctx = rig.start(rig.config(vec![other.config("sim")]));
    rig.pipeline.generate().await;
    let job = rig.job_at(2).await;
    // The jobs stop here: the newest job builds on A's block 1, which B lacks.
    for c in &rig.pipeline.ctxs {
        c.shutdown.token().cancel();
    }
    let share = solve(&job, user_id, "rig1");
    rig.send(&share).await;
    let problem = eventually(Duration::from_secs(30), "wrong_chain raised", || async {
        let c = ctx.health.snapshot().get("wrong_chain").cloned()?;
        (!c.ok).then_some(c.detail)
    })
    .await;
    assert!(
        problem.contains("prev-blk-not-found") && problem.contains(&share.block_hash.to_string()),
        "{problem}"
    );
    assert_eq!(counter(&ctx, "blkmaker_blocks_wrong_chain"), 1);
    let row = rig
        .row_where(&share, "the row with B's answer", |r| {
            !results(r).is_empty()
        })
        .await;
    assert_eq!(results(&row)["sim"], "rejected: prev-blk-not-found");
    // Confirmation rounds (every second) find the newest job still on A's tip.
    let rounds = counter(&ctx, "blkmaker_confirmation_rounds");
    eventually(
        Duration::from_secs(10),
        "two confirmation rounds",
        || async { (counter(&ctx, "blkmaker_confirmation_rounds") >= rounds + 2).then_some(()) },
    )
    .await;
    assert!(
        !ctx.health.snapshot()["wrong_chain"].ok,
        "still on a chain B lacks"
    );

    // A job on B's tip: the pool mines on a chain its node holds again.
    let mut on_b = job.clone();
    on_b.prev_blockhash = best(&other.endpoints).await;
    on_b.id = sluice_core::JobId(job.id.0 + 1);
    rig.send_job(&on_b).await;
    let cleared = eventually(Duration::from_secs(30), "wrong_chain cleared", || async {
        let c = ctx.health.snapshot().get("wrong_chain").cloned()?;
        c.ok.then_some(c.detail)
    })
    .await;
    assert!(cleared.contains("newest job"), "{cleared}");
}
