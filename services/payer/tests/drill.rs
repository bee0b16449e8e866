//! The payout drill: the payer binary killed with SIGKILL at each step of a
//! payout (before it is built, after it is signed, after it is written to
//! the books, after it is broadcast) and started again. Each time, every
//! due user is paid exactly once: counted on the node, output by output,
//! in every block of its chain and its mempool.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use bitcoin::consensus::deserialize;
use bitcoin::{Address, Amount, Block, ScriptBuf};

use serde_json::json;
use sluice_core::ShareStatus;
use sluice_ledger::books::Account;
use sluice_store::BlockStatus;
use sluice_testkit::{eventually, free_port, unique_name};

mod common;
use common::{Books, Node};

const ALICE: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
const BOB: &str = "bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry";
/// 1 % fee: 49.5 BTC split 3 : 1.
const ALICE_SAT: u64 = 3_712_500_000;
const BOB_SAT: u64 = 1_237_500_000;

struct Payer {
    child: Child,
    log: PathBuf,
}

impl Payer {
    /// The payer binary as supervisord runs it; stopping at `failpoint`.
    fn start(config: &str, failpoint: Option<&str>) -> Payer {
        let dir = std::env::temp_dir().join(unique_name("sluice-payer-drill-"));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, log) = (dir.join("payer.toml"), dir.join("payer.log"));
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_payer"));
        command
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(step) = failpoint {
            command.env("SLUICE_PAYER_FAILPOINT", step);
        }
        Payer {
            child: command.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Payer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Satoshis paid to `address` by every transaction of the chain and the
    /// mempool, and how many outputs paid it.
    async fn paid(&self, address: &str) -> (Amount, usize) {
        let script = Address::from_str(address)
            .unwrap()
            .assume_checked()
            .script_pubkey();
        let tip = self.call("getblockcount", vec![]).await.as_u64().unwrap();
        let mut outputs: Vec<Amount> = Vec::new();
        for height in 0..=tip {
            let hash = self.call("getblockhash", vec![json!(height)]).await;
            let raw = self.call("getblock", vec![hash, json!(0)]).await;
            let block: Block = deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap();
            outputs.extend(paying(&block.txdata, &script));
        }
        // The mempool: what the next block would carry.
        let template = self
            .call("getblocktemplate", vec![json!({"rules": ["segwit"]})])
            .await;
        let pending: Vec<bitcoin::Transaction> = template["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| deserialize(&hex::decode(t["data"].as_str().unwrap()).unwrap()).unwrap())
            .collect();
        outputs.extend(paying(&pending, &script));
        (outputs.iter().copied().sum(), outputs.len())
    }

    fn payouts_toml(&self) -> String {
        format!(
            r#"[payouts]
min_payout_sat = 100000
fee_rate_sat_vb = 2
interval_secs = 1
confirmations = 1
rpc_timeout_secs = 10

[payouts.node]
name = "sim"
rpc_url = "http://{}"
rpc_user = "sluice"
rpc_password = "sluice"
"#,
            self.rpc
        )
    }
}

fn paying(txs: &[bitcoin::Transaction], script: &ScriptBuf) -> Vec<Amount> {
    txs.iter()
        .flat_map(|t| &t.output)
        .filter(|o| &o.script_pubkey == script)
        .map(|o| o.value)
        .collect()
}

/// Somebody else's address: blocks that only mature the wallet's coins.
fn elsewhere() -> String {
    nodesim::first_address(2).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_killed_at_any_step_of_a_payout_pays_everyone_exactly_once() {
    for step in [
        "before_build",
        "after_sign",
        "after_record",
        "after_broadcast",
    ] {
        drill(step).await;
    }
}

async fn drill(step: &str) {
    let b = Books::new().await;
    let node = Node::start("").await;
    let wallet = nodesim::first_address(1).to_string();
    node.call("generatetoaddress", vec![json!(2), json!(wallet)])
        .await;
    node.call("generatetoaddress", vec![json!(100), json!(elsewhere())])
        .await;
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
    let config = b.config_toml(free_port(), &node.payouts_toml());

    let first = Payer::start(&config, Some(step));
    eventually(
        Duration::from_secs(60),
        &format!("the payer at {step}"),
        || async { first.log().contains("failpoint reached").then_some(()) },
    )
    .await;
    first.kill();
    let open = b.store.open_payouts().await.unwrap();
    match step {
        "before_build" | "after_sign" => assert!(open.is_empty(), "{step}: nothing written"),
        _ => assert_eq!(open.len(), 1, "{step}: the batch is in the books"),
    }

    let second = Payer::start(&config, None);
    eventually(
        Duration::from_secs(60),
        &format!("{step}: the payout broadcast"),
        || async {
            let rows = b.store.payouts(10).await.ok()?;
            rows.iter().any(|r| r.state == "broadcast").then_some(())
        },
    )
    .await;
    node.call("generatetoaddress", vec![json!(1), json!(elsewhere())])
        .await;
    eventually(
        Duration::from_secs(60),
        &format!("{step}: the payout confirmed"),
        || async {
            let rows = b.store.payouts(10).await.ok()?;
            rows.iter().any(|r| r.state == "confirmed").then_some(())
        },
    )
    .await;
    second.kill();

    assert_eq!(
        node.paid(ALICE).await,
        (Amount::from_sat(ALICE_SAT), 1),
        "{step}: Alice once"
    );
    assert_eq!(
        node.paid(BOB).await,
        (Amount::from_sat(BOB_SAT), 1),
        "{step}: Bob once"
    );
    let rows = b.store.payouts(10).await.unwrap();
    assert_eq!(rows.len(), 1, "{step}: one batch: {rows:?}");
    assert_eq!(b.balance(Account::Balance(1)).await, 0);
    assert_eq!(b.balance(Account::Balance(2)).await, 0);
    assert_eq!(
        b.balance(Account::Paid).await,
        (ALICE_SAT + BOB_SAT + rows[0].network_fee) as i64
    );
    b.end().await;
}
