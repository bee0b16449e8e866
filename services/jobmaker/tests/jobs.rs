//! jobmaker in process: clean jobs on new blocks, and jobs that mine real
//! blocks nodesim accepts.

#![allow(clippy::unwrap_used)]

mod common;
use common::RigExt as _;

use std::time::{Duration, Instant};

use bitcoin::Block;
use bitcoincore_rpc::RpcApi;
use serde_json::{Value, json};
use sluice_core::share::Submission;
use sluice_core::{ShareOutcome, coinbase::coinbase_transaction};

#[tokio::test(flavor = "multi_thread")]
async fn a_new_block_makes_a_clean_job_whose_solution_nodesim_accepts() {
    let rig = common::rig(60_000).await;
    let (ctx, jobs, first) = rig.start_jobmaker().await;
    assert!(first.clean, "the first job of a leader is clean");

    let started = Instant::now();
    rig.generate().await;
    let job = common::job_where(&jobs, Duration::from_secs(10), "at height 2", |j| {
        j.height == 2
    })
    .await;
    println!("new block to clean Job consumed: {:?}", started.elapsed());
    assert!(job.clean);
    assert!(job.id > first.id, "ids increase");
    assert_eq!(job.leader_epoch, first.leader_epoch);

    let block = mine(&rig, &job).await;
    assert_eq!(
        submit(&rig, &block).await,
        Value::Null,
        "nodesim accepted the pool's block"
    );
    let next = common::job_where(&jobs, Duration::from_secs(10), "on our block", |j| {
        j.height == 3
    })
    .await;
    assert_eq!(next.prev_blockhash, block.block_hash());
    assert!(
        ctx.health.snapshot()["zookeeper"]
            .detail
            .starts_with("leader")
    );
    // /metrics: leading, and the clean jobs counted with their latency (the
    // first two at least: jobmaker counts a job before it makes the next).
    let text = ctx.metrics.encode();
    assert!(text.contains("jobmaker_leader 1"), "{text}");
    let clean_jobs = text
        .lines()
        .find_map(|l| l.strip_prefix("jobmaker_jobs_published_total{clean=\"true\"} "))
        .map(|v| v.trim().parse::<u64>().unwrap());
    assert!(clean_jobs.is_some_and(|n| n >= 2), "{text}");
    assert!(
        text.contains("jobmaker_template_to_job_seconds_count "),
        "{text}"
    );
    ctx.shutdown.token().cancel();
}

/// Mines `job` as a miner would (extranonces, ntime, a nonce by brute force)
/// into the block it stands for, with its template's transactions (none
/// for an empty block's job, whose template need not be on RawGbt).
async fn mine(rig: &common::Rig, job: &sluice_core::Job) -> Block {
    let transactions = if job.merkle_branch.is_empty() {
        Vec::new()
    } else {
        let templates = rig.templates().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let t = templates.next().await.unwrap().value;
                if t.id == job.template_id {
                    return t.transactions;
                }
            }
        })
        .await
        .expect("the job's template is on RawGbt")
    };
    let work = job.work(8);
    let (en1, en2) = ([0, 0, 0, 1], [0xab; 8]);
    let easy = bitcoin::Target::from_le_bytes([0xff; 32]);
    let solved = (0..1_000_000u32)
        .map(|nonce| {
            let sub = Submission {
                extranonce1: &en1,
                extranonce2: &en2,
                ntime: job.time,
                nonce,
                version_bits: None,
            };
            work.check(&sub, 0, &easy).unwrap()
        })
        .find(|c| c.outcome == ShareOutcome::Block)
        .expect("regtest bits: about one nonce in two");
    let coinbase =
        coinbase_transaction(&[&job.coinbase1[..], &en1, &en2, &job.coinbase2].concat()).unwrap();
    let mut txdata = vec![coinbase];
    for tx in &transactions {
        txdata.push(bitcoin::consensus::deserialize(&tx.raw).unwrap());
    }
    Block {
        header: solved.header,
        txdata,
    }
}

/// nodesim's answer to `submitblock` (null: accepted).
async fn submit(rig: &common::Rig, block: &Block) -> Value {
    let hex = bitcoin::consensus::encode::serialize_hex(block);
    let client = rig.node.client();
    tokio::task::spawn_blocking(move || client.call("submitblock", &[json!(hex)]).unwrap())
        .await
        .unwrap()
}

/// With `empty_block_jobs`, a new block first becomes a clean job for an
/// empty block (no merkle branch, the subsidy alone to the pool), then, as
/// soon as the node's template exists, a job with its transactions on the
/// same tip, not clean. A block mined on the empty job is valid.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_block_job_comes_first_and_the_full_one_replaces_it() {
    let rig = sluice_rig::pipeline(sluice_rig::Options {
        poll_ms: 60_000,
        jobmaker: false,
        empty_block_jobs: true,
        ..sluice_rig::Options::default()
    })
    .await;
    let (ctx, jobs, first) = rig.start_jobmaker().await;
    assert!(
        !first.merkle_branch.is_empty(),
        "the node's mempool has transactions"
    );
    rig.generate().await;
    let empty = common::job_where(&jobs, Duration::from_secs(10), "at height 2", |j| {
        j.height == 2
    })
    .await;
    assert!(empty.clean && empty.merkle_branch.is_empty(), "{empty:?}");
    assert_eq!(
        empty.coinbase_value,
        sluice_core::network::block_subsidy(bitcoin::Network::Regtest, 2),
        "the subsidy, no fees"
    );
    let full = common::job_where(&jobs, Duration::from_secs(10), "the full job", |j| {
        j.height == 2
    })
    .await;
    assert!(!full.clean && !full.merkle_branch.is_empty(), "{full:?}");
    assert_eq!(full.prev_blockhash, empty.prev_blockhash);
    assert!(full.coinbase_value > empty.coinbase_value, "fees");
    // A miner that found a block on the empty job before the full one came.
    let block = mine(&rig, &empty).await;
    assert_eq!(block.txdata.len(), 1);
    assert_eq!(
        submit(&rig, &block).await,
        Value::Null,
        "nodesim accepts the empty block"
    );
    ctx.shutdown.token().cancel();
}

/// Issue 30: the leader hears the node's ZMQ announcement itself. With
/// gbtmaker stopped (no template can come), a new block still gets a clean
/// job at once: an empty block's on the announced tip, the next job id of
/// the same epoch; a block found on it is one nodesim accepts, and the next
/// announcement (of that block) gets its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_announced_block_gets_an_empty_job_at_once_without_a_template() {
    let rig = common::rig(60_000).await;
    let (ctx, jobs, first) = rig.start_jobmaker().await;
    // gbtmaker (the rig's first context) stops: no template on any new tip.
    rig.ctxs[0].shutdown.token().cancel();
    let tip = rig.generate().await;
    let empty = common::job_where(&jobs, Duration::from_secs(10), "at height 2", |j| {
        j.height == 2
    })
    .await;
    assert!(empty.clean && empty.merkle_branch.is_empty(), "{empty:?}");
    assert_eq!(empty.prev_blockhash, tip);
    assert_eq!(
        empty.coinbase_value,
        sluice_core::network::block_subsidy(bitcoin::Network::Regtest, 2),
        "the subsidy, no fees"
    );
    assert_eq!(empty.bits, first.bits, "regtest never retargets");
    assert!(empty.id > first.id && empty.leader_epoch == first.leader_epoch);
    // A miner finds a block on it: nodesim (height in the coinbase, value,
    // bits, time past the median) accepts it.
    let block = mine(&rig, &empty).await;
    assert_eq!(block.txdata.len(), 1);
    assert_eq!(
        submit(&rig, &block).await,
        Value::Null,
        "nodesim accepts it"
    );
    let next = common::job_where(&jobs, Duration::from_secs(10), "on the pool's block", |j| {
        j.height == 3
    })
    .await;
    assert!(next.clean && next.prev_blockhash == block.block_hash());
    // Under 11 blocks the header alone cannot bound the median time past:
    // the node was asked.
    let text = ctx.metrics.encode();
    assert!(
        text.contains("jobmaker_empty_jobs_total{from=\"node\"} 2"),
        "{text}"
    );
    ctx.shutdown.token().cancel();
}

/// On a chain of more than 11 blocks the announced `rawblock`'s header alone
/// makes the empty-block job (no question to the node): right height, bits,
/// and a time past the median, as nodesim's acceptance of a block found on
/// it shows, twice in a row.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_longer_chain_the_announced_header_alone_makes_the_empty_job() {
    let rig = common::rig(60_000).await;
    rig.node.generate_n(12).await;
    let (ctx, jobs, first) = rig.start_jobmaker_with(rig.jobmaker_config(), 13).await;
    rig.ctxs[0].shutdown.token().cancel();
    let mut prev = rig.generate().await;
    for height in 14..16 {
        let empty = common::job_where(&jobs, Duration::from_secs(10), "the empty job", |j| {
            j.height == height
        })
        .await;
        assert!(empty.clean && empty.merkle_branch.is_empty(), "{empty:?}");
        assert_eq!((empty.prev_blockhash, empty.bits), (prev, first.bits));
        let block = mine(&rig, &empty).await;
        assert_eq!(
            submit(&rig, &block).await,
            Value::Null,
            "nodesim accepts it"
        );
        prev = block.block_hash();
    }
    // And the pool's own last block: its announcement's job too.
    let last = common::job_where(&jobs, Duration::from_secs(10), "on the pool's block", |j| {
        j.height == 16
    })
    .await;
    assert!(last.clean && last.prev_blockhash == prev && last.merkle_branch.is_empty());
    let text = ctx.metrics.encode();
    assert!(
        text.contains("jobmaker_empty_jobs_total{from=\"header\"} 3"),
        "{text}"
    );
    ctx.shutdown.token().cancel();
}

/// One node, as the tests' configs list it.
const NODES: &str = "[[nodes]]\nname = \"core\"\nrpc_url = \"http://127.0.0.1:18443\"\n";

#[test]
fn payout_addresses_must_match_the_network() {
    use sluice_service::Validate;
    let base = "payout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n";
    let ok: jobmaker::Config =
        toml::from_str(&format!("{base}network = \"regtest\"\n{NODES}")).unwrap();
    assert!(ok.validate().is_ok());
    let wrong: jobmaker::Config =
        toml::from_str(&format!("{base}network = \"mainnet\"\n{NODES}")).unwrap();
    assert!(
        wrong
            .validate()
            .unwrap_err()
            .contains("is not a mainnet address")
    );
    let unknown: jobmaker::Config =
        toml::from_str(&format!("{base}network = \"moon\"\n{NODES}")).unwrap();
    assert!(unknown.validate().unwrap_err().contains("network \"moon\""));
    // Without its nodes, jobmaker could not tell whose templates to mine on.
    let nodeless: jobmaker::Config =
        toml::from_str(&format!("{base}network = \"regtest\"\n")).unwrap();
    let why = nodeless.validate().unwrap_err();
    assert!(
        why.contains("[[nodes]]") && why.contains("gbtmaker"),
        "{why}"
    );
}

/// The commented example configs (the leader's and the local standby's)
/// load and validate; the standby differs only in instance and admin port.
#[test]
fn the_example_configs_are_valid() {
    let dir = sluice_testkit::repo_root().join("deploy/config");
    let config: jobmaker::Config = sluice_service::load_config(&dir.join("jobmaker.toml")).unwrap();
    assert_eq!(config.network, "regtest");
    let standby: jobmaker::Config =
        sluice_service::load_config(&dir.join("jobmaker-standby.toml")).unwrap();
    assert_eq!(standby.service.instance, "standby");
    assert_ne!(standby.service.admin_listen, config.service.admin_listen);
    assert_eq!(
        standby.zookeeper.root, config.zookeeper.root,
        "one election"
    );
    assert_eq!(standby.kafka.topics, config.kafka.topics);
}
