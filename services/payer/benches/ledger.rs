//! Bench binary: what the books cost at 100,000 users, on the local stack's
//! MariaDB (install/stack.sh up), in a database of its own.
//!
//! - a PPLNS split in memory: the window over `minutes` minutes of work of
//!   every user, and the split of the reward by it;
//! - the recount `sluicectl payouts verify` does: shares added per second;
//! - in MariaDB: the work of one minute of every user written (one batch),
//!   a block's window read back (`work_snapshot`), its credit written
//!   (100,000 `ledger_block_users` rows and entries), and its maturity;
//!   the rows each leaves.
//!
//!     cargo bench -p payer --bench ledger [-- USERS MINUTES]

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

use sluice_core::ShareStatus;
use sluice_core::bitcoin::{BlockHash, CompactTarget, hashes::Hash};
use sluice_core::record::ShareRecord;
use sluice_ledger::books;
use sluice_ledger::pplns::{self, Minute};
use sluice_ledger::verify::{BlockTerms, Recount};
use sluice_ledger::{Tally, share_work, split};
use sluice_store::{CreditedBlock, Store, WorkBatch};
use sluice_testkit::Database;

/// Mainnet-like: a share of difficulty 65,536 from every user a minute.
const SHARE_DIFFICULTY: f64 = 65_536.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn minutes(users: u32, count: u32, last: u32) -> Vec<Minute> {
    let w = share_work(SHARE_DIFFICULTY);
    (0..count)
        .map(|i| Minute {
            minute: last - i,
            work: (1..=users)
                .map(|u| (u, w * u128::from(1 + u % 7)))
                .collect(),
        })
        .collect()
}

fn share(user: u32, minute: u32) -> ShareRecord {
    ShareRecord {
        job_id: sluice_core::JobId(1),
        user_id: user,
        worker_id: 1,
        worker_name: "rig".into(),
        server_id: 1,
        extranonce1: 0,
        extranonce2: vec![0; 8],
        ntime: 0,
        nonce: 0,
        version_bits: 0,
        share_difficulty: SHARE_DIFFICULTY,
        network_bits: CompactTarget::from_consensus(0x1703_4219),
        height: 900_000,
        status: ShareStatus::Accepted,
        hash: BlockHash::all_zeros(),
        client_ip: [127, 0, 0, 1].into(),
        timestamp_ms: u64::from(minute) * 60_000,
        protocol: Default::default(),
        solo: false,
    }
}

fn in_memory(users: u32, count: u32) {
    let last = 29_000_000;
    let given = minutes(users, count, last);
    let total: u128 = given.iter().flat_map(|m| m.work.values()).sum();
    let mut samples = Vec::new();
    for _ in 0..5 {
        let walk = given.clone();
        let started = Instant::now();
        // The window ends inside the oldest minute: a partial minute too.
        let w = pplns::window(last, total - 1, walk);
        let s = split(312_500_000, 200, &w.work).unwrap();
        assert_eq!(s.credited() + s.pool(), 312_500_000);
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "PPLNS window + split in memory, {users} users x {count} minutes: median {:.1} ms of 5",
        median(samples)
    );
    // The recount: shares into a block's window.
    let terms = BlockTerms {
        reward: 312_500_000,
        fee_bps: 200,
        size: total,
        last_minute: last,
        first_minute: last - count + 1,
        cut: [(0, i64::MAX)].into_iter().collect(),
    };
    let mut r = Recount::new(vec![terms], vec![], None);
    let shares: Vec<ShareRecord> = (0..1_000_000u32)
        .map(|i| share(1 + i % users, last - i % count))
        .collect();
    let started = Instant::now();
    for (i, s) in shares.iter().enumerate() {
        r.add(0, i as i64, s);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "recount (verify) of 1,000,000 shares into one block's window: {:.2} s, {:.0} shares/s",
        secs,
        1e6 / secs
    );
}

async fn in_mariadb(users: u32) {
    let db = Database::create().await;
    let store = Store::new(&db.url).unwrap();
    store.migrate().await.unwrap();
    let minute = 29_000_000u32;
    let w = share_work(SHARE_DIFFICULTY);
    // One minute of every user's work, as the payer writes it.
    let mut tally = Tally::default();
    for u in 1..=users {
        tally.work.insert((minute, u, 900_000, 0x1703_4219), (w, 6));
    }
    let batch = WorkBatch {
        topic: "BtcShare".into(),
        tally,
        offsets: [(0, (None, 1, 0))].into_iter().collect(),
    };
    let started = Instant::now();
    store.apply_work(&batch).await.unwrap();
    let write = started.elapsed().as_secs_f64();
    // A block whose window is that minute.
    let started = Instant::now();
    let (cut, minutes) = store
        .work_snapshot("BtcShare", minute, u128::from(users) * w)
        .await
        .unwrap();
    let read = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let window = pplns::window(minute, u128::from(users) * w, minutes);
    let s = split(312_500_000, 200, &window.work).unwrap();
    let compute = started.elapsed().as_secs_f64();
    let hash = "00".repeat(32);
    let row = CreditedBlock {
        hash: hash.clone(),
        height: 900_000,
        scheme: "pplns".into(),
        reward: s.reward,
        fee_bps: 200,
        block_work: w,
        window_size: window.size,
        first_minute: window.first_minute,
        last_minute: window.last_minute,
        window_work: window.total(),
        filled: window.filled,
        cut,
        users: s
            .credits
            .iter()
            .map(|(u, c)| (*u, (c.work, c.sat)))
            .collect(),
    };
    let txn = books::block_credit(&hash, &s);
    let started = Instant::now();
    assert!(store.credit_block(&row, &txn).await.unwrap());
    let credit = started.elapsed().as_secs_f64();
    let started = Instant::now();
    assert!(
        store
            .settle_block(&hash, "immature", "mature", &books::block_mature(&txn))
            .await
            .unwrap()
    );
    let mature = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let balances = store.ledger_balances().await.unwrap();
    let sum = started.elapsed().as_secs_f64();
    assert_eq!(balances.values().sum::<i64>(), 0);
    println!(
        "MariaDB, {users} users, one block: a minute of work written {:.2} s, window read {:.2} s, split {:.3} s, credit written {:.2} s, matured {:.2} s, every balance summed {:.2} s",
        write, read, compute, credit, mature, sum
    );
    let rows: BTreeMap<&str, u64> = [
        "payout_work",
        "ledger_entries",
        "ledger_block_users",
        "ledger_txns",
    ]
    .into_iter()
    .map(|t| (t, 0))
    .collect();
    let mut conn = store.pool().get_conn().await.unwrap();
    for t in rows.keys() {
        use mysql_async::prelude::Queryable;
        let n: u64 = conn
            .query_first(format!("SELECT COUNT(*) FROM {t}"))
            .await
            .unwrap()
            .unwrap();
        println!("  rows in {t}: {n}");
    }
    drop(conn);
    store.close().await;
    db.drop().await;
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let users = args.first().copied().unwrap_or(100_000);
    let count = args.get(1).copied().unwrap_or(60);
    in_memory(users, count);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(in_mariadb(users));
}
