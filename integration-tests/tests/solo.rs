//! Solo mining end to end, on the real broker, ZooKeeper and MariaDB, with
//! nodesim, jobmaker (solo on, a 1.5 % fee), blkmaker and statshttpd:
//! simulated miners logged in with an address of each type (V1, and one
//! over SV2) find blocks the node accepts whose coinbase pays exactly that
//! address the reward less the fee, beside pooled miners whose blocks pay
//! the pool as before. A login with another network's address is refused
//! with what is wrong.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::{Address, Amount, Network, ScriptBuf};
use common::{ONE_POOL_AT_A_TIME, SHARE_DIFFICULTY, http_json, sv2_pool};
use sluice_core::record::ShareRecord;
use sluice_core::solo::{AddressType, address_of};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// One simulator run of 10 miners logged in as `user`, 60 shares/s (a
/// hash each, one in 64 a block: about one block a second), until `stop`
/// (at most 90 s).
fn miners(
    server: std::net::SocketAddr,
    user: &str,
    stop: &CancellationToken,
    configure: impl FnOnce(&mut simulator::Options),
) -> tokio::task::JoinHandle<anyhow::Result<simulator::Report>> {
    let mut o = simulator::Options::new(server, 10);
    o.user = user.to_owned();
    o.password = format!("d={SHARE_DIFFICULTY}");
    o.rate = 60.0;
    o.duration = 90.0;
    configure(&mut o);
    let counters = Arc::new(simulator::Counters::default());
    tokio::spawn(simulator::run(o, counters, stop.clone()))
}

/// An address of `kind` no earlier run used (the database is shared).
fn fresh_address(kind: AddressType) -> Address {
    use bitcoin::hashes::{Hash, sha256};
    let seed = sha256::Hash::hash(sluice_testkit::unique_name("solo-").as_bytes());
    address_of(kind, seed.to_byte_array(), Network::Regtest)
}

/// The coinbase's outputs of block `hash` as the node holds it.
async fn coinbase_outputs(pool: &common::Pool, hash: &str) -> (u32, Vec<bitcoin::TxOut>) {
    let client = pool.pipeline.node.client();
    let hash: bitcoin::BlockHash = hash.parse().unwrap();
    tokio::task::spawn_blocking(move || {
        use bitcoincore_rpc::RpcApi;
        let block = client.get_block(&hash).unwrap();
        let height = sluice_core::coinbase::bip34_height(&block.txdata[0]).unwrap() as u32;
        (height, block.txdata[0].output.clone())
    })
    .await
    .unwrap()
}

/// A Stratum V1 login's answer: the authorize response line.
async fn authorize(server: std::net::SocketAddr, login: &str) -> serde_json::Value {
    let stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let (read, mut write) = stream.into_split();
    let request = format!(
        "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}}\n\
         {{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"{login}\",\"x\"]}}\n"
    );
    write.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an answer within 10 s")
            .unwrap()
            .expect("the connection stays open");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 2 {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solo_miners_of_every_address_type_are_paid_by_their_own_blocks_beside_pooled_ones() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let (pool, sv2, authority) = sv2_pool().await;
    // Pooled miners first: mining (jobs on the board) when this returns.
    let stop = CancellationToken::new();
    let (pooled, _) = common::start_mining_until(&pool, 90.0, stop.clone(), |o| {
        o.connections = 10;
        o.rate = 100.0;
    })
    .await;
    // Each address type over V1; one more P2WPKH over SV2.
    let mut solo: Vec<(String, Address, _)> = AddressType::ALL
        .iter()
        .map(|&kind| {
            let address = fresh_address(kind);
            let run = miners(pool.stratum, &address.to_string(), &stop, |_| {});
            (format!("{kind:?} over V1"), address, run)
        })
        .collect();
    let sv2_address = fresh_address(AddressType::P2wpkh);
    let authority = authority.to_string();
    let run = miners(sv2, &sv2_address.to_string(), &stop, |o| {
        o.protocol = simulator::Protocol::V2;
        o.authority_key = Some(authority);
    });
    solo.push(("P2wpkh over SV2".into(), sv2_address, run));

    // Mining until each address has a block the node took as its tip (most
    // lose the race to another miner's and are kept as side branches).
    let addresses: Vec<String> = solo.iter().map(|(_, a, _)| a.to_string()).collect();
    let on_tip = |r: &sluice_store::ListedBlock| {
        !r.block.submit_results.is_empty()
            && r.block.submit_results.values().all(|v| v == "accepted")
    };
    sluice_testkit::eventually(
        Duration::from_secs(90),
        "a block of each solo miner",
        || async {
            let rows = pool.store.recent_found_blocks(10_000, None).await.ok()?;
            addresses
                .iter()
                .all(|a| {
                    rows.iter()
                        .any(|r| r.block.solo_address.as_ref() == Some(a) && on_tip(r))
                })
                .then_some(())
        },
    )
    .await;
    stop.cancel();

    let mut solo_blocks = Vec::new();
    for (what, address, run) in solo {
        let report = run.await.unwrap().unwrap();
        assert_eq!(report.connected, 10, "{what}: {report:?}");
        assert!(report.accepted > 0, "{what}: {report:?}");
        for hash in report.blocks_found {
            solo_blocks.push((what.clone(), hash, address.clone()));
        }
    }
    let report = pooled.await.unwrap().unwrap();
    assert!(!report.blocks_found.is_empty(), "pooled: {report:?}");

    // blkmaker's rows say which are solo, and what the node answered.
    let rows =
        sluice_testkit::eventually(Duration::from_secs(60), "every block recorded", || async {
            let rows = pool.store.recent_found_blocks(10_000, None).await.ok()?;
            let all = solo_blocks.iter().all(|(_, h, a)| {
                rows.iter().any(|r| {
                    r.block.hash == *h && r.block.solo_address.as_deref() == Some(&a.to_string())
                })
            }) && report
                .blocks_found
                .iter()
                .all(|h| rows.iter().any(|r| r.block.hash == *h));
            all.then_some(rows)
        })
        .await;
    let row = |hash: &str| rows.iter().find(|r| r.block.hash == hash).unwrap();
    let fee_bps = u64::from(sluice_rig::SOLO_FEE_BPS);
    let payout = script_of(sluice_rig::PAYOUT);
    let mut paid = std::collections::BTreeMap::<String, (usize, usize)>::new();
    // Every block each one found, on the tip or a side branch: the node
    // holds it as sent.
    for (what, hash, address) in &solo_blocks {
        let counts = paid.entry(what.clone()).or_default();
        if on_tip(row(hash)) {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        let (height, outputs) = coinbase_outputs(&pool, hash).await;
        let total: Amount = outputs.iter().map(|o| o.value).sum();
        let fee = Amount::from_sat(total.to_sat() * fee_bps / 10_000);
        assert!(
            total >= sluice_core::network::block_subsidy(Network::Regtest, height),
            "{what}: block {hash} pays {total}, less than the subsidy"
        );
        assert_eq!(
            outputs[0].script_pubkey,
            address.script_pubkey(),
            "{what}: block {hash} pays its miner's address first"
        );
        assert_eq!(
            outputs[0].value,
            total - fee,
            "{what}: the whole reward less {fee_bps} bps"
        );
        assert_eq!(
            (outputs[1].value, &outputs[1].script_pubkey),
            (fee, &payout)
        );
        assert!(
            outputs[2..]
                .iter()
                .all(|o| o.value == Amount::ZERO && o.script_pubkey.is_op_return()),
            "{what}: nothing else but the witness commitment: {outputs:?}"
        );
    }
    eprintln!("solo blocks (the node's tip, side branches): {paid:?}");
    assert!(
        paid.len() == 6 && paid.values().all(|(tip, _)| *tip > 0),
        "{paid:?}"
    );
    for hash in &report.blocks_found {
        let (_, outputs) = coinbase_outputs(&pool, hash).await;
        assert_eq!(
            outputs[0].script_pubkey, payout,
            "a pooled block pays the pool"
        );
        let total: Amount = outputs.iter().map(|o| o.value).sum();
        assert_eq!(outputs[0].value, total, "all of it: no fee output");
    }
    assert!(
        rows.iter()
            .filter(|r| r.block.user_id == pool.user_id)
            .all(|r| r.block.solo_address.is_none())
    );
    let (status, blocks) = http_json(pool.api_port, "/api/v1/blocks?limit=1000")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, hash, address) = &solo_blocks[0];
    let address = address.to_string();
    let listed = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["hash"] == hash.as_str())
        .unwrap();
    assert_eq!(listed["solo_address"], address.as_str());
    let (status, user) = http_json(pool.api_port, &format!("/api/v1/users/{address}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["solo"], true, "{user}");
    assert!(user["hashrate"]["1h"].as_f64().unwrap() > 0.0, "{user}");
    assert!(
        user["best_share_difficulty"].as_f64().unwrap() > 0.0,
        "{user}"
    );
    let shares = pool
        .pipeline
        .tail::<ShareRecord>(&pool.pipeline.kafka.topics.share, 2_000)
        .await;
    let mut seen = (0, 0);
    while let Ok(Some(s)) = shares
        .next_matching(Duration::from_millis(500), |_| true)
        .await
    {
        assert_eq!(s.solo, s.user_id != pool.user_id, "{s:?}");
        if s.solo {
            seen.0 += 1;
        } else {
            seen.1 += 1;
        }
    }
    assert!(seen.0 > 0 && seen.1 > 0, "{seen:?}");

    // Addresses no solo block may pay: told why, over V1.
    let mainnet = address_of(AddressType::P2wpkh, [1; 32], Network::Bitcoin);
    let answer = authorize(pool.stratum, &format!("{mainnet}.rig")).await;
    assert_eq!(answer["error"][0], 24, "{answer}");
    assert_eq!(
        answer["error"][1],
        format!("{mainnet} is not a regtest address; this pool mines regtest"),
        "{answer}"
    );
    // A witness version 2 program: anyone could spend it.
    let v2 = Address::from_script(
        &ScriptBuf::new_witness_program(
            &bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V2, &[3; 32]).unwrap(),
        ),
        Network::Regtest,
    )
    .unwrap();
    let answer = authorize(pool.stratum, &v2.to_string()).await;
    assert_eq!(answer["error"][0], 24, "{answer}");
    assert!(
        answer["error"][1]
            .as_str()
            .unwrap()
            .contains("witness version 2"),
        "{answer}"
    );
}

/// The script of regtest address `address`.
fn script_of(address: &str) -> ScriptBuf {
    address
        .parse::<Address<bitcoin::address::NetworkUnchecked>>()
        .unwrap()
        .require_network(Network::Regtest)
        .unwrap()
        .script_pubkey()
}
