//! Test harness: a private anvil with the contracts deployed by the project's deploy script,
//! and the `carechain` binary run as a person or a script would run it.
//!
//! Environment: `ANVIL_BIN` / `FORGE_BIN` (default: the native binaries under the workspace's
//! node_modules, as scripts/lib.sh exports them).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{Basis, ConsentRegistry, DeploymentManifest};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// anvil's first development key: deployer and governance.
pub const GOVERNANCE_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    // The native binary, not the npm wrapper: killing the wrapper would orphan it.
    repo_root().join(format!(
        "node_modules/@foundry-rs/{name}-linux-amd64/bin/{name}"
    ))
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("carechain-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private anvil with the contracts deployed; killed on drop.
pub struct TestChain {
    anvil: Child,
    pub rpc_url: String,
    pub manifest_path: PathBuf,
    pub manifest: DeploymentManifest,
    pub provider: DynProvider,
    pub dir: TempDir,
}

impl Drop for TestChain {
    fn drop(&mut self) {
        let _ = self.anvil.kill();
        let _ = self.anvil.wait();
    }
}

/// Holds the lock that serialises forge runs across the suites (forge writes its cache and
/// broadcast files in the project).
pub fn forge_lock() -> std::fs::File {
    let lock_path = std::env::temp_dir().join("carechain-indexer-tests-forge.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    lock
}

/// A bare anvil (no contracts); killed on drop. Returns the child and its URL.
pub async fn bare_anvil() -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut anvil = Command::new(tool("ANVIL_BIN", "anvil"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--silent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anvil (set ANVIL_BIN)");
    let rpc_url = format!("http://127.0.0.1:{port}");
    let provider = ProviderBuilder::new().connect_http(rpc_url.parse().unwrap());
    for _ in 0..200 {
        if provider.get_block_number().await.is_ok() {
            return (anvil, rpc_url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = anvil.kill();
    let _ = anvil.wait();
    panic!("anvil did not answer on {rpc_url}");
}

impl TestChain {
    pub async fn start() -> Self {
        let (anvil, rpc_url) = bare_anvil().await;
        let provider = ProviderBuilder::new()
            .connect_http(rpc_url.parse().unwrap())
            .erased();
        let dir = TempDir::new("chain");
        let root = repo_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // forge lets scripts write only under deployments/ (foundry.toml fs_permissions).
        let staged = root.join(format!(
            "deployments/.staged-clitest-{}-{n}.json",
            std::process::id()
        ));
        std::fs::create_dir_all(root.join("deployments")).unwrap();
        // One deploy at a time, across this suite and the indexer's and gateway's.
        let lock = forge_lock();
        let out = Command::new(tool("FORGE_BIN", "forge"))
            .current_dir(&root)
            .env("DEPLOY_MANIFEST", &staged)
            .args([
                "script",
                "contracts/script/Deploy.s.sol",
                "--rpc-url",
                &rpc_url,
                "--broadcast",
            ])
            .args(["--private-key", GOVERNANCE_KEY])
            .stdin(Stdio::null())
            .output()
            .expect("run forge (set FORGE_BIN)");
        drop(lock);
        assert!(
            out.status.success(),
            "deploy failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest_path = dir.0.join("manifest.json");
        std::fs::rename(&staged, &manifest_path).expect("the deploy script wrote no manifest");
        let manifest = DeploymentManifest::load(&manifest_path).unwrap();
        Self {
            anvil,
            rpc_url,
            manifest_path,
            manifest,
            provider,
            dir,
        }
    }

    /// A new funded wallet.
    pub async fn wallet(&self) -> PrivateKeySigner {
        let signer = PrivateKeySigner::random();
        self.fund(signer.address()).await;
        signer
    }

    pub async fn fund(&self, address: Address) {
        let _: serde_json::Value = self
            .provider
            .raw_request(
                "anvil_setBalance".into(),
                (address, U256::from(10u128.pow(20))),
            )
            .await
            .unwrap();
    }

    /// `ConsentRegistry.decide` for a read of Observations for TREAT.
    pub async fn decide_read(&self, patient: Address, requester: Address) -> Basis {
        let registry =
            ConsentRegistry::new(self.manifest.contracts.consent_registry, &self.provider);
        let answer = registry
            .decide(patient, requester, 1, 1, 0)
            .call()
            .await
            .unwrap();
        Basis::try_from(answer.basis).unwrap()
    }

    /// The CLI with this chain configured and nothing inherited that picks a key.
    pub fn cli(&self) -> Cli {
        Cli::new()
            .env("CARECHAIN_RPC_URL", &self.rpc_url)
            .env("CARECHAIN_MANIFEST", self.manifest_path.to_str().unwrap())
    }

    /// Admits a hospital and a practitioner key through the CLI; returns (org, key).
    pub async fn hospital_with_member(&self) -> (Address, PrivateKeySigner) {
        let org = PrivateKeySigner::random().address();
        let member = self.wallet().await;
        self.cli()
            .env("CARECHAIN_PRIVATE_KEY", GOVERNANCE_KEY)
            .args([
                "org",
                "admit",
                "--kind",
                "hospital",
                "--name",
                "General Hospital",
                "--yes",
            ])
            .args(["--org", &org.to_string()])
            .ok();
        self.cli()
            .env("CARECHAIN_PRIVATE_KEY", GOVERNANCE_KEY)
            .args(["member", "add", "--role", "practitioner", "--yes"])
            .args([
                "--org",
                &org.to_string(),
                "--member",
                &member.address().to_string(),
            ])
            .ok();
        (org, member)
    }
}

/// One run of the `carechain` binary.
pub struct Cli {
    command: Command,
    stdin: Option<Vec<u8>>,
}

impl Cli {
    pub fn new() -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_carechain"));
        for var in [
            "CARECHAIN_PRIVATE_KEY",
            "CARECHAIN_KEY",
            "CARECHAIN_KEYSTORE_DIR",
            "CARECHAIN_KEYSTORE_PASSWORD",
            "CARECHAIN_PASSWORD_FILE",
            "CARECHAIN_RPC_URL",
            "CARECHAIN_MANIFEST",
            "CARECHAIN_GATEWAY_URL",
            "CARECHAIN_TOKEN_FILE",
        ] {
            command.env_remove(var);
        }
        Self {
            command,
            stdin: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn arg_path(mut self, flag: &str, path: &Path) -> Self {
        self.command.arg(flag).arg(path);
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs to completion; standard input is the given bytes, or empty (never a terminal).
    pub fn run(mut self) -> Output {
        use std::io::Write;
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("run carechain");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = self.stdin.take() {
            stdin.write_all(&input).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(self) -> String {
        let out = self.run();
        assert!(
            out.status.success(),
            "carechain failed:\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(self) -> String {
        let out = self.run();
        assert!(
            !out.status.success(),
            "carechain succeeded but should not have:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

/// The private key's hex digits (to check that nothing prints them).
pub fn key_hex(signer: &PrivateKeySigner) -> String {
    alloy::hex::encode(signer.to_bytes())
}
