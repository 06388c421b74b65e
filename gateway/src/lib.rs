//! carechain FHIR R4 gateway.
//!
//! Providers, patients and delegates sign in with their wallet (EIP-4361) and get a short-lived
//! bearer token; every FHIR interaction then asks `ConsentRegistry.decide` on chain before the
//! store is touched, and every request, allowed or not, becomes one AuditEvent row in an
//! append-only, hash-chained table before its response leaves.
//!
//! Layout (one concern per module; the HTTP layer depends on the others, never the reverse):
//! - [`server`]: start-up and serving of one gateway; [`state`]: the state handlers share;
//!   [`tls`]: HTTPS (the TLS listener, the certificate reloaded on SIGHUP);
//! - [`config`], [`error`]: flags and environment; the error type and its `OperationOutcome`;
//! - [`auth`], [`signing`]: EIP-4361 sign-in, bearer tokens, per-client and per-user limits;
//! - [`chain`]: contract calls (decide, membership, ERC-1271, record anchors);
//! - [`consent`]: the consent decision: asked on chain, cached, invalidated by the indexer;
//! - [`records`]: the record service: read, write, search and Bundles over the encrypted
//!   store ([`records::store`]), each decided first and verified against its anchor;
//! - [`audit`]: the hash-chained audit log (writer, anchoring, verification; the chain rule
//!   itself is `carechain_formats::audit_chain`);
//! - [`compliance`]: AuditEvent search and export, consent history, break-glass review;
//! - [`research`]: FHIR Bulk Data export for research organisations (consent for `HRESCH`
//!   decided at the job's start block, de-identified by `carechain-deid`, jobs in PostgreSQL);
//! - [`relay`]: gas-free consent (signed grants and revocations submitted with the gateway's
//!   key);
//! - [`portal`]: the patient portal served at `/portal` (its files, the typed data it asks a
//!   wallet to sign, directory lookups);
//! - [`fhir`], [`crypto`], [`db`], [`paging`]: FHIR helpers, envelope encryption, the read
//!   connections, sealed paging cursors;
//! - [`http`]: the axum router: thin handlers over the modules above.

pub mod audit;
pub mod auth;
pub mod chain;
pub mod compliance;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod db;
pub mod error;
pub mod federation;
pub mod fhir;
pub mod http;
pub mod paging;
pub mod portal;
pub mod records;
pub mod relay;
pub mod research;
pub mod server;
pub mod signing;
pub mod state;
pub mod tls;

pub use config::GatewayConfig;
pub use server::{Gateway, GatewayError, shutdown_signal};
pub use state::AppState;
