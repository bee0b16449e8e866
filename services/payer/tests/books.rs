//! The payer's books on the local stack's Kafka, ZooKeeper and MariaDB:
//! blocks split to the satoshi, matured, taken back; PPS and FPPS credits.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use payer::{Config, Scheme};
use serde_json::json;
use sluice_core::ShareStatus;
use sluice_ledger::books::{Account, Kind, POOL};
use sluice_store::BlockStatus;
use sluice_testkit::eventually;

mod common;
use common::{Books, Node, REWARD, near, unhealthy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_is_split_by_its_window_to_the_satoshi_then_matures() {
    let mut b = Books::new().await;
    // 100 minutes before: user 5, work no window reaches once the block is
    // credited (the window spans 2 minutes: 8 are kept back from its end).
    b.minute -= 100;
    b.share(5, 0, 10, ShareStatus::Accepted, 6).await;
    b.minute += 100;
    // Minute 0: user 4 (before the window: nothing). Minute 1: users 1 and
    // 3. Minute 2: user 1, user 2's block share, and a stale share of
    // user 4 (no work). The window is 3.5 blocks of work = 3.5 shares: the
    // two of minute 2 and 1.5 of minute 1's 2, shared 0.75 : 0.75.
    b.share(4, 0, 10, ShareStatus::Accepted, 1).await;
    b.share(1, 1, 10, ShareStatus::Accepted, 2).await;
    b.share(3, 1, 20, ShareStatus::Accepted, 3).await;
    b.share(1, 2, 10, ShareStatus::Accepted, 4).await;
    b.share(4, 2, 15, ShareStatus::Stale, 5).await;
    b.share(2, 2, 20, ShareStatus::Block, 9).await;
    let block = b.found(9, 2).await;
    b.start(Config {
        work_keep_hours: 0,
        ..b.config(Scheme::Pplns)
    });

    // 1 % fee: 4,950,000,000 split 1.75 : 1 : 0.75 of 3.5.
    let rest = 4_950_000_000f64;
    let u1 = b
        .until_balance(Account::Immature(1), "the block credited", |v| v > 0)
        .await;
    assert!(near(u1, rest * 1.75 / 3.5), "user 1: {u1}");
    assert!(near(
        b.balance(Account::Immature(2)).await,
        rest * 1.0 / 3.5
    ));
    assert!(near(
        b.balance(Account::Immature(3)).await,
        rest * 0.75 / 3.5
    ));
    assert_eq!(
        b.balance(Account::Immature(4)).await,
        0,
        "outside the window, or stale"
    );
    let pool = b.balance(Account::Immature(POOL)).await;
    assert!(
        (50_000_000..=50_000_002).contains(&pool),
        "the fee and the floors: {pool}"
    );
    assert_eq!(b.balance(Account::Rewards).await, -(REWARD as i64));
    assert_eq!(
        b.balance(Account::Balance(1)).await,
        0,
        "immature until confirmed"
    );

    // blkmaker finds it 101 deep: the credits become balances, once.
    b.store
        .set_block_standing(&block, BlockStatus::Confirmed, 101)
        .await
        .unwrap();
    b.until_balance(Account::Balance(1), "the block matured", |v| v == u1)
        .await;
    assert_eq!(b.balance(Account::Immature(1)).await, 0);
    let all = b.store.ledger_balances().await.unwrap();
    assert_eq!(all.values().sum::<i64>(), 0, "double entry: {all:?}");
    assert!(
        b.store
            .ledger_txn(Kind::BlockMature, &block)
            .await
            .unwrap()
            .is_some()
    );
    // Every share was read once: 6 accepted (the block's included) of 7;
    // then user 5's old minute is deleted and the rest kept.
    let users = |b: &Books| {
        let store = b.store.clone();
        async move {
            let mut conn = store.pool().get_conn().await.ok()?;
            use mysql_async::prelude::Queryable;
            let rows: Vec<(u32, u64)> = conn
                .query("SELECT user_id, shares FROM payout_work ORDER BY user_id")
                .await
                .ok()?;
            Some(rows)
        }
    };
    let kept = eventually(Duration::from_secs(10), "old work pruned", || async {
        users(&b).await.filter(|rows| rows.iter().all(|r| r.0 != 5))
    })
    .await;
    assert_eq!(kept.iter().map(|r| r.1).sum::<u64>(), 5, "{kept:?}");
    assert!(kept.iter().any(|r| r.0 == 4), "minute 0 is within reach");
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_block_s_credits_are_taken_back_by_opposite_entries() {
    let mut b = Books::new().await;
    b.share(1, 1, 0, ShareStatus::Accepted, 1).await;
    b.share(2, 1, 30, ShareStatus::Block, 8).await;
    let block = b.found(8, 2).await;
    b.start(b.config(Scheme::Pplns));
    let credited = b
        .until_balance(Account::Immature(1), "the block credited", |v| v > 0)
        .await;
    assert!(near(credited, 4_950_000_000f64 / 2.0), "{credited}");
    b.store
        .set_block_standing(&block, BlockStatus::Orphaned, 0)
        .await
        .unwrap();
    b.until_balance(Account::Immature(1), "the credit taken back", |v| v == 0)
        .await;
    assert!(
        b.store.ledger_balances().await.unwrap().is_empty(),
        "every account back at zero"
    );
    let credit = b
        .store
        .ledger_txn(Kind::BlockCredit, &block)
        .await
        .unwrap()
        .unwrap();
    let orphan = b
        .store
        .ledger_txn(Kind::BlockOrphaned, &block)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        orphan.entries.len(),
        credit.entries.len(),
        "the credit kept, its opposite added"
    );
    for (account, v) in &credit.entries {
        assert_eq!(orphan.entries[account], -v);
    }
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pps_shares_are_credited_their_value_and_blocks_are_the_pool_s() {
    let mut b = Books::new().await;
    // Difficulty 1 at difficulty-1 bits: each share is worth a block's
    // subsidy at height 300 on regtest (12.5 BTC), less the 1 % fee.
    let share_value = 1_250_000_000f64 * 0.99;
    b.share(1, 1, 0, ShareStatus::Accepted, 1).await;
    b.share(1, 1, 10, ShareStatus::Accepted, 2).await;
    b.share(3, 1, 20, ShareStatus::Stale, 3).await;
    b.share(2, 1, 30, ShareStatus::Block, 7).await;
    let block = b.found(7, 2).await;
    b.start(b.config(Scheme::Pps));
    let u1 = b
        .until_balance(Account::Balance(1), "user 1's shares credited", |v| v > 0)
        .await;
    // Payable at once, within a satoshi per share of the exact value.
    assert!((u1 as f64 - 2.0 * share_value).abs() <= 2.0, "{u1}");
    let u2 = b.balance(Account::Balance(2)).await;
    assert!(
        (u2 as f64 - share_value).abs() <= 1.0,
        "the block share is a share: {u2}"
    );
    assert_eq!(
        b.balance(Account::Balance(3)).await,
        0,
        "a stale share is worth nothing"
    );
    assert_eq!(b.balance(Account::Pps).await, -(u1 + u2));
    // The block is the pool's, all of it.
    b.until_balance(Account::Immature(POOL), "the block credited", |v| {
        v == REWARD as i64
    })
    .await;
    assert_eq!(b.balance(Account::Immature(2)).await, 0);
    let credit = b
        .store
        .ledger_txn(Kind::BlockCredit, &block)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credit.entries.len(), 2, "rewards and the pool: {credit:?}");
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fpps_shares_are_worth_the_subsidy_and_the_recent_blocks_mean_fees() {
    let node = Node::with_mempool("", 30).await;
    let miner = nodesim::first_address(7).to_string();
    node.call("generatetoaddress", vec![json!(3), json!(miner)])
        .await;
    let mut b = Books::new().await;
    // Shares of a job at height 6 while the payer's node has blocks up to 3:
    // their fees cannot be known yet, so nothing is valued.
    b.height = 6;
    b.share(1, 1, 0, ShareStatus::Accepted, 1).await;
    b.share(2, 1, 10, ShareStatus::Accepted, 2).await;
    b.share(2, 1, 20, ShareStatus::LowDifficulty, 3).await;
    b.start(Config {
        fpps_fee_blocks: 4,
        payouts: Some(node.payouts("")),
        ..b.config(Scheme::Fpps)
    });
    let why = unhealthy(&b.ctxs[0].health, "fees").await;
    assert!(why.contains("after current tip 3"), "{why}");
    assert_eq!(b.balance(Account::Balance(1)).await, 0);
    // The node catches up: blocks 2 to 5 are the four before height 6.
    node.call("generatetoaddress", vec![json!(2), json!(miner)])
        .await;
    let u1 = b
        .until_balance(Account::Balance(1), "user 1's share credited", |v| v > 0)
        .await;
    let mut fees = Vec::new();
    for h in 2..6 {
        let stats = node
            .call("getblockstats", vec![json!(h), json!(["totalfee"])])
            .await;
        fees.push(stats["totalfee"].as_u64().unwrap());
    }
    assert!(fees.iter().all(|&f| f > 0), "its blocks pay fees: {fees:?}");
    let mean = fees.iter().sum::<u64>() / 4;
    // Difficulty 1 at difficulty-1 bits: a share is a block, worth the
    // subsidy at height 6 (50 BTC) and the mean fees, less the 1 % fee.
    let value = (5_000_000_000 + mean) as f64 * 0.99;
    assert!(near(u1, value), "{u1} vs {value}");
    let u2 = b
        .until_balance(Account::Balance(2), "user 2's share credited", |v| v > 0)
        .await;
    assert!(near(u2, value), "the rejected share is worth nothing: {u2}");
    assert_eq!(b.balance(Account::Pps).await, -(u1 + u2));
    assert_eq!(
        b.store.fpps_fees().await.unwrap(),
        [(6, mean)].into_iter().collect(),
        "the mean is recorded for the proof"
    );
    b.end().await;
}
