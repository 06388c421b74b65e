//! `kill -9` at random points during backfill and during live following: after a final run the
//! tables equal those of a clean run (no duplicate, no gap), and the cursor never goes back.

mod common;

use carechain_testkit::{Anvil, AnvilOptions, Deployment, SeededRng, TestDb};
use common::*;
use std::time::Duration;

/// Kills the indexer `cycles` times at random moments; asserts the cursor never moves back
/// and returns the cursor after each kill.
async fn kill_cycles(
    args: &[String],
    db: &TestDb,
    cycles: usize,
    max_delay_ms: u64,
    rng: &mut SeededRng,
) -> Vec<i64> {
    let pool = db.pool().await;
    let mut last = -1i64;
    let mut cursors = Vec::new();
    for cycle in 0..cycles {
        let proc = IndexerProc::spawn(args);
        // Every third kill may land anywhere, even in start-up and migrations; the others land
        // while indexing.
        if cycle % 3 != 0 {
            proc.wait_log("indexer started", Duration::from_secs(30))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(max_delay_ms))).await;
        if std::env::var_os("CARECHAIN_TEST_VERBOSE").is_some() {
            let log = proc.log_text();
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            eprintln!("cycle {cycle} log tail: {tail:#?}");
        }
        proc.kill9().await;
        if let Some((block, _)) = cursor(&pool).await {
            assert!(
                block >= last,
                "cycle {cycle}: cursor went back from {last} to {block}"
            );
            last = block;
            cursors.push(block);
        }
    }
    pool.close().await;
    eprintln!("cursor after each kill: {cursors:?}");
    cursors
}

/// How many kills found the cursor strictly between `low` and `high`, at distinct blocks.
fn kills_between(cursors: &[i64], low: i64, high: i64) -> usize {
    let mut inside: Vec<i64> = cursors
        .iter()
        .copied()
        .filter(|c| *c > low && *c < high)
        .collect();
    inside.dedup();
    inside.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_backfill_loses_and_duplicates_nothing() {
    let mut rng = SeededRng::from_env_or_clock();
    // finalized = head - 2: nearly everything is backfilled in ranges.
    let anvil = AnvilOptions::new().slots_in_an_epoch(1).start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    consent_load(
        &anvil.url,
        deployment.manifest.contracts.consent_registry,
        0,
        360,
    )
    .await;
    let want = clean_snapshot(&anvil, &deployment).await;

    let db = TestDb::create().await;
    let mut args = indexer_args(&anvil.url, &deployment, &db.url);
    // Small ranges: many commits, so kills land between and inside them.
    args.extend(
        [
            "--initial-range",
            "1",
            "--max-range",
            "2",
            "--target-logs",
            "1",
            "--fetch-concurrency",
            "3",
        ]
        .map(String::from),
    );
    let cursors = kill_cycles(&args, &db, 12, 200, &mut rng).await;
    let target = anvil.head().await as i64 - 2;
    let mid_backfill = kills_between(
        &cursors,
        deployment.manifest.deployment_block as i64,
        target,
    );
    assert!(
        mid_backfill >= 3,
        "only {mid_backfill} kills landed mid-backfill: {cursors:?}"
    );
    run_to_sync(&args).await;
    let pool = db.pool().await;
    assert_same_tables(&snapshot(&pool).await, &want);
    // The first backfill drops the event tables' reader indexes; killed or not, they are
    // back once it has completed.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes \
         WHERE indexname IN ('ev_consent_granted_patient', 'ev_consent_revoked_patient') \
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("list indexes");
    assert_eq!(
        indexes,
        ["ev_consent_granted_patient", "ev_consent_revoked_patient"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_live_following_loses_and_duplicates_nothing() {
    let mut rng = SeededRng::from_env_or_clock();
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let db = TestDb::create().await;
    let args = indexer_args(&anvil.url, &deployment, &db.url);

    // Transactions keep coming (one block each) while the indexer is killed and restarted.
    let load = {
        let url = anvil.url.clone();
        let registry = deployment.manifest.contracts.consent_registry;
        tokio::spawn(async move {
            for start in (0..240).step_by(4) {
                consent_load(&url, registry, start, 4).await;
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    let cursors = kill_cycles(&args, &db, 10, 400, &mut rng).await;
    load.await.expect("load task");
    let head = anvil.head().await as i64;
    let mid_chain = kills_between(&cursors, deployment.manifest.deployment_block as i64, head);
    assert!(
        mid_chain >= 3,
        "only {mid_chain} kills landed while following: {cursors:?}"
    );
    run_to_sync(&args).await;
    let pool = db.pool().await;
    let got = snapshot(&pool).await;
    assert_same_tables(&got, &clean_snapshot(&anvil, &deployment).await);
    assert!(got["ev_consent_granted"].0 > 100, "{got:?}");
}

/// A kill while the end of the first backfill builds the derived state in bulk (its
/// transaction held open by a test-only pause) leaves neither rows nor a moved derived cursor,
/// and the indexes dropped for the build are all there; the next run builds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_derived_state_build_loses_nothing() {
    let anvil = AnvilOptions::new().slots_in_an_epoch(1).start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    consent_load(
        &anvil.url,
        deployment.manifest.contracts.consent_registry,
        0,
        40,
    )
    .await;
    let want = clean_snapshot(&anvil, &deployment).await;

    let db = TestDb::create().await;
    let args = indexer_args(&anvil.url, &deployment, &db.url);
    let proc = IndexerProc::spawn_with_env(&args, &[("CARECHAIN_TEST_FOLD_PAUSE_MS", "3000")]);
    proc.wait_log("building the derived state", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proc.kill9().await;

    let pool = db.pool().await;
    let derived: i64 = sqlx::query_scalar("SELECT block_number FROM indexer_derived_cursor")
        .fetch_one(&pool)
        .await
        .expect("derived cursor");
    assert_eq!(derived, deployment.manifest.deployment_block as i64 - 1);
    let (indexed,) = cursor(&pool).await.map(|c| (c.0,)).expect("cursor");
    assert!(
        indexed > derived,
        "the events were committed before the build"
    );
    let consents: i64 = sqlx::query_scalar("SELECT count(*) FROM consents")
        .fetch_one(&pool)
        .await
        .expect("consents");
    assert_eq!(consents, 0);
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE indexname IN ('consents_pkey', 'consents_grantee')",
    )
    .fetch_one(&pool)
    .await
    .expect("indexes");
    assert_eq!(indexes, 2);

    run_to_sync(&args).await;
    assert_same_tables(&snapshot(&pool).await, &want);
    // The event tables' reader indexes, dropped for the first backfill, are back.
    let deferred: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE indexname IN \
         ('ev_consent_granted_patient', 'ev_consent_revoked_patient', 'ev_record_anchored_hash', \
          'ev_consent_granted_actor', 'ev_consent_revoked_actor')",
    )
    .fetch_one(&pool)
    .await
    .expect("indexes");
    assert_eq!(deferred, 5);
}
