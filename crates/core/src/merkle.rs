//! The coinbase's merkle branch, and the merkle root it leads to.
//!
//! Stratum miners never see the block's transactions: jobmaker computes, once
//! per template, the hashes that pair with the coinbase on its way to the root
//! (the "merkle branch"), and every share check folds the coinbase txid
//! through them: `root = sha256d(…sha256d(sha256d(cb ‖ b0) ‖ b1)… ‖ bn)`.
//! Odd levels duplicate their last hash, as Bitcoin's merkle tree does.

use bitcoin::hashes::{Hash, HashEngine, sha256d};
use bitcoin::{TxMerkleNode, Txid};

/// The merkle branch of the coinbase (position 0) of a block whose other
/// transactions have the ids `txids`, in block order.
///
/// An empty block (no transactions but the coinbase) has an empty branch.
pub fn merkle_branch(txids: &[Txid]) -> Vec<TxMerkleNode> {
    let mut level: Vec<sha256d::Hash> = txids.iter().map(|t| t.to_raw_hash()).collect();
    let mut branch = Vec::new();
    // `level` holds the hashes beside the coinbase's own path: at each step
    // its first element pairs with the coinbase side, the rest pair up.
    while !level.is_empty() {
        branch.push(TxMerkleNode::from_raw_hash(level[0]));
        let rest = &level[1..];
        let mut next = Vec::with_capacity(rest.len().div_ceil(2));
        for pair in rest.chunks(2) {
            let right = pair.get(1).unwrap_or(&pair[0]);
            next.push(hash_pair(&pair[0], right));
        }
        level = next;
    }
    branch
}

/// The merkle root reached from the coinbase txid through `branch`.
pub fn merkle_root(coinbase_txid: Txid, branch: &[TxMerkleNode]) -> TxMerkleNode {
    let root = branch
        .iter()
        .fold(coinbase_txid.to_raw_hash(), |acc, node| {
            hash_pair(&acc, &node.to_raw_hash())
        });
    TxMerkleNode::from_raw_hash(root)
}

fn hash_pair(left: &sha256d::Hash, right: &sha256d::Hash) -> sha256d::Hash {
    let mut engine = sha256d::Hash::engine();
    engine.input(left.as_byte_array());
    engine.input(right.as_byte_array());
    sha256d::Hash::from_engine(engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::merkle_tree::calculate_root;
    use proptest::prelude::*;

    fn txid(n: u32) -> Txid {
        Txid::hash(&n.to_le_bytes())
    }

    #[test]
    fn empty_block_has_empty_branch_and_root_is_coinbase() {
        assert!(merkle_branch(&[]).is_empty());
        let cb = txid(7);
        assert_eq!(merkle_root(cb, &[]).to_raw_hash(), cb.to_raw_hash());
    }

    proptest! {
        /// The branch-derived root equals Bitcoin's merkle root of the whole
        /// transaction list (rust-bitcoin's implementation), for any size.
        #[test]
        fn branch_root_matches_full_tree(n in 0u32..300, seed in any::<u32>()) {
            let cb = txid(seed);
            let txids: Vec<Txid> = (0..n).map(|i| txid(seed.wrapping_add(i + 1))).collect();
            let branch = merkle_branch(&txids);
            let all = std::iter::once(cb).chain(txids.iter().copied()).map(|t| t.to_raw_hash());
            let expected: sha256d::Hash = calculate_root(all).unwrap();
            prop_assert_eq!(merkle_root(cb, &branch).to_raw_hash(), expected);
            // A tree of n+1 leaves has ceil(log2(n+1)) levels above the leaves.
            let levels = if n == 0 { 0 } else { 32 - n.leading_zeros() } as usize;
            prop_assert_eq!(branch.len(), levels);
        }
    }
}
