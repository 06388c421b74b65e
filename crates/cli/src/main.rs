//! `carechain`: command line for patients and operators.
//!
//! Commands today:
//! - `carechain codes`: prints the FHIR code tables the on-chain consent is expressed in;
//! - `carechain decide`: asks `ConsentRegistry.decide` whether a requester may act on a
//!   patient's data, and why.

use alloy::{
    network::Ethereum,
    primitives::Address,
    providers::{Provider, RootProvider},
};
use carechain_contracts::{
    Action, Basis, ConsentRegistry, DeploymentManifest, Purpose, ResourceType,
};
use clap::{Parser, Subcommand};
use eyre::{WrapErr, bail, eyre};
use std::path::PathBuf;

/// carechain: consent and access layer of the healthcare consortium.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the FHIR code tables (resource types, SMART v2 actions, purposes of use) with
    /// their on-chain bit indices.
    Codes,
    /// Ask the chain whether REQUESTER may perform ACTION on PATIENT's resources of TYPE for
    /// PURPOSE, and on what basis (ConsentRegistry.decide).
    #[command(
        after_help = "Example:\n  carechain decide --rpc http://127.0.0.1:8545 \\\n    \
        --manifest deployments/31337.json --patient 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 \\\n    \
        --requester 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    \
        --type Observation --action read --purpose TREAT"
    )]
    Decide(DecideArgs),
}

#[derive(Debug, clap::Args)]
struct DecideArgs {
    /// JSON-RPC URL of the chain.
    #[arg(long, env = "CARECHAIN_RPC_URL")]
    rpc: String,
    /// Deployment manifest written by the deploy script.
    #[arg(long, env = "CARECHAIN_MANIFEST")]
    manifest: PathBuf,
    /// The patient's address.
    #[arg(long)]
    patient: Address,
    /// The requesting member key or organisation address.
    #[arg(long)]
    requester: Address,
    /// FHIR resource type, e.g. Observation (see `carechain codes`).
    #[arg(long = "type", value_name = "RESOURCE_TYPE")]
    resource_type: ResourceType,
    /// SMART v2 action: c, r, u, d, s or create, read, update, delete, search.
    #[arg(long)]
    action: Action,
    /// HL7 purpose of use, e.g. TREAT, ETREAT, HRESCH.
    #[arg(long)]
    purpose: Purpose,
}

fn print_codes() {
    println!("Resource types (uint64 bitmap, bit = index):");
    for t in ResourceType::ALL {
        println!("  {:>2}  {}", t.index(), t.code());
    }
    println!("\nActions (SMART v2, uint8 mask):");
    for a in Action::ALL {
        println!("  {:>2}  {}  {}", a.index(), a.code(), a.long_name());
    }
    println!("\nPurposes of use (HL7 v3 PurposeOfUse, uint16 bitmap):");
    for p in Purpose::ALL {
        println!("  {:>2}  {:<8} {}", p.index(), p.code(), p.display());
    }
}

async fn decide(args: DecideArgs) -> eyre::Result<()> {
    let manifest = DeploymentManifest::load(&args.manifest)?;
    let url = args
        .rpc
        .parse()
        .wrap_err_with(|| format!("invalid --rpc URL `{}`", args.rpc))?;
    let provider = RootProvider::<Ethereum>::new_http(url);
    let chain_id = provider
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("cannot reach the chain at {}", args.rpc))?;
    if chain_id != manifest.chain_id {
        bail!(
            "the chain at {} has chain id {chain_id}, but the manifest {} is for chain {}",
            args.rpc,
            args.manifest.display(),
            manifest.chain_id
        );
    }
    let registry = ConsentRegistry::new(manifest.contracts.consent_registry, &provider);
    let answer = registry
        .decide(
            args.patient,
            args.requester,
            args.resource_type.index(),
            args.action.index(),
            args.purpose.index(),
        )
        .call()
        .await
        .wrap_err("ConsentRegistry.decide failed")?;
    let basis = Basis::try_from(answer.basis)
        .map_err(|e| eyre!("the contract answered an unknown basis: {e}"))?;
    println!(
        "{} ({basis}): {} {} {} of patient {} for {}",
        if answer.allowed { "ALLOWED" } else { "DENIED" },
        args.requester,
        args.action.long_name(),
        args.resource_type,
        args.patient,
        args.purpose,
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> eyre::Result<()> {
    match Cli::parse().command {
        Command::Codes => {
            print_codes();
            Ok(())
        }
        Command::Decide(args) => decide(args).await,
    }
}
