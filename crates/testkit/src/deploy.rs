//! The contracts deployed by the project's deploy script.

use crate::{
    keys::GOVERNANCE_KEY,
    names::{TempDir, unique_name},
    paths::{forge_bin, repo_root},
};
use carechain_contracts::DeploymentManifest;
use std::{fs::File, path::PathBuf, process::Stdio};

/// Holds the lock that lets one forge run at a time across every suite (forge writes its
/// cache, build output and broadcast files in the project); released on drop.
#[derive(Debug)]
pub struct ForgeLock {
    _file: File,
}

/// Waits for the forge lock (a file lock under the system temp directory, so that every test
/// process of every suite takes the same one). Run anything that invokes forge in the
/// repository while holding it, e.g. the CLI's `deploy`.
pub fn forge_lock() -> ForgeLock {
    // The name predates the kit; keeping it keeps older checkouts' suites in step with this one.
    let path = std::env::temp_dir().join("carechain-indexer-tests-forge.lock");
    let file = File::create(&path)
        .unwrap_or_else(|e| panic!("create the forge lock {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("take the forge lock {}: {e}", path.display()));
    ForgeLock { _file: file }
}

/// The contracts as `contracts/script/Deploy.s.sol` deployed them, with the manifest it wrote
/// in a temporary directory of its own (removed on drop).
#[derive(Debug)]
pub struct Deployment {
    /// The deployment manifest (addresses, chain id, deployment block).
    pub manifest: DeploymentManifest,
    /// Where the manifest is (what the indexer's and gateway's `--manifest` take).
    pub manifest_path: PathBuf,
    pub(crate) dir: TempDir,
}

impl Deployment {
    /// Runs the deploy script against `rpc_url` with the governance key (development key 0)
    /// as deployer and governance.
    ///
    /// forge lets scripts write only under `deployments/` (`fs_permissions` in foundry.toml),
    /// so the script writes a staged file there, which is then moved to the temporary
    /// directory; runs of forge are serialised by [`forge_lock`].
    pub async fn deploy(rpc_url: &str) -> Self {
        let root = repo_root();
        let staged = root.join(format!("deployments/.staged-{}.json", unique_name("test")));
        std::fs::create_dir_all(root.join("deployments")).expect("create deployments/");
        let lock = tokio::task::spawn_blocking(forge_lock)
            .await
            .expect("wait for the forge lock");
        let out = tokio::process::Command::new(forge_bin())
            .current_dir(&root)
            .env("DEPLOY_MANIFEST", &staged)
            .args([
                "script",
                "contracts/script/Deploy.s.sol",
                "--rpc-url",
                rpc_url,
                "--broadcast",
                "--private-key",
                GOVERNANCE_KEY,
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("run forge {} (set FORGE_BIN): {e}", forge_bin().display()));
        drop(lock);
        assert!(
            out.status.success(),
            "the deploy script failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = TempDir::new("deployment");
        let manifest_path = dir.path().join("manifest.json");
        // A rename, or a copy where deployments/ and the temp dir are on different file systems.
        if std::fs::rename(&staged, &manifest_path).is_err() {
            std::fs::copy(&staged, &manifest_path).unwrap_or_else(|e| {
                panic!(
                    "the deploy script wrote no manifest at {}: {e}",
                    staged.display()
                )
            });
            let _ = std::fs::remove_file(&staged);
        }
        let manifest = DeploymentManifest::load(&manifest_path)
            .unwrap_or_else(|e| panic!("the deploy script wrote an invalid manifest: {e}"));
        Self {
            manifest,
            manifest_path,
            dir,
        }
    }
}
