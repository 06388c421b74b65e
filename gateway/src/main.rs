//! `carechain-gateway`: serves the FHIR R4 API until SIGINT or SIGTERM.

use carechain_gateway::{Gateway, GatewayConfig, shutdown_signal};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// carechain FHIR R4 gateway: wallet sign-in, consent decided on chain, encrypted and audited
/// records.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    config: GatewayConfig,
    /// Log as JSON lines.
    #[arg(long, env = "CARECHAIN_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> eyre::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let gateway = Gateway::start(cli.config).await?;
    let scheme = match gateway.certificate() {
        Some(certificate) => {
            tokio::spawn(carechain_gateway::tls::reload_on_sighup(certificate));
            "https"
        }
        None => "http",
    };
    if let Some(addr) = gateway.local_addr() {
        tracing::info!(%addr, scheme, "carechain gateway listening");
    }
    gateway.serve(shutdown_signal()).await?;
    tracing::info!("carechain gateway stopped");
    Ok(())
}
