//! The payer's tables against the real MariaDB of the local stack: work is
//! counted once even when two writers race, a block is credited once, and
//! balances are the sums of the entries.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use sluice_ledger::books::{self, Account, Kind, POOL};
use sluice_ledger::{Found, Tally, split};
use sluice_store::{BlockStatus, CreditedBlock, FoundBlock, StoreError, WorkBatch};

mod common;
use common::TestDb;

fn batch(before: Option<i64>, after: i64, work: u128) -> WorkBatch {
    let mut tally = Tally::default();
    tally
        .work
        .insert((29_000_000, 5, 100, 0x207f_ffff), (work, 1));
    tally.pps.insert(5, u128::MAX / 4);
    WorkBatch {
        topic: "BtcShare".into(),
        tally,
        offsets: [(0, (before, after, 1_740_000_000_000))]
            .into_iter()
            .collect(),
    }
}

#[tokio::test]
async fn work_is_added_once_from_where_the_offsets_stood() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    // Beyond 64 bits, and beyond a double's 53.
    let big = (1u128 << 100) + 1;
    db.store.apply_work(&batch(None, 10, big)).await.unwrap();
    db.store.apply_work(&batch(Some(10), 20, 2)).await.unwrap();
    // A second writer working from the old position writes nothing.
    let stale = db.store.apply_work(&batch(Some(10), 20, 7)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert!(matches!(
        db.store.apply_work(&batch(None, 20, 7)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(db.store.payout_offsets("BtcShare").await.unwrap()[&0], 20);
    let minutes = db.store.work_minutes(0, 29_000_000).await.unwrap();
    assert_eq!(minutes.len(), 1);
    assert_eq!(minutes[0].work[&5], big + 2);
    assert!(
        db.store
            .work_minutes(29_000_000, 29_000_001)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.store.oldest_work_minute().await.unwrap(),
        Some(29_000_000)
    );
    db.drop().await;
}

#[tokio::test]
async fn a_block_is_credited_once_and_settles_once() {
    let db = TestDb::new().await;
    db.store.migrate().await.unwrap();
    let hash = "00".repeat(31) + "0b";
    let mut b = batch(None, 1, 10);
    let found = Found {
        timestamp_ms: 1_740_000_000_000,
        height: 100,
        network_bits: 0x207f_ffff,
        user_id: 5,
    };
    b.tally.found.insert(hash.clone(), found);
    db.store.apply_work(&b).await.unwrap();
    // Not credited before blkmaker recorded it.
    assert!(db.store.blocks_to_credit(10).await.unwrap().is_empty());
    db.store
        .record_found_block(&FoundBlock {
            height: 100,
            hash: hash.clone(),
            prev_hash: "00".repeat(32),
            user_id: 5,
            worker_id: 1,
            worker_name: "rig".into(),
            job_id: 1,
            reward: 5_000_000_000,
            fees: 0,
            size: 300,
            tx_count: 1,
            submit_results: Default::default(),
            is_orphaned: false,
            solo_address: None,
        })
        .await
        .unwrap();
    let due = db.store.blocks_to_credit(10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].reward, due[0].timestamp_ms),
        (5_000_000_000, 1_740_000_000_000)
    );

    let work = [(5, 3u128), (6, 1)].into_iter().collect();
    let s = split(5_000_000_000, 100, &work).unwrap();
    let txn = books::block_credit(&hash, &s);
    let credited = CreditedBlock {
        hash: hash.clone(),
        height: 100,
        scheme: "pplns".into(),
        reward: s.reward,
        fee_bps: 100,
        block_work: 2,
        window_size: 4,
        first_minute: 29_000_000,
        last_minute: 29_000_000,
        window_work: 4,
        filled: true,
        cut: [(0, 1)].into_iter().collect(),
        users: s
            .credits
            .iter()
            .map(|(u, c)| (*u, (c.work, c.sat)))
            .collect(),
    };
    assert!(db.store.credit_block(&credited, &txn).await.unwrap());
    assert!(
        !db.store.credit_block(&credited, &txn).await.unwrap(),
        "credited twice"
    );
    assert!(db.store.blocks_to_credit(10).await.unwrap().is_empty());
    assert_eq!(
        db.store.ledger_txn(Kind::BlockCredit, &hash).await.unwrap(),
        Some(txn.clone())
    );
    let before = db.store.user_balances(5).await.unwrap();
    assert_eq!(before[&Account::Immature(5)], 3_712_500_000);

    // Mature: once.
    assert!(db.store.blocks_to_settle(10).await.unwrap().is_empty());
    db.store
        .set_block_standing(&hash, BlockStatus::Confirmed, 101)
        .await
        .unwrap();
    let settle = db.store.blocks_to_settle(10).await.unwrap();
    assert_eq!(
        (settle[0].state.as_str(), settle[0].status.as_str()),
        ("immature", "confirmed")
    );
    let mature = books::block_mature(&txn);
    assert!(
        db.store
            .settle_block(&hash, "immature", "mature", &mature)
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .settle_block(&hash, "immature", "mature", &mature)
            .await
            .unwrap()
    );
    let all = db.store.ledger_balances().await.unwrap();
    assert_eq!(all[&Account::Balance(5)], 3_712_500_000);
    assert_eq!(all[&Account::Balance(6)], 1_237_500_000);
    assert_eq!(all[&Account::Balance(POOL)], 50_000_000);
    assert_eq!(all[&Account::Rewards], -5_000_000_000);
    assert_eq!(all.values().sum::<i64>(), 0, "double entry");
    db.drop().await;
}
