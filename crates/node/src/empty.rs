//! Empty-block templates: work on a new tip before the node has a template.
//!
//! When a block arrives, Bitcoin Core takes tens to hundreds of milliseconds
//! to assemble the next template (more with a full mempool), and miners hash
//! on the old tip meanwhile. btcpool and viabtc hand miners a job for an
//! empty block on the new tip at once, made from the new block's header, and
//! replace it with the full one when it exists. The empty block pays the
//! subsidy only (no fees), so it is worth having only for those moments.
//!
//! Everything here is computed from the announced block's header; where the
//! next block's `bits` cannot be known from it (a retarget height, the
//! testnets' minimum-difficulty rule) there is no empty template.

use bitcoin::block::Version;
use bitcoin::pow::Work;
use bitcoin::{BlockHash, CompactTarget, Network};
use serde::Deserialize;
pub use sluice_core::network::network_of_chain;
use sluice_core::{BlockTemplate, TemplateId};

/// Blocks between difficulty adjustments on every network but regtest.
const RETARGET_INTERVAL: u32 = 2016;

/// What `getblockheader <hash> true` says of a block, as far as an empty
/// template needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeaderInfo {
    /// The block's hash.
    pub hash: BlockHash,
    /// Its height.
    pub height: u32,
    /// Its compact target, as hex.
    pub bits: String,
    /// The median time past of the 11 blocks ending with it: the next
    /// block's time must exceed it.
    #[serde(rename = "mediantime")]
    pub median_time: u32,
    /// The work of the chain ending with it.
    #[serde(rename = "chainwork", with = "crate::chain_work")]
    pub chain_work: Work,
}

/// The `bits` of the block after `tip`, where the tip's header tells it:
/// regtest never retargets; mainnet and signet keep the tip's bits except at
/// a retarget height; the testnets allow minimum-difficulty blocks, so their
/// next bits depend on the next block's time.
fn next_bits(network: Network, tip: &HeaderInfo) -> Option<CompactTarget> {
    let bits = u32::from_str_radix(&tip.bits, 16).ok()?;
    let next = tip.height.checked_add(1)?;
    let known = match network {
        Network::Regtest => true,
        Network::Bitcoin | Network::Signet => !next.is_multiple_of(RETARGET_INTERVAL),
        _ => false,
    };
    known.then_some(CompactTarget::from_consensus(bits))
}

/// A template for an empty block on `tip`, from node `node`: the subsidy of
/// the next height as the coinbase value, no transactions, no witness
/// commitment (an empty block has no witness data), `version` as the
/// node's last template had it, and the time no earlier than the tip's
/// median time past allows. `None` when the next block's bits are unknown.
pub fn empty_template(
    node: &str,
    network: Network,
    tip: &HeaderInfo,
    version: Version,
    now_ms: u64,
) -> Option<BlockTemplate> {
    let bits = next_bits(network, tip)?;
    let height = tip.height + 1;
    let min_time = tip.median_time.saturating_add(1);
    let now = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
    let mut template = BlockTemplate {
        id: TemplateId([0; 32]),
        node_id: node.to_owned(),
        created_at_ms: now_ms,
        height,
        prev_blockhash: tip.hash,
        version,
        bits,
        cur_time: now.max(min_time),
        min_time,
        coinbase_value: sluice_core::network::block_subsidy(network, height),
        default_witness_commitment: None,
        transactions: Vec::new(),
        network: Some(network),
        chain_work: Some(tip.chain_work),
    };
    template.id = template.compute_id();
    Some(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn tip(height: u32) -> HeaderInfo {
        HeaderInfo {
            hash: BlockHash::from_byte_array([7; 32]),
            height,
            bits: "1703a30c".into(),
            median_time: 1_700_000_000,
            chain_work: Work::from_be_bytes([1; 32]),
        }
    }

    #[test]
    fn an_empty_template_builds_on_the_tip_and_pays_the_subsidy() {
        let t = empty_template(
            "core",
            Network::Bitcoin,
            &tip(839_999),
            Version::from_consensus(0x2000_0000),
            1_700_000_100_000,
        )
        .expect("not a retarget height");
        assert_eq!((t.height, t.prev_blockhash), (840_000, tip(0).hash));
        // Block 840,000 is the fourth halving: 3.125 BTC, no fees.
        assert_eq!(t.coinbase_value.to_sat(), 312_500_000);
        assert_eq!(t.bits, CompactTarget::from_consensus(0x1703_a30c));
        assert!(t.transactions.is_empty() && t.default_witness_commitment.is_none());
        assert_eq!((t.min_time, t.cur_time), (1_700_000_001, 1_700_000_100));
        assert_eq!(t.id, t.compute_id());
        assert_eq!(
            (t.network, t.chain_work),
            (Some(Network::Bitcoin), Some(tip(0).chain_work))
        );
    }

    #[test]
    fn the_time_never_falls_below_the_median_time_past() {
        let t = empty_template("n", Network::Regtest, &tip(5), Version::TWO, 1_000).unwrap();
        assert_eq!(t.cur_time, 1_700_000_001, "a clock behind the chain");
    }

    #[test]
    fn no_empty_template_where_the_next_bits_are_unknown() {
        let v = Version::TWO;
        // Mainnet retargets at 2016-block boundaries; signet too.
        assert!(empty_template("n", Network::Bitcoin, &tip(2015), v, 0).is_none());
        assert!(empty_template("n", Network::Signet, &tip(4031), v, 0).is_none());
        assert!(empty_template("n", Network::Signet, &tip(4032), v, 0).is_some());
        // The testnets' 20-minute rule makes bits depend on the next time.
        assert!(empty_template("n", Network::Testnet, &tip(10), v, 0).is_none());
        assert!(empty_template("n", Network::Testnet4, &tip(10), v, 0).is_none());
        // Regtest never retargets.
        assert!(empty_template("n", Network::Regtest, &tip(2015), v, 0).is_some());
        // Bits that are not hex.
        let mut bad = tip(1);
        bad.bits = "zz".into();
        assert!(empty_template("n", Network::Regtest, &bad, v, 0).is_none());
    }
}
