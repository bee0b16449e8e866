//! nodesim's wallet through a real Bitcoin Core RPC client: coinbases
//! mature at 101 confirmations, `send` signs without broadcasting when asked,
//! and the mempool refuses what Core refuses, with Core's codes.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, Network, Transaction, Txid};
use bitcoincore_rpc::jsonrpc::error::{Error as JsonRpcError, RpcError};
use bitcoincore_rpc::{Auth, Client, Error, RpcApi};
use nodesim::Config;
use serde_json::{Value, json};
use sluice_service::{Context, Health, Metrics, Shutdown};

/// Somebody else's address (BIP173's regtest example).
const OTHER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

struct Sim {
    ctx: Context,
    client: Arc<Client>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.ctx.shutdown.token().cancel();
    }
}

async fn sim(passphrase: &str) -> Sim {
    let ctx = Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    };
    let config = Config {
        // No synthetic transactions: a coinbase is the subsidy alone.
        mempool_size: 0,
        wallet_passphrase: passphrase.into(),
        ..Config::ephemeral()
    };
    let ep = nodesim::start(config, &ctx).await.unwrap();
    // A multi-wallet path, as a payer configured with a wallet name uses.
    let url = format!("http://{}/wallet/pool", ep.rpc);
    let client = Client::new(&url, Auth::UserPass("sluice".into(), "sluice".into())).unwrap();
    Sim {
        ctx,
        client: Arc::new(client),
    }
}

impl Sim {
    async fn call(&self, method: &'static str, params: Vec<Value>) -> Result<Value, Error> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || client.call::<Value>(method, &params))
            .await
            .unwrap()
    }

    async fn ok(&self, method: &'static str, params: Vec<Value>) -> Value {
        self.call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// The RPC error `method` answers: Core's code and message.
    async fn refused(&self, method: &'static str, params: Vec<Value>) -> (i32, String) {
        match self.call(method, params).await {
            Err(Error::JsonRpc(JsonRpcError::Rpc(RpcError { code, message, .. }))) => {
                (code, message)
            }
            other => panic!("{method} was not refused: {other:?}"),
        }
    }

    async fn generate(&self, n: u64, to: &str) {
        self.ok("generatetoaddress", vec![json!(n), json!(to)])
            .await;
    }

    async fn balance(&self, kind: &str) -> Amount {
        let b = self.ok("getbalances", vec![]).await;
        Amount::from_btc(b["mine"][kind].as_f64().unwrap()).unwrap()
    }

    /// `send` without broadcasting: the signed transaction and its PSBT.
    async fn build(&self, to: &str, btc: &str) -> (Transaction, Psbt) {
        let r = self
            .ok(
                "send",
                vec![
                    json!([{ to: btc }]),
                    Value::Null,
                    json!("unset"),
                    json!(2),
                    json!({"add_to_wallet": false}),
                ],
            )
            .await;
        assert_eq!(r["complete"], json!(true));
        let tx: Transaction =
            deserialize(&hex::decode(r["hex"].as_str().unwrap()).unwrap()).unwrap();
        (tx, Psbt::from_str(r["psbt"].as_str().unwrap()).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coinbase_is_the_wallet_s_to_spend_at_101_confirmations() {
    let s = sim("").await;
    let mine = s.ok("getnewaddress", vec![]).await;
    let mine = mine.as_str().unwrap();
    assert_eq!(
        mine,
        nodesim::first_address(1).to_string(),
        "the first address is the seed's"
    );
    s.generate(1, mine).await;
    assert_eq!(s.balance("immature").await, Amount::from_int_btc(50));
    assert_eq!(s.balance("trusted").await, Amount::ZERO);
    // 100 confirmations: Core's consensus would take the spend, its wallet not yet.
    s.generate(99, OTHER).await;
    assert_eq!(s.balance("immature").await, Amount::from_int_btc(50));
    let (code, message) = s
        .refused(
            "send",
            vec![json!({ OTHER: 1 }), Value::Null, json!("unset"), json!(1)],
        )
        .await;
    assert_eq!((code, message.as_str()), (-6, "Insufficient funds"));
    s.generate(1, OTHER).await;
    assert_eq!(s.balance("trusted").await, Amount::from_int_btc(50));
    assert_eq!(s.balance("immature").await, Amount::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_without_broadcasting_and_the_hex_is_broadcast_once() {
    let s = sim("").await;
    let mine = nodesim::first_address(1).to_string();
    s.generate(1, &mine).await;
    s.generate(100, OTHER).await;
    let (tx, psbt) = s.build(OTHER, "1.5").await;
    let txid = tx.compute_txid();
    // Not broadcast: the wallet does not know it, the balance is whole.
    let (code, _) = s.refused("gettransaction", vec![json!(txid)]).await;
    assert_eq!(code, -5);
    assert_eq!(s.balance("trusted").await, Amount::from_int_btc(50));
    let fee = psbt.fee().unwrap();
    assert!(
        fee.to_sat() >= 2 * tx.vsize() as u64,
        "fee {fee} at 2 sat/vB of {} vB",
        tx.vsize()
    );
    assert_eq!(
        psbt.extract_tx().unwrap(),
        tx,
        "the PSBT is the same transaction, finalized"
    );
    let paid: Amount = tx.output.iter().map(|o| o.value).sum();
    assert_eq!(
        paid + fee,
        Amount::from_int_btc(50),
        "one coin in: outputs and fee are all of it"
    );

    let sent = s
        .ok(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&tx)))],
        )
        .await;
    assert_eq!(Txid::from_str(sent.as_str().unwrap()).unwrap(), txid);
    // Again while in the mempool: the same answer.
    let again = s
        .ok(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&tx)))],
        )
        .await;
    assert_eq!(again, sent);
    assert_eq!(
        s.ok("gettransaction", vec![json!(txid)]).await["confirmations"],
        json!(0)
    );
    // The next block carries it.
    s.generate(1, OTHER).await;
    assert_eq!(
        s.ok("gettransaction", vec![json!(txid)]).await["confirmations"],
        json!(1)
    );
    let (code, message) = s
        .refused(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&tx)))],
        )
        .await;
    assert_eq!(
        (code, message.as_str()),
        (-27, "Transaction outputs already in utxo set")
    );
    assert_eq!(
        s.balance("trusted").await,
        Amount::from_int_btc(50) - fee - Amount::from_btc(1.5).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mempool_refuses_what_core_refuses() {
    let s = sim("").await;
    let mine = nodesim::first_address(1).to_string();
    s.generate(1, &mine).await;
    s.generate(100, OTHER).await;
    let (tx, _) = s.build(OTHER, "1").await;
    // More out than in: refused before the scripts, as Core orders it.
    let mut greedy = tx.clone();
    greedy.output[0].value = Amount::from_int_btc(60);
    let (code, message) = s
        .refused(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&greedy)))],
        )
        .await;
    assert_eq!(code, -26);
    assert!(message.starts_with("bad-txns-in-belowout"), "{message}");
    // A signature that does not match what it signs.
    let mut forged = tx.clone();
    forged.output[0].value = Amount::from_btc(0.9).unwrap();
    let (code, message) = s
        .refused(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&forged)))],
        )
        .await;
    assert_eq!(code, -26);
    assert!(
        message.starts_with("mandatory-script-verify-flag-failed"),
        "{message}"
    );
    // A second spend of the same coin while the first waits.
    s.ok(
        "sendrawtransaction",
        vec![json!(hex::encode(serialize(&tx)))],
    )
    .await;
    let (other, _) = {
        let mut t = tx.clone();
        t.output[0].value = Amount::from_btc(0.5).unwrap();
        (t, ())
    };
    let (code, message) = s
        .refused(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&other)))],
        )
        .await;
    assert_eq!((code, message.as_str()), (-26, "txn-mempool-conflict"));
    // A coin nobody has.
    let mut missing = tx.clone();
    missing.input[0].previous_output.vout = 77;
    let (code, message) = s
        .refused(
            "sendrawtransaction",
            vec![json!(hex::encode(serialize(&missing)))],
        )
        .await;
    assert_eq!(
        (code, message.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );
    // Garbage, no fee rate, a wrong-network address.
    assert_eq!(
        s.refused("sendrawtransaction", vec![json!("00ff")]).await.0,
        -22
    );
    let (code, _) = s.refused("send", vec![json!({ OTHER: 1 })]).await;
    assert_eq!(
        code, -4,
        "regtest has no fallback fee: a rate must be given"
    );
    // The generator point's key, on mainnet.
    let key = bitcoin::CompressedPublicKey::from_str(
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    )
    .unwrap();
    let mainnet = Address::p2wpkh(&key, Network::Bitcoin);
    let (code, message) = s
        .refused(
            "send",
            vec![
                json!({ mainnet.to_string(): 1 }),
                Value::Null,
                json!("unset"),
                json!(1),
            ],
        )
        .await;
    assert_eq!(code, -5, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_wallet_signs_nothing_until_unlocked() {
    let s = sim("correct horse").await;
    s.generate(1, &nodesim::first_address(1).to_string()).await;
    s.generate(100, OTHER).await;
    let send = || {
        vec![
            json!({ OTHER: 1 }),
            Value::Null,
            json!("unset"),
            json!(1),
            json!({"add_to_wallet": false}),
        ]
    };
    assert_eq!(s.refused("send", send()).await.0, -13);
    assert_eq!(
        s.refused("walletpassphrase", vec![json!("wrong"), json!(60)])
            .await
            .0,
        -14
    );
    s.ok("walletpassphrase", vec![json!("correct horse"), json!(60)])
        .await;
    s.ok("send", send()).await;
    s.ok("walletlock", vec![]).await;
    assert_eq!(s.refused("send", send()).await.0, -13);
    // An unencrypted wallet cannot be locked.
    let plain = sim("").await;
    assert_eq!(plain.refused("walletlock", vec![]).await.0, -15);
}

/// The demo pool's block rewards are this wallet's to pay out: jobmaker's
/// payout address in deploy/config is the demo nodesim's first address.
#[test]
fn the_demo_pool_mines_to_the_demo_wallet() {
    let root = sluice_testkit::repo_root().join("deploy/config");
    let seed: u64 = {
        let text = std::fs::read_to_string(root.join("nodesim.toml")).unwrap();
        let config: toml::Value = toml::from_str(&text).unwrap();
        config["seed"].as_integer().unwrap() as u64
    };
    let wallet = nodesim::first_address(seed).to_string();
    for file in ["jobmaker.toml", "jobmaker-standby.toml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let config: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            config["payout_address"].as_str(),
            Some(wallet.as_str()),
            "{file}"
        );
    }
}
