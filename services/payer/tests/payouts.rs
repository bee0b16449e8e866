//! Payouts through nodesim's wallet (Bitcoin Core's RPCs): due balances
//! paid in one transaction, once, to the satoshi; a wallet that cannot pay
//! marks nothing paid.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::time::Duration;

use bitcoin::consensus::deserialize;
use bitcoin::{Address, Amount, Transaction};
use payer::{Config, PayoutConfig, Scheme};
use serde_json::json;
use sluice_core::ShareStatus;
use sluice_ledger::books::{Account, POOL};
use sluice_store::{BlockStatus, PayoutRow};
use sluice_testkit::eventually;

mod common;
use common::{Books, Node, unhealthy};

/// Two miners' regtest addresses (BIP173's examples: P2WPKH and P2WSH).
const ALICE: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
const BOB: &str = "bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry";

impl Node {
    /// `n` blocks paying the wallet, matured by 100 more.
    async fn fund(&self, n: u64) {
        let wallet = nodesim::first_address(1).to_string();
        self.call("generatetoaddress", vec![json!(n), json!(wallet)])
            .await;
        self.call("generatetoaddress", vec![json!(100), json!(ALICE)])
            .await;
    }
}

/// Users 1 (3 shares) and 2 (1 share and the block) mine a block that
/// matures; both have addresses.
async fn matured_block(b: &Books) {
    b.share(1, 1, 0, ShareStatus::Accepted, 1).await;
    b.share(1, 1, 10, ShareStatus::Accepted, 2).await;
    b.share(1, 1, 20, ShareStatus::Accepted, 3).await;
    b.share(2, 1, 30, ShareStatus::Block, 9).await;
    let hash = b.found(9, 2).await;
    b.store.set_payout_address(1, ALICE, None).await.unwrap();
    b.store.set_payout_address(2, BOB, None).await.unwrap();
    b.store
        .set_block_standing(&hash, BlockStatus::Confirmed, 101)
        .await
        .unwrap();
}

fn config(b: &Books, payouts: PayoutConfig) -> Config {
    Config {
        // The window holds all four shares: each user's part is exact.
        pplns_window: 4.0,
        payouts: Some(payouts),
        ..b.config(Scheme::Pplns)
    }
}

async fn payout_where(b: &Books, what: &str, pred: impl Fn(&PayoutRow) -> bool) -> PayoutRow {
    eventually(Duration::from_secs(30), what, || async {
        let rows = b.store.payouts(10).await.ok()?;
        rows.into_iter().find(|r| pred(r))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_balances_are_paid_once_in_one_transaction_to_the_satoshi() {
    let mut b = Books::new().await;
    let node = Node::start("").await;
    node.fund(2).await;
    matured_block(&b).await;
    b.start(config(&b, node.payouts("")));

    let sent = payout_where(&b, "a payout broadcast", |r| r.state == "broadcast").await;
    assert_eq!(sent.users, 2);
    // 1 % fee: 49.5 BTC split 3 : 1.
    let (alice, bob) = (3_712_500_000u64, 1_237_500_000u64);
    assert_eq!(sent.total, alice + bob);
    let tx: Transaction = {
        let t = node.call("gettransaction", vec![json!(sent.txid)]).await;
        assert_eq!(t["confirmations"], json!(0), "in the node's mempool");
        deserialize(&hex::decode(t["hex"].as_str().unwrap()).unwrap()).unwrap()
    };
    let paid_to = |address: &str| -> Amount {
        let script = Address::from_str(address)
            .unwrap()
            .assume_checked()
            .script_pubkey();
        tx.output
            .iter()
            .filter(|o| o.script_pubkey == script)
            .map(|o| o.value)
            .sum()
    };
    assert_eq!(paid_to(ALICE), Amount::from_sat(alice));
    assert_eq!(paid_to(BOB), Amount::from_sat(bob));
    // Balances left the users at once (in flight); the pool pays the fee.
    assert_eq!(b.balance(Account::Balance(1)).await, 0);
    assert_eq!(
        b.balance(Account::InFlight).await,
        (alice + bob + sent.network_fee) as i64
    );
    assert!(sent.network_fee >= 3 * tx.vsize() as u64, "3 sat/vB");

    // A block confirms it.
    node.call("generatetoaddress", vec![json!(1), json!(ALICE)])
        .await;
    let done = payout_where(&b, "the payout confirmed", |r| r.state == "confirmed").await;
    assert_eq!(done.id, sent.id);
    assert_eq!(
        b.balance(Account::Paid).await,
        (alice + bob + sent.network_fee) as i64
    );
    assert_eq!(b.balance(Account::InFlight).await, 0);
    assert_eq!(
        b.balance(Account::Balance(POOL)).await,
        50_000_000 - sent.network_fee as i64,
        "the pool's fee less the network fee"
    );
    // Nobody is due any more: rounds go by, no second batch.
    let health = b.ctxs[0].health.clone();
    eventually(
        Duration::from_secs(10),
        "a round with nothing due",
        || async {
            health
                .snapshot()
                .get("payouts")
                .filter(|h| h.ok && h.detail == "nothing due")
                .map(|_| ())
        },
    )
    .await;
    assert_eq!(b.store.payouts(10).await.unwrap().len(), 1);
    let all = b.store.ledger_balances().await.unwrap();
    assert_eq!(all.values().sum::<i64>(), 0, "double entry: {all:?}");
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_or_empty_wallet_marks_nothing_paid() {
    let mut b = Books::new().await;
    // Locked: the payer has no passphrase for it.
    let locked = Node::start("secret").await;
    locked.fund(2).await;
    matured_block(&b).await;
    b.start(config(&b, locked.payouts("")));
    let why = unhealthy(&b.ctxs[0].health, "payouts").await;
    assert!(why.contains("walletpassphrase"), "{why}");
    assert!(b.store.payouts(10).await.unwrap().is_empty());
    assert_eq!(b.balance(Account::Balance(1)).await, 3_712_500_000);
    b.ctxs[0].shutdown.token().cancel();

    // Empty: nothing to spend.
    let empty = Node::start("").await;
    b.start(config(&b, empty.payouts("")));
    let why = unhealthy(&b.ctxs[1].health, "payouts").await;
    assert!(why.contains("Insufficient funds"), "{why}");
    assert!(b.store.payouts(10).await.unwrap().is_empty());
    assert_eq!(b.balance(Account::InFlight).await, 0);
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_short_of_what_is_owed_pays_what_it_can_and_says_so() {
    let mut b = Books::new().await;
    let node = Node::start("").await;
    // One coinbase in the wallet (50 BTC) for two blocks in the books (99 BTC owed).
    node.fund(1).await;
    matured_block(&b).await;
    b.share(2, 1, 40, ShareStatus::Block, 8).await;
    let second = b.found(8, 2).await;
    b.store
        .set_block_standing(&second, BlockStatus::Confirmed, 101)
        .await
        .unwrap();
    b.start(config(&b, node.payouts("")));
    let sent = payout_where(&b, "a payout broadcast", |r| r.state == "broadcast").await;
    // The largest balance first, as much as the wallet holds less room for the fee.
    assert_eq!(sent.users, 1);
    assert!(
        sent.total > 4_990_000_000 && sent.total < 5_000_000_000,
        "{}",
        sent.total
    );
    let left = b.balance(Account::Balance(1)).await;
    assert!(left > 0, "the rest stays owed: {left}");
    let health = b.ctxs[0].health.clone();
    let why = eventually(
        Duration::from_secs(10),
        "the shortfall reported",
        || async {
            health
                .snapshot()
                .get("wallet")
                .filter(|h| !h.ok)
                .map(|h| h.detail.clone())
        },
    )
    .await;
    assert!(why.contains("cannot pay now"), "{why}");
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_a_catching_up_node_calls_unfunded_is_kept_until_the_node_is_synced() {
    let mut b = Books::new().await;
    // Genesis only: like Core on a fresh regtest, the node is in initial
    // block download until it has a recent block.
    let node = Node::start("").await;
    matured_block(&b).await;
    b.start(config(&b, node.payouts("")));
    b.until_balance(Account::Balance(1), "the block matured", |v| v > 0)
        .await;
    // A batch signed and recorded, spending a coin this node has not seen.
    let unseen = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint::new(
                bitcoin::Txid::from_str(&"07".repeat(32)).unwrap(),
                0,
            ),
            ..Default::default()
        }],
        output: vec![bitcoin::TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: Address::from_str(ALICE)
                .unwrap()
                .assume_checked()
                .script_pubkey(),
        }],
    };
    let amounts = [(1, 1_000_000)].into_iter().collect();
    let id = b
        .store
        .record_payout(
            &unseen.compute_txid().to_string(),
            &bitcoin::consensus::encode::serialize_hex(&unseen),
            0,
            &[(1, ALICE.into(), 1_000_000)],
            |id| sluice_ledger::books::payout(id, &amounts, 0),
        )
        .await
        .unwrap();
    let health = b.ctxs[0].health.clone();
    let why = eventually(Duration::from_secs(30), "the batch kept open", || async {
        health
            .snapshot()
            .get("payouts")
            .map(|h| h.detail.clone())
            .filter(|d| d.contains("initial block download"))
    })
    .await;
    assert!(why.contains(&format!("payout {id}")), "{why}");
    assert_eq!(b.store.payout(id).await.unwrap().unwrap().state, "signed");
    assert_eq!(b.balance(Account::InFlight).await, 1_000_000);
    // A recent block: the node is synced, and its word that the coin is
    // missing takes the batch back.
    node.call("generatetoaddress", vec![json!(1), json!(BOB)])
        .await;
    let failed = payout_where(&b, "the batch taken back", |r| r.state == "failed").await;
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("missingorspent")),
        "{failed:?}"
    );
    assert_eq!(b.balance(Account::InFlight).await, 0);
    b.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_of_many_coins_short_of_what_is_owed_pays_all_it_has() {
    let mut b = Books::new().await;
    let node = Node::start("").await;
    // 25 coinbases of 50 BTC for books owing more: the batch spends every
    // coin, 25 inputs, more fee than the first room left for it.
    node.fund(25).await;
    matured_block(&b).await;
    for i in 0..26u8 {
        b.share(2, 2, u64::from(i), ShareStatus::Block, 100 + i)
            .await;
        let hash = b.found(100 + i, 2).await;
        b.store
            .set_block_standing(&hash, BlockStatus::Confirmed, 101)
            .await
            .unwrap();
    }
    b.start(config(&b, node.payouts("")));
    let sent = payout_where(&b, "a payout broadcast", |r| r.state == "broadcast").await;
    assert!(
        sent.total > 124_900_000_000 && sent.total < 125_000_000_000,
        "all the wallet holds, less the fee: {sent:?}"
    );
    assert!(sent.network_fee > 3 * 1_100, "25 inputs' fee: {sent:?}");
    b.end().await;
}
