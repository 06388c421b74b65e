//! The indexer's error type.

use crate::events::DecodeError;
use carechain_contracts::ManifestError;
use std::{net::SocketAddr, path::PathBuf};

/// Why the indexer stopped (or, for transient errors, why a pass was retried).
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The deployment manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A TLS setting (the RPC's CA file, PostgreSQL's sslmode or root certificate) is unusable.
    #[error(transparent)]
    Tls(#[from] carechain_tls::TlsError),
    /// The manifest names another chain than the RPC endpoint serves.
    #[error(
        "the deployment manifest {manifest_path} is for chain id {manifest_chain_id}, but the RPC \
         endpoint {rpc_url} serves chain id {rpc_chain_id}: point --rpc-url and --manifest at the \
         same chain"
    )]
    ChainIdMismatch {
        /// The manifest path.
        manifest_path: PathBuf,
        /// Its chain id.
        manifest_chain_id: u64,
        /// The RPC URL, redacted.
        rpc_url: String,
        /// The chain id the endpoint reports.
        rpc_chain_id: u64,
    },
    /// The database could not be reached at start.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    DatabaseConnect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The migrations could not be applied.
    #[error("applying the migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database statement failed (transient: the pass is retried).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database already indexes another deployment of the same chain.
    #[error(
        "the database indexes another deployment on chain {chain_id} (deployment block \
         {stored_block}, ConsentRegistry {stored_consent}); use a fresh database for this manifest"
    )]
    DeploymentMismatch {
        /// The chain id.
        chain_id: u64,
        /// The deployment block stored in the database.
        stored_block: i64,
        /// The ConsentRegistry address stored in the database.
        stored_consent: String,
    },
    /// Another writer moved the cursor under this indexer.
    #[error(
        "the cursor moved under the indexer (expected block {expected}, found {found}): is a \
         second indexer running against this database?"
    )]
    CursorMoved {
        /// The block the indexer expected.
        expected: i64,
        /// The block found in the database.
        found: i64,
    },
    /// The chain reorganised deeper than the kept window of block hashes.
    #[error(
        "reorg deeper than the window: none of the {checked} stored block hashes from block \
         {cursor} down to block {lowest} is on the chain any more (window {window} blocks); \
         refusing to continue. Rebuild the database from the deployment block, or raise \
         --reorg-window and --confirmations"
    )]
    DeepReorg {
        /// The cursor when the reorg was found.
        cursor: u64,
        /// The lowest stored block compared.
        lowest: u64,
        /// How many stored hashes were compared.
        checked: usize,
        /// The configured window.
        window: u64,
    },
    /// The chain is behind the database's cursor by more than the window (a different or
    /// reset chain behind the same RPC URL).
    #[error(
        "the chain's head {head} is {behind} blocks below the indexed cursor {cursor}, more than \
         the reorg window {window}: the RPC endpoint serves a different or reset chain"
    )]
    ChainBehindCursor {
        /// The chain head.
        head: u64,
        /// The cursor.
        cursor: u64,
        /// How far behind.
        behind: u64,
        /// The window.
        window: u64,
    },
    /// A log could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The metrics endpoint could not listen.
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl IndexerError {
    /// A stable name for the variant, for structured logs and alerts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Manifest(_) => "manifest",
            Self::Tls(_) => "tls",
            Self::ChainIdMismatch { .. } => "chain-id-mismatch",
            Self::DatabaseConnect { .. } => "database-connect",
            Self::Migrate(_) => "migrate",
            Self::Database(_) => "database",
            Self::DeploymentMismatch { .. } => "deployment-mismatch",
            Self::CursorMoved { .. } => "cursor-moved",
            Self::DeepReorg { .. } => "deep-reorg",
            Self::ChainBehindCursor { .. } => "chain-behind-cursor",
            Self::Decode(_) => "decode",
            Self::MetricsListen { .. } => "metrics-listen",
            Self::Task(_) => "task",
        }
    }

    /// Whether retrying the pass from the stored cursor can succeed (database outages,
    /// incomplete logs). Everything else stops the indexer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Database(_) | Self::Decode(DecodeError::Incomplete(_)) | Self::Task(_)
        )
    }
}
