//! The coins of nodesim's active chain and mempool: which outputs exist,
//! at what height, and what spends them. Built from the chain when a
//! wallet call or a transaction needs it (a test chain is small).

use std::collections::{HashMap, HashSet};

use bitcoin::{OutPoint, TxOut, Txid};

use crate::chain::Chain;

/// An output and where it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coin {
    pub(crate) outpoint: OutPoint,
    pub(crate) txout: TxOut,
    /// Block height, or `None` in the mempool.
    pub(crate) height: Option<u32>,
    pub(crate) coinbase: bool,
}

/// Outputs and spends of the active chain and the mempool.
#[derive(Debug, Default)]
pub(crate) struct View {
    outputs: HashMap<OutPoint, Coin>,
    spent_in_chain: HashSet<OutPoint>,
    spent_in_mempool: HashMap<OutPoint, Txid>,
    /// Height of every transaction of the active chain.
    pub(crate) heights: HashMap<Txid, u32>,
    /// The active chain's height.
    pub(crate) tip: u32,
}

impl View {
    pub(crate) fn of(chain: &Chain) -> View {
        let mut v = View {
            tip: chain.height(),
            ..View::default()
        };
        for hash in &chain.active {
            let stored = &chain.blocks[hash];
            for tx in &stored.block.txdata {
                let txid = tx.compute_txid();
                v.heights.insert(txid, stored.height);
                v.add_outputs(txid, tx, Some(stored.height));
                if !tx.is_coinbase() {
                    v.spent_in_chain
                        .extend(tx.input.iter().map(|i| i.previous_output));
                }
            }
        }
        for p in chain.mempool.txs() {
            v.add_outputs(p.txid, &p.tx, None);
            for input in &p.tx.input {
                v.spent_in_mempool.insert(input.previous_output, p.txid);
            }
        }
        v
    }

    fn add_outputs(&mut self, txid: Txid, tx: &bitcoin::Transaction, height: Option<u32>) {
        for (vout, txout) in tx.output.iter().enumerate() {
            let outpoint = OutPoint::new(txid, vout as u32);
            self.outputs.insert(
                outpoint,
                Coin {
                    outpoint,
                    txout: txout.clone(),
                    height,
                    coinbase: tx.is_coinbase(),
                },
            );
        }
    }

    /// Outputs not spent in the chain (those made in the mempool too).
    pub(crate) fn unspent(&self) -> impl Iterator<Item = Coin> + '_ {
        self.outputs
            .values()
            .filter(|c| !self.spent_in_chain.contains(&c.outpoint))
            .cloned()
    }

    /// The confirmed output at `outpoint`, if it exists and is unspent in the
    /// chain.
    pub(crate) fn confirmed(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.outputs
            .get(outpoint)
            .filter(|c| c.height.is_some() && !self.spent_in_chain.contains(outpoint))
    }

    /// Whether a mempool transaction spends `outpoint`.
    pub(crate) fn spent_in_mempool(&self, outpoint: &OutPoint) -> bool {
        self.spent_in_mempool.contains_key(outpoint)
    }

    /// Whether the chain spends `outpoint`.
    pub(crate) fn spent_in_chain(&self, outpoint: &OutPoint) -> bool {
        self.spent_in_chain.contains(outpoint)
    }
}
