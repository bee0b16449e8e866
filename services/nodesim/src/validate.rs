//! Block validation with Bitcoin Core's checks, in Core's order, answering
//! with Core's reject reasons (`validation.cpp`: CheckBlockHeader, CheckBlock,
//! ContextualCheckBlockHeader, ContextualCheckBlock, ConnectBlock).

use std::collections::HashSet;

use bitcoin::hashes::{Hash, sha256d};
use bitcoin::merkle_tree::calculate_root;
use bitcoin::{Amount, Block, ScriptBuf, Target, Transaction, Wtxid};
use sluice_core::coinbase::bip34_height;

use crate::chain::{Chain, MAX_BLOCK_WEIGHT, subsidy};

/// `OP_RETURN OP_PUSHBYTES_36 aa21a9ed`.
const COMMITMENT_HEADER: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
/// How far in the future a block time may be (Core's MAX_FUTURE_BLOCK_TIME).
const MAX_FUTURE_SECS: u32 = 2 * 60 * 60;

/// The witness commitment output script for a block whose non-coinbase
/// transactions have `wtxids` (the coinbase's wtxid counts as zero), with
/// witness reserved value `reserved` (all zeros in templates).
pub(crate) fn commitment_script(wtxids: impl Iterator<Item = Wtxid>, reserved: &[u8]) -> ScriptBuf {
    let leaves = std::iter::once(Wtxid::all_zeros())
        .chain(wtxids)
        .map(|w| w.to_raw_hash());
    let root: sha256d::Hash = calculate_root(leaves).expect("at least the coinbase leaf");
    let commitment = sha256d::Hash::hash(&[root.as_byte_array(), reserved].concat());
    ScriptBuf::from_bytes([&COMMITMENT_HEADER[..], commitment.as_byte_array()].concat())
}

/// Index of the witness commitment output: the last matching one (BIP141).
fn commitment_index(coinbase: &Transaction) -> Option<usize> {
    coinbase.output.iter().rposition(|o| {
        let s = o.script_pubkey.as_bytes();
        s.len() >= 38 && s[..6] == COMMITMENT_HEADER
    })
}

/// All checks for a block at `height` on its (known) parent.
pub(crate) fn check(
    chain: &Chain,
    block: &Block,
    height: u32,
    now: u32,
    check_pow: bool,
    connect: bool,
) -> Result<(), &'static str> {
    // CheckBlockHeader
    if check_pow && !Target::from_compact(block.header.bits).is_met_by(block.block_hash()) {
        return Err("high-hash");
    }
    check_structure(block)?;
    // ContextualCheckBlockHeader
    if block.header.bits != chain.bits {
        return Err("bad-diffbits");
    }
    if block.header.time <= chain.median_time_past(&block.header.prev_blockhash) {
        return Err("time-too-old");
    }
    if block.header.time > now.saturating_add(MAX_FUTURE_SECS) {
        return Err("time-too-new");
    }
    if block.header.version.to_consensus() < 4 {
        return Err("bad-version");
    }
    // ContextualCheckBlock
    if bip34_height(&block.txdata[0]) != Some(u64::from(height)) {
        return Err("bad-cb-height");
    }
    check_witness(block)?;
    if block.weight().to_wu() > MAX_BLOCK_WEIGHT {
        return Err("bad-blk-weight");
    }
    // ConnectBlock: only for a block that becomes the tip. Like Core, a block
    // stored on a side branch is not connected, so its inputs are not
    // checked (they may be spent on the active chain and unspent on its own).
    if !connect {
        return Ok(());
    }
    let mut fees = Amount::ZERO;
    for tx in &block.txdata[1..] {
        fees += chain
            .known_fee(&tx.compute_txid())
            .ok_or("bad-txns-inputs-missingorspent")?;
    }
    let paid: Amount = block.txdata[0].output.iter().map(|o| o.value).sum();
    if paid > subsidy(height) + fees {
        return Err("bad-cb-amount");
    }
    Ok(())
}

/// CheckBlock: merkle root, duplicates, size, coinbase placement.
fn check_structure(block: &Block) -> Result<(), &'static str> {
    if !block.check_merkle_root() {
        return Err("bad-txnmrklroot");
    }
    let mut seen = HashSet::with_capacity(block.txdata.len());
    if !block.txdata.iter().all(|tx| seen.insert(tx.compute_txid())) {
        return Err("bad-txns-duplicate");
    }
    let stripped_size: usize = 80
        + block
            .txdata
            .iter()
            .map(Transaction::base_size)
            .sum::<usize>();
    if block.txdata.is_empty() || stripped_size as u64 * 4 > MAX_BLOCK_WEIGHT {
        return Err("bad-blk-length");
    }
    if !block.txdata[0].is_coinbase() {
        return Err("bad-cb-missing");
    }
    if block.txdata[1..].iter().any(Transaction::is_coinbase) {
        return Err("bad-cb-multiple");
    }
    let script_len = block.txdata[0].input[0].script_sig.len();
    if !(2..=100).contains(&script_len) {
        return Err("bad-cb-length");
    }
    Ok(())
}

/// BIP141: a commitment, if present, must match; witness data needs one.
fn check_witness(block: &Block) -> Result<(), &'static str> {
    let coinbase = &block.txdata[0];
    match commitment_index(coinbase) {
        Some(index) => {
            let witness = &coinbase.input[0].witness;
            if witness.len() != 1 || witness.nth(0).map(<[u8]>::len) != Some(32) {
                return Err("bad-witness-nonce-size");
            }
            let reserved = witness.nth(0).expect("length checked");
            let wtxids = block.txdata[1..].iter().map(Transaction::compute_wtxid);
            let expected = commitment_script(wtxids, reserved);
            if coinbase.output[index].script_pubkey.as_bytes()[..38] != expected.as_bytes()[..38] {
                return Err("bad-witness-merkle-match");
            }
        }
        None => {
            if block
                .txdata
                .iter()
                .any(|tx| tx.input.iter().any(|i| !i.witness.is_empty()))
            {
                return Err("unexpected-witness");
            }
        }
    }
    Ok(())
}
