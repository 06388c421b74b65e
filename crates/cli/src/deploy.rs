//! `deploy`: drives the project's forge script (`contracts/script/Deploy.s.sol`) the way
//! `scripts/lib.sh deploy_contracts` does, and writes the deployment manifest.
//!
//! The key reaches forge as a throw-away keystore in a private temporary directory (random
//! password in a `0600` file), never on forge's command line, where other local users could
//! read it.

use crate::keys::KeyArgs;
use alloy::providers::Provider;
use carechain_contracts::DeploymentManifest;
use eyre::{WrapErr, bail, eyre};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// What `deploy` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The chain to deploy to.
    #[command(flatten)]
    rpc: crate::chain::RpcArgs,
    /// Where to write the deployment manifest [default: deployments/<chainId>.json in the
    /// repository].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Holder of the governance and admin roles (default: the deploying key). In production a
    /// multisig or timelock.
    #[arg(long, value_name = "ADDRESS")]
    governance: Option<alloy::primitives::Address>,
    /// Longest break-glass session (e.g. 4h).
    #[arg(long, value_name = "DURATION", default_value = "4h")]
    max_break_glass: String,
    /// The carechain repository (holds contracts/script/Deploy.s.sol and foundry.toml).
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,
    /// The forge binary [default: node_modules' native forge of the repository, else `forge`].
    #[arg(long, env = "FORGE_BIN", value_name = "PATH")]
    forge: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
}

/// A directory removed on drop (it holds the throw-away keystore).
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> eyre::Result<Self> {
        let mut random = [0u8; 8];
        rand::Rng::fill(&mut rand::thread_rng(), &mut random);
        let dir = std::env::temp_dir().join(format!(
            "carechain-deploy-{}-{}",
            std::process::id(),
            alloy::hex::encode(random)
        ));
        std::fs::create_dir(&dir).wrap_err_with(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The block of the ProviderRegistry creation receipt in forge's broadcast file: the script
/// can only predict it.
fn deployment_block_from_receipts(broadcast: &Path, provider_registry: &str) -> Option<u64> {
    let text = std::fs::read_to_string(broadcast).ok()?;
    let run: serde_json::Value = serde_json::from_str(&text).ok()?;
    let receipt = run.get("receipts")?.as_array()?.iter().find(|r| {
        r.get("contractAddress")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|a| a.eq_ignore_ascii_case(provider_registry))
    })?;
    let block = receipt.get("blockNumber")?.as_str()?;
    u64::from_str_radix(block.trim_start_matches("0x"), 16).ok()
}

/// `deploy`.
pub(crate) async fn deploy(args: DeployArgs) -> eyre::Result<()> {
    let repo = args
        .repo
        .canonicalize()
        .wrap_err_with(|| format!("--repo {} does not exist", args.repo.display()))?;
    let script = "contracts/script/Deploy.s.sol";
    if !repo.join(script).is_file() {
        bail!(
            "{} has no {script}: run from the carechain repository or pass --repo",
            repo.display()
        );
    }
    let forge = args.forge.clone().unwrap_or_else(|| {
        let native = repo.join("node_modules/@foundry-rs/forge-linux-amd64/bin/forge");
        if native.is_file() {
            native
        } else {
            PathBuf::from("forge")
        }
    });
    let max_break_glass = crate::time::parse_duration(&args.max_break_glass)?;
    let signer = args.key.signer()?;
    let chain_id = args
        .rpc
        .provider()?
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("cannot reach the chain at {} (pass --rpc)", args.rpc.rpc))?;

    let private = PrivateDir::new()?;
    let mut password = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut password);
    let password = alloy::hex::encode(password);
    eth_keystore::encrypt_key(
        &private.0,
        &mut rand::thread_rng(),
        signer.to_bytes(),
        &password,
        Some("deployer"),
    )
    .map_err(|e| eyre!("cannot prepare the key for forge: {e}"))?;
    let password_file = private.0.join("password");
    std::fs::write(&password_file, &password)?;

    std::fs::create_dir_all(repo.join("deployments"))?;
    let staged = repo.join(format!(
        "deployments/.staged-{chain_id}-{}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&staged);
    eprintln!(
        "deploying the carechain contracts to chain {chain_id} at {} from {} with {}",
        args.rpc.rpc,
        signer.address(),
        forge.display()
    );
    let mut command = Command::new(&forge);
    command
        .current_dir(&repo)
        .env("DEPLOY_MANIFEST", &staged)
        .env("MAX_BREAK_GLASS_SECONDS", max_break_glass.to_string())
        // forge takes the endpoint on its command line only (it has no environment
        // variable for a script's RPC); it prints nothing of it.
        .args(["script", script, "--broadcast", "--rpc-url"])
        .arg(args.rpc.rpc.expose().as_str())
        .arg("--keystore")
        .arg(private.0.join("deployer"))
        .arg("--password-file")
        .arg(&password_file)
        .args(["--sender", &signer.address().to_string()])
        .stdin(Stdio::null())
        // forge's report goes to stderr: stdout carries only the result.
        .stdout(Stdio::from(std::io::stderr()));
    if let Some(governance) = args.governance {
        command.env("GOVERNANCE", governance.to_string());
    }
    if let Some(ca_file) = &args.rpc.rpc_ca_file {
        // forge checks HTTPS against the system's roots, which SSL_CERT_FILE replaces.
        command.env("SSL_CERT_FILE", ca_file);
    }
    let status = command.status().wrap_err_with(|| {
        format!(
            "cannot run forge at {} (install the npm packages: scripts/lib.sh ensure_node_deps, or pass --forge)",
            forge.display()
        )
    })?;
    drop(private);
    if !status.success() {
        let _ = std::fs::remove_file(&staged);
        bail!("the deploy script failed (see forge's output above)");
    }
    let text = std::fs::read_to_string(&staged)
        .wrap_err("the deploy script finished but wrote no manifest")?;
    let mut manifest = DeploymentManifest::parse(&text)?;
    let broadcast = repo.join(format!("broadcast/Deploy.s.sol/{chain_id}/run-latest.json"));
    match deployment_block_from_receipts(
        &broadcast,
        &manifest.contracts.provider_registry.to_string(),
    ) {
        Some(block) => manifest.deployment_block = block,
        None => eprintln!(
            "warning: could not confirm deploymentBlock from forge's receipts; kept the script's lower bound"
        ),
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo.join(format!("deployments/{chain_id}.json")));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&manifest)? + "\n")
        .wrap_err_with(|| format!("cannot write {}", out.display()))?;
    let _ = std::fs::remove_file(&staged);
    println!("deployed to chain {chain_id}; manifest {}", out.display());
    for (name, address) in manifest.contracts.named() {
        println!("  {name:<17} {address}");
    }
    Ok(())
}
