//! The RPC endpoint going away for a while and PostgreSQL dropping every connection (as in a
//! server restart): the indexer logs, retries, and catches up with nothing lost.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_outage_is_retried_and_nothing_is_lost() {
    let anvil = Anvil::start(&[]).await;
    let deployment = deploy(&anvil);
    let registry = deployment.manifest.contracts.consent_registry;
    let mut proxy = Proxy::start(anvil.port).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_loss_is_retried_and_nothing_is_lost() {
    let anvil = Anvil::start(&[]).await;
    let deployment = deploy(&anvil);
    let registry = deployment.manifest.contracts.consent_registry;
    let db = TestDb::create().await;
    let mut proxy = Proxy::start(db.server_port()).await;
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
    proc.wait_log(
        "indexing pass failed; resuming from the stored cursor",
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        proc.is_running(),
        "the indexer must not exit:\n{}",
        proc.log_text()
    );
    proxy.up().await;

    wait_synced(&proc, &pool, &anvil, Duration::from_secs(60)).await;
    assert_same_tables(
        &snapshot(&pool).await,
        &clean_snapshot(&anvil, &deployment).await,
    );
}
