//! Bench binary: a SolvedShare produced to Kafka → the block accepted by
//! nodesim, through the real broker and an in-process blkmaker (templates
//! from gbtmaker, jobs from jobmaker, on the local stack: install/stack.sh up).
//! Each round solves the current job, sends the share as sserver does (acks
//! all), and stops the clock when nodesim's tip becomes the block, so the
//! figure includes the produce, the consume, assembly, `submitblock` over
//! HTTP and nodesim's full validation. Prints min/median/p90/p99/max, and
//! the produce-to-ack part alone.
//!
//!     cargo bench -p blkmaker --bench solved_to_submit [-- N]

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut rig = common::rig().await;
        let user_id = common::user(&rig.store).await;
        let ctx = rig.start(rig.config(vec![rig.pipeline.node.config("sim")]));
        let mut tip = rig.pipeline.node.endpoints.tip.clone();
        let mut samples = Vec::with_capacity(n as usize);
        let mut acks = Vec::with_capacity(n as usize);
        let mut branch = 0;
        for height in 1..=n {
            let job = rig.job_at(height).await;
            let share = common::solve(&job, user_id, "bench");
            branch += job.merkle_branch.len();
            let started = Instant::now();
            rig.send(&share).await;
            acks.push(started.elapsed());
            tokio::time::timeout(
                Duration::from_secs(10),
                tip.wait_for(|t| *t == share.block_hash),
            )
            .await
            .expect("the block reached nodesim")
            .unwrap();
            samples.push(started.elapsed());
        }
        samples.sort_unstable();
        acks.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let ack_at = |q: f64| acks[((acks.len() - 1) as f64 * q).round() as usize];
        println!(
            "solved_to_submit: n={n} (merkle branch {:.1} avg) min={:?} median={:?} p90={:?} p99={:?} max={:?}",
            branch as f64 / f64::from(n),
            samples[0],
            at(0.5),
            at(0.9),
            at(0.99),
            samples[samples.len() - 1]
        );
        println!(
            "  of which the produce until the broker's ack: median={:?} p99={:?}",
            ack_at(0.5),
            ack_at(0.99)
        );
        ctx.shutdown.token().cancel();
    });
}
