//! `carechain codes` and `carechain decide`: the code tables, and the chain's answer for one
//! request.

use alloy::{primitives::Address, providers::Provider};
use carechain_contracts::{
    Action, Basis, ConsentRegistry, DeploymentManifest, Purpose, ResourceType,
};
use eyre::{WrapErr, bail, eyre};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct DecideArgs {
    #[command(flatten)]
    rpc: crate::chain::RpcArgs,
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

pub(crate) fn print_codes() {
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

pub(crate) async fn decide(args: DecideArgs) -> eyre::Result<()> {
    let manifest = DeploymentManifest::load(&args.manifest)?;
    let provider = args.rpc.provider()?;
    let chain_id = provider
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("cannot reach the chain at {}", args.rpc.rpc))?;
    if chain_id != manifest.chain_id {
        bail!(
            "the chain at {} has chain id {chain_id}, but the manifest {} is for chain {}",
            args.rpc.rpc,
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
