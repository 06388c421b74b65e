//! `carechain break-glass`: a member's time-boxed emergency access.

use super::TxArgs;
use crate::{chain, ops, time};
use alloy::primitives::Address;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum BreakGlassCommand {
    /// Open an emergency session for the patient (your organisation; ETREAT only).
    #[command(
        after_help = "Example:\n  carechain break-glass open --key dr-b \\\n    \
        --patient 0x90F79bf6EB2c4f870365E785982E1f101E93b906 --reason life-threatening --for 1h\n\n\
        Reasons: patient-unconscious, life-threatening, imminent-risk-of-harm,\n\
        patient-unable-to-communicate. The chain caps the duration (governance sets the maximum)."
    )]
    Open {
        /// The patient's wallet address.
        #[arg(long)]
        patient: Address,
        /// Why: patient-unconscious, life-threatening, imminent-risk-of-harm or
        /// patient-unable-to-communicate.
        #[arg(long)]
        reason: String,
        /// How long the session lasts (e.g. 30m, 1h).
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Close your organisation's emergency session for the patient before it expires.
    #[command(
        after_help = "Example:\n  carechain break-glass close --key dr-b \\\n    \
        --patient 0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    )]
    Close {
        /// The patient's wallet address.
        #[arg(long)]
        patient: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

impl BreakGlassCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        match self {
            Self::Open {
                patient,
                reason,
                duration,
                tx,
            } => {
                let reason = ops::break_glass_reason(&reason)?;
                let seconds = u32::try_from(time::parse_duration(&duration)?).map_err(|_| {
                    eyre::eyre!("--for {duration} is far too long for an emergency session")
                })?;
                let chain = chain::Chain::connect(&tx.chain).await?;
                ops::break_glass_open(&chain, &tx.key, patient, reason, seconds, tx.yes).await
            }
            Self::Close { patient, tx } => {
                let chain = chain::Chain::connect(&tx.chain).await?;
                ops::break_glass_close(&chain, &tx.key, patient, tx.yes).await
            }
        }
    }
}
