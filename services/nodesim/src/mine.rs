//! Blocks nodesim makes itself (`generatetoaddress`): "found by someone else",
//! the way tests force a new tip. Built with the pool's own core crate.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Block, ScriptBuf, Target, Transaction, TxMerkleNode};
use sluice_core::CoinbaseParams;

use crate::chain::Chain;

/// Nonces tried before giving up on real proof of work (at the regtest limit
/// a block takes about two tries; at pool-test bits it may take billions).
const MAX_TRIES: u32 = 1 << 22;

/// A block on the current tip paying `payout`, and whether its proof of work
/// is real (false when the configured bits are too hard to grind here).
pub(crate) fn mine(chain: &Chain, payout: &ScriptBuf, now: u32) -> anyhow::Result<(Block, bool)> {
    let t = chain.template(now);
    let coinbase = CoinbaseParams {
        height: t.height,
        unique: now,
        pool_tag: b"/nodesim/".to_vec(),
        extranonce1_len: 4,
        extranonce2_len: 8,
        value: t.coinbase_value,
        payout_script: payout.clone(),
        fixed_outputs: Vec::new(),
        witness_commitment: Some(t.witness_commitment.clone()),
    }
    .build()?
    .transaction(&[0; 4], &[0; 8])?;
    let mut txdata: Vec<Transaction> = vec![coinbase];
    txdata.extend(t.txs.into_iter().map(|p| p.tx));
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: t.prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time: t.cur_time,
            bits: t.bits,
            nonce: 0,
        },
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().expect("a coinbase at least");
    let target = Target::from_compact(t.bits);
    // Expected hashes for a block: difficulty x 2^32. Beyond reach, do not
    // spend a second trying (the block's arrival is what tests time).
    if target.difficulty_float() * 4_294_967_296.0 > f64::from(MAX_TRIES) {
        return Ok((block, false));
    }
    for nonce in 0..MAX_TRIES {
        block.header.nonce = nonce;
        if target.is_met_by(block.block_hash()) {
            return Ok((block, true));
        }
    }
    Ok((block, false))
}
