//! Real mainnet blocks as test vectors: the pool's coinbase split, merkle
//! branch and header assembly must reproduce blocks Bitcoin Core accepted.

use bitcoin::block::Version;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Block, BlockHash, Transaction, Txid};
use sluice_core::coinbase::{bip34_height, coinbase_transaction};
use sluice_core::share::{Submission, Work};
use sluice_core::{DIFF1_TARGET, Difficulty, ShareOutcome, merkle_branch, merkle_root};

const BIP310_MASK: u32 = 0x1fff_e000;

fn block_702861() -> Block {
    deserialize(bitcoin_test_data::blocks::mainnet_702861()).expect("the shipped block decodes")
}

/// The coinbase without its witness: what a Stratum miner hashes.
fn legacy_bytes(tx: &Transaction) -> Vec<u8> {
    let mut stripped = tx.clone();
    for input in &mut stripped.input {
        input.witness.clear();
    }
    serialize(&stripped)
}

/// Splits a real coinbase as if its last 12 scriptSig bytes were extranonce1 ‖ extranonce2.
fn as_work(block: &Block) -> (Work, Vec<u8>, Vec<u8>) {
    let coinbase = &block.txdata[0];
    let legacy = legacy_bytes(coinbase);
    let script_len = coinbase.input[0].script_sig.len();
    assert!(script_len > 12 && script_len < 0xfd);
    let en_end = 4 + 1 + 36 + 1 + script_len;
    let en_start = en_end - 12;
    let txids: Vec<Txid> = block.txdata[1..]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    let version = block.header.version.to_consensus() as u32;
    let work = Work {
        version: Version::from_consensus((version & !BIP310_MASK) as i32),
        prev_blockhash: block.header.prev_blockhash,
        bits: block.header.bits,
        min_time: 0,
        coinbase1: legacy[..en_start].to_vec(),
        coinbase2: legacy[en_end..].to_vec(),
        merkle_branch: merkle_branch(&txids),
        extranonce2_len: 8,
    };
    (
        work,
        legacy[en_start..en_start + 4].to_vec(),
        legacy[en_start + 4..en_end].to_vec(),
    )
}

#[test]
fn block_702861_header_and_pow() {
    let block = block_702861();
    assert_eq!(
        block.block_hash().to_string(),
        "000000000000000000000c835b2adcaedc20fdf6ee440009c249452c726dafae"
    );
    assert!(block.header.validate_pow(block.header.target()).is_ok());
    let diff = Difficulty::from_compact(block.header.bits).unwrap().get();
    assert!((diff - block.header.difficulty_float()).abs() / diff < 1e-12);
}

#[test]
fn block_702861_coinbase_commits_to_its_height() {
    let block = block_702861();
    assert_eq!(bip34_height(&block.txdata[0]), Some(702_861));
    assert_eq!(block.bip34_block_height().unwrap(), 702_861);
}

#[test]
fn block_702861_merkle_branch_gives_the_header_root() {
    let block = block_702861();
    assert!(
        block.txdata.len() > 1000,
        "a full block: {} txs",
        block.txdata.len()
    );
    let txids: Vec<Txid> = block.txdata[1..]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    let branch = merkle_branch(&txids);
    let root = merkle_root(block.txdata[0].compute_txid(), &branch);
    assert_eq!(root, block.header.merkle_root);
}

#[test]
fn block_702861_stratum_submission_reproduces_the_block() {
    let block = block_702861();
    let (work, en1, en2) = as_work(&block);
    let version_bits = block.header.version.to_consensus() as u32 & BIP310_MASK;
    let sub = Submission {
        extranonce1: &en1,
        extranonce2: &en2,
        ntime: block.header.time,
        nonce: block.header.nonce,
        version_bits: Some(version_bits),
    };
    let checked = work.check(&sub, BIP310_MASK, &DIFF1_TARGET).unwrap();
    assert_eq!(checked.header, block.header);
    assert_eq!(checked.hash, block.block_hash());
    assert_eq!(checked.outcome, ShareOutcome::Block);

    // One nonce off: the same work is an ordinary failed share.
    let wrong = Submission {
        nonce: block.header.nonce.wrapping_add(1),
        ..sub
    };
    let checked = work.check(&wrong, BIP310_MASK, &DIFF1_TARGET).unwrap();
    assert_ne!(checked.outcome, ShareOutcome::Block);
}

#[test]
fn block_702861_coinbase_reassembles_with_its_witness() {
    let block = block_702861();
    let coinbase = &block.txdata[0];
    let rebuilt = coinbase_transaction(&legacy_bytes(coinbase)).unwrap();
    assert_eq!(&rebuilt, coinbase, "witness reserved value restored");
    assert!(block.check_witness_commitment());
}

/// Block 125,552: the header example of the Bitcoin wiki's hashing article.
#[test]
fn block_125552_header_hash() {
    let header_hex = concat!(
        "01000000",
        "81cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000",
        "e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122b",
        "c7f5d74d",
        "f2b9441a",
        "42a14695",
    );
    let header: bitcoin::block::Header = deserialize(&hex::decode(header_hex).unwrap()).unwrap();
    assert_eq!(
        header.block_hash().to_string(),
        "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"
    );
    assert!(header.validate_pow(header.target()).is_ok());
    let hash: BlockHash = header.block_hash();
    assert!(DIFF1_TARGET.is_met_by(hash));
}
