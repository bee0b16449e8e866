//! The coinbase transaction, split for Stratum around the extranonce.
//!
//! jobmaker builds one coinbase per job from the template (height, value,
//! witness commitment) and the pool's settings (tag, payout outputs); sserver
//! hands miners the two halves, `coinbase1` and `coinbase2`, and a miner fills
//! the gap with extranonce1 (from the server) and extranonce2 (its own). Both
//! halves are the *legacy* serialization, so `sha256d(coinbase1 ‖ en1 ‖ en2 ‖
//! coinbase2)` is the coinbase txid, the first leaf of the merkle tree.
//!
//! scriptSig layout (every element a push, so the script parses):
//! `push(height)` (BIP34) ‖ `push(unique)` ‖ `push(pool tag)` ‖ `push(extranonce)`.
//! The extranonce push comes last, so `coinbase2` starts at the input's
//! sequence number. Outputs: the payout script gets the template's coinbase
//! value less the fixed outputs; the witness commitment (BIP141), if the
//! template has transactions with witnesses, comes last.

use bitcoin::blockdata::script::{Builder, PushBytesBuf};
use bitcoin::consensus::{Decodable, Encodable};
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, absolute, transaction,
};

/// Bitcoin Core rejects a coinbase scriptSig longer than this (`bad-cb-length`).
pub const MAX_SCRIPT_SIG_LEN: usize = 100;
/// The witness reserved value placed in the coinbase witness (BIP141).
pub const WITNESS_RESERVED_VALUE: [u8; 32] = [0; 32];
/// `OP_RETURN OP_PUSHBYTES_36 aa21a9ed`: the start of a witness commitment output.
const WITNESS_COMMITMENT_PREFIX: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];

/// What a coinbase is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseParams {
    /// Height of the block being mined (BIP34 push).
    pub height: u32,
    /// A value that differs between jobs of the same template (jobmaker passes
    /// the current unix time), so no two jobs share a merkle root even when a
    /// miner repeats its extranonce2.
    pub unique: u32,
    /// The pool's tag, visible in block explorers ("/sluice/").
    pub pool_tag: Vec<u8>,
    /// Bytes of extranonce1 (server-assigned, 4 in Sluice).
    pub extranonce1_len: usize,
    /// Bytes of extranonce2 (miner-chosen, 4..=8).
    pub extranonce2_len: usize,
    /// Total value the template allows: subsidy plus fees (`coinbasevalue`).
    pub value: Amount,
    /// Receives `value` minus the fixed outputs.
    pub payout_script: ScriptBuf,
    /// Outputs with a fixed value (e.g. a fee share), paid before the remainder.
    pub fixed_outputs: Vec<TxOut>,
    /// The template's `default_witness_commitment` script, if any.
    pub witness_commitment: Option<ScriptBuf>,
}

/// A coinbase split around its extranonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseSplit {
    /// Legacy serialization up to the extranonce.
    pub coinbase1: Vec<u8>,
    /// Legacy serialization after the extranonce.
    pub coinbase2: Vec<u8>,
}

/// Why a coinbase cannot be built or reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoinbaseError {
    /// The scriptSig would exceed Bitcoin Core's 100-byte limit.
    #[error(
        "coinbase scriptSig would be {len} bytes, more than the {MAX_SCRIPT_SIG_LEN} allowed; shorten the pool tag"
    )]
    ScriptSigTooLong {
        /// The length it would have had.
        len: usize,
    },
    /// The pool tag is longer than one direct push allows.
    #[error("pool tag is {0} bytes, at most 75 are allowed")]
    TagTooLong(usize),
    /// extranonce2 size outside 1..=8 or extranonce1 size outside 1..=8.
    #[error("extranonce sizes {extranonce1_len}+{extranonce2_len} are not supported (each 1..=8)")]
    BadExtranonceSize {
        /// extranonce1 bytes.
        extranonce1_len: usize,
        /// extranonce2 bytes.
        extranonce2_len: usize,
    },
    /// The fixed outputs spend more than the coinbase may.
    #[error("fixed outputs total {fixed} but the coinbase may only pay {value}")]
    FixedOutputsExceedValue {
        /// Sum of fixed outputs.
        fixed: Amount,
        /// Coinbase value.
        value: Amount,
    },
    /// The reassembled bytes are not a transaction.
    #[error("reassembled coinbase does not decode: {0}")]
    Decode(String),
}

impl CoinbaseParams {
    /// Builds the coinbase and splits it around the extranonce.
    pub fn build(&self) -> Result<CoinbaseSplit, CoinbaseError> {
        let en_len = self.extranonce1_len + self.extranonce2_len;
        if !(1..=8).contains(&self.extranonce1_len) || !(1..=8).contains(&self.extranonce2_len) {
            return Err(CoinbaseError::BadExtranonceSize {
                extranonce1_len: self.extranonce1_len,
                extranonce2_len: self.extranonce2_len,
            });
        }
        let tag = PushBytesBuf::try_from(self.pool_tag.clone())
            .map_err(|_| CoinbaseError::TagTooLong(self.pool_tag.len()))?;
        if tag.len() > 75 {
            return Err(CoinbaseError::TagTooLong(tag.len()));
        }
        let placeholder =
            PushBytesBuf::try_from(vec![0u8; en_len]).expect("at most 16 bytes always fit a push");
        let script_sig = Builder::new()
            .push_int(i64::from(self.height))
            .push_int(i64::from(self.unique))
            .push_slice(tag)
            .push_slice(placeholder)
            .into_script();
        if script_sig.len() > MAX_SCRIPT_SIG_LEN {
            return Err(CoinbaseError::ScriptSigTooLong {
                len: script_sig.len(),
            });
        }

        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: self.outputs()?,
        };
        let mut bytes = Vec::with_capacity(256);
        tx.consensus_encode(&mut bytes)
            .expect("writing to a Vec cannot fail");

        // The extranonce bytes end right before the 4-byte sequence of the
        // only input: version(4) ‖ vin count(1) ‖ outpoint(36) ‖ script len ‖ script.
        let script_len = tx.input[0].script_sig.len();
        let script_start = 4 + 1 + 36 + varint_len(script_len);
        let en_end = script_start + script_len;
        let en_start = en_end - en_len;
        Ok(CoinbaseSplit {
            coinbase1: bytes[..en_start].to_vec(),
            coinbase2: bytes[en_end..].to_vec(),
        })
    }

    fn outputs(&self) -> Result<Vec<TxOut>, CoinbaseError> {
        // Saturating: an overflowing sum is certainly more than the value.
        let fixed = self.fixed_outputs.iter().fold(Amount::ZERO, |sum, o| {
            sum.checked_add(o.value).unwrap_or(Amount::MAX)
        });
        if fixed > self.value {
            return Err(CoinbaseError::FixedOutputsExceedValue {
                fixed,
                value: self.value,
            });
        }
        let mut outputs = Vec::with_capacity(self.fixed_outputs.len() + 2);
        outputs.push(TxOut {
            value: self.value - fixed,
            script_pubkey: self.payout_script.clone(),
        });
        outputs.extend(self.fixed_outputs.iter().cloned());
        if let Some(commitment) = &self.witness_commitment {
            outputs.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment.clone(),
            });
        }
        Ok(outputs)
    }
}

impl CoinbaseSplit {
    /// The legacy coinbase bytes a miner hashed: `coinbase1 ‖ en1 ‖ en2 ‖ coinbase2`.
    pub fn join(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        join_coinbase(&self.coinbase1, extranonce1, extranonce2, &self.coinbase2)
    }

    /// The coinbase transaction as it goes into a block: decoded from the
    /// joined bytes, with the witness reserved value added when it carries a
    /// witness commitment (BIP141).
    pub fn transaction(
        &self,
        extranonce1: &[u8],
        extranonce2: &[u8],
    ) -> Result<Transaction, CoinbaseError> {
        coinbase_transaction(&self.join(extranonce1, extranonce2))
    }
}

/// `coinbase1 ‖ en1 ‖ en2 ‖ coinbase2` in one allocation.
pub fn join_coinbase(coinbase1: &[u8], en1: &[u8], en2: &[u8], coinbase2: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(coinbase1.len() + en1.len() + en2.len() + coinbase2.len());
    out.extend_from_slice(coinbase1);
    out.extend_from_slice(en1);
    out.extend_from_slice(en2);
    out.extend_from_slice(coinbase2);
    out
}

/// Decodes legacy coinbase bytes into the transaction a block carries: the
/// witness reserved value is added when an output commits to witnesses.
pub fn coinbase_transaction(legacy: &[u8]) -> Result<Transaction, CoinbaseError> {
    let mut tx = Transaction::consensus_decode(&mut &legacy[..])
        .map_err(|e| CoinbaseError::Decode(e.to_string()))?;
    if has_witness_commitment(&tx) && tx.input.len() == 1 {
        tx.input[0].witness = Witness::from_slice(&[WITNESS_RESERVED_VALUE]);
    }
    Ok(tx)
}

/// Whether any output of `tx` has the BIP141 witness commitment pattern.
pub fn has_witness_commitment(tx: &Transaction) -> bool {
    tx.output.iter().any(|o| {
        let s = o.script_pubkey.as_bytes();
        s.len() >= 38 && s[..6] == WITNESS_COMMITMENT_PREFIX
    })
}

/// The height a coinbase's scriptSig commits to (BIP34), if it starts with a
/// minimal number push.
pub fn bip34_height(tx: &Transaction) -> Option<u64> {
    use bitcoin::blockdata::script::Instruction;
    let input = tx.input.first()?;
    match input.script_sig.instructions_minimal().next()? {
        Ok(Instruction::PushBytes(b)) => {
            let bytes = b.as_bytes();
            if bytes.is_empty() || bytes.len() > 8 {
                return None;
            }
            let mut n = 0u64;
            for (i, &byte) in bytes.iter().enumerate() {
                n |= u64::from(byte) << (8 * i);
            }
            // Heights are positive: a set sign bit in the last byte is invalid.
            (bytes[bytes.len() - 1] & 0x80 == 0).then_some(n)
        }
        Ok(Instruction::Op(op)) => {
            let code = op.to_u8();
            // OP_1..OP_16 encode 1..16 (OP_0 would be height 0: the genesis block has no BIP34).
            (0x51..=0x60)
                .contains(&code)
                .then(|| u64::from(code - 0x50))
        }
        Err(_) => None,
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        _ => 5,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use proptest::prelude::*;

    pub(crate) fn params() -> CoinbaseParams {
        CoinbaseParams {
            height: 800_000,
            unique: 1_700_000_000,
            pool_tag: b"/sluice/".to_vec(),
            extranonce1_len: 4,
            extranonce2_len: 8,
            value: Amount::from_sat(6_250_000_000 + 12_345),
            payout_script: ScriptBuf::from_bytes(vec![
                0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
            ]),
            fixed_outputs: vec![],
            witness_commitment: Some(ScriptBuf::from_bytes(
                [&WITNESS_COMMITMENT_PREFIX[..], &[0x11; 32]].concat(),
            )),
        }
    }

    #[test]
    fn split_reassembles_to_a_valid_coinbase() {
        let p = params();
        let split = p.build().unwrap();
        let tx = split.transaction(&[1, 2, 3, 4], &[9; 8]).unwrap();
        assert!(tx.is_coinbase());
        assert_eq!(bip34_height(&tx), Some(800_000));
        assert_eq!(tx.output[0].value, p.value);
        assert!(has_witness_commitment(&tx));
        assert_eq!(tx.input[0].witness.len(), 1, "witness reserved value added");
        let script = tx.input[0].script_sig.as_bytes();
        assert_eq!(
            &script[script.len() - 12..],
            &[1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9]
        );
        // The txid is the hash of exactly the legacy bytes the miner hashes.
        let legacy = split.join(&[1, 2, 3, 4], &[9; 8]);
        let txid = bitcoin::hashes::sha256d::Hash::hash(&legacy);
        assert_eq!(tx.compute_txid().to_raw_hash(), txid);
    }

    #[test]
    fn small_heights_use_op_n_like_bitcoin_core() {
        let mut p = params();
        p.height = 16;
        let tx = p.build().unwrap().transaction(&[0; 4], &[0; 8]).unwrap();
        assert_eq!(tx.input[0].script_sig.as_bytes()[0], 0x60, "OP_16");
        assert_eq!(bip34_height(&tx), Some(16));
        p.height = 17;
        let tx = p.build().unwrap().transaction(&[0; 4], &[0; 8]).unwrap();
        assert_eq!(&tx.input[0].script_sig.as_bytes()[..2], &[0x01, 17]);
    }

    #[test]
    fn without_commitment_there_is_no_witness() {
        let mut p = params();
        p.witness_commitment = None;
        let tx = p.build().unwrap().transaction(&[0; 4], &[0; 8]).unwrap();
        assert_eq!(tx.output.len(), 1);
        assert!(tx.input[0].witness.is_empty());
    }

    #[test]
    fn fixed_outputs_come_out_of_the_payout() {
        let mut p = params();
        let fee = TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: ScriptBuf::new_op_return([1u8; 4]),
        };
        p.fixed_outputs = vec![fee.clone()];
        let tx = p.build().unwrap().transaction(&[0; 4], &[0; 8]).unwrap();
        assert_eq!(tx.output[0].value, p.value - Amount::from_sat(1_000));
        assert_eq!(tx.output[1], fee);
        p.fixed_outputs = vec![TxOut {
            value: p.value + Amount::ONE_SAT,
            ..fee
        }];
        assert!(matches!(
            p.build(),
            Err(CoinbaseError::FixedOutputsExceedValue { .. })
        ));
    }

    #[test]
    fn long_tags_are_refused_with_a_reason() {
        let mut p = params();
        p.pool_tag = vec![b'x'; 75];
        p.extranonce1_len = 8;
        let err = p.build().unwrap_err();
        assert!(
            matches!(err, CoinbaseError::ScriptSigTooLong { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("shorten the pool tag"));
        p.pool_tag = vec![b'x'; 76];
        assert!(matches!(
            p.build().unwrap_err(),
            CoinbaseError::TagTooLong(76)
        ));
    }

    proptest! {
        #[test]
        fn any_extranonce_lands_inside_the_script_sig(
            height in 17u32..10_000_000,
            unique in any::<u32>(),
            en2_len in 4usize..=8,
            en1 in proptest::array::uniform4(any::<u8>()),
            en2 in proptest::collection::vec(any::<u8>(), 8),
            tag in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut p = params();
            p.height = height;
            p.unique = unique;
            p.pool_tag = tag;
            p.extranonce2_len = en2_len;
            let tx = p.build().unwrap().transaction(&en1, &en2[..en2_len]).unwrap();
            prop_assert_eq!(bip34_height(&tx), Some(u64::from(height)));
            let script = tx.input[0].script_sig.as_bytes();
            let tail = [&en1[..], &en2[..en2_len]].concat();
            prop_assert!(script.ends_with(&tail));
            prop_assert!(script.len() <= MAX_SCRIPT_SIG_LEN);
        }
    }
}
