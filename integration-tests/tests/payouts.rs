//! The money path end to end on the real stack (Kafka, ZooKeeper, MariaDB,
//! nodesim with its wallet): simulated miners find blocks whose coinbases
//! pay the node's wallet; blkmaker records them; the payer credits each by
//! its PPLNS window; the newest is orphaned after it was credited and its
//! credit is taken back before anything is paid; the rest mature and the
//! miner is paid once, from the wallet, exactly what the books owed; and
//! the books redone from statshttpd's share log agree to the satoshi.
#![allow(clippy::unwrap_used)]

mod common;

use std::str::FromStr;
use std::time::Duration;

use bitcoin::{Address, Amount};
use bitcoincore_rpc::RpcApi;
use common::{InProcess, ONE_POOL_AT_A_TIME, pool_blocks_on_best_chain, start_mining, start_pool};
use mysql_async::prelude::Queryable;
use payer::{MysqlConfig, PayoutConfig, Scheme};
use sluice_ledger::books::{Account, Kind};
use sluice_store::Store;
use sluice_testkit::{Database, eventually};

/// The miner's payout address (BIP173's regtest P2WSH example).
const MINER: &str = "bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry";
/// Blocks made outside the pool pay here.
const ELSEWHERE: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

async fn count(store: &Store, sql: &str) -> u64 {
    let mut conn = store.pool().get_conn().await.unwrap();
    conn.query_first::<u64, _>(sql).await.unwrap().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_are_paid_once_for_matured_blocks_and_the_books_verify() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let db = Database::create().await;
    let books = Store::new(&db.url).unwrap();
    books.migrate().await.unwrap();
    let pool = start_pool(&db.url, InProcess::ALL).await;
    let node = std::sync::Arc::new(pool.pipeline.node.client());
    let config = payer::Config {
        service: sluice_rig::local(),
        kafka: pool.pipeline.kafka.clone(),
        zookeeper: pool.pipeline.zk.clone(),
        mysql: MysqlConfig {
            url: db.url.clone(),
        },
        network: "regtest".into(),
        scheme: Scheme::Pplns,
        fee_bps: 100,
        pplns_window: 2.0,
        settle_secs: 0,
        books_interval_secs: 1,
        pps_credit_secs: 600,
        fpps_fee_blocks: 144,
        work_keep_hours: 24,
        payouts: Some(PayoutConfig {
            node: pool.pipeline.node.config("sim"),
            wallet: String::new(),
            wallet_passphrase: String::new(),
            min_payout_sat: 100_000,
            fee_rate_sat_vb: 2,
            interval_secs: 1,
            max_users: 500,
            confirmations: 1,
            rpc_timeout_secs: 10,
        }),
    };
    let ctx = sluice_rig::context();
    tokio::spawn(payer::run(config, ctx.clone()));

    let (sim, _) = start_mining(&pool, 12.0, |_| {}).await;
    sim.await.unwrap().unwrap();
    let ours = pool_blocks_on_best_chain(&pool).await;
    assert!(ours.len() >= 2, "the miners found {} blocks", ours.len());
    // Every block on the chain recorded and credited (once its minute ended).
    eventually(Duration::from_secs(150), "every block credited", || async {
        for hash in &ours {
            books.ledger_txn(Kind::BlockCredit, hash).await.ok()??;
        }
        Some(())
    })
    .await;
    let newest = ours[0].clone();
    let credit = books
        .ledger_txn(Kind::BlockCredit, &newest)
        .await
        .unwrap()
        .unwrap();
    let lost = credit.entries[&Account::Immature(pool.user_id)];
    assert!(lost > 0);

    // The newest block leaves the chain; the node builds on its parent.
    let hash = bitcoin::BlockHash::from_str(&newest).unwrap();
    let rpc = node.clone();
    tokio::task::spawn_blocking(move || rpc.invalidate_block(&hash).unwrap())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the orphan's credit taken back",
        || async {
            books
                .ledger_txn(Kind::BlockOrphaned, &newest)
                .await
                .unwrap()
                .map(|_| ())
        },
    )
    .await;
    assert_eq!(
        count(&books, "SELECT COUNT(*) FROM payouts").await,
        0,
        "nothing paid yet"
    );

    // 101 blocks on top: the rest mature, in the wallet and in the books.
    let elsewhere = Address::from_str(ELSEWHERE).unwrap().assume_checked();
    let rpc = node.clone();
    let to = elsewhere.clone();
    tokio::task::spawn_blocking(move || rpc.generate_to_address(101, &to).unwrap())
        .await
        .unwrap();
    // Every block but the orphan matured in the books; then the miner
    // gives an address, and is paid what the books owe, in one batch.
    eventually(Duration::from_secs(90), "every block matured", || async {
        let open = count(
            &books,
            "SELECT COUNT(*) FROM ledger_blocks WHERE state NOT IN ('mature', 'orphaned')",
        )
        .await;
        (open == 0).then_some(())
    })
    .await;
    books
        .set_payout_address(pool.user_id, MINER, None)
        .await
        .unwrap();
    eventually(Duration::from_secs(90), "a payout broadcast", || async {
        (count(
            &books,
            "SELECT COUNT(*) FROM payouts WHERE state = 'broadcast'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    let owed: i64 = {
        // What the books owed the miner: its credits from the matured blocks.
        let mut conn = books.pool().get_conn().await.unwrap();
        conn.query_first::<i64, _>(format!(
            "SELECT CAST(SUM(u.credit) AS SIGNED) FROM ledger_block_users u \
             JOIN ledger_blocks b ON b.hash = u.hash WHERE b.state = 'mature' AND u.user_id = {}",
            pool.user_id
        ))
        .await
        .unwrap()
        .unwrap()
    };
    let rpc = node.clone();
    tokio::task::spawn_blocking(move || rpc.generate_to_address(1, &elsewhere).unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "the payout confirmed", || async {
        (count(
            &books,
            "SELECT COUNT(*) FROM payouts WHERE state = 'confirmed'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;

    // On the node: one output to the miner, exactly what was owed; the
    // orphan's credit not in it.
    let script = Address::from_str(MINER)
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let rpc = node.clone();
    let outputs: Vec<Amount> = tokio::task::spawn_blocking(move || {
        let tip = rpc.get_block_count().unwrap();
        (0..=tip)
            .flat_map(|h| {
                let block = rpc.get_block(&rpc.get_block_hash(h).unwrap()).unwrap();
                block.txdata.into_iter().flat_map(|t| t.output)
            })
            .filter(|o| o.script_pubkey == script)
            .map(|o| o.value)
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(outputs, vec![Amount::from_sat(owed as u64)]);
    let balances = books.user_balances(pool.user_id).await.unwrap();
    assert_eq!(
        balances.get(&Account::Balance(pool.user_id)),
        None,
        "nothing left owed"
    );
    assert_eq!(
        balances.get(&Account::Immature(pool.user_id)),
        None,
        "the orphan's credit reversed"
    );
    let all = books.ledger_balances().await.unwrap();
    assert_eq!(all.values().sum::<i64>(), 0, "double entry");

    // The miner's view (the API): each block's part with its window, the
    // payout, the balances.
    let (status, earnings) = common::http_json(
        pool.api_port,
        &format!("/api/v1/users/{}/earnings", pool.user),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{earnings}");
    assert_eq!(earnings["balances"]["paid"], serde_json::json!(owed));
    assert_eq!(earnings["balances"]["payable"], serde_json::json!(0));
    assert_eq!(earnings["address"], serde_json::json!(MINER));
    let blocks = earnings["blocks"].as_array().unwrap();
    let mature: i64 = blocks
        .iter()
        .filter(|b| b["state"] == "mature")
        .map(|b| b["credit"].as_i64().unwrap())
        .sum();
    assert_eq!(mature, owed);
    let orphan = blocks
        .iter()
        .find(|b| b["hash"] == serde_json::json!(newest))
        .unwrap();
    assert_eq!(orphan["state"], "orphaned");
    assert!(
        blocks
            .iter()
            .all(|b| b["work"].as_str().unwrap().parse::<u128>().unwrap() > 0)
    );
    assert_eq!(earnings["payouts"][0]["state"], "confirmed");
    assert_eq!(earnings["payouts"][0]["amount"], serde_json::json!(owed));
    let (_, pool_books) = common::http_json(pool.api_port, "/api/v1/payouts")
        .await
        .unwrap();
    assert_eq!(pool_books["owed"], serde_json::json!(0));
    assert_eq!(pool_books["payouts"][0]["state"], "confirmed");

    // The proof: the books redone from the share log.
    let report = payer::verify::verify(&books, &pool.stats.data_dir, None)
        .await
        .unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert!(
        report.blocks >= ours.len() && report.shares > 0,
        "{report:?}"
    );
    ctx.shutdown.token().cancel();
    books.close().await;
    db.drop().await;
}
