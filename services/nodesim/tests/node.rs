//! nodesim through a real Bitcoin Core RPC client (bitcoincore-rpc) and a
//! real ZMQ subscriber: templates become blocks with the pool's own core
//! crate, and every tampering is refused with Bitcoin Core's reason.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, Block, BlockHash, CompactTarget, ScriptBuf, Target, Transaction, Txid};
use bitcoincore_rpc::json::{GetBlockTemplateModes, GetBlockTemplateResult, GetBlockTemplateRules};
use bitcoincore_rpc::{Auth, Client, RpcApi};
use nodesim::{Config, Endpoints};
use serde_json::{Value, json};
use sluice_core::share::{Submission, Work};
use sluice_core::{CoinbaseParams, ShareOutcome, merkle_branch};
use sluice_service::{Context, Health, Metrics, Shutdown};
use zeromq::{Socket, SocketRecv};

const ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

struct Sim {
    ctx: Context,
    ep: Endpoints,
    client: Arc<Client>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.ctx.shutdown.token().cancel();
    }
}

async fn sim(bits: &str) -> Sim {
    let ctx = Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    };
    let config = Config {
        bits: bits.into(),
        mempool_size: 50,
        longpoll_timeout_secs: 20,
        ..Config::ephemeral()
    };
    let ep = nodesim::start(config, &ctx).await.unwrap();
    let url = format!("http://{}", ep.rpc);
    let client = Client::new(&url, Auth::UserPass("sluice".into(), "sluice".into())).unwrap();
    Sim {
        ctx,
        ep,
        client: Arc::new(client),
    }
}

impl Sim {
    /// Runs a blocking RPC call off the async workers.
    async fn rpc<T: Send + 'static>(&self, f: impl FnOnce(&Client) -> T + Send + 'static) -> T {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || f(&client))
            .await
            .unwrap()
    }

    async fn template(&self) -> GetBlockTemplateResult {
        self.rpc(|c| {
            c.get_block_template(
                GetBlockTemplateModes::Template,
                &[GetBlockTemplateRules::SegWit],
                &[],
            )
        })
        .await
        .unwrap()
    }

    /// `submitblock`'s raw answer: null when accepted, else Core's reason.
    async fn submit(&self, block: &Block) -> Value {
        let hex = bitcoin::consensus::encode::serialize_hex(block);
        self.rpc(move |c| c.call::<Value>("submitblock", &[json!(hex)]))
            .await
            .unwrap()
    }
}

/// What a test may change before the block is assembled and ground.
struct Knobs {
    height: u32,
    value: Amount,
    commitment: ScriptBuf,
    time: u32,
    prev: BlockHash,
    txs: Vec<Transaction>,
    /// Nonces to try before giving up on meeting the bits.
    tries: u32,
}

/// The BIP141 commitment script for `txs` (coinbase wtxid counted as zero),
/// computed with rust-bitcoin rather than nodesim.
fn commitment_for(txs: &[Transaction]) -> ScriptBuf {
    // witness_root() counts the first transaction's wtxid as zero, whatever it is.
    let coinbase = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![],
    };
    let block = Block {
        header: Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: bitcoin::TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0),
            nonce: 0,
        },
        txdata: std::iter::once(coinbase)
            .chain(txs.iter().cloned())
            .collect(),
    };
    let root = block.witness_root().unwrap();
    let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
    let prefix = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    ScriptBuf::from_bytes([&prefix[..], commitment.as_byte_array()].concat())
}

/// A block from `gbt` built the way the pool builds it: coinbase split,
/// merkle branch, Stratum-style header; nonce ground until it meets the bits.
fn build(gbt: &GetBlockTemplateResult, tamper: impl FnOnce(&mut Knobs)) -> Block {
    let mut k = Knobs {
        height: gbt.height as u32,
        value: gbt.coinbase_value,
        commitment: gbt.default_witness_commitment.clone(),
        time: gbt.current_time as u32,
        prev: gbt.previous_block_hash,
        txs: gbt
            .transactions
            .iter()
            .map(|t| t.transaction().unwrap())
            .collect(),
        tries: 1_000_000,
    };
    tamper(&mut k);
    let split = CoinbaseParams {
        height: k.height,
        unique: 7,
        pool_tag: b"/sluice-test/".to_vec(),
        extranonce1_len: 4,
        extranonce2_len: 8,
        value: k.value,
        payout_script: ScriptBuf::from_bytes([&[0x00, 0x14][..], &[9u8; 20]].concat()),
        fixed_outputs: vec![],
        witness_commitment: Some(k.commitment),
    }
    .build()
    .unwrap();
    let txids: Vec<Txid> = k.txs.iter().map(Transaction::compute_txid).collect();
    let bits = CompactTarget::from_consensus(u32::from_be_bytes(gbt.bits[..].try_into().unwrap()));
    let work = Work {
        version: Version::from_consensus(gbt.version as i32),
        prev_blockhash: k.prev,
        bits,
        min_time: gbt.min_time as u32,
        coinbase1: split.coinbase1.clone(),
        coinbase2: split.coinbase2.clone(),
        merkle_branch: merkle_branch(&txids),
        extranonce2_len: 8,
    };
    let (en1, en2) = ([1, 2, 3, 4], [5u8; 8]);
    let easy = Target::from_le_bytes([0xff; 32]);
    let mut header: Option<Header> = None;
    for nonce in 0..k.tries {
        let sub = Submission {
            extranonce1: &en1,
            extranonce2: &en2,
            ntime: k.time,
            nonce,
            version_bits: None,
        };
        let checked = work.check(&sub, 0, &easy).unwrap();
        header = Some(checked.header);
        if checked.outcome == ShareOutcome::Block {
            break;
        }
    }
    let mut txdata = vec![split.transaction(&en1, &en2).unwrap()];
    txdata.extend(k.txs);
    Block {
        header: header.unwrap(),
        txdata,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_built_block_is_accepted_announced_and_becomes_the_tip() {
    let sim = sim("207fffff").await;
    let mut sub = zeromq::SubSocket::new();
    sub.connect(&sim.ep.zmq).await.unwrap();
    sub.subscribe("hashblock").await.unwrap();

    let gbt = sim.template().await;
    assert_eq!(gbt.height, 1);
    assert!(
        !gbt.transactions.is_empty(),
        "the synthetic mempool fills templates"
    );
    let fees: Amount = gbt.transactions.iter().map(|t| t.fee).sum();
    assert_eq!(gbt.coinbase_value, Amount::from_btc(50.0).unwrap() + fees);

    let block = build(&gbt, |_| {});
    assert_eq!(sim.submit(&block).await, Value::Null, "accepted");
    let hash = block.block_hash();
    assert_eq!(sim.rpc(|c| c.get_best_block_hash()).await.unwrap(), hash);
    assert_eq!(sim.rpc(|c| c.get_block_count()).await.unwrap(), 1);
    assert_eq!(sim.submit(&block).await, json!("duplicate"));

    // ZMQ: topic, display-order hash, sequence 0.
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .unwrap()
        .unwrap();
    let frames: Vec<Vec<u8>> = msg.into_vec().into_iter().map(|b| b.to_vec()).collect();
    assert_eq!(frames[0], b"hashblock");
    let mut display = hash.to_byte_array();
    display.reverse();
    assert_eq!(frames[1], display);
    assert_eq!(frames[2], 0u32.to_le_bytes());

    let header = sim
        .rpc(move |c| c.get_block_header_info(&hash))
        .await
        .unwrap();
    assert_eq!((header.height, header.confirmations), (1, 1));
    // getblockstats: the fees its transactions pay, by height or hash, only
    // the statistics asked for; Core's errors past the tip and for a name
    // it does not know.
    let stats: Value = sim
        .rpc(|c| c.call("getblockstats", &[json!(1), json!(["totalfee", "height"])]))
        .await
        .unwrap();
    assert_eq!(stats, json!({ "totalfee": fees.to_sat(), "height": 1 }));
    let by_hash: Value = sim
        .rpc(move |c| c.call("getblockstats", &[json!(hash)]))
        .await
        .unwrap();
    assert_eq!(by_hash["totalfee"], json!(fees.to_sat()));
    assert_eq!(by_hash["txs"], json!(block.txdata.len()));
    let genesis: Value = sim
        .rpc(|c| c.call("getblockstats", &[json!(0), json!(["totalfee"])]))
        .await
        .unwrap();
    assert_eq!(genesis, json!({ "totalfee": 0 }));
    let past = sim
        .rpc(|c| c.call::<Value>("getblockstats", &[json!(2)]))
        .await
        .unwrap_err();
    assert!(
        past.to_string()
            .contains("Target block height 2 after current tip 1"),
        "{past}"
    );
    let unknown = sim
        .rpc(|c| c.call::<Value>("getblockstats", &[json!(1), json!(["nonsense"])]))
        .await
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("Invalid selected statistic 'nonsense'"),
        "{unknown}"
    );
    let next = sim.template().await;
    assert_eq!(next.previous_block_hash, hash);
    assert_eq!(next.height, 2);
    let mined: Vec<Txid> = block.txdata[1..]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    assert!(
        next.transactions.iter().all(|t| !mined.contains(&t.txid)),
        "mined txs left the mempool"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_blocks_get_bitcoin_cores_reasons() {
    let sim = sim("207fffff").await;
    let gbt = sim.template().await;
    let cases: Vec<(&str, Block)> = vec![
        ("bad-cb-height", build(&gbt, |k| k.height += 1)),
        ("bad-cb-amount", build(&gbt, |k| k.value += Amount::ONE_SAT)),
        (
            "bad-witness-merkle-match",
            build(&gbt, |k| {
                let mut bytes = k.commitment.to_bytes();
                bytes[10] ^= 1;
                k.commitment = ScriptBuf::from_bytes(bytes);
            }),
        ),
        (
            "time-too-old",
            build(&gbt, |k| k.time = gbt.min_time as u32 - 1),
        ),
        (
            "time-too-new",
            build(&gbt, |k| k.time = gbt.current_time as u32 + 3 * 3600),
        ),
        (
            "prev-blk-not-found",
            build(&gbt, |k| k.prev = BlockHash::from_byte_array([7; 32])),
        ),
        ("bad-txnmrklroot", {
            let mut b = build(&gbt, |_| {});
            b.txdata.swap(1, 2);
            b
        }),
        (
            "bad-txns-inputs-missingorspent",
            build(&gbt, |k| {
                // A transaction nodesim never handed out, correctly committed to.
                k.txs[0].lock_time = bitcoin::absolute::LockTime::from_consensus(1);
                k.commitment = commitment_for(&k.txs);
            }),
        ),
    ];
    for (reason, block) in &cases {
        assert_eq!(sim.submit(block).await, json!(reason), "expected {reason}");
    }
    // Known-invalid blocks are remembered (mutated ones are not: see below).
    assert_eq!(sim.submit(&cases[0].1).await, json!("duplicate-invalid"));
    assert_eq!(
        sim.rpc(|c| c.get_block_count()).await.unwrap(),
        0,
        "nothing was connected"
    );
    // The untampered block shares its header (and hash) with the mutated
    // bad-txnmrklroot one, and is still accepted.
    assert_eq!(sim.submit(&build(&gbt, |_| {})).await, Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_bits_refuse_unworked_blocks() {
    let sim = sim("1d00ffff").await;
    let gbt = sim.template().await;
    assert_eq!(gbt.bits, vec![0x1d, 0x00, 0xff, 0xff]);
    // One nonce meets difficulty 1 with probability 2^-32.
    let block = build(&gbt, |k| k.tries = 1);
    assert_eq!(sim.submit(&block).await, json!("high-hash"));
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_long_poll_and_chain_queries() {
    let sim = sim("207fffff").await;
    let gbt = sim.template().await;
    let longpoll = gbt.longpollid.clone();
    // A long poll returns when the tip changes. It gets a client of its own:
    // one client serialises its calls over one connection.
    let url = format!("http://{}", sim.ep.rpc);
    let client = Client::new(&url, Auth::UserPass("sluice".into(), "sluice".into())).unwrap();
    let poll = tokio::task::spawn_blocking(move || {
        let req = json!({ "rules": ["segwit"], "longpollid": longpoll });
        client.call::<Value>("getblocktemplate", &[req]).unwrap()
    });
    let hashes: Vec<BlockHash> = sim
        .rpc(|c| c.call("generatetoaddress", &[json!(3), json!(ADDRESS)]))
        .await
        .unwrap();
    assert_eq!(hashes.len(), 3);
    let polled = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        polled["previousblockhash"],
        json!(gbt.previous_block_hash),
        "long poll woke on the new tip"
    );

    let info = sim.rpc(|c| c.get_blockchain_info()).await.unwrap();
    assert_eq!((info.chain, info.blocks), (bitcoin::Network::Regtest, 3));
    assert_eq!(info.best_block_hash, hashes[2]);
    let h2 = hashes[1];
    assert_eq!(sim.rpc(|c| c.get_block_hash(2)).await.unwrap(), h2);
    let block = sim.rpc(move |c| c.get_block(&h2)).await.unwrap();
    assert_eq!(block.block_hash(), h2);
    // Core encodes heights 1..=16 as OP_1..OP_16 (rust-bitcoin's own
    // bip34_block_height refuses those), so use the pool's reader.
    assert_eq!(
        sluice_core::coinbase::bip34_height(&block.txdata[0]),
        Some(2)
    );
    let net = sim.rpc(|c| c.get_network_info()).await.unwrap();
    assert!(net.version >= 270_000);

    let err = sim
        .rpc(|c| c.call::<Value>("generatetoaddress", &[json!(1), json!("nonsense")]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Invalid address"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn core_errors_and_authentication() {
    let sim = sim("207fffff").await;
    let err = sim
        .rpc(|c| c.call::<Value>("getblocktemplate", &[json!({})]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("segwit rule"), "{err}");
    let err = sim
        .rpc(|c| c.call::<Value>("getnothing", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Method not found"), "{err}");
    let err = sim
        .rpc(|c| c.call::<Value>("submitblock", &[json!("00ff")]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Block decode failed"), "{err}");

    let url = format!("http://{}", sim.ep.rpc);
    let wrong = Client::new(&url, Auth::UserPass("sluice".into(), "wrong".into())).unwrap();
    let result = tokio::task::spawn_blocking(move || wrong.get_block_count())
        .await
        .unwrap();
    assert!(result.is_err(), "a wrong password is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_authentication_works_like_cores() {
    let dir = std::env::temp_dir().join(format!("nodesim-cookie-{}", std::process::id()));
    let cookie = dir.join("regtest/.cookie");
    let ctx = Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    };
    let config = Config {
        rpc_user: String::new(),
        cookie_file: cookie.clone(),
        ..Config::ephemeral()
    };
    let ep = nodesim::start(config, &ctx).await.unwrap();
    let client = Client::new(&format!("http://{}", ep.rpc), Auth::CookieFile(cookie)).unwrap();
    let count = tokio::task::spawn_blocking(move || client.get_block_count())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 0);
    ctx.shutdown.token().cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_competing_block_is_stored_without_checking_its_inputs() {
    let sim = sim("207fffff").await;
    let old = sim.template().await;
    assert!(!old.transactions.is_empty());
    // A1, found elsewhere, mines the mempool's transactions.
    let a1: Vec<BlockHash> = sim
        .rpc(|c| c.call("generatetoaddress", &[json!(1), json!(ADDRESS)]))
        .await
        .unwrap();
    // B1, the pool's block on the same parent with the same transactions,
    // arrives second: Core stores it on a side branch without connecting it
    // (its inputs are spent on the active chain only), and says so.
    let b1 = build(&old, |_| {});
    assert_eq!(sim.submit(&b1).await, json!("inconclusive"));
    assert_eq!(sim.rpc(|c| c.get_best_block_hash()).await.unwrap(), a1[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_longer_side_branch_reorganizes_the_chain() {
    let sim = sim("207fffff").await;
    let old = sim.template().await;
    let a1: Vec<BlockHash> = sim
        .rpc(|c| c.call("generatetoaddress", &[json!(1), json!(ADDRESS)]))
        .await
        .unwrap();

    // B1 competes with A1 on genesis: valid, but not the tip.
    let empty = |k: &mut Knobs| {
        k.txs.clear();
        k.value = Amount::from_btc(50.0).unwrap();
        k.commitment = commitment_for(&[]);
    };
    let b1 = build(&old, empty);
    assert_eq!(sim.submit(&b1).await, json!("inconclusive"));
    assert_eq!(sim.rpc(|c| c.get_best_block_hash()).await.unwrap(), a1[0]);
    let b1_hash = b1.block_hash();
    let info = sim
        .rpc(move |c| c.get_block_header_info(&b1_hash))
        .await
        .unwrap();
    assert_eq!(info.confirmations, -1, "B1 is not on the active chain");

    // B2 on B1 makes B's branch longer: it becomes the active chain.
    let b2 = build(&old, |k| {
        empty(k);
        k.height = 2;
        k.prev = b1_hash;
        k.time = b1.header.time + 1;
    });
    assert_eq!(sim.submit(&b2).await, Value::Null);
    assert_eq!(
        sim.rpc(|c| c.get_best_block_hash()).await.unwrap(),
        b2.block_hash()
    );
    assert_eq!(sim.rpc(|c| c.get_block_hash(1)).await.unwrap(), b1_hash);
    let a1_hash = a1[0];
    let a1_info = sim
        .rpc(move |c| c.get_block_header_info(&a1_hash))
        .await
        .unwrap();
    assert_eq!(a1_info.confirmations, -1, "A1 was reorganized away");
    // chainwork is each block's own chain's, side branches included.
    let b2_hash = b2.block_hash();
    let b2_info = sim
        .rpc(move |c| c.get_block_header_info(&b2_hash))
        .await
        .unwrap();
    assert_eq!(
        a1_info.chainwork, info.chainwork,
        "one block on genesis each"
    );
    assert!(
        b2_info.chainwork > a1_info.chainwork,
        "B2 has one block more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidateblock_orphans_a_block_and_its_descendants_as_core_does() {
    let sim = sim("207fffff").await;
    let mine = |n: u64| {
        move |c: &Client| -> Vec<BlockHash> {
            c.call("generatetoaddress", &[json!(n), json!(ADDRESS)])
                .unwrap()
        }
    };
    let a = sim.rpc(mine(3)).await;
    let confirmations =
        |h: BlockHash| move |c: &Client| c.get_block_header_info(&h).unwrap().confirmations;
    assert_eq!(sim.rpc(confirmations(a[1])).await, 2);

    // Invalidating A2 takes A2 and A3 off the chain; A1 is the tip again.
    let a2 = a[1];
    let answer: Value = sim
        .rpc(move |c| c.call("invalidateblock", &[json!(a2)]))
        .await
        .unwrap();
    assert_eq!(answer, Value::Null);
    assert_eq!(sim.rpc(|c| c.get_block_count()).await.unwrap(), 1);
    assert_eq!(sim.rpc(|c| c.get_best_block_hash()).await.unwrap(), a[0]);
    assert_eq!(sim.rpc(confirmations(a[1])).await, -1);
    assert_eq!(sim.rpc(confirmations(a[2])).await, -1);
    assert_eq!(sim.rpc(confirmations(a[0])).await, 1);

    // New blocks build on A1; A2 submitted again is known invalid.
    let b = sim.rpc(mine(2)).await;
    assert_eq!(sim.rpc(|c| c.get_block_hash(2)).await.unwrap(), b[0]);
    assert_eq!(sim.rpc(confirmations(a[1])).await, -1);
    let a2_block: Block = sim.rpc(move |c| c.get_block(&a2)).await.unwrap();
    assert_eq!(sim.submit(&a2_block).await, json!("duplicate-invalid"));

    // An unknown hash is Core's "Block not found" (-5).
    let unknown = BlockHash::all_zeros();
    let err = sim
        .rpc(move |c| c.call::<Value>("invalidateblock", &[json!(unknown)]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Block not found"), "{err}");
}

/// The commented example config loads and validates.
#[test]
fn the_example_config_is_valid() {
    let path = sluice_testkit::repo_root().join("deploy/config/nodesim.toml");
    let config: Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(config.rpc_listen.port(), 18443);
}
