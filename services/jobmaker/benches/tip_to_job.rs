//! Bench binary: new tip on the node → clean Job consumed from Kafka, through
//! the real pipeline (nodesim ZMQ → gbtmaker → RawGbt → jobmaker → Job) on the
//! local stack (install/stack.sh up). Prints min/median/p90/max over N blocks.
//!
//!     cargo bench -p jobmaker --bench tip_to_job [-- N]
//!
//! With `SLUICE_BENCH_EMPTY_JOBS=0` jobmaker's `empty_jobs` is off: the
//! clean job waits for the node's template (before issue 30).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;
use common::RigExt as _;

use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let rig = common::rig(60_000).await;
        // Past the 11 blocks the median time past spans, as real chains are.
        rig.node.generate_n(12).await;
        let empty_jobs = std::env::var("SLUICE_BENCH_EMPTY_JOBS").map_or(true, |v| v != "0");
        let config = jobmaker::Config {
            empty_jobs,
            ..rig.jobmaker_config()
        };
        let (ctx, jobs, _) = rig.start_jobmaker_with(config, 13).await;
        let mut samples = Vec::with_capacity(n);
        for height in 14..(n as u32 + 14) {
            let started = Instant::now();
            rig.generate().await;
            common::job_where(&jobs, Duration::from_secs(10), "for the new tip", |j| {
                j.height == height && j.clean
            })
            .await;
            samples.push(started.elapsed());
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "tip_to_job: empty_jobs={empty_jobs} n={n} min={:?} median={:?} p90={:?} max={:?}",
            samples[0],
            at(0.5),
            at(0.9),
            samples[samples.len() - 1]
        );
        ctx.shutdown.token().cancel();
    });
}
