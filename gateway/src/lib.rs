//! carechain FHIR R4 gateway — placeholder.
//!
//! The gateway (wallet sign-in, consent-checked FHIR reads and writes, encrypted records,
//! hash-chained audit) is not implemented yet; another engineer replaces this crate. For now
//! it holds the configuration type so the workspace layout and operator flags are settled.

use std::{net::SocketAddr, path::PathBuf};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway is a placeholder and serves nothing yet.
    #[error(
        "the carechain gateway is not implemented yet: this build only validates its configuration \
         (listen {listen}); use the indexer and the `carechain` CLI meanwhile"
    )]
    NotImplemented {
        /// The address it would have listened on.
        listen: SocketAddr,
    },
}

/// Gateway configuration, from flags or environment.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    /// Address to serve the FHIR API on.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// PostgreSQL connection URL (the indexer's database).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// JSON-RPC URL of the chain.
    #[arg(long, env = "CARECHAIN_RPC_URL")]
    pub rpc_url: Option<String>,
    /// Path of the deployment manifest.
    #[arg(long, env = "CARECHAIN_MANIFEST")]
    pub manifest: Option<PathBuf>,
}

/// Starts the gateway; always refuses for now.
pub fn run(config: &GatewayConfig) -> Result<(), GatewayError> {
    Err(GatewayError::NotImplemented {
        listen: config.listen,
    })
}
