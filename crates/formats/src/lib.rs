//! The formats carechain's services share, each with exactly one implementation:
//!
//! - [`canonical`]: RFC 8785 canonical JSON (JCS) and the record version hash built on it, which
//!   the gateway anchors and the CLI puts in a consent's `consentHash`;
//! - [`audit_chain`]: the audit log's hash chain: how a row is linked to the one before it, and
//!   the one checker that every verifier (the writer's self-check, the anchorer, the full
//!   verification) runs over stored rows;
//! - [`index`]: the contract between the indexer and its readers: the cursor they read and the
//!   `NOTIFY` channels and payloads the indexer sends when it commits a change.

pub mod audit_chain;
pub mod canonical;
pub mod index;
