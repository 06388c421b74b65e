//! `carechain-audit`: verifies the gateway's audit log against AuditAnchor, or prints the
//! inclusion proof of one row. Reads the database and the chain only; writes nothing.
//!
//! ```text
//! carechain-audit verify                 # exit 0: verified; 1: first bad row reported
//! carechain-audit proof --seq 42         # exit 0: proof printed; 1: not anchored yet
//! ```

use carechain_contracts::DeploymentManifest;
use carechain_gateway::audit::verify::{AnchorReader, inclusion_proof, verify_audit_log};
use carechain_tls::{PgTls, RedactedUrl, RpcEndpoint};
use clap::{Parser, Subcommand};
use eyre::WrapErr;
use std::{path::PathBuf, process::ExitCode, time::Duration};

/// Verify the carechain audit log against its on-chain anchors.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// PostgreSQL connection URL (the gateway's database).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// PostgreSQL TLS.
    #[command(flatten)]
    db_tls: PgTls,
    /// JSON-RPC URL of the chain (`http://` or `https://`; credentials in it are never shown).
    #[arg(
        long,
        env = "CARECHAIN_RPC_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8545"
    )]
    rpc_url: RedactedUrl,
    /// CA certificate(s) (PEM) the RPC endpoint's HTTPS certificate must chain to, instead of
    /// the system's root certificates.
    #[arg(long, env = "CARECHAIN_RPC_CA_FILE", value_name = "PEM")]
    rpc_ca_file: Option<PathBuf>,
    /// Path of the deployment manifest (names the AuditAnchor contract).
    #[arg(long, env = "CARECHAIN_MANIFEST")]
    manifest: PathBuf,
    /// The address the log is anchored with (each gateway's log has its own sequence on chain);
    /// default: the key the database's anchoring records name.
    #[arg(long, env = "CARECHAIN_AUDIT_GATEWAY", value_name = "ADDRESS")]
    gateway: Option<alloy::primitives::Address>,
    /// Time limit of one chain call in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    chain_timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Recompute the hash chain and every anchored root; report the first bad row (JSON).
    Verify,
    /// Print the inclusion proof of row `seq` with its anchoring transaction (JSON).
    Proof {
        /// The row's sequence number (its AuditEvent id).
        #[arg(long)]
        seq: u64,
    },
}

#[tokio::main]
async fn main() -> eyre::Result<ExitCode> {
    let cli = Cli::parse();
    let manifest = DeploymentManifest::load(&cli.manifest).wrap_err("load the manifest")?;
    let rpc = RpcEndpoint::new(cli.rpc_url, cli.rpc_ca_file.as_deref());
    rpc.trust().check()?;
    let anchors = AnchorReader::connect(
        &rpc,
        manifest.contracts.audit_anchor,
        Duration::from_millis(cli.chain_timeout_ms),
    )?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(cli.db_tls.connect_options(&cli.database_url)?)
        .await
        .wrap_err("connect to the database")?;
    match cli.command {
        Command::Verify => {
            let report = verify_audit_log(&pool, &anchors, cli.gateway).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Proof { seq } => match inclusion_proof(&pool, &anchors, seq).await? {
            Some(proof) => {
                println!("{}", serde_json::to_string_pretty(&proof)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("audit row {seq} is not anchored yet");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
