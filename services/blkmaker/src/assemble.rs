//! A solved share plus its template's transactions is a block.
//!
//! The share carries the header and the legacy coinbase the miner hashed;
//! the template carries the other transactions, already serialized, with
//! their txids. So the block is written straight from bytes: header, count,
//! the coinbase (with BIP141's witness reserved value when it commits to
//! witnesses; Core's `submitblock` would add it, but not every node does),
//! then the template's raw transactions. Nothing is decoded or re-encoded
//! but the coinbase, and the merkle root is checked against the header before
//! anything is sent.

use bitcoin::consensus::encode::{VarInt, serialize};
use bitcoin::{Amount, BlockHash, Target, Transaction};
use sluice_core::coinbase::coinbase_transaction;
use sluice_core::{BlockTemplate, SolvedShare, merkle_branch, merkle_root};

/// A block ready for `submitblock`, with what `found_blocks` records.
#[derive(Debug, Clone)]
pub(crate) struct Assembled {
    /// The serialized block.
    pub(crate) bytes: Vec<u8>,
    /// Transactions, coinbase included.
    pub(crate) tx_count: usize,
    /// Fees of the template's transactions.
    pub(crate) fees: Amount,
    /// What the coinbase pays out.
    pub(crate) reward: Amount,
}

/// Why a share cannot be a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssembleError {
    /// The coinbase bytes are not a transaction.
    #[error("coinbase does not decode: {0}")]
    Coinbase(String),
    /// The share's hash is not its header's.
    #[error("share says block {claimed} but its header hashes to {actual}")]
    HashMismatch {
        /// What the share says.
        claimed: BlockHash,
        /// The header's hash.
        actual: BlockHash,
    },
    /// The header does not meet its own target: not a block.
    #[error("header hash {0} does not meet its bits")]
    HighHash(BlockHash),
    /// The transactions do not hash to the header's merkle root.
    #[error("coinbase and transactions do not make the header's merkle root")]
    MerkleMismatch,
    /// The template is not kept and could not be found elsewhere.
    #[error("template unknown (not kept, and no node's current template matches)")]
    TemplateUnknown,
}

/// Checks the share itself: the header's hash and proof of work, and the
/// coinbase. Returns the coinbase as it goes into the block.
pub(crate) fn check_share(share: &SolvedShare) -> Result<Transaction, AssembleError> {
    let actual = share.header.block_hash();
    if actual != share.block_hash {
        return Err(AssembleError::HashMismatch {
            claimed: share.block_hash,
            actual,
        });
    }
    if !Target::from_compact(share.header.bits).is_met_by(actual) {
        return Err(AssembleError::HighHash(actual));
    }
    let coinbase = coinbase_transaction(&share.coinbase)
        .map_err(|e| AssembleError::Coinbase(e.to_string()))?;
    if coinbase_reward(&coinbase).is_none() {
        return Err(AssembleError::Coinbase(
            "its outputs add up to more than 21 million BTC".into(),
        ));
    }
    Ok(coinbase)
}

/// What a coinbase pays out; `None` past 21 million BTC (never a block).
fn coinbase_reward(coinbase: &Transaction) -> Option<Amount> {
    coinbase
        .output
        .iter()
        .try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.value))
        .filter(|sum| *sum <= Amount::MAX_MONEY)
}

/// The block of `share` with `template`'s transactions; `None` assembles the
/// coinbase alone (a template without transactions).
pub(crate) fn assemble(
    share: &SolvedShare,
    template: Option<&BlockTemplate>,
) -> Result<Assembled, AssembleError> {
    let coinbase = check_share(share)?;
    let reward = coinbase_reward(&coinbase).unwrap_or(Amount::MAX_MONEY);
    let txs = template.map_or(&[][..], |t| &t.transactions[..]);
    let txids: Vec<_> = txs.iter().map(|t| t.txid).collect();
    // The branch leaves out the coinbase, as jobmaker's does.
    let root = merkle_root(coinbase.compute_txid(), &merkle_branch(&txids));
    if root != share.header.merkle_root {
        return Err(AssembleError::MerkleMismatch);
    }
    let coinbase_bytes = serialize(&coinbase);
    let tx_count = txs.len() + 1;
    let mut bytes = Vec::with_capacity(
        90 + coinbase_bytes.len() + txs.iter().map(|t| t.raw.len()).sum::<usize>(),
    );
    bytes.extend_from_slice(&serialize(&share.header));
    bytes.extend_from_slice(&serialize(&VarInt(tx_count as u64)));
    bytes.extend_from_slice(&coinbase_bytes);
    for tx in txs {
        bytes.extend_from_slice(&tx.raw);
    }
    Ok(Assembled {
        bytes,
        tx_count,
        // Checked sums: a forged share or template may carry any amounts.
        fees: txs.iter().fold(Amount::ZERO, |sum, t| {
            sum.checked_add(t.fee).unwrap_or(Amount::MAX)
        }),
        reward,
    })
}

/// Whether the header commits to the coinbase alone (an empty block), which
/// needs no template at all.
pub(crate) fn is_coinbase_only(share: &SolvedShare) -> bool {
    coinbase_transaction(&share.coinbase)
        .is_ok_and(|cb| cb.compute_txid().to_raw_hash() == share.header.merkle_root.to_raw_hash())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bitcoin::block::{Header, Version};
    use bitcoin::consensus::deserialize;
    use bitcoin::hashes::Hash;
    use bitcoin::{
        Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
        TxOut, Weight, Witness, absolute, transaction,
    };
    use sluice_core::{
        BlockTemplate, JobId, SolvedShare, TemplateId, TemplateTx, merkle_branch, merkle_root,
    };

    use super::{AssembleError, assemble, is_coinbase_only};

    fn tx(input_script: &[u8], value: u64) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(input_script.to_vec()),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(value),
                script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
            }],
        }
    }

    fn template(txs: &[Transaction]) -> BlockTemplate {
        BlockTemplate {
            id: TemplateId([7; 32]),
            node_id: "n".into(),
            created_at_ms: 0,
            height: 5,
            prev_blockhash: BlockHash::all_zeros(),
            version: Version::from_consensus(0x2000_0000),
            bits: CompactTarget::from_consensus(0x207f_ffff),
            cur_time: 1_700_000_000,
            min_time: 0,
            coinbase_value: Amount::from_sat(5_000_000_000),
            default_witness_commitment: None,
            transactions: txs
                .iter()
                .enumerate()
                .map(|(i, t)| TemplateTx {
                    raw: bitcoin::consensus::serialize(t),
                    txid: t.compute_txid(),
                    wtxid: t.compute_wtxid(),
                    fee: Amount::from_sat(100 * (i as u64 + 1)),
                    weight: t.weight(),
                })
                .collect(),
            network: None,
            chain_work: None,
        }
    }

    /// A share for `template` whose header meets regtest's easy target.
    fn solve(template: &BlockTemplate) -> SolvedShare {
        solve_with(template, tx(&[0x55, 0x01, 0x02], 5_000_000_600))
    }

    /// [`solve`] with this coinbase.
    fn solve_with(template: &BlockTemplate, coinbase: Transaction) -> SolvedShare {
        let mut header = Header {
            version: template.version,
            prev_blockhash: template.prev_blockhash,
            merkle_root: merkle_root(coinbase.compute_txid(), &merkle_branch(&template.txids())),
            time: template.cur_time,
            bits: template.bits,
            nonce: 0,
        };
        while !bitcoin::Target::from_compact(header.bits).is_met_by(header.block_hash()) {
            header.nonce += 1;
        }
        SolvedShare {
            job_id: JobId(1),
            template_id: template.id,
            height: template.height,
            header,
            coinbase: bitcoin::consensus::serialize(&coinbase),
            block_hash: header.block_hash(),
            user_id: 1,
            worker_id: 2,
            worker_name: "w".into(),
            server_id: 1,
            timestamp_ms: 0,
            solo_address: None,
        }
    }

    #[test]
    fn the_block_is_header_coinbase_and_template_transactions() {
        let txs = [tx(&[1, 1], 10), tx(&[2, 2], 20), tx(&[3, 3], 30)];
        let t = template(&txs);
        let share = solve(&t);
        let a = assemble(&share, Some(&t)).unwrap();
        let block: Block = deserialize(&a.bytes).unwrap();
        assert_eq!(block.block_hash(), share.block_hash);
        assert!(block.check_merkle_root());
        assert_eq!(block.txdata.len(), 4);
        assert_eq!(&block.txdata[1..], &txs[..]);
        assert_eq!(a.tx_count, 4);
        assert_eq!(a.fees, Amount::from_sat(600));
        assert_eq!(a.reward, Amount::from_sat(5_000_000_600));
        assert!(block.weight() > Weight::ZERO);
        assert!(!is_coinbase_only(&share));
    }

    /// A forged SolvedShare from the topic: a real proof of work at its own
    /// easy bits, a coinbase paying out more than there is. Its sum
    /// overflowed: a panic in a debug build (on every replay of the record),
    /// a wrapped reward in a release one.
    #[test]
    fn a_coinbase_paying_more_than_exists_is_refused_not_a_panic() {
        let t = template(&[tx(&[1, 1], 10)]);
        let mut coinbase = tx(&[0x55, 0x01, 0x02], u64::MAX / 2 + 1);
        coinbase.output.push(coinbase.output[0].clone());
        let share = solve_with(&t, coinbase);
        let err = assemble(&share, Some(&t)).unwrap_err();
        assert!(err.to_string().contains("21 million"), "{err}");
        let mut t = template(&[tx(&[1, 1], 10), tx(&[2, 2], 10)]);
        for tx in &mut t.transactions {
            tx.fee = Amount::from_sat(u64::MAX / 2 + 1);
        }
        let a = assemble(&solve(&t), Some(&t)).unwrap();
        assert_eq!(a.fees, Amount::MAX, "fees that overflow saturate");
    }

    #[test]
    fn a_share_is_checked_before_anything_is_sent() {
        let t = template(&[tx(&[1, 1], 10)]);
        let share = solve(&t);
        // Another template's transactions.
        let other = template(&[tx(&[9, 9], 10)]);
        assert_eq!(
            assemble(&share, Some(&other)).unwrap_err(),
            AssembleError::MerkleMismatch
        );
        assert_eq!(
            assemble(&share, None).unwrap_err(),
            AssembleError::MerkleMismatch
        );
        let mut lying = share.clone();
        lying.block_hash = BlockHash::all_zeros();
        assert!(matches!(
            assemble(&lying, Some(&t)).unwrap_err(),
            AssembleError::HashMismatch { .. }
        ));
        let mut weak = share.clone();
        weak.header.bits = CompactTarget::from_consensus(0x1d00_ffff);
        weak.block_hash = weak.header.block_hash();
        assert!(matches!(
            assemble(&weak, Some(&t)).unwrap_err(),
            AssembleError::HighHash(_)
        ));
        let mut garbled = share;
        garbled.coinbase.truncate(10);
        assert!(matches!(
            assemble(&garbled, Some(&t)).unwrap_err(),
            AssembleError::Coinbase(_)
        ));
    }

    #[test]
    fn an_empty_block_needs_no_template() {
        let t = template(&[]);
        let share = solve(&t);
        assert!(is_coinbase_only(&share));
        let block: Block = deserialize(&assemble(&share, None).unwrap().bytes).unwrap();
        assert_eq!(block.txdata.len(), 1);
        assert!(block.check_merkle_root());
    }
}
