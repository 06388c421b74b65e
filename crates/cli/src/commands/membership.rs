//! `carechain org` and `carechain member`: the consortium's organisations and member keys.

use super::TxArgs;
use crate::{chain, ops};
use alloy::primitives::Address;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Admit an organisation to the consortium (governance only).
    #[command(
        after_help = "Example:\n  carechain org admit --key governance \\\n    \
        --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc --kind hospital --name \"St. Mary Hospital\"\n\n\
        Kinds: hospital, clinic, lab, pharmacy, insurer, research, compliance. The name is public (on chain)."
    )]
    Admit {
        /// The organisation's address (its identifier, typically its administrative wallet).
        #[arg(long)]
        org: Address,
        /// hospital, clinic, lab, pharmacy, insurer, research or compliance.
        #[arg(long)]
        kind: String,
        /// Display name (public, on chain).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Suspend an organisation: all its keys are denied everywhere at once (governance only).
    #[command(
        after_help = "Example:\n  carechain org suspend --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
    )]
    Suspend {
        /// The organisation's address.
        #[arg(long)]
        org: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Reinstate a suspended organisation (governance only).
    #[command(
        after_help = "Example:\n  carechain org reinstate --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
    )]
    Reinstate {
        /// The organisation's address.
        #[arg(long)]
        org: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// Link a member key (a practitioner's or a service's) to an organisation.
    #[command(
        after_help = "Example:\n  carechain member add --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc \\\n    \
        --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9 --role practitioner"
    )]
    Add {
        /// The organisation.
        #[arg(long)]
        org: Address,
        /// The member key's address.
        #[arg(long)]
        member: Address,
        /// practitioner or service.
        #[arg(long, default_value = "practitioner")]
        role: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Suspend a member key: denied everywhere at once.
    #[command(
        after_help = "Example:\n  carechain member suspend --key governance --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9"
    )]
    Suspend {
        /// The member key's address.
        #[arg(long)]
        member: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Reinstate a suspended member key.
    #[command(
        after_help = "Example:\n  carechain member reinstate --key governance --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9"
    )]
    Reinstate {
        /// The member key's address.
        #[arg(long)]
        member: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Retire a member key for good.
    #[command(
        after_help = "Example:\n  carechain member retire --key governance --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9"
    )]
    Retire {
        /// The member key's address.
        #[arg(long)]
        member: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Replace a member key by a new one (the old key is retired).
    #[command(
        after_help = "Example:\n  carechain member rotate --key governance \\\n    \
        --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9 --new 0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"
    )]
    Rotate {
        /// The member key being replaced.
        #[arg(long)]
        member: Address,
        /// The new key.
        #[arg(long)]
        new: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

async fn membership_command(operation: ops::Membership, tx: TxArgs) -> eyre::Result<()> {
    let chain = chain::Chain::connect(&tx.chain).await?;
    ops::membership(&chain, &tx.key, operation, tx.yes).await
}

impl OrgCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        use ops::Membership as M;
        match self {
            Self::Admit {
                org,
                kind,
                name,
                tx,
            } => {
                let kind = ops::org_kind(&kind)?;
                membership_command(M::Admit { org, kind, name }, tx).await
            }
            Self::Suspend { org, tx } => membership_command(M::SuspendOrg(org), tx).await,
            Self::Reinstate { org, tx } => membership_command(M::ReinstateOrg(org), tx).await,
        }
    }
}

impl MemberCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        use ops::Membership as M;
        match self {
            Self::Add {
                org,
                member,
                role,
                tx,
            } => {
                let role = ops::member_role(&role)?;
                membership_command(
                    M::AddMember {
                        org,
                        key: member,
                        role,
                    },
                    tx,
                )
                .await
            }
            Self::Suspend { member, tx } => membership_command(M::SuspendMember(member), tx).await,
            Self::Reinstate { member, tx } => {
                membership_command(M::ReinstateMember(member), tx).await
            }
            Self::Retire { member, tx } => membership_command(M::RetireMember(member), tx).await,
            Self::Rotate { member, new, tx } => {
                membership_command(M::RotateMember { old: member, new }, tx).await
            }
        }
    }
}
