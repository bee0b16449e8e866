//! The block chain nodesim keeps: regtest genesis, blocks by hash, the active
//! chain, templates built from the mempool, and block validation in Bitcoin
//! Core's order with Core's reject reasons (see `validate.rs`).

use std::collections::{HashMap, HashSet};

use bitcoin::blockdata::constants::genesis_block;
use bitcoin::{Amount, Block, BlockHash, CompactTarget, Network, ScriptBuf, Transaction, Txid};

use crate::mempool::{Mempool, PoolTx};

/// Regtest's subsidy halving interval (Core's `nSubsidyHalvingInterval`).
const HALVING_INTERVAL: u32 = 150;
/// BIP141 block weight limit.
pub(crate) const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Weight kept free in templates for the coinbase (Core reserves 4000).
const COINBASE_RESERVE: u64 = 4_000;

/// Reject reasons that say nothing about the block behind the header hash.
const MUTATION_OR_POW: [&str; 6] = [
    "high-hash",
    "bad-txnmrklroot",
    "bad-txns-duplicate",
    "bad-witness-merkle-match",
    "bad-witness-nonce-size",
    "unexpected-witness",
];

/// A block nodesim has accepted, with its height.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) block: Block,
    pub(crate) height: u32,
    /// What its transactions pay in fees (Core's `getblockstats` totalfee);
    /// for a block stored on a side branch, of the transactions nodesim knew.
    pub(crate) fees: Amount,
}

/// What `submitblock` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// Valid and now the tip.
    NewTip,
    /// Valid, stored on a side branch (Core answers "inconclusive").
    SideBranch,
    /// Already known and valid.
    Duplicate,
    /// Already known to be invalid (Core: "duplicate-invalid").
    DuplicateInvalid,
    /// Invalid, with Core's reason.
    Rejected(&'static str),
}

/// A block template (what `getblocktemplate` returns).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) height: u32,
    pub(crate) prev: BlockHash,
    pub(crate) bits: CompactTarget,
    pub(crate) cur_time: u32,
    pub(crate) min_time: u32,
    pub(crate) coinbase_value: Amount,
    pub(crate) txs: Vec<PoolTx>,
    pub(crate) witness_commitment: ScriptBuf,
    pub(crate) longpoll_id: String,
}

/// The chain state. Owned by one task behind a mutex; never held across await.
#[derive(Debug)]
pub(crate) struct Chain {
    pub(crate) bits: CompactTarget,
    pub(crate) blocks: HashMap<BlockHash, Stored>,
    pub(crate) invalid: HashSet<BlockHash>,
    /// Hash of the block at each height of the best chain.
    pub(crate) active: Vec<BlockHash>,
    pub(crate) mempool: Mempool,
}

/// Block subsidy at `height` on regtest.
pub(crate) fn subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        Amount::ZERO
    } else {
        Amount::from_sat((50 * 100_000_000) >> halvings)
    }
}

impl Chain {
    pub(crate) fn new(bits: CompactTarget, mempool: Mempool) -> Self {
        let genesis = genesis_block(Network::Regtest);
        let hash = genesis.block_hash();
        let mut blocks = HashMap::new();
        blocks.insert(
            hash,
            Stored {
                block: genesis,
                height: 0,
                fees: Amount::ZERO,
            },
        );
        Chain {
            bits,
            blocks,
            invalid: HashSet::new(),
            active: vec![hash],
            mempool,
        }
    }

    pub(crate) fn tip(&self) -> &Stored {
        let hash = self
            .active
            .last()
            .expect("the active chain always has genesis");
        &self.blocks[hash]
    }

    pub(crate) fn height(&self) -> u32 {
        self.tip().height
    }

    /// Median of the 11 block times ending at `hash` (BIP113).
    pub(crate) fn median_time_past(&self, hash: &BlockHash) -> u32 {
        let mut times = Vec::with_capacity(11);
        let mut cur = Some(*hash);
        while let (Some(h), true) = (cur, times.len() < 11) {
            let stored = &self.blocks[&h];
            times.push(stored.block.header.time);
            cur = (stored.height > 0).then_some(stored.block.header.prev_blockhash);
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    pub(crate) fn is_active(&self, hash: &BlockHash) -> bool {
        self.blocks
            .get(hash)
            .is_some_and(|s| self.active.get(s.height as usize) == Some(hash))
    }

    /// A template on the current tip at time `now`.
    pub(crate) fn template(&self, now: u32) -> Template {
        let tip = self.tip();
        let min_time = self.median_time_past(&tip.block.block_hash()) + 1;
        // Transactions in arrival order while the block weight allows.
        let mut weight = COINBASE_RESERVE + 80 * 4;
        let txs: Vec<PoolTx> = self
            .mempool
            .txs()
            .iter()
            .take_while(|p| {
                weight += p.tx.weight().to_wu();
                weight <= MAX_BLOCK_WEIGHT
            })
            .cloned()
            .collect();
        let fees = txs.iter().map(|p| p.fee).sum::<Amount>();
        let height = tip.height + 1;
        let wtxids = txs.iter().map(|p| p.tx.compute_wtxid());
        Template {
            height,
            prev: tip.block.block_hash(),
            bits: self.bits,
            cur_time: now.max(min_time),
            min_time,
            coinbase_value: subsidy(height) + fees,
            witness_commitment: crate::validate::commitment_script(wtxids, &[0; 32]),
            longpoll_id: self.longpoll_id(),
            txs,
        }
    }

    /// Core's long-poll id: the tip and a count of mempool changes. A long
    /// poll returns once it differs from the one the client holds.
    pub(crate) fn longpoll_id(&self) -> String {
        format!("{}{}", self.tip().block.block_hash(), self.mempool.updates)
    }

    /// Validates `block` and connects it if valid. `check_pow` is false only
    /// for blocks nodesim makes itself as "found elsewhere" at hard bits.
    pub(crate) fn submit(&mut self, block: Block, now: u32, check_pow: bool) -> Submitted {
        let hash = block.block_hash();
        if self.invalid.contains(&hash) {
            return Submitted::DuplicateInvalid;
        }
        if self.blocks.contains_key(&hash) {
            return Submitted::Duplicate;
        }
        if self.invalid.contains(&block.header.prev_blockhash) {
            self.invalid.insert(hash);
            return Submitted::Rejected("bad-prevblk");
        }
        let Some(parent) = self.blocks.get(&block.header.prev_blockhash) else {
            return Submitted::Rejected("prev-blk-not-found");
        };
        let height = parent.height + 1;
        let extends_tip = block.header.prev_blockhash == self.tip().block.block_hash();
        let connect = extends_tip || height > self.height();
        if let Err(reason) = crate::validate::check(self, &block, height, now, check_pow, connect) {
            // Like Core, remember invalid blocks, except failed proof of work
            // (free to make) and mutated blocks: the header hash does not commit
            // to the transactions, so the real block may share this hash
            // (CVE-2012-2459; Core's BLOCK_MUTATED).
            if !MUTATION_OR_POW.contains(&reason) {
                self.invalid.insert(hash);
            }
            return Submitted::Rejected(reason);
        }
        let mined: Vec<Txid> = block
            .txdata
            .iter()
            .skip(1)
            .map(Transaction::compute_txid)
            .collect();
        let fees = block.txdata[1..]
            .iter()
            .filter_map(|tx| self.known_fee(&tx.compute_txid()))
            .sum();
        self.blocks.insert(
            hash,
            Stored {
                block,
                height,
                fees,
            },
        );
        if extends_tip {
            self.active.push(hash);
            self.mempool.remove_mined(&mined);
            Submitted::NewTip
        } else if height > self.height() {
            self.reorganize_to(hash);
            self.mempool.remove_mined(&mined);
            Submitted::NewTip
        } else {
            Submitted::SideBranch
        }
    }

    /// Makes the chain ending at `hash` the active one (it has more work: all
    /// blocks share one `bits`, so more blocks is more work).
    fn reorganize_to(&mut self, hash: BlockHash) {
        let mut path = Vec::new();
        let mut cur = hash;
        while !self.is_active(&cur) {
            path.push(cur);
            cur = self.blocks[&cur].block.header.prev_blockhash;
        }
        let fork_height = self.blocks[&cur].height as usize;
        self.active.truncate(fork_height + 1);
        self.active.extend(path.into_iter().rev());
        tracing::info!(tip = %hash, fork_height, "reorganized");
    }

    /// Core's `invalidateblock`: `hash` and every block built on it are
    /// invalid from now on (they stay known: `getblockheader` shows them with
    /// -1 confirmations); if they were active, the longest valid branch
    /// becomes the chain. False if `hash` is unknown or genesis. Unlike Core,
    /// the disconnected blocks' transactions do not return to the mempool.
    pub(crate) fn invalidate(&mut self, hash: BlockHash) -> bool {
        let Some(height) = self.blocks.get(&hash).map(|s| s.height) else {
            return false;
        };
        if height == 0 {
            return false;
        }
        let descends = |chain: &Chain, mut cur: BlockHash| loop {
            let stored = &chain.blocks[&cur];
            if cur == hash {
                return true;
            }
            if stored.height <= height {
                return false;
            }
            cur = stored.block.header.prev_blockhash;
        };
        let fallen: Vec<BlockHash> = self
            .blocks
            .keys()
            .copied()
            .filter(|h| descends(self, *h))
            .collect();
        self.invalid.extend(fallen);
        if self.active.get(height as usize) == Some(&hash) {
            self.active.truncate(height as usize);
        }
        let best = self
            .blocks
            .iter()
            .filter(|(h, _)| !self.invalid.contains(*h))
            .max_by_key(|(_, s)| s.height)
            .map(|(h, s)| (*h, s.height));
        if let Some((best, best_height)) = best
            && best_height > self.height()
        {
            self.reorganize_to(best);
        }
        tracing::info!(%hash, tip = %self.tip().block.block_hash(), "invalidated");
        true
    }

    /// Transactions a block may include: mempool ones not yet mined.
    pub(crate) fn known_fee(&self, txid: &Txid) -> Option<Amount> {
        self.mempool.get(txid).map(|p| p.fee)
    }

    pub(crate) fn block_by_hash(&self, hash: &BlockHash) -> Option<&Stored> {
        self.blocks.get(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regtest_subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(1), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(149), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(150), Amount::from_btc(25.0).unwrap());
        assert_eq!(subsidy(150 * 33), Amount::from_sat(0));
        assert_eq!(subsidy(150 * 64), Amount::ZERO);
    }

    #[test]
    fn templates_start_after_the_median_time_past() {
        let chain = Chain::new(
            CompactTarget::from_consensus(0x207f_ffff),
            Mempool::new(3, 1),
        );
        let genesis_time = chain.tip().block.header.time;
        let t = chain.template(genesis_time - 100);
        assert_eq!(t.min_time, genesis_time + 1);
        assert_eq!(t.cur_time, t.min_time, "curtime never below mintime");
        assert_eq!(t.height, 1);
        assert_eq!(t.txs.len(), 3);
    }
}
