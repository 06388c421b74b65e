//! The Merkle tree of `IRecordRegistry` and `IAuditAnchor`.
//!
//! - leaf = `keccak256(keccak256(value))` for a 32-byte value (a record version hash, or an
//!   audit row's chained hash); hashing twice keeps a leaf from ever equalling an inner node;
//! - inner node = `keccak256(a ‖ b)` with `a <= b` (sorted pair), so proofs need no
//!   left/right flags;
//! - a level with an odd number of nodes carries its last node up unchanged.
//!
//! Proofs list the sibling hashes from the leaf upwards; a level where the node was carried up
//! contributes no sibling.

use alloy::primitives::{B256, keccak256};

/// Hashes a value into its leaf: `keccak256(keccak256(value))`.
pub fn leaf_hash(value: B256) -> B256 {
    keccak256(keccak256(value))
}

/// Hashes a sorted pair into its parent node.
pub fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// A Merkle tree over a non-empty list of values, all levels kept for proofs.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves, the last level is the root alone.
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree over `values`; `None` for an empty list (no root exists).
    pub fn new(values: &[B256]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut levels = vec![values.iter().copied().map(leaf_hash).collect::<Vec<_>>()];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => hash_pair(*a, *b),
                    [odd] => *odd,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(next);
        }
        Some(Self { levels })
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Always false: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The proof of the value at `index`, or `None` when out of range.
    pub fn proof(&self, mut index: usize) -> Option<Vec<B256>> {
        if index >= self.len() {
            return None;
        }
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if let Some(hash) = level.get(sibling) {
                proof.push(*hash);
            }
            index /= 2;
        }
        Some(proof)
    }
}

/// The root over `values`, or `None` for an empty list.
pub fn root(values: &[B256]) -> Option<B256> {
    MerkleTree::new(values).map(|t| t.root())
}

/// Whether `proof` includes `value` under `root`.
pub fn verify(value: B256, proof: &[B256], root: B256) -> bool {
    proof
        .iter()
        .fold(leaf_hash(value), |node, sibling| hash_pair(node, *sibling))
        == root
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::b256;

    fn value(n: u8) -> B256 {
        B256::with_last_byte(n)
    }

    #[test]
    fn leaf_matches_cast_keccak() {
        // cast keccak $(cast keccak 0x00..01)
        assert_eq!(
            leaf_hash(value(1)),
            b256!("b5d9d894133a730aa651ef62d26b0ffa846233c74177a591a4a896adfda97d22")
        );
    }

    #[test]
    fn roots_match_known_vectors() {
        // Computed with `cast keccak` (see the module docs for the construction).
        assert_eq!(root(&[value(1)]), Some(leaf_hash(value(1))));
        assert_eq!(
            root(&[value(1), value(2)]),
            Some(b256!(
                "e685571b7e25a4a0391fb8daa09dc8d3fbb3382504525f89a2334fbbf8f8e92c"
            ))
        );
        assert_eq!(
            root(&[value(1), value(2), value(3)]),
            Some(b256!(
                "7bcaa162d2c015da3f7ae4897086d4012ed03a185c8ee8847ff74e236cf58412"
            ))
        );
        assert_eq!(root(&[]), None);
    }

    #[test]
    fn proofs_verify_for_every_size() {
        for n in 1..=17u8 {
            let values: Vec<B256> = (1..=n).map(value).collect();
            let tree = MerkleTree::new(&values).expect("non-empty");
            for (i, v) in values.iter().enumerate() {
                let proof = tree.proof(i).expect("in range");
                assert!(verify(*v, &proof, tree.root()), "n={n} i={i}");
                assert!(!verify(value(200), &proof, tree.root()));
            }
            assert!(tree.proof(values.len()).is_none());
        }
    }

    #[test]
    fn odd_node_is_carried_up() {
        let values: Vec<B256> = (1..=3).map(value).collect();
        let tree = MerkleTree::new(&values).expect("non-empty");
        // The third leaf has no sibling on the first level: its proof is just the pair node.
        assert_eq!(
            tree.proof(2),
            Some(vec![hash_pair(leaf_hash(value(1)), leaf_hash(value(2)))])
        );
    }
}
