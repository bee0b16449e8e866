//! A synthetic mempool: valid-looking segwit transactions (P2WPKH spends of
//! made-up outpoints with signature-shaped witnesses), so templates have real
//! merkle and witness trees and fees. nodesim does not verify scripts: a
//! transaction is valid if it is one nodesim handed out and not yet mined.

use bitcoin::hashes::Hash;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness, absolute,
    transaction,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// A mempool transaction, its txid (hashed once) and the fee it pays.
#[derive(Debug, Clone)]
pub(crate) struct PoolTx {
    pub(crate) tx: Transaction,
    pub(crate) txid: Txid,
    pub(crate) fee: Amount,
}

/// Transactions waiting for a block, in arrival order.
#[derive(Debug)]
pub(crate) struct Mempool {
    txs: Vec<PoolTx>,
    target: usize,
    rng: StdRng,
    /// Bumped on every change (Core's `nTransactionsUpdated`, part of longpollid).
    pub(crate) updates: u64,
}

impl Mempool {
    pub(crate) fn new(target: usize, seed: u64) -> Self {
        let mut pool = Mempool {
            txs: Vec::new(),
            target,
            rng: StdRng::seed_from_u64(seed),
            updates: 0,
        };
        pool.top_up();
        pool
    }

    pub(crate) fn txs(&self) -> &[PoolTx] {
        &self.txs
    }

    pub(crate) fn get(&self, txid: &Txid) -> Option<&PoolTx> {
        self.txs.iter().find(|p| p.txid == *txid)
    }

    /// A transaction someone sent (not a synthetic one): first in line for
    /// the next template.
    pub(crate) fn insert_first(&mut self, tx: PoolTx) {
        self.txs.insert(0, tx);
        self.updates += 1;
    }

    /// Drops mined transactions and refills to the target size.
    pub(crate) fn remove_mined(&mut self, mined: &[Txid]) {
        self.txs.retain(|p| !mined.contains(&p.txid));
        self.top_up();
    }

    fn top_up(&mut self) {
        while self.txs.len() < self.target {
            let tx = self.random_tx();
            self.txs.push(tx);
        }
        self.updates += 1;
    }

    fn random_tx(&mut self) -> PoolTx {
        let rng = &mut self.rng;
        let mut prev = [0u8; 32];
        rng.fill_bytes(&mut prev);
        // DER-signature-shaped and compressed-pubkey-shaped witness items.
        let mut sig = vec![0x30, 0x44];
        sig.extend((0..69).map(|_| rng.random::<u8>()));
        let mut pubkey = vec![0x02];
        pubkey.extend((0..32).map(|_| rng.random::<u8>()));
        let outputs = (0..rng.random_range(1..=3))
            .map(|_| {
                let mut program = vec![0x00, 0x14];
                program.extend((0..20).map(|_| rng.random::<u8>()));
                TxOut {
                    value: Amount::from_sat(rng.random_range(10_000..100_000_000)),
                    script_pubkey: ScriptBuf::from_bytes(program),
                }
            })
            .collect();
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array(prev),
                    vout: rng.random_range(0..4),
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from_slice(&[sig, pubkey]),
            }],
            output: outputs,
        };
        // 1..=50 sat/vB, as a busy mempool might pay.
        let fee = Amount::from_sat(tx.vsize() as u64 * rng.random_range(1..=50));
        PoolTx {
            txid: tx.compute_txid(),
            tx,
            fee,
        }
    }
}
