//! `anvil_reorg` at depths 1, 3 and 10, and exactly as deep as the window, while the indexer
//! follows the chain: afterwards the tables equal a clean run over the canonical chain. A block
//! replaced between its header and its logs is handled as the reorg it is. A reorg deeper than
//! the window is refused with a clear error (a structured log line under `--log-format json`)
//! and leaves the database untouched.

mod common;

use axum::{Router, body::Bytes, extract::State, response::IntoResponse, routing::post};
use carechain_testkit::{Anvil, Deployment, TestDb};
use common::*;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_of_depth_1_3_and_10_leave_the_canonical_chain() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let proc = IndexerProc::spawn(&indexer_args(&anvil.url, &deployment, &db.url));
    let mut next = 0;
    for depth in [1u64, 3, 10] {
        // Blocks with events, indexed live, then replaced by empty ones.
        consent_load(&anvil.url, registry, next, depth + 12).await;
        next += depth + 12;
        wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
        let head = anvil.head().await;
        let before = snapshot(&pool).await;
        anvil.reorg(depth).await;
        assert_eq!(anvil.head().await, head, "anvil_reorg keeps the height");
        // Same height, new hash: found while idle at the head.
        wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
        // And the chain goes on from the new fork.
        consent_load(&anvil.url, registry, next, 3).await;
        next += 3;
        wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
        let got = snapshot(&pool).await;
        assert_ne!(got["ev_consent_granted"], before["ev_consent_granted"]);
        assert_same_tables(&got, &clean_snapshot(&anvil, &deployment).await);
    }
    let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
    // At least one rollback per reorg (a reorg seen while anvil is still replacing blocks may
    // take two).
    assert!(log.matches("reorg handled").count() >= 3, "{log}");
    for depth in [1, 3, 10] {
        assert!(
            log.contains(&format!("depth={depth} ")),
            "depth {depth} not reported:\n{log}"
        );
    }
    proc.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_exactly_as_deep_as_the_default_window_is_handled() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let db = TestDb::create().await;
    let pool = db.pool().await;
    // The default window (64 blocks), every block followed live.
    let proc = IndexerProc::spawn(&indexer_args(&anvil.url, &deployment, &db.url));
    consent_load(&anvil.url, registry, 0, 4).await;
    anvil.mine(60).await;
    // Events in the blocks about to be replaced, the first of them 64 blocks below the head.
    consent_load(&anvil.url, registry, 4, 4).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(60)).await;
    let head = anvil.head().await;
    let fork = head - 64;
    let granted_above_fork = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM ev_consent_granted WHERE block_number > $1",
        )
        .bind(fork as i64)
        .fetch_one(&pool)
        .await
        .expect("count")
    };
    assert!(granted_above_fork(pool.clone()).await > 0);
    anvil.reorg(64).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(60)).await;
    assert_eq!(granted_above_fork(pool.clone()).await, 0);
    assert_same_tables(
        &snapshot(&pool).await,
        &clean_snapshot(&anvil, &deployment).await,
    );
    let log = proc.log_text();
    assert!(log.contains("depth=64 "), "{log}");
    assert!(!log.contains("reorg deeper than the window"), "{log}");
    proc.kill9().await;
}

/// Forwards JSON-RPC to anvil; once armed, the first `eth_getLogs` by the hash of anvil's head
/// block first replaces that block (`anvil_reorg` of depth 1), so that the node no longer knows
/// the block whose header the indexer has just read.
struct VanishingHead {
    anvil_url: String,
    http: alloy::transports::http::reqwest::Client,
    armed: AtomicBool,
    fired: AtomicBool,
}

async fn forward(State(hook): State<Arc<VanishingHead>>, body: Bytes) -> impl IntoResponse {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let by_hash =
        request["method"] == "eth_getLogs" && request["params"][0]["blockHash"].is_string();
    if by_hash && hook.armed.load(Ordering::SeqCst) {
        let provider = alloy::providers::ProviderBuilder::new()
            .connect_http(hook.anvil_url.parse().expect("URL"));
        let head = alloy::providers::Provider::get_block_number(&provider)
            .await
            .expect("head");
        let head_hash = alloy::providers::Provider::get_block_by_number(&provider, head.into())
            .await
            .expect("block")
            .expect("head block")
            .header
            .hash;
        if request["params"][0]["blockHash"] == serde_json::json!(head_hash)
            && !hook.fired.swap(true, Ordering::SeqCst)
        {
            let _: serde_json::Value = alloy::providers::Provider::raw_request(
                &provider,
                "anvil_reorg".into(),
                (1u64, Vec::<serde_json::Value>::new()),
            )
            .await
            .expect("anvil_reorg");
        }
    }
    let answer = hook
        .http
        .post(&hook.anvil_url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("anvil answers");
    (
        [("content-type", "application/json")],
        answer.bytes().await.expect("body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_replaced_between_its_header_and_its_logs_is_a_reorg() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let hook = Arc::new(VanishingHead {
        anvil_url: anvil.url.clone(),
        http: alloy::transports::http::reqwest::Client::new(),
        armed: AtomicBool::new(false),
        fired: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let proxy_url = format!("http://{}", listener.local_addr().expect("address"));
    let app = Router::new()
        .route("/", post(forward))
        .with_state(hook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::create().await;
    let pool = db.pool().await;
    let proc = IndexerProc::spawn(&indexer_args(&proxy_url, &deployment, &db.url));
    consent_load(&anvil.url, registry, 0, 3).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    hook.armed.store(true, Ordering::SeqCst);
    // A block with an event: the indexer reads its header, then asks for its logs, and the
    // node has replaced it by then (an error answer, "unknown block").
    consent_load(&anvil.url, registry, 3, 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !hook.fired.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the indexer never asked for the new block's logs:\n{}",
            proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The chain goes on from the replacement block.
    consent_load(&anvil.url, registry, 4, 2).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    let log = proc.log_text();
    assert!(
        log.contains("the block vanished before its logs were fetched"),
        "{log}"
    );
    assert_same_tables(
        &snapshot(&pool).await,
        &clean_snapshot(&anvil, &deployment).await,
    );
    proc.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_deeper_than_the_window_is_refused() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let mut args = indexer_args(&anvil.url, &deployment, &db.url);
    args.extend(["--reorg-window".into(), "4".into()]);
    let format = args
        .iter()
        .position(|a| a == "--log-format")
        .expect("log format argument");
    args[format + 1] = "json".into();
    let mut proc = IndexerProc::spawn(&args);
    consent_load(&anvil.url, registry, 0, 20).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    let before = snapshot(&pool).await;
    // One block deeper than the window.
    anvil.reorg(5).await;
    let status = proc.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "the indexer must stop");
    let log = proc.log_text();
    assert!(log.contains("reorg deeper than the window"), "{log}");
    assert!(log.contains("window 4 blocks"), "{log}");
    // Every line is a JSON object, the fatal error among them with its kind.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let fatal = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line:\n{log}"));
    assert_eq!(fatal["message"], "the indexer stopped", "{fatal}");
    assert_eq!(fatal["kind"], "deep-reorg", "{fatal}");
    assert!(
        fatal["error"]
            .as_str()
            .is_some_and(|e| e.contains("reorg deeper than the window")),
        "{fatal}"
    );
    // Nothing was rolled back or half-written.
    assert_same_tables(&snapshot(&pool).await, &before);
    // A restart refuses too: it never indexes on top of the orphaned blocks.
    let mut again = IndexerProc::spawn(&args);
    assert!(!again.wait_exit(Duration::from_secs(30)).await.success());
    assert!(
        again.log_text().contains("reorg deeper than the window"),
        "{}",
        again.log_text()
    );
}
