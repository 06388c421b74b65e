//! carechain's indexer: every event of the four carechain contracts in PostgreSQL, exactly
//! once and reorg-safe.
//!
//! - [`config`]: flags and environment ([`Config`]).
//! - [`events`]: decoding logs into per-table column batches inserted with `UNNEST`.
//! - [`derive`]: current state (organisations, members, consents, delegates, break-glass
//!   sessions, anchors) folded from the event log.
//! - [`store`]: the cursor, the window of block hashes, atomic commits, rollbacks,
//!   `LISTEN/NOTIFY` channels.
//! - [`rpc`]: JSON-RPC with retries and adaptive `eth_getLogs` ranges.
//! - [`sync`]: start-up checks, pipelined backfill, live following, reorg handling.
//! - [`metrics`]: Prometheus text metrics.
//!
//! Backfill runs up to the safe head (the node's `finalized` block, else head - confirmations -
//! reorg window) in ranges fetched ahead of the writer and committed in order; the blocks above
//! are followed one by one with a parent-hash check, their logs fetched by block hash. Each
//! followed block is one transaction holding its events, derived state, block hash and the
//! cursor; each backfill range one holding its events, block hashes and the cursor, and the
//! backfill ends by folding the derived state over all of them in one transaction with the
//! derived-state cursor (set-based, in bulk on the first backfill). A crash at any point loses
//! and duplicates nothing.

pub mod config;
pub mod derive;
pub mod error;
pub mod events;
pub mod metrics;
pub mod rpc;
pub mod store;
pub mod sync;

pub use config::Config;
pub use error::IndexerError;
pub use sync::Indexer;
