//! The `carechain` command line against a real anvil with the deploy script's contracts.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use alloy::signers::local::PrivateKeySigner;
use carechain_contracts::Basis;
use carechain_testkit::{
    Anvil, GOVERNANCE_KEY, TempDir, TestChain, cast_bin, forge_lock, repo_root,
};
use common::{Cli, CliChain, key_hex};
use serde_json::Value;
use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

/// A keystore directory and a password file for it, in a temporary directory.
struct Keystore {
    _store: TempDir,
    dir: PathBuf,
    password_file: PathBuf,
}

impl Keystore {
    fn new(tag: &str) -> Self {
        let store = TempDir::new(tag);
        let dir = store.path().join("keystore");
        let password_file = store.path().join("password");
        std::fs::write(&password_file, "correct horse\n").unwrap();
        Self {
            _store: store,
            dir,
            password_file,
        }
    }

    /// The CLI on `chain`, with this keystore directory and its password.
    fn cli(&self, chain: &TestChain) -> Cli {
        chain
            .cli()
            .env("CARECHAIN_KEYSTORE_DIR", self.dir.to_str().unwrap())
            .env(
                "CARECHAIN_PASSWORD_FILE",
                self.password_file.to_str().unwrap(),
            )
    }
}

#[tokio::test]
async fn keys_round_trip_and_sign_without_showing_the_key() {
    let chain = TestChain::start().await;
    let (org, member) = chain.hospital_with_member().await;
    let keystore = Keystore::new("keys");
    let (dir, password_file) = (&keystore.dir, &keystore.password_file);
    let keys = || keystore.cli(&chain);

    let created = keys().args(["keys", "new", "--name", "alice"]).ok();
    let listed = keys().args(["keys", "list", "--json"]).ok();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "alice");
    let address: alloy::primitives::Address =
        listed[0]["address"].as_str().unwrap().parse().unwrap();
    assert!(created.contains(&address.to_string()), "{created}");
    let unlocked = keys().args(["keys", "address", "--key", "alice"]).ok();
    assert_eq!(unlocked.trim(), address.to_string());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("alice"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The same name twice is refused, the first keystore kept.
    let err = keys().args(["keys", "new", "--name", "alice"]).fails();
    assert!(err.contains("already exists"), "{err}");

    // The keystore signs a real consent: alice (the patient) consents to the hospital.
    chain.fund(address).await;
    assert_eq!(
        chain.decide_read(address, member.address()).await,
        Basis::NoConsent
    );
    keys()
        .args(["consent", "grant", "--key", "alice", "--yes"])
        .args(["--grantee", &org.to_string()])
        .args([
            "--types",
            "Observation",
            "--purpose",
            "TREAT",
            "--for",
            "30d",
        ])
        .ok();
    assert_eq!(
        chain.decide_read(address, member.address()).await,
        Basis::OrganisationConsent
    );

    // A wrong password is refused and nothing is sent.
    let err = chain
        .cli()
        .env("CARECHAIN_KEYSTORE_DIR", dir.to_str().unwrap())
        .env("CARECHAIN_KEYSTORE_PASSWORD", "wrong horse")
        .args(["consent", "revoke", "--key", "alice", "--yes"])
        .args(["--grantee", &org.to_string()])
        .fails();
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(
        chain.decide_read(address, member.address()).await,
        Basis::OrganisationConsent
    );

    // Without a terminal, no password source is an error that says what to do.
    let err = chain
        .cli()
        .env("CARECHAIN_KEYSTORE_DIR", dir.to_str().unwrap())
        .args(["keys", "address", "--key", "alice"])
        .fails();
    assert!(err.contains("--password-file"), "{err}");

    // An imported key (one line on stdin) opens with its password and is never echoed.
    let imported = PrivateKeySigner::random();
    let out = keys()
        .args(["keys", "import", "--name", "bob"])
        .stdin(format!("0x{}\n", key_hex(&imported)))
        .run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(&imported.address().to_string()),
        "{printed}"
    );
    assert!(
        !printed.to_lowercase().contains(&key_hex(&imported)),
        "the key was printed"
    );
    let stored = std::fs::read_to_string(dir.join("bob")).unwrap();
    assert!(
        !stored.contains(&key_hex(&imported)),
        "the key is stored in clear"
    );
    let unlocked = keys().args(["keys", "address", "--key", "bob"]).ok();
    assert_eq!(unlocked.trim(), imported.address().to_string());
    // cast (another Web3 Secret Storage implementation) opens the keystore too.
    let out = Command::new(cast_bin())
        .args(["wallet", "address", "--keystore"])
        .arg(dir.join("bob"))
        .arg("--password-file")
        .arg(password_file)
        .stdin(Stdio::null())
        .output()
        .expect("run cast (set CAST_BIN)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        imported.address().to_string()
    );
}

#[tokio::test]
async fn consent_grant_and_revoke_change_the_decision_on_chain() {
    let chain = TestChain::start().await;
    let (org, member) = chain.hospital_with_member().await;
    let patient = chain.wallet().await;
    let as_patient = || {
        chain
            .cli()
            .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&patient)))
    };
    let grant = |cli: Cli| {
        cli.args(["consent", "grant", "--grantee", &org.to_string()])
            .args([
                "--types",
                "Observation,Condition",
                "--purpose",
                "TREAT",
                "--for",
                "30d",
            ])
    };

    // No terminal and no --yes: shown, refused, nothing sent.
    let err = grant(as_patient()).fails();
    assert!(
        err.contains("Observation, Condition"),
        "the summary is shown: {err}"
    );
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );

    let out = grant(as_patient()).args(["--yes"]).ok();
    assert!(out.contains("granted: transaction 0x"), "{out}");
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::OrganisationConsent
    );
    let listed: Value =
        serde_json::from_str(&as_patient().args(["consent", "list", "--json"]).ok()).unwrap();
    assert_eq!(listed["consents"][0]["grantee"], org.to_string());
    assert_eq!(
        listed["consents"][0]["resourceTypes"],
        serde_json::json!(["Observation", "Condition"])
    );
    assert_eq!(listed["consents"][0]["status"], "active");

    as_patient()
        .args(["consent", "revoke", "--yes", "--grantee", &org.to_string()])
        .ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );
    let listed: Value =
        serde_json::from_str(&as_patient().args(["consent", "list", "--json"]).ok()).unwrap();
    assert_eq!(listed["consents"], serde_json::json!([]));
    // Revoking again says there is nothing to revoke.
    let err = as_patient()
        .args(["consent", "revoke", "--yes", "--grantee", &org.to_string()])
        .fails();
    assert!(err.contains("nothing to revoke"), "{err}");

    // A delegate added through the CLI may read; removed, it may not.
    let guardian = chain.wallet().await;
    as_patient()
        .args([
            "delegate", "add", "--kind", "guardian", "--for", "1y", "--yes",
        ])
        .args(["--delegate", &guardian.address().to_string()])
        .ok();
    assert_eq!(
        chain
            .decide_read(patient.address(), guardian.address())
            .await,
        Basis::Delegate
    );
    // The delegate grants and revokes for the patient, with its own key.
    let as_guardian = || {
        chain.cli().env(
            "CARECHAIN_PRIVATE_KEY",
            &format!("0x{}", key_hex(&guardian)),
        )
    };
    as_guardian()
        .args([
            "consent",
            "grant",
            "--yes",
            "--patient",
            &patient.address().to_string(),
        ])
        .args(["--grantee", &org.to_string()])
        .args([
            "--types",
            "Observation",
            "--purpose",
            "TREAT",
            "--for",
            "1d",
        ])
        .ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::OrganisationConsent
    );
    as_guardian()
        .args([
            "consent",
            "revoke",
            "--yes",
            "--patient",
            &patient.address().to_string(),
        ])
        .args(["--grantee", &org.to_string()])
        .ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );
    as_patient()
        .args([
            "delegate",
            "remove",
            "--yes",
            "--delegate",
            &guardian.address().to_string(),
        ])
        .ok();
    assert_eq!(
        chain
            .decide_read(patient.address(), guardian.address())
            .await,
        Basis::UnknownRequester
    );

    // Operators: a suspended member key is denied at once.
    as_patient()
        .args(["consent", "grant", "--yes", "--grantee", &org.to_string()])
        .args([
            "--types",
            "Observation",
            "--purpose",
            "TREAT",
            "--for",
            "1d",
        ])
        .ok();
    chain
        .cli()
        .env("CARECHAIN_PRIVATE_KEY", GOVERNANCE_KEY)
        .args([
            "member",
            "suspend",
            "--yes",
            "--member",
            &member.address().to_string(),
        ])
        .ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::KeySuspended
    );
    // A patient's key is not governance: refused with what to do.
    let err = as_patient()
        .args([
            "member",
            "reinstate",
            "--yes",
            "--member",
            &member.address().to_string(),
        ])
        .fails();
    assert!(
        err.contains("governance") || err.contains("manage"),
        "{err}"
    );
}

#[tokio::test]
async fn sign_only_output_is_submitted_by_someone_else() {
    let chain = TestChain::start().await;
    let (org, member) = chain.hospital_with_member().await;
    // The patient holds no gas at all: the relayer pays.
    let patient = PrivateKeySigner::random();
    let relayer = chain.wallet().await;
    let signed = chain
        .cli()
        .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&patient)))
        .args([
            "consent",
            "grant",
            "--sign-only",
            "--yes",
            "--grantee",
            &org.to_string(),
        ])
        .args([
            "--types",
            "Observation",
            "--purpose",
            "TREAT",
            "--for",
            "7d",
        ])
        .ok();
    let json: Value = serde_json::from_str(&signed).unwrap();
    assert_eq!(json["typedData"]["primaryType"], "Grant");
    assert_eq!(json["signer"], patient.address().to_string());
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );
    let relay = || {
        chain
            .cli()
            .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&relayer)))
            .args(["consent", "submit"])
    };
    relay().stdin(signed.clone()).ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::OrganisationConsent
    );
    // A replay is refused before any gas is spent.
    let err = relay().stdin(signed).fails();
    assert!(err.contains("nonce"), "{err}");

    // The same for a revocation.
    let revoke = chain
        .cli()
        .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&patient)))
        .args([
            "consent",
            "revoke",
            "--sign-only",
            "--yes",
            "--grantee",
            &org.to_string(),
        ])
        .ok();
    relay().stdin(revoke).ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );
}

/// Runs the ethers signer (crates/cli/tests/js) on typed data with `key`.
fn sign_with_ethers(typed_data: &Value, key: &PrivateKeySigner) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/sign-typed-data.cjs");
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "run node (Node.js is needed: scripts/lib.sh ensure_node_deps installs it and ethers)",
        );
    {
        use std::io::Write;
        let input = serde_json::json!({
            "typedData": typed_data,
            "privateKey": format!("0x{}", key_hex(key)),
        });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the ethers signer failed (is `ethers` installed from package-lock.json?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn typed_data_signed_by_a_javascript_wallet_is_accepted_on_chain() {
    let chain = TestChain::start().await;
    let (org, member) = chain.hospital_with_member().await;
    let patient = PrivateKeySigner::random();
    let relayer = chain.wallet().await;
    // The patient's wallet is not this program: it is handed the typed data only.
    let unsigned = chain
        .cli()
        .args([
            "consent",
            "grant",
            "--unsigned",
            "--patient",
            &patient.address().to_string(),
        ])
        .args(["--grantee", &org.to_string()])
        .args([
            "--types",
            "Observation,DiagnosticReport",
            "--actions",
            "rs",
            "--purpose",
            "TREAT,COC",
        ])
        .args(["--until", "2099-12-31"])
        .ok();
    let unsigned: Value = serde_json::from_str(&unsigned).unwrap();
    assert!(unsigned.get("signature").is_none());
    let typed = &unsigned["typedData"];
    // eth_signTypedData_v4 shape: EIP712Domain among the types, integers as decimal strings.
    assert!(typed["types"]["EIP712Domain"].is_array());
    assert!(typed["message"]["resourceTypes"].is_string());
    let signed = sign_with_ethers(typed, &patient);
    assert_eq!(signed["address"], patient.address().to_string());
    assert_eq!(
        signed["digest"], unsigned["digest"],
        "ethers hashes the typed data alike"
    );

    let mut submission = unsigned.clone();
    submission["signature"] = signed["signature"].clone();
    chain
        .cli()
        .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&relayer)))
        .args(["consent", "submit"])
        .stdin(submission.to_string())
        .ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::OrganisationConsent
    );

    // A revocation signed the same way.
    let unsigned = chain
        .cli()
        .args([
            "consent",
            "revoke",
            "--unsigned",
            "--patient",
            &patient.address().to_string(),
        ])
        .args(["--grantee", &org.to_string()])
        .ok();
    let mut submission: Value = serde_json::from_str(&unsigned).unwrap();
    submission["signature"] =
        sign_with_ethers(&submission["typedData"], &patient)["signature"].clone();
    chain
        .cli()
        .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&relayer)))
        .args(["consent", "submit"])
        .stdin(submission.to_string())
        .ok();
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );
}

#[tokio::test]
async fn deploy_writes_a_manifest_the_other_commands_use() {
    let anvil = Anvil::start().await;
    let rpc_url = anvil.url.clone();
    let dir = TempDir::new("deploy");
    let manifest = dir.path().join("nested/manifest.json");
    let lock = forge_lock();
    let out = Cli::new()
        .env("CARECHAIN_PRIVATE_KEY", GOVERNANCE_KEY)
        .args(["deploy", "--rpc", &rpc_url, "--max-break-glass", "2h"])
        .arg_path("--repo", &repo_root())
        .arg_path("--out", &manifest)
        .run();
    drop(lock);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The key never reaches forge's command line or output.
    assert!(
        !stderr.contains(&GOVERNANCE_KEY[2..]),
        "the key was printed"
    );
    let loaded =
        carechain_contracts::DeploymentManifest::load(&manifest).expect("a valid manifest");
    assert!(
        stdout.contains(&loaded.contracts.consent_registry.to_string()),
        "{stdout}"
    );
    // The manifest drives the other commands: admit an organisation, then ask decide.
    let org = PrivateKeySigner::random().address();
    Cli::new()
        .env("CARECHAIN_RPC_URL", &rpc_url)
        .env("CARECHAIN_MANIFEST", manifest.to_str().unwrap())
        .env("CARECHAIN_PRIVATE_KEY", GOVERNANCE_KEY)
        .args([
            "org",
            "admit",
            "--kind",
            "compliance",
            "--name",
            "Audit Office",
            "--yes",
        ])
        .args(["--org", &org.to_string()])
        .ok();
    let answer = Cli::new()
        .env("CARECHAIN_RPC_URL", &rpc_url)
        .args(["decide"])
        .arg_path("--manifest", &manifest)
        .args([
            "--type",
            "Observation",
            "--action",
            "read",
            "--purpose",
            "TREAT",
        ])
        .args([
            "--patient",
            &PrivateKeySigner::random().address().to_string(),
        ])
        .args(["--requester", &org.to_string()])
        .ok();
    // An organisation address is never a requester itself (rule 5 of ConsentRegistry).
    assert!(answer.starts_with("DENIED (UnknownRequester)"), "{answer}");
}

#[tokio::test]
async fn a_caregivers_consent_grant_is_refused_in_words() {
    let chain = TestChain::start().await;
    let (org, member) = chain.hospital_with_member().await;
    let keystore = Keystore::new("caregiver");
    let keys = || keystore.cli(&chain);
    let alice = chain.wallet().await;
    let dave = chain.wallet().await;
    for (name, wallet) in [("alice", &alice), ("dave", &dave)] {
        keys()
            .args(["keys", "import", "--name", name])
            .stdin(format!("0x{}\n", key_hex(wallet)))
            .ok();
    }
    keys()
        .args(["delegate", "add", "--key", "alice", "--kind", "caregiver"])
        .args([
            "--delegate",
            &dave.address().to_string(),
            "--for",
            "30d",
            "--yes",
        ])
        .ok();
    assert_eq!(
        chain.decide_read(alice.address(), dave.address()).await,
        Basis::Delegate,
        "the caregiver reads"
    );

    let err = keys()
        .args(["consent", "grant", "--key", "dave", "--yes"])
        .args(["--patient", &alice.address().to_string()])
        .args(["--grantee", &org.to_string()])
        .args([
            "--types",
            "Observation",
            "--purpose",
            "TREAT",
            "--for",
            "1d",
        ])
        .fails();
    assert!(
        err.contains("a caregiver may read alice's records but cannot change their consent"),
        "{err}"
    );
    assert_eq!(
        chain.decide_read(alice.address(), member.address()).await,
        Basis::NoConsent,
        "nothing was granted"
    );
}

/// Runs the CLI on a pseudo-terminal (util-linux `script`), typing `typed`.
fn on_a_terminal(chain: &TestChain, key: &PrivateKeySigner, args: &str, typed: &str) -> bool {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_carechain"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CARECHAIN_RPC_URL", &chain.rpc_url)
        .env("CARECHAIN_MANIFEST", &chain.manifest_path)
        .env("CARECHAIN_PRIVATE_KEY", format!("0x{}", key_hex(key)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run `script` (util-linux) for a pseudo-terminal");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(typed.as_bytes()).unwrap();
    }
    child.wait().unwrap().success()
}

#[tokio::test]
async fn on_a_terminal_the_patient_is_asked_before_anything_is_sent() {
    let chain = TestChain::start().await;
    let (org, member) = chain.hospital_with_member().await;
    let patient = chain.wallet().await;
    let grant =
        format!("consent grant --grantee {org} --types Observation --purpose TREAT --for 1d");
    assert!(
        !on_a_terminal(&chain, &patient, &grant, "n\n"),
        "a no is a failure exit"
    );
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::NoConsent
    );
    assert!(on_a_terminal(&chain, &patient, &grant, "y\n"));
    assert_eq!(
        chain.decide_read(patient.address(), member.address()).await,
        Basis::OrganisationConsent
    );
}
