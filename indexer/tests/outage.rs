//! The RPC endpoint going away for a while, PostgreSQL dropping every connection, and the
//! PostgreSQL server itself restarting: the indexer logs, retries, and catches up with nothing
//! lost.

mod common;

use carechain_testkit::{Anvil, Deployment, TcpProxy, TestDb, free_port, repo_root, unique_name};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_outage_is_retried_and_nothing_is_lost() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let mut proxy = TcpProxy::start(anvil.port).await;
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let rpc = format!("http://127.0.0.1:{}", proxy.port);
    let mut args = indexer_args(&rpc, &deployment, &db.url);
    args.extend(["--rpc-timeout-s", "2", "--max-backoff-ms", "400"].map(String::from));
    let mut proc = IndexerProc::spawn(&args);
    consent_load(&anvil.url, registry, 0, 10).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;

    proxy.down().await;
    // The chain goes on while the indexer cannot see it.
    consent_load(&anvil.url, registry, 10, 25).await;
    proc.wait_log("RPC call failed; retrying", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        proc.is_running(),
        "the indexer must not exit:\n{}",
        proc.log_text()
    );
    proxy.up().await;

    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    assert!(
        proc.log_text().contains("RPC call succeeded after retries"),
        "{}",
        proc.log_text()
    );
    assert_same_tables(
        &snapshot(&pool).await,
        &clean_snapshot(&anvil, &deployment).await,
    );
}

/// The indexer says its pass failed and that it resumes, and does not exit.
async fn keeps_retrying(proc: &mut IndexerProc) {
    proc.wait_log(
        "indexing pass failed; resuming from the stored cursor",
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        proc.is_running(),
        "the indexer must not exit while PostgreSQL is unreachable:\n{}",
        proc.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_loss_is_retried_and_nothing_is_lost() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let db = TestDb::create().await;
    let mut proxy = TcpProxy::start(db.server_port()).await;
    let pool = db.pool().await;
    let args = indexer_args(&anvil.url, &deployment, &db.url_via(proxy.port));
    let mut proc = IndexerProc::spawn(&args);
    consent_load(&anvil.url, registry, 0, 10).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;

    // What a restart looks like to a client: every session ends, new connections are refused.
    proxy.down().await;
    db.terminate_sessions().await;
    let pool = db.pool().await;
    consent_load(&anvil.url, registry, 10, 25).await;
    keeps_retrying(&mut proc).await;
    proxy.up().await;

    wait_synced(&proc, &pool, &anvil, Duration::from_secs(60)).await;
    assert_same_tables(
        &snapshot(&pool).await,
        &clean_snapshot(&anvil, &deployment).await,
    );
}

/// A private PostgreSQL cluster of this test, started and stopped with the project's own
/// `scripts/lib.sh` (which runs the server as the `postgres` user when the tests run as root).
struct PrivateCluster {
    dir: std::path::PathBuf,
    port: u16,
}

impl PrivateCluster {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("carechain_pg_restart"));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        // The server runs as the postgres user when we are root: it must reach the directory.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the cluster directory");
        Self {
            dir,
            port: free_port(),
        }
    }

    /// Runs `script` after sourcing scripts/lib.sh; returns its standard output.
    fn lib(&self, script: &str) -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("set -e; source scripts/lib.sh; {script}"))
            .env("PG_DIR_ARG", &self.dir)
            .env("PG_PORT_ARG", self.port.to_string())
            .env(
                "PG_SERVER_OPTS",
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            )
            .current_dir(repo_root())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run bash");
        assert!(out.status.success(), "scripts/lib.sh: {script} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts the server; returns the URL of its `carechain` database.
    fn start(&self) -> String {
        self.lib(r#"pg_start "$PG_DIR_ARG" "$PG_PORT_ARG" >&2; echo "$DATABASE_URL""#)
    }

    fn stop(&self) {
        self.lib(r#"pg_stop "$PG_DIR_ARG" >&2"#);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_restart_is_survived_and_nothing_is_lost() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let cluster = PrivateCluster::new();
    let url = cluster.start();
    let mut proc = IndexerProc::spawn(&indexer_args(&anvil.url, &deployment, &url));
    consent_load(&anvil.url, registry, 0, 10).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    pool.close().await;

    // The server goes down (fast shutdown), the chain moves on, the server comes back.
    cluster.stop();
    consent_load(&anvil.url, registry, 10, 25).await;
    keeps_retrying(&mut proc).await;
    assert_eq!(cluster.start(), url);

    let pool = sqlx::PgPool::connect(&url).await.expect("reconnect");
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(60)).await;
    assert_same_tables(
        &snapshot(&pool).await,
        &clean_snapshot(&anvil, &deployment).await,
    );
}
