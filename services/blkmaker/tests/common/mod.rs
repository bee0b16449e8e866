//! The rig of blkmaker's tests: the pipeline up to jobmaker (crates/rig),
//! blocks solved here from real Jobs the way sserver would report them, and
//! blkmaker in process or as a child process.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::Target;
use bitcoin::block::Header;
use sluice_bus::{Producer, TailConsumer, Topic};
use sluice_core::coinbase::{coinbase_transaction, join_coinbase};
use sluice_core::{Job, SolvedShare, merkle_root};
use sluice_rig::{Options, Pipeline};
use sluice_service::Context;
use sluice_store::{FoundBlock, ListedBlock, Store};
use sluice_testkit::{eventually, mysql_url, unique_name};

pub struct Rig {
    pub pipeline: Pipeline,
    pub jobs: TailConsumer<Job>,
    pub store: Store,
    producer: Producer,
    ctxs: Vec<Context>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in &self.ctxs {
            c.shutdown.token().cancel();
        }
    }
}

pub async fn rig() -> Rig {
    let pipeline = sluice_rig::pipeline(Options::default()).await;
    let jobs = pipeline.tail(&pipeline.kafka.topics.job, 1000).await;
    Rig {
        producer: Producer::new(&pipeline.kafka, 0).unwrap(),
        store: Store::new(&mysql_url()).unwrap(),
        jobs,
        pipeline,
        ctxs: Vec::new(),
    }
}

impl Rig {
    /// blkmaker's configuration for this rig, submitting to `nodes`.
    pub fn config(&self, nodes: Vec<blkmaker::NodeConfig>) -> blkmaker::Config {
        blkmaker::Config {
            service: sluice_rig::local(),
            kafka: self.pipeline.kafka.clone(),
            mysql: blkmaker::MysqlConfig { url: mysql_url() },
            nodes,
            group: unique_name("sluice-test-blkmaker-"),
            templates_kept: 100,
            template_wait_ms: 3_000,
            retry_window_secs: 60,
            rpc_timeout_secs: 5,
            max_share_age_secs: 3_600,
            confirm_interval_secs: 1,
            mature_confirmations: 101,
            watch_hours: 1,
        }
    }

    /// Starts blkmaker in process; its context (metrics) is returned.
    pub fn start(&mut self, config: blkmaker::Config) -> Context {
        let ctx = sluice_rig::context();
        tokio::spawn(blkmaker::run(config, ctx.clone()));
        self.ctxs.push(ctx.clone());
        ctx
    }

    /// The next job at `height` with transactions besides the coinbase.
    pub async fn job_at(&self, height: u32) -> Job {
        sluice_rig::next_where(
            &self.jobs,
            Duration::from_secs(30),
            "with transactions",
            |j| j.height == height && !j.merkle_branch.is_empty(),
        )
        .await
    }

    /// Sends `share` to SolvedShare as sserver does.
    pub async fn send(&self, share: &SolvedShare) {
        self.producer
            .send(
                &Topic::new(self.pipeline.kafka.topics.solved_share.clone()),
                share.block_hash.to_string().as_bytes(),
                share,
            )
            .await
            .unwrap();
    }

    /// Publishes `job` on the Job topic as jobmaker does.
    pub async fn send_job(&self, job: &Job) {
        self.producer
            .send(
                &Topic::new(self.pipeline.kafka.topics.job.clone()),
                &job.leader_epoch.to_be_bytes(),
                job,
            )
            .await
            .unwrap();
    }

    /// `share`'s block as listed (with its standing) once `pred` holds.
    pub async fn listed_where(
        &self,
        share: &SolvedShare,
        what: &str,
        pred: impl Fn(&ListedBlock) -> bool,
    ) -> ListedBlock {
        let hash = share.block_hash.to_string();
        eventually(Duration::from_secs(60), what, || async {
            self.store
                .recent_found_blocks(100, Some(share.user_id))
                .await
                .ok()?
                .into_iter()
                .find(|l| l.block.hash == hash && pred(l))
        })
        .await
    }

    /// The found_blocks row of `share`'s block once `pred` holds for it.
    pub async fn row_where(
        &self,
        share: &SolvedShare,
        what: &str,
        pred: impl Fn(&FoundBlock) -> bool,
    ) -> FoundBlock {
        let hash = share.block_hash.to_string();
        eventually(Duration::from_secs(60), what, || async {
            self.store
                .found_block(&hash)
                .await
                .ok()
                .flatten()
                .filter(|r| pred(r))
        })
        .await
    }
}

/// A block for `job` as a miner would solve it: extranonce1 ‖ extranonce2
/// rolled until the header meets the job's bits.
pub fn solve(job: &Job, user_id: u32, worker: &str) -> SolvedShare {
    let en1 = 0x0100_0001u32.to_be_bytes();
    // Every test's blocks differ, though their chains and templates match.
    let mut en2 = u64::from_str_radix(&unique_name(""), 16).unwrap();
    loop {
        let coinbase = join_coinbase(&job.coinbase1, &en1, &en2.to_be_bytes(), &job.coinbase2);
        let txid = coinbase_transaction(&coinbase).unwrap().compute_txid();
        let header = Header {
            version: job.version,
            prev_blockhash: job.prev_blockhash,
            merkle_root: merkle_root(txid, &job.merkle_branch),
            time: job.time,
            bits: job.bits,
            nonce: 0,
        };
        if Target::from_compact(header.bits).is_met_by(header.block_hash()) {
            return SolvedShare {
                job_id: job.id,
                template_id: job.template_id,
                height: job.height,
                header,
                coinbase,
                block_hash: header.block_hash(),
                user_id,
                worker_id: 77,
                worker_name: worker.into(),
                server_id: 1,
                timestamp_ms: sluice_service::now_ms(),
                solo_address: None,
            };
        }
        en2 += 1;
    }
}

/// The value of the counter `name` in `ctx`'s metrics.
pub fn counter(ctx: &Context, name: &str) -> u64 {
    counter_in(&ctx.metrics.encode(), name).unwrap_or(0)
}

/// The value of the counter `name` in a Prometheus text exposition.
pub fn counter_in(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .map(|v| v.trim().parse().unwrap())
}

/// A nodesim config listening for RPC at `rpc`.
pub fn node_at(rpc: SocketAddr) -> nodesim::Config {
    nodesim::Config {
        rpc_listen: rpc,
        ..nodesim::Config::ephemeral()
    }
}

/// `getbestblockhash` of the nodesim at `endpoints`.
pub async fn best(endpoints: &nodesim::Endpoints) -> bitcoin::BlockHash {
    use bitcoincore_rpc::RpcApi;
    let client = sluice_rig::client(endpoints);
    tokio::task::spawn_blocking(move || client.get_best_block_hash())
        .await
        .unwrap()
        .unwrap()
}

/// A user of the pool database, for the rows' user id.
pub async fn user(store: &Store) -> u32 {
    store.ensure_user(&unique_name("finder")).await.unwrap().id
}
