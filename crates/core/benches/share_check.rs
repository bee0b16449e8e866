//! The share check on a real full block's work (mainnet block 702,861:
//! 12-step merkle branch, segwit coinbase), and its parts.

use bitcoin::block::Version;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{Block, Transaction, Txid};
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_core::share::{Submission, Work};
use sluice_core::{DIFF1_TARGET, Difficulty, merkle_branch};
use std::hint::black_box;

fn work_from_block() -> (Work, Block) {
    let block: Block = deserialize(bitcoin_test_data::blocks::mainnet_702861()).expect("decodes");
    let mut coinbase = block.txdata[0].clone();
    coinbase.input[0].witness.clear();
    let legacy = serialize(&coinbase);
    let en_end = 4 + 1 + 36 + 1 + coinbase.input[0].script_sig.len();
    let txids: Vec<Txid> = block.txdata[1..]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    let work = Work {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: block.header.prev_blockhash,
        bits: block.header.bits,
        min_time: 0,
        coinbase1: legacy[..en_end - 12].to_vec(),
        coinbase2: legacy[en_end..].to_vec(),
        merkle_branch: merkle_branch(&txids),
        extranonce2_len: 8,
    };
    (work, block)
}

fn bench(c: &mut Criterion) {
    let (work, block) = work_from_block();
    let share_target = Difficulty::new(65536.0).expect("positive").to_target();
    let en1 = [1u8, 2, 3, 4];
    let mut nonce = 0u32;
    c.bench_function("share_check/full_block_work", |b| {
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            let sub = Submission {
                extranonce1: &en1,
                extranonce2: &[0, 0, 0, 0, 0, 0, 0, 1],
                ntime: block.header.time,
                nonce,
                version_bits: Some(0x0000_2000),
            };
            black_box(work.check(black_box(&sub), 0x1fff_e000, &share_target))
        })
    });
    let empty = Work {
        merkle_branch: Vec::new(),
        ..work.clone()
    };
    c.bench_function("share_check/empty_block_work", |b| {
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            let sub = Submission {
                extranonce1: &en1,
                extranonce2: &[0; 8],
                ntime: block.header.time,
                nonce,
                version_bits: None,
            };
            black_box(empty.check(black_box(&sub), 0, &DIFF1_TARGET))
        })
    });
    let header = serialize(&block.header);
    c.bench_function("sha256d/80_byte_header", |b| {
        b.iter(|| black_box(sha256d::Hash::hash(black_box(&header))))
    });
    c.bench_function("difficulty/to_target", |b| {
        b.iter(|| black_box(Difficulty::new(black_box(1234.5)).map(Difficulty::to_target)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
