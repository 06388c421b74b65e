//! The indexer's own harness pieces, on top of `carechain-testkit` (anvil, the deploy script,
//! test databases): the real indexer binary run as a process (killed with `kill -9`), waiting
//! for its cursor, table snapshots to compare runs, and a consent load.
#![allow(dead_code)]

use alloy::{
    primitives::{Address, B256, aliases::U40},
    providers::DynProvider,
};
use carechain_contracts::ConsentRegistry;
use carechain_testkit::{Anvil, Deployment, TestDb, dev_address, signer_at, unique_name};
use sqlx::{PgPool, Row};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

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
        let log = std::env::temp_dir().join(format!("{}.log", unique_name("indexer")));
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
