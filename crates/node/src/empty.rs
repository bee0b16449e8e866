//! Empty-block templates: work on a new tip before the node has a template.
//!
//! When a block arrives, Bitcoin Core takes tens to hundreds of milliseconds
//! to assemble the next template (more with a full mempool), and miners hash
//! on the old tip meanwhile. btcpool and viabtc hand miners a job for an
//! empty block on the new tip at once, made from the new block's header, and
//! replace it with the full one when it exists. The empty block pays the
//! subsidy only (no fees), so it is worth having only for those moments.
//!
//! Everything here is computed from the announced block's header, and at a
//! retarget height from the time of the first block of the period ending
//! with it (Core's `GetNextWorkRequired`); where the next block's `bits`
//! cannot be known without the next block's time (the testnets'
//! minimum-difficulty rule) there is no empty template.

use bitcoin::block::{Header, Version};
use bitcoin::params::Params;
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
    /// Its timestamp.
    pub time: u32,
    /// The median time past of the 11 blocks ending with it: the next
    /// block's time must exceed it.
    #[serde(rename = "mediantime")]
    pub median_time: u32,
    /// The work of the chain ending with it.
    #[serde(rename = "chainwork", with = "crate::chain_work")]
    pub chain_work: Work,
}

/// Where the block after `tip` starts a new difficulty period on a network
/// that retargets, the height of the period's first block: its time and the
/// tip's make the next `bits` ([`empty_template`]'s `period_start`).
pub fn retarget_period_start(network: Network, tip: &HeaderInfo) -> Option<u32> {
    let next = tip.height.checked_add(1)?;
    let retargets = matches!(network, Network::Bitcoin | Network::Signet);
    (retargets && next.is_multiple_of(RETARGET_INTERVAL)).then(|| next - RETARGET_INTERVAL)
}

/// The `bits` of the block after `tip`: regtest never retargets; mainnet and
/// signet keep the tip's bits except at a retarget height, where the
/// period's timespan (from `period_start`, the time of its first block)
/// adjusts them; the testnets allow minimum-difficulty blocks, so their
/// next bits depend on the next block's time: `None`.
fn next_bits(
    network: Network,
    tip: &HeaderInfo,
    period_start: Option<u32>,
) -> Option<CompactTarget> {
    let bits = CompactTarget::from_consensus(u32::from_str_radix(&tip.bits, 16).ok()?);
    match network {
        Network::Regtest => Some(bits),
        Network::Bitcoin | Network::Signet => match retarget_period_start(network, tip) {
            None => Some(bits),
            Some(_) => {
                let timespan = tip.time.saturating_sub(period_start?);
                Some(CompactTarget::from_next_work_required(
                    bits,
                    u64::from(timespan),
                    Params::new(network),
                ))
            }
        },
        _ => None,
    }
}

/// A template for an empty block on `tip`, from node `node`: the subsidy of
/// the next height as the coinbase value, no transactions, no witness
/// commitment (an empty block has no witness data), `version` as the
/// node's last template had it, and the time no earlier than the tip's
/// median time past allows. At a retarget height `period_start` is the time
/// of the ending period's first block ([`retarget_period_start`]). `None`
/// when the next block's bits are unknown.
pub fn empty_template(
    node: &str,
    network: Network,
    tip: &HeaderInfo,
    period_start: Option<u32>,
    version: Version,
    now_ms: u64,
) -> Option<BlockTemplate> {
    let bits = next_bits(network, tip, period_start)?;
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

/// Seconds a block's time may be ahead of the node's clock (Core's
/// `MAX_FUTURE_BLOCK_TIME`), less a minute: an empty template from a header
/// never times a block near that limit.
const FUTURE_LIMIT: u32 = 2 * 60 * 60 - 60;

/// Blocks the median time past is taken over.
const MEDIAN_SPAN: u32 = 11;

/// A template for an empty block on the block of `header`, from the header
/// alone (ZMQ `rawblock`), without asking the node. Where `header` extends
/// the tip `current` builds on: the next block's height, network and chain
/// work follow from `current`; its bits are `header`'s (outside a retarget
/// height and the testnets' rules); its earliest time is `header.time + 1`,
/// for the median of the 11 times ending with `header`'s never exceeds it:
/// that time is above the median before it, so whichever time leaves the
/// window, the new median is the old one or at most `header.time`. `None`
/// where any of that does not hold (another branch, a retarget height, a
/// chain under 11 blocks, a time near the future limit): ask the node.
pub fn empty_template_after(
    current: &BlockTemplate,
    header: &Header,
    now_ms: u64,
) -> Option<BlockTemplate> {
    if header.prev_blockhash != current.prev_blockhash || current.height <= MEDIAN_SPAN {
        return None;
    }
    let network = current.network?;
    let tip = HeaderInfo {
        hash: header.block_hash(),
        height: current.height,
        bits: format!("{:08x}", header.bits.to_consensus()),
        time: header.time,
        median_time: header.time,
        chain_work: current.chain_work? + header.work(),
    };
    let now = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
    if retarget_period_start(network, &tip).is_some()
        || header.time.saturating_sub(now) > FUTURE_LIMIT
    {
        return None;
    }
    empty_template(
        &current.node_id,
        network,
        &tip,
        None,
        current.version,
        now_ms,
    )
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
            time: 1_700_000_050,
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
            None,
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
        let t = empty_template("n", Network::Regtest, &tip(5), None, Version::TWO, 1_000).unwrap();
        assert_eq!(t.cur_time, 1_700_000_001, "a clock behind the chain");
    }

    #[test]
    fn no_empty_template_where_the_next_bits_are_unknown() {
        let v = Version::TWO;
        // Mainnet and signet retarget at 2016-block boundaries: without the
        // period's first block's time the bits are unknown there.
        assert!(empty_template("n", Network::Bitcoin, &tip(2015), None, v, 0).is_none());
        assert!(empty_template("n", Network::Signet, &tip(4031), None, v, 0).is_none());
        assert!(empty_template("n", Network::Signet, &tip(4032), None, v, 0).is_some());
        // The testnets' 20-minute rule makes bits depend on the next time.
        assert!(empty_template("n", Network::Testnet, &tip(10), None, v, 0).is_none());
        assert!(empty_template("n", Network::Testnet4, &tip(10), None, v, 0).is_none());
        // Regtest never retargets.
        assert!(empty_template("n", Network::Regtest, &tip(2015), None, v, 0).is_some());
        assert_eq!(retarget_period_start(Network::Regtest, &tip(2015)), None);
        // Bits that are not hex.
        let mut bad = tip(1);
        bad.bits = "zz".into();
        assert!(empty_template("n", Network::Regtest, &bad, None, v, 0).is_none());
    }

    /// Bitcoin Core's own cases (`pow_tests.cpp`, mainnet blocks): the
    /// last block of a period, its bits and time, the time of the period's
    /// first block, and the bits Core requires of the next block.
    #[test]
    fn at_a_retarget_height_the_bits_are_cores() {
        let cases = [
            // Blocks 30240..32255: the period was short, difficulty up.
            (
                32_255,
                0x1d00_ffff,
                1_262_152_739,
                1_261_130_161,
                0x1d00_d86a,
            ),
            // Blocks 0..2015: slower than two weeks, held at the limit.
            (
                2_015,
                0x1d00_ffff,
                1_233_061_996,
                1_231_006_505,
                0x1d00_ffff,
            ),
            // Blocks 66528..68543: over four times too fast, clamped to 4x.
            (
                68_543,
                0x1c05_a3f4,
                1_279_297_671,
                1_279_008_237,
                0x1c01_68fd,
            ),
            // Blocks 44352..46367 (Core's first time is made up): over four
            // times too slow, clamped to a quarter of the difficulty.
            (
                46_367,
                0x1c38_7f6f,
                1_269_211_443,
                1_263_163_443,
                0x1d00_e1fd,
            ),
        ];
        for (height, bits, time, first_time, expected) in cases {
            let mut last = tip(height);
            last.bits = format!("{bits:08x}");
            last.time = time;
            let start = retarget_period_start(Network::Bitcoin, &last);
            assert_eq!(start, Some(height + 1 - 2016), "height {height}");
            let t = empty_template(
                "n",
                Network::Bitcoin,
                &last,
                Some(first_time),
                Version::TWO,
                0,
            )
            .expect("the period's first time is given");
            assert_eq!(
                t.bits,
                CompactTarget::from_consensus(expected),
                "after height {height}"
            );
        }
    }

    /// A mainnet template on `prev` at `height`, as RawGbt carries it.
    fn full(height: u32, prev: BlockHash) -> BlockTemplate {
        let mut t = empty_template(
            "core",
            Network::Regtest,
            &tip(height - 1),
            None,
            Version::TWO,
            0,
        )
        .unwrap();
        t.prev_blockhash = prev;
        t.network = Some(Network::Bitcoin);
        t
    }

    fn header_on(prev: BlockHash, time: u32) -> Header {
        Header {
            version: Version::TWO,
            prev_blockhash: prev,
            merkle_root: bitcoin::TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(0x1703_a30c),
            nonce: 7,
        }
    }

    #[test]
    fn a_header_on_the_mined_tip_makes_the_next_empty_template_alone() {
        let prev = BlockHash::from_byte_array([9; 32]);
        let current = full(840_000, prev);
        let header = header_on(prev, 1_700_000_500);
        let t = empty_template_after(&current, &header, 1_700_000_100_000).unwrap();
        assert_eq!((t.height, t.prev_blockhash), (840_001, header.block_hash()));
        assert_eq!(t.bits, header.bits);
        assert_eq!(t.coinbase_value.to_sat(), 312_500_000);
        // The block's time is ahead of the clock: the next is after it.
        assert_eq!((t.min_time, t.cur_time), (1_700_000_501, 1_700_000_501));
        assert_eq!(
            t.chain_work,
            Some(current.chain_work.unwrap() + header.work())
        );
        assert_eq!(
            (t.network, t.node_id.as_str()),
            (Some(Network::Bitcoin), "core")
        );
        let later = empty_template_after(&current, &header, 1_700_009_000_000).unwrap();
        assert_eq!(later.cur_time, 1_700_009_000, "the clock when it is ahead");
    }

    #[test]
    fn a_header_elsewhere_or_at_a_retarget_is_left_to_the_node() {
        let prev = BlockHash::from_byte_array([9; 32]);
        let now = 1_700_000_000_000;
        let on_tip = header_on(prev, 1_700_000_000);
        let sibling = header_on(BlockHash::from_byte_array([8; 32]), 1_700_000_000);
        assert!(empty_template_after(&full(840_000, prev), &sibling, now).is_none());
        // The block after 2015 + 2016k starts a period.
        assert!(empty_template_after(&full(2_015, prev), &on_tip, now).is_none());
        assert!(empty_template_after(&full(2_016, prev), &on_tip, now).is_some());
        // Fewer than 11 blocks below: the median is over fewer.
        assert!(empty_template_after(&full(11, prev), &on_tip, now).is_none());
        // A time at the future limit.
        let ahead = header_on(prev, 1_700_000_000 + 2 * 60 * 60);
        assert!(empty_template_after(&full(840_000, prev), &ahead, now).is_none());
    }
}
