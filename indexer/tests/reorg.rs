//! `anvil_reorg` at depths 1, 3 and 10 while the indexer follows the chain: afterwards the
//! tables equal a clean run over the canonical chain. A reorg deeper than the window is
//! refused with a clear error and leaves the database untouched.

mod common;

use carechain_testkit::{Anvil, Deployment, TestDb};
use common::*;
use std::time::Duration;

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
async fn a_reorg_deeper_than_the_window_is_refused() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let registry = deployment.manifest.contracts.consent_registry;
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let mut args = indexer_args(&anvil.url, &deployment, &db.url);
    args.extend(["--reorg-window".into(), "4".into()]);
    let mut proc = IndexerProc::spawn(&args);
    consent_load(&anvil.url, registry, 0, 20).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    let before = snapshot(&pool).await;
    anvil.reorg(10).await;
    let status = proc.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "the indexer must stop");
    let log = proc.log_text();
    assert!(log.contains("reorg deeper than the window"), "{log}");
    assert!(log.contains("window 4 blocks"), "{log}");
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
