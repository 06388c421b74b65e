//! `carechain audit`: compliance staff verify the audit log and prove an event's anchoring.

use crate::gateway_client;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the whole audit log's hash chain and check every anchored Merkle root against
    /// AuditAnchor; reports the first tampered or missing row (and exits non-zero).
    #[command(after_help = "Example:\n  carechain login --key auditor && carechain audit verify")]
    Verify {
        /// Print the gateway's Parameters report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gateway: gateway_client::GatewayArgs,
    },
    /// An AuditEvent's inclusion proof: its hash, the anchored batch and root, the anchoring
    /// transaction and block, and whether the proof verified on chain.
    #[command(after_help = "Example:\n  carechain audit proof 1234")]
    Proof {
        /// The AuditEvent id.
        id: String,
        /// Print the gateway's Parameters resource as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gateway: gateway_client::GatewayArgs,
    },
}

impl AuditCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        match self {
            Self::Verify { json, gateway } => gateway_client::audit_verify(&gateway, json).await,
            Self::Proof { id, json, gateway } => {
                gateway_client::audit_proof(&gateway, &id, json).await
            }
        }
    }
}
