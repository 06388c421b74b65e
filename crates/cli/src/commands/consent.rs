//! `carechain consent`: grant, revoke, list and submit consent by name.

use super::Period;
use crate::{chain, consent, gateway_client, keys as keystore, time};
use alloy::primitives::Address;
use clap::Subcommand;
use eyre::{WrapErr, bail};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Grant (or replace) consent for an organisation or member key.
    ///
    /// Shows what will be signed and asks before signing (--yes skips the question; without a
    /// terminal --yes is required). By default the key sends `grant` as a transaction and pays
    /// the gas. --sign-only signs the EIP-712 typed data and prints it with the signature as
    /// JSON instead (anyone may submit it: `carechain consent submit`); --unsigned prints the
    /// typed data for a browser wallet's eth_signTypedData_v4 and needs no key.
    #[command(after_help = "Examples:\n  \
        carechain consent grant --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    \
        --types Observation,Condition --purpose TREAT --for 30d\n  \
        carechain consent grant --key alice --grantee 0x3C44... --types Observation --actions read \\\n    \
        --purpose TREAT,COC --until 2027-01-31 --sign-only > grant.json\n  \
        carechain consent grant --patient 0x7099... --grantee 0x3C44... --types Observation \\\n    \
        --purpose TREAT --for 1y --unsigned > to-sign.json\n\n\
        Codes: `carechain codes`. Durations: 90s, 15m, 12h, 30d, 2w, 1y.")]
    Grant(GrantArgs),
    /// Revoke the consent stored for a grantee (same modes as grant).
    #[command(after_help = "Examples:\n  \
        carechain consent revoke --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\n  \
        carechain consent revoke --key alice --grantee 0x3C44... --sign-only --yes > revoke.json")]
    Revoke(RevokeArgs),
    /// List the patient's stored consents, read from the chain: the grantees named in the
    /// patient's ConsentGranted events, each read back with ConsentRegistry.consentOf (so
    /// revoked consents are gone and expiry is current). Needs only the RPC endpoint.
    #[command(after_help = "Examples:\n  carechain consent list --key alice\n  \
        carechain consent list --patient 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --json")]
    List(ListArgs),
    /// Submit a signed grant or revocation (the JSON of --sign-only, or --unsigned typed data
    /// with a wallet's signature added as "signature"): with --via-gateway the gateway checks
    /// it and pays the gas (gas-free for the patient); otherwise the submitting key pays.
    #[command(
        after_help = "Examples:\n  carechain consent submit --via-gateway --file grant.json   # gas-free\n  \
        carechain consent submit --key relayer --file grant.json\n  \
        carechain consent submit --key relayer < grant.json"
    )]
    Submit(SubmitArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct SigningModeArgs {
    /// Sign the EIP-712 typed data and print it with the signature as JSON; send nothing.
    #[arg(long, conflicts_with = "unsigned")]
    sign_only: bool,
    /// Print the EIP-712 typed data for a wallet to sign (eth_signTypedData_v4); needs no key
    /// but --patient.
    #[arg(long)]
    unsigned: bool,
    /// How long a signature stays valid for submission (with --sign-only / --unsigned).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    deadline: String,
    /// Do not ask before signing or sending (required without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

impl SigningModeArgs {
    fn mode(&self) -> consent::Mode {
        if self.sign_only {
            consent::Mode::SignOnly
        } else if self.unsigned {
            consent::Mode::Unsigned
        } else {
            consent::Mode::Direct
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct GrantArgs {
    /// Organisation or member key (address) the consent is for.
    #[arg(long)]
    grantee: Address,
    /// FHIR resource types, comma-separated (e.g. Observation,Condition).
    #[arg(long, value_name = "TYPES")]
    types: String,
    /// SMART v2 actions: names (read,search) or letters (rs).
    #[arg(long, default_value = "read,search")]
    actions: String,
    /// HL7 purposes of use, comma-separated (e.g. TREAT or TREAT,COC).
    #[arg(long, value_name = "PURPOSES")]
    purpose: String,
    /// How long the consent lasts.
    #[command(flatten)]
    period: Period,
    /// The patient (default: the signing key's address; a delegate names the patient here).
    #[arg(long)]
    patient: Option<Address>,
    #[command(flatten)]
    mode: SigningModeArgs,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keystore::KeyArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RevokeArgs {
    /// Organisation or member key (address) whose consent is revoked.
    #[arg(long)]
    grantee: Address,
    /// The patient (default: the signing key's address; a delegate names the patient here).
    #[arg(long)]
    patient: Option<Address>,
    #[command(flatten)]
    mode: SigningModeArgs,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keystore::KeyArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The patient (default: the signing key's address).
    #[arg(long)]
    patient: Option<Address>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keystore::KeyArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SubmitArgs {
    /// The signed JSON (default: standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Hand it to the gateway (`POST [base]/relay/consent`), which checks it and submits it
    /// with its own funded key: no key and no gas needed here.
    #[arg(long)]
    via_gateway: bool,
    #[command(flatten)]
    gateway: gateway_client::GatewayArgs,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keystore::KeyArgs,
}

impl ConsentCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        match self {
            Self::Grant(args) => {
                let valid_until = args.period.end()?;
                let scope = consent::Scope::parse(
                    &args.types,
                    &args.actions,
                    &args.purpose,
                    0,
                    valid_until,
                )?;
                let chain = chain::Chain::connect(&args.chain).await?;
                consent::grant(
                    &chain,
                    &args.key,
                    consent::GrantRequest {
                        patient: args.patient,
                        grantee: args.grantee,
                        scope,
                        deadline_secs: time::parse_duration(&args.mode.deadline)?,
                        mode: args.mode.mode(),
                        yes: args.mode.yes,
                    },
                )
                .await
            }
            Self::Revoke(args) => {
                let chain = chain::Chain::connect(&args.chain).await?;
                consent::revoke(
                    &chain,
                    &args.key,
                    consent::RevokeRequest {
                        patient: args.patient,
                        grantee: args.grantee,
                        deadline_secs: time::parse_duration(&args.mode.deadline)?,
                        mode: args.mode.mode(),
                        yes: args.mode.yes,
                    },
                )
                .await
            }
            Self::List(args) => {
                let patient = match args.patient {
                    Some(p) => p,
                    None if args.key.configured() => args.key.signer()?.address(),
                    None => {
                        bail!("name the patient: --patient ADDRESS (or --key NAME for your own)")
                    }
                };
                let chain = chain::Chain::connect(&args.chain).await?;
                consent::list(&chain, patient, args.json).await
            }
            Self::Submit(args) => {
                let text = super::read_input(args.file.as_ref())?;
                let signed: serde_json::Value =
                    serde_json::from_str(&text).wrap_err("the signed consent is not JSON")?;
                if args.via_gateway {
                    return gateway_client::relay(&args.gateway, &signed).await;
                }
                let chain = chain::Chain::connect(&args.chain).await?;
                consent::submit(&chain, &args.key, &signed).await
            }
        }
    }
}
