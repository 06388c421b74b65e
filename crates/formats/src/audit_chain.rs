//! The audit log's hash chain: the rule that links each row to the one before it, and the one
//! checker every verifier runs over stored rows.
//!
//! Rows carry a contiguous sequence number from 1 and the chained hash
//!
//! ```text
//! hash(seq) = keccak256(hash(seq - 1) ‖ seq as 8 bytes, big-endian ‖ JCS(event))
//! ```
//!
//! with [`GENESIS`] (32 zero bytes) before the first row; each row also stores the hash it was
//! linked to (`prev_hash`). A batch of rows is anchored on chain as the Merkle root of their
//! hashes. What can be wrong with stored rows is a [`Fault`].

use crate::canonical::canonicalize;
use alloy::primitives::{B256, keccak256};
use serde::Serialize;
use serde_json::Value;

/// The hash the first row is linked to.
pub const GENESIS: B256 = B256::ZERO;

/// The hash of row `seq` whose event's canonical (RFC 8785) form is `canonical_event`, linked
/// after `prev`.
pub fn link(prev: B256, seq: u64, canonical_event: &str) -> B256 {
    let mut buf = Vec::with_capacity(40 + canonical_event.len());
    buf.extend_from_slice(prev.as_slice());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(canonical_event.as_bytes());
    keccak256(buf)
}

/// The hash of row `seq` holding `event`, linked after `prev`.
pub fn row_hash(prev: B256, seq: u64, event: &Value) -> B256 {
    link(prev, seq, &canonicalize(event))
}

/// What is wrong with the stored log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The row does not exist (deleted, or the table ends before an anchored range does).
    Missing,
    /// The row's content or hash does not match its chained hash.
    Tampered,
    /// The row's `prev_hash` is not the previous row's hash.
    BrokenLink,
    /// The rows of an anchored batch chain correctly but their Merkle root differs from the
    /// anchored root (the rows were rewritten with recomputed hashes).
    RootMismatch,
}

/// A row as stored: sequence number, event as JSON text, and its two hashes as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Sequence number.
    pub seq: u64,
    /// The event, as stored (JSON text).
    pub event: String,
    /// The hash the row says it is linked to.
    pub prev_hash: Vec<u8>,
    /// The row's stored hash.
    pub hash: Vec<u8>,
}

impl StoredRow {
    /// The hash this row should have, computed from its own content and its stored
    /// `prev_hash` (`None` when the event is not JSON or `prev_hash` is not 32 bytes).
    pub fn recompute(&self) -> Option<B256> {
        let prev = B256::try_from(self.prev_hash.as_slice()).ok()?;
        let event: Value = serde_json::from_str(&self.event).ok()?;
        Some(row_hash(prev, self.seq, &event))
    }
}

/// Recomputes the hashes of `rows` ([`StoredRow::recompute`]), on every core for large pages:
/// each depends only on its own row, so the links are checked afterwards, in order, by a
/// [`ChainChecker`].
pub fn recompute_all(rows: &[StoredRow]) -> Vec<Option<B256>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads < 2 || rows.len() < 64 {
        return rows.iter().map(StoredRow::recompute).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    scope.spawn(move || part.iter().map(StoredRow::recompute).collect::<Vec<_>>()),
                )
            })
            .collect();
        // A worker that died verifies nothing: its rows count as not verified (fail closed),
        // and the result keeps one entry per row.
        handles
            .into_iter()
            .flat_map(|(len, h)| h.join().unwrap_or_else(|_| vec![None; len]))
            .collect()
    })
}

/// Walks stored rows in sequence order and checks each against the chain so far: the next
/// sequence number, the link to the previous hash, the recomputed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainChecker {
    next_seq: u64,
    prev: B256,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainChecker {
    /// A checker expecting the first row (seq 1, linked to [`GENESIS`]).
    pub const fn new() -> Self {
        Self {
            next_seq: 1,
            prev: GENESIS,
        }
    }

    /// A checker expecting row `last_seq + 1`, linked to `last_hash` (the verified hash of
    /// row `last_seq`).
    pub const fn after(last_seq: u64, last_hash: B256) -> Self {
        Self {
            next_seq: last_seq + 1,
            prev: last_hash,
        }
    }

    /// The sequence number of the row expected next.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks `row`, whose hash recomputed from its content is `recomputed`; on success the
    /// row's verified hash, and the checker expects the row after it. On failure the sequence
    /// number of the first bad row and what is wrong (a gap is the missing row's number).
    pub fn check(
        &mut self,
        row: &StoredRow,
        recomputed: Option<B256>,
    ) -> Result<B256, (u64, Fault)> {
        if row.seq != self.next_seq {
            return Err((self.next_seq, Fault::Missing));
        }
        if row.prev_hash.as_slice() != self.prev.as_slice() {
            return Err((row.seq, Fault::BrokenLink));
        }
        let hash = recomputed
            .filter(|h| h.as_slice() == row.hash.as_slice())
            .ok_or((row.seq, Fault::Tampered))?;
        self.prev = hash;
        self.next_seq = row.seq + 1;
        Ok(hash)
    }

    /// Checks a page of consecutive rows; returns their verified hashes.
    pub fn check_page(&mut self, rows: &[StoredRow]) -> Result<Vec<B256>, (u64, Fault)> {
        let recomputed = recompute_all(rows);
        rows.iter()
            .zip(recomputed)
            .map(|(row, hash)| self.check(row, hash))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(n: u64) -> Vec<StoredRow> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let event = json!({"resourceType": "AuditEvent", "id": seq.to_string()});
                let hash = row_hash(prev, seq, &event);
                let row = StoredRow {
                    seq,
                    event: event.to_string(),
                    prev_hash: prev.to_vec(),
                    hash: hash.to_vec(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    #[test]
    fn the_link_covers_previous_hash_sequence_and_content() {
        let event = json!({"a": 1});
        let h1 = row_hash(GENESIS, 1, &event);
        assert_ne!(h1, row_hash(GENESIS, 2, &event));
        assert_ne!(h1, row_hash(h1, 1, &event));
        assert_ne!(h1, row_hash(GENESIS, 1, &json!({"a": 2})));
        // Member order and whitespace do not matter: the event is canonicalised.
        let spaced: Value = serde_json::from_str(r#"{ "b" : 2, "a" : 1 }"#).expect("json");
        assert_eq!(
            row_hash(GENESIS, 1, &spaced),
            row_hash(GENESIS, 1, &json!({"a": 1, "b": 2}))
        );
    }

    #[test]
    fn an_intact_log_checks_in_pages() {
        let rows = log(200);
        let mut checker = ChainChecker::new();
        let first = checker.check_page(&rows[..150]).expect("intact");
        let second = checker.check_page(&rows[150..]).expect("intact");
        assert_eq!(first.len() + second.len(), 200);
        assert_eq!(checker.next_seq(), 201);
        let resumed = ChainChecker::after(150, first[149]).check_page(&rows[150..]);
        assert_eq!(resumed, Ok(second));
    }

    #[test]
    fn faults_name_the_first_bad_row() {
        let rows = log(100);
        let check = |rows: &[StoredRow]| ChainChecker::new().check_page(rows).map(|_| ());

        let mut gap = rows.clone();
        gap.remove(40);
        assert_eq!(check(&gap), Err((41, Fault::Missing)));

        let mut edited = rows.clone();
        edited[70].event = json!({"resourceType": "AuditEvent", "id": "x"}).to_string();
        assert_eq!(check(&edited), Err((71, Fault::Tampered)));

        let mut relinked = rows.clone();
        relinked[80].prev_hash = vec![1; 32];
        assert_eq!(check(&relinked), Err((81, Fault::BrokenLink)));

        let mut garbage = rows;
        garbage[10].event = "not json".into();
        assert_eq!(check(&garbage), Err((11, Fault::Tampered)));
    }
}
