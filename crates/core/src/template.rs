//! A block template as gbtmaker publishes it (the RawGbt message).
//!
//! It carries what `getblocktemplate` returned, typed: jobmaker builds jobs
//! from it and blkmaker takes the transactions from it to assemble a block.
//! RPC credentials never travel with it.

use std::fmt;

use bitcoin::block::Version;
use bitcoin::hashes::{Hash, HashEngine, sha256d};
use bitcoin::pow::Work;
use bitcoin::{Amount, BlockHash, CompactTarget, Network, ScriptBuf, Txid, Weight, Wtxid};

/// Identifies a template: the double-SHA256 of its defining fields and
/// transaction ids, so the same template from two gbtmakers has one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub [u8; 32]);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One transaction of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateTx {
    /// Serialized transaction, with witness.
    pub raw: Vec<u8>,
    /// Its txid (merkle leaf).
    pub txid: Txid,
    /// Its wtxid (witness merkle leaf).
    pub wtxid: Wtxid,
    /// Fee it pays.
    pub fee: Amount,
    /// BIP141 weight.
    pub weight: Weight,
}

/// A block template from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTemplate {
    /// Content id (see [`TemplateId`]).
    pub id: TemplateId,
    /// Which configured node it came from (operator-chosen name).
    pub node_id: String,
    /// When gbtmaker received it, unix milliseconds.
    pub created_at_ms: u64,
    /// Height of the block to mine.
    pub height: u32,
    /// The tip it builds on.
    pub prev_blockhash: BlockHash,
    /// Block version to use.
    pub version: Version,
    /// Network target.
    pub bits: CompactTarget,
    /// The node's current time.
    pub cur_time: u32,
    /// Earliest acceptable block time.
    pub min_time: u32,
    /// Subsidy plus fees.
    pub coinbase_value: Amount,
    /// BIP141 commitment script, if the template needs one.
    pub default_witness_commitment: Option<ScriptBuf>,
    /// The transactions, in block order.
    pub transactions: Vec<TemplateTx>,
    /// The node's network (`getblockchaininfo`'s `chain`), where gbtmaker
    /// told it: jobmaker never mines on a template of another network.
    pub network: Option<Network>,
    /// The work of the chain ending at `prev_blockhash` (Core's `chainwork`
    /// of that block), where gbtmaker told it: of two tips, the one with
    /// more work is the best, whatever their heights.
    pub chain_work: Option<Work>,
}

impl BlockTemplate {
    /// Computes the content id of these fields (everything but `id`,
    /// `node_id`, `created_at_ms` and what is known of the node's chain:
    /// `network` and `chain_work` follow from `prev_blockhash`).
    pub fn compute_id(&self) -> TemplateId {
        let mut e = sha256d::Hash::engine();
        e.input(&self.height.to_le_bytes());
        e.input(self.prev_blockhash.as_byte_array());
        e.input(&self.version.to_consensus().to_le_bytes());
        e.input(&self.bits.to_consensus().to_le_bytes());
        e.input(&self.cur_time.to_le_bytes());
        e.input(&self.min_time.to_le_bytes());
        e.input(&self.coinbase_value.to_sat().to_le_bytes());
        if let Some(c) = &self.default_witness_commitment {
            e.input(c.as_bytes());
        }
        for tx in &self.transactions {
            e.input(tx.wtxid.as_byte_array());
        }
        TemplateId(sha256d::Hash::from_engine(e).to_byte_array())
    }

    /// Why this template cannot be a node's (it decoded, but no
    /// `getblocktemplate` says this): an id that is not its content's, height
    /// 0, a value over 21 million BTC, bits that are no target, min time after
    /// cur time, transactions heavier than a block. Consumers skip it as
    /// poison.
    pub fn check(&self) -> Result<(), String> {
        if self.id != self.compute_id() {
            return Err(format!("id {} is not its content's", self.id));
        }
        crate::job::plausible(self.height, self.coinbase_value, self.bits)?;
        if self.min_time > self.cur_time {
            return Err(format!(
                "min time {} is after cur time {}",
                self.min_time, self.cur_time
            ));
        }
        // Saturating: weights from the wire may be anything, and a sum
        // that wraps would pass as light.
        let weight = self
            .transactions
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.weight.to_wu()));
        if weight > Weight::MAX_BLOCK.to_wu() {
            return Err(format!(
                "transactions weigh {weight}, more than a block's {}",
                Weight::MAX_BLOCK.to_wu()
            ));
        }
        Ok(())
    }

    /// Whether this template's tip is better than `other`'s: more chain
    /// work where both carry it (a reorganization may lead to a lower
    /// height), else a greater height (templates published before chain
    /// work was).
    pub fn has_more_work_than(&self, other: &BlockTemplate) -> bool {
        match (self.chain_work, other.chain_work) {
            (Some(mine), Some(theirs)) => mine > theirs,
            _ => self.height > other.height,
        }
    }

    /// The txids of the transactions, in block order (for the merkle branch).
    pub fn txids(&self) -> Vec<Txid> {
        self.transactions.iter().map(|t| t.txid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> BlockTemplate {
        let mut t = BlockTemplate {
            id: TemplateId([0; 32]),
            node_id: "core".into(),
            created_at_ms: 1,
            height: 840_000,
            prev_blockhash: BlockHash::all_zeros(),
            version: Version::from_consensus(0x2000_0000),
            bits: CompactTarget::from_consensus(0x1703_4219),
            cur_time: 1_713_571_767,
            min_time: 1_713_570_000,
            coinbase_value: Amount::from_sat(312_500_000),
            default_witness_commitment: None,
            transactions: vec![TemplateTx {
                raw: vec![0; 60],
                txid: Txid::all_zeros(),
                wtxid: Wtxid::all_zeros(),
                fee: Amount::from_sat(1_000),
                weight: Weight::from_wu(240),
            }],
            network: Some(Network::Bitcoin),
            chain_work: None,
        };
        t.id = t.compute_id();
        t
    }

    fn work(n: u64) -> Work {
        let mut be = [0u8; 32];
        be[24..].copy_from_slice(&n.to_be_bytes());
        Work::from_be_bytes(be)
    }

    #[test]
    fn the_best_tip_has_the_most_chain_work_not_the_greatest_height() {
        let (mut short, mut long) = (template(), template());
        long.height = short.height + 100;
        // Without chain work (records from before it was published): height.
        assert!(long.has_more_work_than(&short));
        assert!(!short.has_more_work_than(&long));
        // A shorter chain of harder blocks has more work: it is the best.
        short.chain_work = Some(work(2_000));
        long.chain_work = Some(work(1_999));
        assert!(short.has_more_work_than(&long));
        assert!(!long.has_more_work_than(&short));
        // Equal work is no better: the first seen stays.
        long.chain_work = Some(work(2_000));
        assert!(!long.has_more_work_than(&short) && !short.has_more_work_than(&long));
        // Only one side knows its work: height decides.
        long.chain_work = None;
        assert!(long.has_more_work_than(&short));
    }

    #[test]
    fn a_template_no_node_gives_is_refused_with_the_reason() {
        assert_eq!(template().check(), Ok(()));
        let why = |change: fn(&mut BlockTemplate)| {
            let mut t = template();
            change(&mut t);
            t.id = t.compute_id();
            t.check().unwrap_err()
        };
        assert!(why(|t| t.height = 0).starts_with("height 0"));
        assert!(
            why(|t| t.coinbase_value = Amount::from_sat(21_000_001 * 100_000_000))
                .contains("21 million")
        );
        assert!(why(|t| t.bits = CompactTarget::from_consensus(0)).contains("no target"));
        assert!(why(|t| t.min_time = t.cur_time + 1).contains("after cur time"));
        assert!(
            why(|t| t.transactions[0].weight = Weight::from_wu(4_000_001))
                .contains("more than a block")
        );
        let mut forged = template();
        forged.height += 1;
        assert!(forged.check().unwrap_err().contains("not its content's"));
    }

    #[test]
    fn weights_that_overflow_when_summed_are_refused_not_a_panic() {
        let mut t = template();
        let heavy = TemplateTx {
            weight: Weight::from_wu(u64::MAX / 2 + 1),
            ..t.transactions[0].clone()
        };
        t.transactions = vec![heavy.clone(), heavy];
        t.id = t.compute_id();
        assert!(t.check().unwrap_err().contains("more than a block"));
    }
}
