//! Command-line and environment configuration.

use carechain_tls::{PgTls, RedactedUrl, RpcEndpoint};
use clap::{Parser, ValueEnum};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// The chain id of anvil and other local development chains: no confirmations by default.
pub const LOCAL_CHAIN_ID: u64 = 31337;

/// Confirmations used when `--confirmations` is not given and the chain is not local.
pub const DEFAULT_CONFIRMATIONS: u64 = 12;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Indexes the carechain contracts' events into PostgreSQL.
///
/// Backfills from the deployment block up to the safe head (the chain's `finalized` block when
/// it reports one, else the head minus the confirmations and the reorg window), then follows
/// the chain block by block, checking parent hashes. Events, block hashes and the cursor are
/// written in one transaction per range, so the indexer can be stopped at any time.
#[derive(Debug, Clone, Parser)]
#[command(name = "carechain-indexer", version, about, long_about)]
pub struct Config {
    /// JSON-RPC endpoint of the chain, `http://` or `https://`. It may carry credentials
    /// (`user:password@`, an API key in the path or the query): they are never printed.
    #[arg(
        long,
        env = "CARECHAIN_RPC_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub rpc_url: RedactedUrl,

    /// CA certificate(s) (PEM) the RPC endpoint's HTTPS certificate must chain to, instead of
    /// the system's root certificates.
    #[arg(long, env = "CARECHAIN_RPC_CA_FILE", value_name = "PEM")]
    pub rpc_ca_file: Option<PathBuf>,

    /// Deployment manifest written by the deploy script (chain id, deployment block, addresses).
    #[arg(long, env = "CARECHAIN_MANIFEST", value_name = "PATH")]
    pub manifest: PathBuf,

    /// PostgreSQL connection URL; the migrations in `migrations/` are applied at start.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: String,

    /// PostgreSQL TLS.
    #[command(flatten)]
    pub db_tls: PgTls,

    /// Blocks below the head a block must be before it is indexed [default: 0 on chain id
    /// 31337, else 12].
    #[arg(long, env = "CARECHAIN_CONFIRMATIONS", value_name = "BLOCKS")]
    pub confirmations: Option<u64>,

    /// Deepest reorg handled, in blocks: the hashes of the last BLOCKS + 1 indexed blocks are
    /// kept (the fork point of a reorg this deep among them); a reorg deeper than this stops
    /// the indexer with an error.
    #[arg(
        long,
        env = "CARECHAIN_REORG_WINDOW",
        value_name = "BLOCKS",
        default_value_t = 64
    )]
    pub reorg_window: u64,

    /// Do not ask the node for its `finalized` block; backfill up to head - confirmations -
    /// reorg window instead.
    #[arg(long, env = "CARECHAIN_NO_FINALIZED_TAG")]
    pub no_finalized_tag: bool,

    /// Address for the Prometheus metrics endpoint (`GET /metrics`), e.g. 127.0.0.1:9464.
    #[arg(long, env = "CARECHAIN_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// How often to poll for a new head while following the chain, in milliseconds. Short by
    /// default: a revocation is enforced by the gateways from the first request after the
    /// indexer has committed its block, so this bounds how long a revoked consent still
    /// allows (one cheap eth_blockNumber per poll).
    #[arg(
        long,
        env = "CARECHAIN_POLL_INTERVAL_MS",
        value_name = "MS",
        default_value_t = 100
    )]
    pub poll_interval_ms: u64,

    /// First eth_getLogs range during backfill, in blocks; it doubles while ranges return
    /// fewer than half the target logs and shrinks when they return more. Small, so that the
    /// writer starts on the first range at once on a dense chain.
    #[arg(long, value_name = "BLOCKS", default_value_t = 1)]
    pub initial_range: u64,

    /// Largest eth_getLogs range during backfill, in blocks.
    #[arg(long, value_name = "BLOCKS", default_value_t = 50_000)]
    pub max_range: u64,

    /// Ranges are sized to return about this many logs.
    #[arg(long, value_name = "LOGS", default_value_t = 5_000)]
    pub target_logs: u64,

    /// eth_getLogs requests in flight ahead of the writer during backfill.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub fetch_concurrency: usize,

    /// Timeout of one JSON-RPC request, in seconds.
    #[arg(
        long,
        env = "CARECHAIN_RPC_TIMEOUT_S",
        value_name = "S",
        default_value_t = 30
    )]
    pub rpc_timeout_s: u64,

    /// Largest pause between RPC retries, in milliseconds (the pause doubles up to it).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub max_backoff_ms: u64,

    /// PostgreSQL connections in the pool.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub db_connections: u32,

    /// Exit once the cursor has reached the safe head (for one-off catch-up runs).
    #[arg(long)]
    pub exit_when_synced: bool,

    /// Log format.
    #[arg(long, env = "CARECHAIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Progress bar during backfill: shown on a terminal unless disabled.
    #[arg(long)]
    pub no_progress: bool,
}

impl Config {
    /// The confirmations to use on `chain_id`.
    pub fn confirmations_for(&self, chain_id: u64) -> u64 {
        self.confirmations.unwrap_or(if chain_id == LOCAL_CHAIN_ID {
            0
        } else {
            DEFAULT_CONFIRMATIONS
        })
    }

    /// The polling interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }

    /// The chain's JSON-RPC endpoint with its trust.
    pub fn rpc_endpoint(&self) -> RpcEndpoint {
        RpcEndpoint::new(self.rpc_url.clone(), self.rpc_ca_file.as_deref())
    }

    /// The database URL with any password replaced, for messages.
    pub fn redacted_database_url(&self) -> String {
        redact_url(&self.database_url)
    }
}

/// `scheme://user:***@host/...` for `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    match reqwest_url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// The URL type of alloy's HTTP transport.
pub mod reqwest_url {
    pub use alloy::transports::http::reqwest::Url;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@localhost:5432/db"),
            "postgres://u:***@localhost:5432/db"
        );
        assert_eq!(
            redact_url("postgres://localhost/db"),
            "postgres://localhost/db"
        );
    }

    #[test]
    fn confirmations_default_by_chain() {
        let config = Config::try_parse_from([
            "carechain-indexer",
            "--rpc-url",
            "http://127.0.0.1:8545",
            "--manifest",
            "m.json",
            "--database-url",
            "postgres://localhost/x",
        ])
        .expect("parses");
        assert_eq!(config.confirmations_for(31337), 0);
        assert_eq!(config.confirmations_for(1), DEFAULT_CONFIRMATIONS);
        assert_eq!(config.reorg_window, 64);
    }
}
