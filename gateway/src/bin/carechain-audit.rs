//! `carechain-audit`: verifies the gateway's audit log against AuditAnchor, or prints the
//! inclusion proof of one row. Reads the database and the chain only; writes nothing.
//!
//! ```text
//! carechain-audit verify                 # exit 0: verified; 1: first bad row reported
//! carechain-audit proof --seq 42         # exit 0: proof printed; 1: not anchored yet
//! ```

use carechain_contracts::DeploymentManifest;
use carechain_gateway::audit::verify::{AnchorReader, inclusion_proof, verify_audit_log};
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
    /// JSON-RPC URL of the chain.
    #[arg(
        long,
        env = "CARECHAIN_RPC_URL",
        default_value = "http://127.0.0.1:8545"
    )]
    rpc_url: String,
    /// Path of the deployment manifest (names the AuditAnchor contract).
    #[arg(long, env = "CARECHAIN_MANIFEST")]
    manifest: PathBuf,
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
    let anchors = AnchorReader::new(
        &cli.rpc_url,
        manifest.contracts.audit_anchor,
        Duration::from_millis(cli.chain_timeout_ms),
    )?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&cli.database_url)
        .await
        .wrap_err("connect to the database")?;
    match cli.command {
        Command::Verify => {
            let report = verify_audit_log(&pool, &anchors).await?;
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
