//! Test harness: the `carechain` binary run as a person or a script would run it, against a
//! test chain of `carechain-testkit` (a private anvil with the contracts deployed by the
//! project's deploy script).
//!
//! Environment: `ANVIL_BIN` / `FORGE_BIN` (default: the native binaries under the workspace's
//! node_modules, as scripts/lib.sh exports them).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use carechain_testkit::{GOVERNANCE_KEY, TestChain};
use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

/// The CLI's view of a test chain.
pub trait CliChain {
    /// The CLI with this chain configured and nothing inherited that picks a key.
    fn cli(&self) -> Cli;

    /// Admits a hospital and a practitioner key through the CLI; returns (org, key).
    async fn hospital_with_member(&self) -> (Address, PrivateKeySigner);

    /// Adds `member` to `org` with `role` (`practitioner`, `service`) through the CLI, as
    /// governance.
    fn add_member_with_cli(&self, org: Address, member: Address, role: &str);
}

impl CliChain for TestChain {
    fn cli(&self) -> Cli {
        Cli::new()
            .env("CARECHAIN_RPC_URL", &self.rpc_url)
            .env("CARECHAIN_MANIFEST", self.manifest_path.to_str().unwrap())
    }

    async fn hospital_with_member(&self) -> (Address, PrivateKeySigner) {
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
        self.add_member_with_cli(org, member.address(), "practitioner");
        (org, member)
    }

    fn add_member_with_cli(&self, org: Address, member: Address, role: &str) {
        self.cli()
            .env("CARECHAIN_PRIVATE_KEY", GOVERNANCE_KEY)
            .args(["member", "add", "--role", role, "--yes"])
            .args(["--org", &org.to_string(), "--member", &member.to_string()])
            .ok();
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
