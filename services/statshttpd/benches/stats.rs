//! statshttpd's figures: memory per active worker, shares counted per
//! second, and the time to flush 100,000 workers to `mining_workers`
//! (MariaDB of the local stack: install/stack.sh up).
//!
//! `cargo bench -p statshttpd --bench stats`
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bitcoin::hashes::Hash;
use mysql_async::prelude::Queryable;
use sluice_core::JobId;
use sluice_core::record::{ShareRecord, ShareStatus};
use statshttpd::bench_support::{LiveWindows, MinuteSeries, Totals};

const WORKERS: u32 = 100_000;
const PER_USER: u32 = 1_000;
/// User ids far above any real one; their rows are deleted afterwards.
const FIRST_USER: u32 = 4_000_000_000;
const NOW: u64 = 1_795_262_400_000;

fn share(n: u32, minute: u64) -> ShareRecord {
    ShareRecord {
        job_id: JobId(1),
        user_id: FIRST_USER + n / PER_USER,
        worker_id: i64::from(n % PER_USER) + 1,
        worker_name: format!("worker-{:05}", n % PER_USER),
        server_id: (n % 4) as u8,
        extranonce1: n,
        extranonce2: vec![0; 8],
        ntime: (NOW / 1000) as u32,
        nonce: n,
        version_bits: 0,
        share_difficulty: 65_536.0,
        network_bits: bitcoin::CompactTarget::from_consensus(0x1703_1abe),
        height: 900_000,
        status: if n.is_multiple_of(50) {
            ShareStatus::Stale
        } else {
            ShareStatus::Accepted
        },
        hash: bitcoin::BlockHash::all_zeros(),
        client_ip: IpAddr::V4(Ipv4Addr::from(n)),
        timestamp_ms: NOW - minute * 60_000,
        protocol: sluice_core::record::MiningProtocol::StratumV1,
        solo: false,
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // Memory: 100k workers, each with shares in every minute of the hour.
    let before = rss_bytes();
    let mut live = LiveWindows::default();
    for minute in 0..60 {
        for n in 0..WORKERS {
            live.apply(&share(n, minute), NOW);
        }
    }
    let after = rss_bytes();
    let (users, workers) = live.counts();
    let per_worker = (after - before) as f64 / f64::from(WORKERS);
    println!(
        "memory: {workers} workers ({users} users, windows full): {:.0} bytes per worker (RSS +{:.1} MiB)",
        per_worker,
        (after - before) as f64 / 1_048_576.0
    );

    // The 24-hour minute statistics of the same workers.
    let before = rss_bytes();
    let mut minutes = MinuteSeries::new(true);
    for minute in 0..60 {
        for n in 0..WORKERS {
            minutes.apply(&share(n, minute), NOW);
        }
    }
    let per_worker = (rss_bytes() - before) as f64 / f64::from(WORKERS);
    println!("memory: minute statistics (24 h): {per_worker:.0} bytes per worker");

    // Counting: windows and totals per share (the ingest's work besides I/O),
    // then with the minute statistics too.
    let shares: Vec<ShareRecord> = (0..WORKERS).map(|n| share(n, 0)).collect();
    let mut totals = Totals::new();
    for with_minutes in [false, true] {
        let mut rates = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for s in &shares {
                live.apply(s, NOW);
                totals.apply(s);
                if with_minutes {
                    minutes.apply(s, NOW);
                }
            }
            rates.push(f64::from(WORKERS) / t.elapsed().as_secs_f64());
        }
        println!(
            "counting: median {:.0} shares/s (windows + hourly/daily totals{}, 5 runs)",
            median(rates),
            if with_minutes { " + minutes" } else { "" }
        );
    }

    // Flush: every worker's and user's mining_workers row.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = sluice_store::Store::new(&sluice_testkit::mysql_url()).unwrap();
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..5 {
            let t = Instant::now();
            rows = live.flush(&store, NOW).await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let first = times[0];
        println!(
            "flush: {rows} mining_workers rows: first (inserts) {first:.0} ms, median of 5 {:.0} ms",
            median(times)
        );
        let mut conn = store.pool().get_conn().await.unwrap();
        conn.exec_drop("DELETE FROM mining_workers WHERE user_id >= ?", (FIRST_USER,))
            .await
            .unwrap();
        drop(conn);
        store.close().await;
    });
}
