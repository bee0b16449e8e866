//! The byte orders of `mining.notify` and `mining.submit`, proved on a real
//! mainnet block: block 702,861 is cut into a Stratum job, sent as the server
//! sends it, read back the way cpuminer reads it (hex → 32-bit words → header
//! bytes), and submitted the way a miner submits; the header must be the
//! block's, byte for byte, and the server's check must call it a block.
#![allow(clippy::unwrap_used)]

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Block, Transaction, Txid};
use serde_json::Value;
use sluice_core::share::{Submission, Work};
use sluice_core::{DIFF1_TARGET, ShareOutcome, merkle_branch};
use sluice_stratum::message::Submit;
use sluice_stratum::{Call, Notification, Notify, Request, ServerMessage, client};

const MASK: u32 = 0x1fff_e000;

fn block() -> Block {
    deserialize(bitcoin_test_data::blocks::mainnet_702861()).unwrap()
}

/// The block as a job: the last 12 scriptSig bytes of its coinbase play
/// extranonce1 ‖ extranonce2; rolled version bits are taken out of the version.
fn job(block: &Block) -> (Notify, Vec<u8>, Vec<u8>) {
    let mut coinbase = block.txdata[0].clone();
    coinbase.input[0].witness.clear();
    let legacy = serialize(&coinbase);
    let en_end = 4 + 1 + 36 + 1 + coinbase.input[0].script_sig.len();
    let en_start = en_end - 12;
    let txids: Vec<Txid> = block.txdata[1..]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    let notify = Notify {
        job_id: "2f".into(),
        prev_hash: block.header.prev_blockhash,
        coinbase1: legacy[..en_start].to_vec(),
        coinbase2: legacy[en_end..].to_vec(),
        merkle_branch: merkle_branch(&txids),
        version: block.header.version.to_consensus() as u32 & !MASK,
        bits: block.header.bits,
        time: block.header.time,
        clean: true,
    };
    (
        notify,
        legacy[en_start..en_start + 4].to_vec(),
        legacy[en_start + 4..en_end].to_vec(),
    )
}

fn sha256d(data: &[u8]) -> [u8; 32] {
    use bitcoin::hashes::{Hash, sha256d};
    sha256d::Hash::hash(data).to_byte_array()
}

/// cpuminer's `stratum_gen_work`, on the raw notify strings: the header is
/// 20 32-bit words; version, prevhash words, ntime and nbits are read with
/// `le32dec` from the hex bytes, merkle root words with `be32dec`, and the
/// words are hashed big-endian.
fn cpuminer_header(
    params: &[Value],
    en1: &str,
    en2: &str,
    ntime: &str,
    nonce: &str,
    vbits: &str,
) -> Vec<u8> {
    let s = |i: usize| params[i].as_str().unwrap();
    let bytes = |h: &str| hex::decode(h).unwrap();
    let le32dec = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let be32dec = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let coinbase = bytes(&format!("{}{en1}{en2}{}", s(2), s(3)));
    let mut root = sha256d(&coinbase);
    for node in params[4].as_array().unwrap() {
        let mut cat = root.to_vec();
        cat.extend(bytes(node.as_str().unwrap()));
        root = sha256d(&cat);
    }
    let mut data = [0u32; 20];
    // Version rolling as cgminer/bmminer apply it: job version with the
    // rolled bits merged in, both read as big-endian hex numbers.
    let version = u32::from_str_radix(s(5), 16).unwrap();
    let rolled = (version & !MASK) | (u32::from_str_radix(vbits, 16).unwrap() & MASK);
    data[0] = le32dec(&bytes(&format!("{rolled:08x}")));
    let prev = bytes(s(1));
    for i in 0..8 {
        data[1 + i] = le32dec(&prev[4 * i..4 * i + 4]);
        data[9 + i] = be32dec(&root[4 * i..4 * i + 4]);
    }
    data[17] = le32dec(&bytes(ntime));
    data[18] = le32dec(&bytes(s(6)));
    data[19] = le32dec(&bytes(nonce));
    data.iter().flat_map(|w| w.to_be_bytes()).collect()
}

#[test]
fn a_notify_read_as_cpuminer_reads_it_gives_the_mainnet_header() {
    let block = block();
    let (notify, en1, en2) = job(&block);
    let line = ServerMessage::from(Notification::Notify(notify.clone())).to_line();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "mining.notify");
    let params = v["params"].as_array().unwrap();
    assert_eq!(
        params.len(),
        9,
        "job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean"
    );
    // The well-known shapes: nbits as the block header shows it, version with bits cleared.
    assert_eq!(
        params[6],
        format!("{:08x}", block.header.bits.to_consensus())
    );
    assert_eq!(params[7], format!("{:08x}", block.header.time));
    assert_eq!(params[8], true);

    let vbits = format!("{:08x}", block.header.version.to_consensus() as u32 & MASK);
    let header = cpuminer_header(
        params,
        &hex::encode(&en1),
        &hex::encode(&en2),
        &format!("{:08x}", block.header.time),
        &format!("{:08x}", block.header.nonce),
        &vbits,
    );
    assert_eq!(header, serialize(&block.header), "byte for byte");

    // The crate's own miner-side assembly agrees.
    let parsed = match ServerMessage::parse(&line).unwrap() {
        ServerMessage::Notification(Notification::Notify(n)) => n,
        other => panic!("not a notify: {other:?}"),
    };
    assert_eq!(parsed, notify);
    let h = client::header(
        &parsed,
        &en1,
        &en2,
        block.header.time,
        block.header.nonce,
        Some(block.header.version.to_consensus() as u32 & MASK),
        MASK,
    );
    assert_eq!(h, block.header);
}

#[test]
fn a_submit_as_miners_send_it_is_checked_as_the_block() {
    let block = block();
    let (notify, en1, en2) = job(&block);
    // The line a miner sends: hex strings of the big-endian values.
    let line = format!(
        r#"{{"id":5,"method":"mining.submit","params":["w","2f","{}","{:08x}","{:08x}","{:08x}"]}}"#,
        hex::encode(&en2),
        block.header.time,
        block.header.nonce,
        block.header.version.to_consensus() as u32 & MASK,
    );
    let Call::Submit(Submit {
        extranonce2,
        ntime,
        nonce,
        version_bits,
        ..
    }) = Request::parse(&line).unwrap().call
    else {
        panic!("a submit")
    };
    let work = Work {
        version: bitcoin::block::Version::from_consensus(notify.version as i32),
        prev_blockhash: notify.prev_hash,
        bits: notify.bits,
        min_time: 0,
        coinbase1: notify.coinbase1.clone(),
        coinbase2: notify.coinbase2.clone(),
        merkle_branch: notify.merkle_branch.clone(),
        extranonce2_len: 8,
    };
    let checked = work
        .check(
            &Submission {
                extranonce1: &en1,
                extranonce2: &extranonce2,
                ntime,
                nonce,
                version_bits,
            },
            MASK,
            &DIFF1_TARGET,
        )
        .unwrap();
    assert_eq!(checked.header, block.header);
    assert_eq!(checked.hash, block.block_hash());
    assert_eq!(checked.outcome, ShareOutcome::Block);
}
