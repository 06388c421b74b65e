//! `carechain delegate`: guardians, caregivers and proxies who act for a patient.

use super::{Period, TxArgs};
use crate::{chain, consent, ops};
use alloy::primitives::Address;
use clap::Subcommand;
use eyre::bail;

#[derive(Debug, Subcommand)]
pub(crate) enum DelegateCommand {
    /// Add (or update) a delegate of the signing patient.
    #[command(after_help = "Example:\n  carechain delegate add --key alice \\\n    \
        --delegate 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 --kind guardian --for 1y")]
    Add {
        /// The delegate's wallet address.
        #[arg(long)]
        delegate: Address,
        /// guardian (grants and revokes anything for the patient), caregiver (reads, never
        /// changes consent) or proxy (grants only within --types/--actions/--purpose, revokes
        /// only what it granted).
        #[arg(long)]
        kind: String,
        /// A proxy's resource types, comma-separated (what it may read and grant).
        #[arg(long, value_name = "TYPES")]
        types: Option<String>,
        /// A proxy's actions (SMART v2, e.g. rs or read,search) it may grant.
        #[arg(long, value_name = "ACTIONS", default_value = "rs")]
        actions: String,
        /// A proxy's purposes of use, comma-separated, it may grant.
        #[arg(long, value_name = "PURPOSES", default_value = "TREAT")]
        purpose: String,
        /// How long the delegation lasts.
        #[command(flatten)]
        period: Period,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Remove a delegate of the signing patient.
    #[command(
        after_help = "Example:\n  carechain delegate remove --key alice \\\n    \
        --delegate 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
    )]
    Remove {
        /// The delegate's wallet address.
        #[arg(long)]
        delegate: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

impl DelegateCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        match self {
            Self::Add {
                delegate,
                kind,
                types,
                actions,
                purpose,
                period,
                tx,
            } => {
                let kind = ops::delegate_kind(&kind)?;
                let valid_until = period.end()?;
                let scope = match (kind, types) {
                    (carechain_contracts::DelegateKind::Proxy, Some(types)) => Some(
                        consent::Scope::parse(&types, &actions, &purpose, 0, valid_until)?,
                    ),
                    (carechain_contracts::DelegateKind::Proxy, None) => {
                        bail!(
                            "a proxy acts within a scope: name it with --types (and --actions, --purpose)"
                        )
                    }
                    (_, Some(_)) => bail!("only a proxy takes --types: a {kind} has no scope"),
                    (_, None) => None,
                };
                let chain = chain::Chain::connect(&tx.chain).await?;
                ops::delegate_add(&chain, &tx.key, delegate, kind, scope, valid_until, tx.yes).await
            }
            Self::Remove { delegate, tx } => {
                let chain = chain::Chain::connect(&tx.chain).await?;
                ops::delegate_remove(&chain, &tx.key, delegate, tx.yes).await
            }
        }
    }
}
