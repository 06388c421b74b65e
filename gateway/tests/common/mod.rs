//! Test harness: a private anvil with the contracts deployed by the project's deploy script, a
//! fresh PostgreSQL database per test, and a gateway serving on a loopback port.
//!
//! Environment: `DATABASE_URL` (a server URL; each test creates its own database),
//! `ANVIL_BIN` / `FORGE_BIN` (default `node_modules/.bin/*` of the workspace).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use alloy::{
    network::EthereumWallet,
    primitives::{B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::{SignerSync, local::PrivateKeySigner},
};
use carechain_contracts::{ConsentRegistry, DeploymentManifest, ProviderRegistry};
use carechain_gateway::{Gateway, GatewayConfig, auth::siwe::SiweMessage};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};
use tokio::process::{Child, Command};

/// anvil's first development key (deployer and governance in tests).
pub const ANVIL_KEY0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn bin(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    // Prefer the native binary over the npm wrapper: killing the wrapper would orphan it.
    let native = repo_root().join(format!(
        "node_modules/@foundry-rs/{name}-linux-amd64/bin/{name}"
    ));
    if native.exists() {
        return native;
    }
    repo_root().join("node_modules/.bin").join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private chain with the contracts deployed.
pub struct TestChain {
    pub anvil: Child,
    pub rpc_url: String,
    pub manifest_path: PathBuf,
    pub manifest: DeploymentManifest,
    pub governance: DynProvider,
    _dir: TempDir,
}

/// An organisation whose practitioner signs in and whose service key anchors its records.
pub struct Custodian {
    pub org: PrivateKeySigner,
    pub practitioner: PrivateKeySigner,
    service_key: String,
}

impl Custodian {
    /// Makes a gateway anchor with this organisation's service key, also for records that
    /// patients write.
    pub fn configure(&self, config: &mut GatewayConfig) {
        config.service_keys = vec![self.service_key.clone()];
        config.default_custodian = Some(self.org.address());
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(tag: &str) -> TempDir {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("carechain-gw-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

impl TestChain {
    pub async fn start() -> Self {
        let port = free_port();
        let anvil = Command::new(bin("ANVIL_BIN", "anvil"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start anvil (set ANVIL_BIN)");
        let rpc_url = format!("http://127.0.0.1:{port}");
        let probe = ProviderBuilder::new().connect_http(rpc_url.parse().unwrap());
        for _ in 0..100 {
            if probe.get_block_number().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let dir = temp_dir("chain");
        let root = repo_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // forge lets scripts write only under deployments/ (foundry.toml fs_permissions).
        let staged = root.join(format!(
            "deployments/.staged-gwtest-{}-{n}.json",
            std::process::id()
        ));
        // forge writes its cache and broadcast files in the project: one deploy at a time,
        // across this suite and the indexer's (same lock file).
        let lock_path = std::env::temp_dir().join("carechain-indexer-tests-forge.lock");
        std::fs::create_dir_all(root.join("deployments")).unwrap();
        let lock = tokio::task::spawn_blocking(move || {
            let lock = std::fs::File::create(&lock_path).unwrap();
            lock.lock().unwrap();
            lock
        })
        .await
        .unwrap();
        let out = Command::new(bin("FORGE_BIN", "forge"))
            .current_dir(&root)
            .env("DEPLOY_MANIFEST", &staged)
            .args([
                "script",
                "contracts/script/Deploy.s.sol",
                "--rpc-url",
                &rpc_url,
                "--broadcast",
            ])
            .args(["--private-key", ANVIL_KEY0])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run forge (set FORGE_BIN)");
        drop(lock);
        assert!(
            out.status.success(),
            "deploy failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest_path = dir.0.join("manifest.json");
        std::fs::rename(&staged, &manifest_path).expect("deploy script wrote no manifest");
        let manifest = DeploymentManifest::load(&manifest_path).unwrap();
        let governance = wallet_provider(&rpc_url, ANVIL_KEY0.parse().unwrap());
        Self {
            anvil,
            rpc_url,
            manifest_path,
            manifest,
            governance,
            _dir: dir,
        }
    }

    pub fn providers(&self) -> ProviderRegistry::ProviderRegistryInstance<DynProvider> {
        ProviderRegistry::new(
            self.manifest.contracts.provider_registry,
            self.governance.clone(),
        )
    }

    pub fn consents_as(
        &self,
        signer: &PrivateKeySigner,
    ) -> ConsentRegistry::ConsentRegistryInstance<DynProvider> {
        ConsentRegistry::new(
            self.manifest.contracts.consent_registry,
            wallet_provider(&self.rpc_url, signer.clone()),
        )
    }

    /// A new funded wallet.
    pub async fn wallet(&self) -> PrivateKeySigner {
        let signer = PrivateKeySigner::random();
        let _: Value = self
            .governance
            .raw_request(
                "anvil_setBalance".into(),
                (signer.address(), U256::from(10u128.pow(20))),
            )
            .await
            .unwrap();
        signer
    }

    /// Admits an organisation (Hospital) and adds one member key; returns (org, key).
    pub async fn organisation_with_member(&self) -> (PrivateKeySigner, PrivateKeySigner) {
        let org = self.wallet().await;
        let key = self.wallet().await;
        let registry = self.providers();
        registry
            .admitOrganisation(org.address(), 1, "General Hospital".into())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        self.add_member(org.address(), key.address(), 0).await;
        (org, key)
    }

    /// Adds a member key with `role` (0 practitioner, 1 service) to `org`.
    pub async fn add_member(
        &self,
        org: alloy::primitives::Address,
        key: alloy::primitives::Address,
        role: u8,
    ) {
        self.providers()
            .addMember(org, key, role)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }

    /// An organisation with a practitioner key and a service key that anchors its records.
    pub async fn custodian(&self) -> Custodian {
        let (org, practitioner) = self.organisation_with_member().await;
        let service = self.wallet().await;
        self.add_member(org.address(), service.address(), 1).await;
        Custodian {
            service_key: format!(
                "{}={}",
                org.address(),
                alloy::hex::encode_prefixed(service.to_bytes())
            ),
            org,
            practitioner,
        }
    }

    /// Deploys a contract compiled by forge (`out/<file>/<name>.json`) with ABI-encoded
    /// constructor arguments; returns its address.
    pub async fn deploy_artifact(
        &self,
        file: &str,
        name: &str,
        args: &[u8],
    ) -> alloy::primitives::Address {
        use alloy::network::TransactionBuilder;
        let artifact: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join(format!("out/{file}/{name}.json"))).unwrap(),
        )
        .unwrap();
        let mut code =
            alloy::hex::decode(artifact["bytecode"]["object"].as_str().unwrap()).unwrap();
        code.extend_from_slice(args);
        let tx = alloy::rpc::types::TransactionRequest::default().with_deploy_code(code);
        let receipt = self
            .governance
            .send_transaction(tx)
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        receipt.contract_address.unwrap()
    }

    pub async fn head(&self) -> u64 {
        self.governance.get_block_number().await.unwrap()
    }

    /// Mines `blocks` empty blocks at once (anvil's `finalized` is 64 blocks behind the head);
    /// returns the new head.
    pub async fn mine(&self, blocks: u64) -> u64 {
        let _: Value = self
            .governance
            .raw_request("anvil_mine".into(), (blocks,))
            .await
            .unwrap();
        self.head().await
    }
}

pub fn wallet_provider(rpc_url: &str, signer: PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc_url.parse().unwrap())
        .erased()
}

/// A fresh database on the server of `DATABASE_URL`.
pub async fn fresh_database() -> String {
    let server =
        std::env::var("DATABASE_URL").expect("DATABASE_URL (a PostgreSQL server URL) is required");
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("gwtest_{}_{n}_{}", std::process::id(), rand_suffix());
    let admin = sqlx::PgPool::connect(&server)
        .await
        .expect("connect DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut url = url_parse(&server);
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn url_parse(s: &str) -> alloy::transports::http::reqwest::Url {
    s.parse().expect("DATABASE_URL is a URL")
}

pub fn rand_suffix() -> String {
    let b: [u8; 4] = rand_bytes();
    alloy::hex::encode(b)
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let key = PrivateKeySigner::random();
    let bytes = key.to_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// A running gateway with a client.
pub struct TestGateway {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: sqlx::PgPool,
    pub state: carechain_gateway::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub chain_id: u64,
}

impl TestGateway {
    pub async fn start(chain: &TestChain, database_url: &str) -> Self {
        Self::start_with(chain, database_url, |_| {}).await
    }

    pub async fn start_with(
        chain: &TestChain,
        database_url: &str,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let kek = alloy::hex::encode(rand_bytes::<32>());
        let mut config = GatewayConfig::with_defaults(
            database_url.to_owned(),
            chain.rpc_url.clone(),
            chain.manifest_path.clone(),
            kek,
        );
        tweak(&mut config);
        let gateway = Gateway::start(config).await.expect("gateway starts");
        let addr = gateway.local_addr().unwrap();
        let state = gateway.state().clone();
        let pool = state.pool().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(async move {
            let _ = rx.await;
        }));
        Self {
            // `https://` when the gateway serves TLS (a test then sets a client that trusts it).
            base: format!(
                "{}://{addr}",
                if state.config().serves_tls() {
                    "https"
                } else {
                    "http"
                }
            ),
            http: reqwest::Client::new(),
            pool,
            state,
            shutdown: Some(tx),
            task: Some(task),
            chain_id: chain.manifest.chain_id,
        }
    }

    /// Stops the gateway gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs in `signer` and returns the response status and body.
    pub async fn sign_in_raw(
        &self,
        signer: &PrivateKeySigner,
        edit: impl FnOnce(&mut SiweMessage),
    ) -> (u16, Value) {
        let nonce: Value = self
            .http
            .post(self.url("/auth/nonce"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let mut message = SiweMessage {
            domain: nonce["domain"].as_str().unwrap().to_owned(),
            address: signer.address(),
            statement: Some("Sign in to carechain".into()),
            uri: nonce["uri"].as_str().unwrap().to_owned(),
            version: "1".into(),
            chain_id: self.chain_id,
            nonce: nonce["nonce"].as_str().unwrap().to_owned(),
            issued_at: now,
            expiration_time: Some(now + chrono::Duration::minutes(5)),
            not_before: None,
        };
        edit(&mut message);
        let text = message.to_text();
        let signature = signer.sign_message_sync(text.as_bytes()).unwrap();
        self.login(
            &text,
            &format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        )
        .await
    }

    pub async fn login(&self, text: &str, signature: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({"message": text, "signature": signature}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn sign_in(&self, signer: &PrivateKeySigner) -> String {
        let (status, body) = self.sign_in_raw(signer, |_| {}).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits until the indexer has committed `block` and the gateway's health probe (every
    /// 250 ms) has seen a head at least that high, so decisions are not refused as stale.
    pub async fn wait_indexed(&self, block: u64) {
        let block = block as i64;
        eventually(|| async { self.indexed_block().await >= Some(block) }).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    /// The indexer's cursor (the last block it committed), if it has one.
    pub async fn indexed_block(&self) -> Option<i64> {
        sqlx::query_scalar("SELECT block_number FROM indexer_cursor")
            .fetch_optional(&self.pool)
            .await
            .unwrap()
    }

    /// The audit row of the request whose response carried `headers` (its `X-Audit-Seq`).
    pub async fn audit_row(&self, headers: &reqwest::header::HeaderMap) -> AuditRow {
        let seq: i64 = headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
        let (http_status, outcome, consent_block, event): (i32, String, Option<i64>, String) =
            sqlx::query_as(
                "SELECT http_status, outcome, consent_block, event::text FROM gateway_audit_log WHERE seq = $1",
            )
            .bind(seq)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let event: Value = serde_json::from_str(&event).unwrap();
        let basis = event["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .find(|d| d["type"] == "consent-basis")
            .and_then(|d| d["valueString"].as_str())
            .map(str::to_owned);
        AuditRow {
            http_status,
            outcome,
            consent_block,
            basis,
            description: event["outcomeDesc"].as_str().unwrap_or_default().to_owned(),
        }
    }

    pub async fn audit_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM gateway_audit_log")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// What the audit log recorded for one request.
#[derive(Debug)]
pub struct AuditRow {
    pub http_status: i32,
    pub outcome: String,
    pub consent_block: Option<i64>,
    pub basis: Option<String>,
    pub description: String,
}

/// The real indexer, in process, following the test chain into the test database.
pub struct TestIndexer {
    task: tokio::task::JoinHandle<()>,
}

impl TestIndexer {
    pub async fn start(chain: &TestChain, database_url: &str) -> Self {
        use clap::Parser;
        let config = carechain_indexer::Config::try_parse_from([
            "carechain-indexer",
            "--rpc-url",
            &chain.rpc_url,
            "--manifest",
            chain.manifest_path.to_str().unwrap(),
            "--database-url",
            database_url,
            "--poll-interval-ms",
            "50",
            "--no-progress",
        ])
        .unwrap();
        let indexer = carechain_indexer::Indexer::start(config).await.unwrap();
        let task = tokio::spawn(async move {
            if let Err(err) = indexer.run().await {
                eprintln!("indexer stopped: {err}");
            }
        });
        Self { task }
    }
}

impl Drop for TestIndexer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `f` is true (or fails after 10 s).
pub async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 10 s");
}

pub fn b256(n: u8) -> B256 {
    B256::repeat_byte(n)
}
