//! Test harness: a private anvil per test, a uniquely named PostgreSQL database per test, the
//! real deploy script, the real indexer binary, and table snapshots to compare runs.
#![allow(dead_code)]

use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, U256, aliases::U40},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{ConsentRegistry, DeploymentManifest};
use sqlx::{Connection, PgConnection, PgPool, Row, postgres::PgPoolOptions};
use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// anvil's well-known development keys (mnemonic "test test ... junk"); worthless off anvil.
pub(crate) const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("indexer/ has a parent")
        .to_owned()
}

fn tool(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("node_modules/.bin").join(name))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

// ------------------------------------------------------------------------------------------
// PostgreSQL
// ------------------------------------------------------------------------------------------

/// A database created for one test on the server of `DATABASE_URL`, dropped at the end.
pub(crate) struct TestDb {
    admin_url: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

fn with_database(url: &str, name: &str) -> String {
    let mut parsed =
        alloy::transports::http::reqwest::Url::parse(url).expect("DATABASE_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

impl TestDb {
    pub(crate) async fn create() -> Self {
        let admin_url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must point at a PostgreSQL server (a database there is used to create test databases)");
        let name = unique("idx_test");
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// The URL with another host:port (for a proxy in front of the server).
    pub(crate) fn url_via(&self, port: u16) -> String {
        let mut parsed = alloy::transports::http::reqwest::Url::parse(&self.url).expect("URL");
        parsed.set_host(Some("127.0.0.1")).expect("host");
        parsed.set_port(Some(port)).expect("port");
        parsed.to_string()
    }

    pub(crate) fn server_port(&self) -> u16 {
        alloy::transports::http::reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.port())
            .unwrap_or(5432)
    }

    pub(crate) async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Ends every session on this database (what a server restart does to clients).
    pub(crate) async fn terminate_sessions(&self) {
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .expect("admin connection");
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(&self.name)
            .execute(&mut conn)
            .await
            .expect("terminate sessions");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

// ------------------------------------------------------------------------------------------
// anvil and the deployment
// ------------------------------------------------------------------------------------------

/// A private anvil on a free loopback port, killed on drop.
pub(crate) struct Anvil {
    child: Child,
    pub(crate) port: u16,
    pub(crate) url: String,
}

impl Anvil {
    pub(crate) async fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(tool("ANVIL_BIN", "anvil"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil (set ANVIL_BIN)");
        let url = format!("http://127.0.0.1:{port}");
        let anvil = Self { child, port, url };
        let provider = anvil.provider();
        let deadline = Instant::now() + Duration::from_secs(20);
        while provider.get_chain_id().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "anvil did not answer on {}",
                anvil.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anvil
    }

    pub(crate) fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_http(self.url.parse().expect("URL"))
            .erased()
    }

    /// A provider signing with development key `i`.
    pub(crate) fn signer(&self, i: usize) -> DynProvider {
        signer_at(&self.url, i)
    }

    pub(crate) async fn head(&self) -> u64 {
        self.provider()
            .get_block_number()
            .await
            .expect("eth_blockNumber")
    }

    pub(crate) async fn block_hash(&self, number: u64) -> B256 {
        self.provider()
            .get_block_by_number(number.into())
            .await
            .expect("eth_getBlockByNumber")
            .expect("block exists")
            .header
            .hash
    }

    pub(crate) async fn mine(&self, blocks: u64) {
        let _: serde_json::Value = self
            .provider()
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await
            .expect("anvil_mine");
    }

    /// `anvil_reorg`: replaces the last `depth` blocks with empty ones.
    pub(crate) async fn reorg(&self, depth: u64) {
        let _: serde_json::Value = self
            .provider()
            .raw_request(
                "anvil_reorg".into(),
                (depth, Vec::<serde_json::Value>::new()),
            )
            .await
            .expect("anvil_reorg");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider at `url` signing with development key `i`.
pub(crate) fn signer_at(url: &str, i: usize) -> DynProvider {
    let key: PrivateKeySigner = DEV_KEYS[i].parse().expect("dev key");
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(key))
        .connect_http(url.parse().expect("URL"))
        .erased()
}

pub(crate) fn dev_address(i: usize) -> Address {
    DEV_KEYS[i]
        .parse::<PrivateKeySigner>()
        .expect("dev key")
        .address()
}

/// A deployment by the real deploy script, its manifest copied to a temporary file.
pub(crate) struct Deployment {
    pub(crate) manifest: DeploymentManifest,
    pub(crate) manifest_path: PathBuf,
    dir: PathBuf,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn deploy(anvil: &Anvil) -> Deployment {
    let root = repo_root();
    let name = unique("indexer-test");
    let relative = format!("deployments/{name}.json");
    // forge writes its cache and broadcast files in the project: one deploy at a time.
    let lock_path = std::env::temp_dir().join("carechain-indexer-tests-forge.lock");
    std::fs::create_dir_all(root.join("deployments")).expect("deployments/ directory");
    let lock = std::fs::File::create(&lock_path).expect("lock file");
    lock.lock().expect("lock forge");
    let output = Command::new(tool("FORGE_BIN", "forge"))
        .current_dir(&root)
        .args([
            "script",
            "contracts/script/Deploy.s.sol",
            "--rpc-url",
            &anvil.url,
            "--broadcast",
            "--private-key",
            DEV_KEYS[0],
        ])
        .env("DEPLOY_MANIFEST", &relative)
        .output()
        .expect("run forge (set FORGE_BIN)");
    drop(lock);
    assert!(
        output.status.success(),
        "deploy script failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let written = root.join(&relative);
    let text = std::fs::read_to_string(&written).expect("manifest written");
    let _ = std::fs::remove_file(&written);
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, &text).expect("write manifest");
    let manifest = DeploymentManifest::parse(&text).expect("valid manifest");
    Deployment {
        manifest,
        manifest_path,
        dir,
    }
}

// ------------------------------------------------------------------------------------------
// The indexer binary
// ------------------------------------------------------------------------------------------

/// A running `carechain-indexer` process; its stderr goes to a file.
pub(crate) struct IndexerProc {
    child: tokio::process::Child,
    pub(crate) log: PathBuf,
}

pub(crate) fn indexer_args<'a>(
    rpc: &'a str,
    deployment: &'a Deployment,
    db_url: &'a str,
) -> Vec<String> {
    vec![
        "--rpc-url".into(),
        rpc.into(),
        "--manifest".into(),
        deployment.manifest_path.display().to_string(),
        "--database-url".into(),
        db_url.into(),
        "--log-format".into(),
        "text".into(),
        "--poll-interval-ms".into(),
        "50".into(),
    ]
}

impl IndexerProc {
    pub(crate) fn spawn(args: &[String]) -> Self {
        Self::spawn_with_env(args, &[])
    }

    /// As [`IndexerProc::spawn`], with extra environment variables.
    pub(crate) fn spawn_with_env(args: &[String], env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique("indexer")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carechain-indexer"))
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,carechain_indexer=debug,sqlx=warn")
            .env_remove("DATABASE_URL")
            .env_remove("CARECHAIN_RPC_URL")
            .env_remove("CARECHAIN_MANIFEST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the indexer");
        Self { child, log }
    }

    /// SIGKILL, as `kill -9`.
    pub(crate) async fn kill9(mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
        let _ = std::fs::remove_file(&self.log);
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "indexer did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                )
            })
            .expect("wait")
    }

    /// Waits until the log contains `needle`.
    pub(crate) async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs the indexer with `--exit-when-synced` to completion and asserts success.
pub(crate) async fn run_to_sync(args: &[String]) {
    let mut args = args.to_vec();
    args.push("--exit-when-synced".into());
    let mut proc = IndexerProc::spawn(&args);
    let status = proc.wait_exit(Duration::from_secs(120)).await;
    assert!(
        status.success(),
        "indexer failed: {status}\n{}",
        proc.log_text()
    );
    let _ = std::fs::remove_file(&proc.log);
}

/// Waits until the cursor is at the chain's current head (number and hash, read afresh each
/// time: a reorg may still be settling); on timeout, fails with the indexer's log.
pub(crate) async fn wait_synced(
    proc: &IndexerProc,
    pool: &PgPool,
    anvil: &Anvil,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let head = anvil.head().await;
        let hash = anvil.block_hash(head).await;
        if let Some((n, h)) = cursor(pool).await
            && n == head as i64
            && h.as_deref() == Some(hash.as_slice())
        {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "cursor did not reach the head {head} ({hash}) in {timeout:?}; cursor {:?}; indexer log:\n{}",
                cursor(pool).await,
                proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `proc`'s cursor is at `block` with hash `hash`; on timeout, fails with its log.
pub(crate) async fn wait_indexed(
    proc: &IndexerProc,
    pool: &PgPool,
    block: u64,
    hash: B256,
    timeout: Duration,
) {
    let log = proc.log.clone();
    let waited = tokio::spawn({
        let pool = pool.clone();
        async move { wait_cursor(&pool, block, hash, timeout).await }
    })
    .await;
    if waited.is_err() {
        panic!(
            "cursor did not reach block {block} ({hash}) in {timeout:?}; indexer log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// Waits until the cursor is at `block` with hash `hash`.
pub(crate) async fn wait_cursor(pool: &PgPool, block: u64, hash: B256, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let row = sqlx::query("SELECT block_number, block_hash FROM indexer_cursor")
            .fetch_optional(pool)
            .await
            .ok()
            .flatten();
        if let Some(row) = row {
            let n: i64 = row.get(0);
            let h: Option<Vec<u8>> = row.get(1);
            if n == block as i64 && h.as_deref() == Some(hash.as_slice()) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cursor did not reach block {block} ({hash}) in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn cursor(pool: &PgPool) -> Option<(i64, Option<Vec<u8>>)> {
    sqlx::query("SELECT block_number, block_hash FROM indexer_cursor")
        .fetch_optional(pool)
        .await
        .ok() // no table yet when killed before the migrations ran
        .flatten()
        .map(|r| (r.get(0), r.get(1)))
}

/// Every event and derived table (and the cursor) as (row count, digest of the sorted rows).
pub(crate) async fn snapshot(pool: &PgPool) -> BTreeMap<String, (i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
           AND table_name NOT IN ('indexer_deployments', 'indexer_cursor', 'indexer_derived_cursor', '_sqlx_migrations') \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("list tables");
    let mut out = BTreeMap::new();
    for table in tables {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
        )))
        .fetch_one(pool)
        .await
        .expect("digest table");
        out.insert(table, (row.get(0), row.get(1)));
    }
    let row = sqlx::query("SELECT block_number, encode(block_hash, 'hex') FROM indexer_cursor")
        .fetch_one(pool)
        .await
        .expect("cursor");
    let hash: Option<String> = row.get(1);
    out.insert(
        "indexer_cursor".into(),
        (row.get(0), hash.unwrap_or_default()),
    );
    let derived: i64 = sqlx::query_scalar("SELECT block_number FROM indexer_derived_cursor")
        .fetch_one(pool)
        .await
        .expect("derived cursor");
    out.insert("indexer_derived_cursor".into(), (derived, String::new()));
    out
}

/// Asserts two snapshots are equal, naming the tables that differ. `indexer_blocks` is left
/// out: which hashes are kept depends on how the blocks were reached (ranges or one by one).
pub(crate) fn assert_same_tables(
    got: &BTreeMap<String, (i64, String)>,
    want: &BTreeMap<String, (i64, String)>,
) {
    let differing: Vec<_> = want
        .iter()
        .filter(|(t, _)| t.as_str() != "indexer_blocks")
        .filter(|(t, v)| got.get(*t) != Some(v))
        .map(|(t, v)| format!("{t}: got {:?}, want {v:?}", got.get(t)))
        .collect();
    assert!(
        differing.is_empty(),
        "tables differ from a clean run:\n{}",
        differing.join("\n")
    );
}

/// Indexes the finished chain into a fresh database and returns its snapshot.
pub(crate) async fn clean_snapshot(
    anvil: &Anvil,
    deployment: &Deployment,
) -> BTreeMap<String, (i64, String)> {
    let db = TestDb::create().await;
    run_to_sync(&indexer_args(&anvil.url, deployment, &db.url)).await;
    let pool = db.pool().await;
    let snap = snapshot(&pool).await;
    pool.close().await;
    snap
}

// ------------------------------------------------------------------------------------------
// Load
// ------------------------------------------------------------------------------------------

/// Sends `count` consent transactions (grants, with a revoke every fifth) from development
/// keys 1..=9, one block each (anvil automines); returns when all are mined.
pub(crate) async fn consent_load(url: &str, consent_registry: Address, start: u64, count: u64) {
    let signers: Vec<DynProvider> = (1..10).map(|i| signer_at(url, i)).collect();
    let until = U40::from(4_000_000_000u64);
    for i in start..start + count {
        let who = (i % 9) as usize;
        let patient = dev_address(who + 1);
        let registry = ConsentRegistry::new(consent_registry, &signers[who]);
        let grantee = Address::left_padding_from(&(1000 + i / 2).to_be_bytes());
        if i % 5 == 4 && i >= 9 {
            let previous = Address::left_padding_from(&(1000 + (i - 9) / 2).to_be_bytes());
            // Revoke an earlier grant of the same patient when there is one, else grant.
            let stored = registry
                .consentOf(patient, previous)
                .call()
                .await
                .expect("consentOf");
            if stored.validUntil != U40::ZERO {
                registry
                    .revoke(patient, previous)
                    .send()
                    .await
                    .expect("revoke")
                    .tx_hash();
                continue;
            }
        }
        registry
            .grant(
                patient,
                grantee,
                0b1011,
                0b00011,
                1 | ((i as u16 % 4) << 1),
                U40::ZERO,
                until,
                B256::left_padding_from(&i.to_be_bytes()),
            )
            .send()
            .await
            .expect("grant")
            .tx_hash();
    }
}

// ------------------------------------------------------------------------------------------
// A TCP proxy that can be taken down and brought back on the same port
// ------------------------------------------------------------------------------------------

/// Forwards 127.0.0.1:`port` to 127.0.0.1:`target`; `down` closes the listener and every
/// forwarded connection (clients see resets and refused connections), `up` listens again.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    target: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub(crate) async fn start(target: u16) -> Self {
        let mut proxy = Self {
            port: free_port(),
            target,
            task: None,
        };
        proxy.up().await;
        proxy
    }

    pub(crate) async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("proxy listens");
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Aborting the task drops the listener and the JoinSet, which aborts every connection.
    pub(crate) async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A small deterministic pseudo-random sequence (xorshift), seeded from the clock and
/// printed so a failing run can be replayed with `CARECHAIN_TEST_SEED`.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_env_or_clock() -> Self {
        let seed = std::env::var("CARECHAIN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("CARECHAIN_TEST_SEED={seed}");
        Self(seed)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
