//! Audit anchoring across restarts, and verification that detects changed and deleted rows.
//! Real anvil (deploy script), real indexer in process, real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;
mod compliance_support;

use alloy::primitives::B256;
use carechain_contracts::{AuditAnchor, merkle};
use carechain_formats::audit_chain::row_hash as chain_hash;
use carechain_gateway::audit::verify::{ProblemKind, verify_audit_log};
use common::{TestChain, TestIndexer, eventually, fresh_database, wallet_provider};
use compliance_support::*;

async fn hashes(pool: &sqlx::PgPool, from: i64, to: i64) -> Vec<B256> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM gateway_audit_log WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.iter().map(|h| B256::from_slice(h)).collect()
}

async fn insert_pending(pool: &sqlx::PgPool, from: i64, to: i64, root: B256, key: &[u8]) {
    sqlx::query(
        "INSERT INTO gateway_audit_anchors (from_seq, to_seq, root, state, gateway)
         VALUES ($1, $2, $3, 'pending', $4)",
    )
    .bind(from)
    .bind(to)
    .bind(root.as_slice())
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchoring_across_restarts_leaves_no_gap_and_no_overlap() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let key = registered_anchor_key(&chain).await;

    // First run: 12 rows, anchored in batches of 5 (1..5, 6..10); 11 and 12 wait.
    let gw = anchoring_gateway(&chain, &db, &key, 5).await;
    for _ in 0..12 {
        metadata(&gw).await;
    }
    let pool = gw.pool.clone();
    eventually(|| async { anchored_to(&pool).await >= 10 }).await;
    gw.stop().await;
    assert_eq!(anchored_to(&pool).await, 10);

    // A crash after sending: the range 11..12 was recorded as pending and its transaction
    // mined, but the receipt was never recorded.
    let root = merkle::root(&hashes(&pool, 11, 12).await).unwrap();
    insert_pending(&pool, 11, 12, root, key.address().as_slice()).await;
    let anchor = AuditAnchor::new(
        chain.manifest.contracts.audit_anchor,
        wallet_provider(&chain.rpc_url, key.clone()),
    );
    let receipt = mined(anchor.anchorBatch(11, 12, root).send().await).await;
    let crashed_tx = receipt.transaction_hash;

    // Second run: the pending range is reconciled from the index, not sent again.
    let gw = anchoring_gateway(&chain, &db, &key, 5).await;
    for _ in 0..6 {
        metadata(&gw).await; // rows 13..18
    }
    eventually(|| async { anchored_to(&pool).await >= 17 }).await;
    gw.stop().await;
    let rows: i64 = sqlx::query_scalar("SELECT max(seq) FROM gateway_audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 18);

    // A crash before sending: the range 18..18 is pending and was never sent.
    let root = merkle::root(&hashes(&pool, 18, 18).await).unwrap();
    insert_pending(&pool, 18, 18, root, key.address().as_slice()).await;

    // Third run: the pending range is sent as recorded, then anchoring goes on.
    let gw = anchoring_gateway(&chain, &db, &key, 5).await;
    for _ in 0..5 {
        metadata(&gw).await; // rows 19..23
    }
    eventually(|| async { anchored_to(&pool).await >= 23 }).await;
    gw.stop().await;

    let on_chain = reader(&chain).batches().await.unwrap();
    let ranges: Vec<(u64, u64)> = on_chain.iter().map(|b| (b.from_seq, b.to_seq)).collect();
    assert_eq!(
        ranges,
        vec![(1, 5), (6, 10), (11, 12), (13, 17), (18, 18), (19, 23)],
        "contiguous ranges, none twice"
    );
    let recorded: Vec<(i64, i64, Vec<u8>, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT from_seq, to_seq, root, state, batch_id, tx_hash FROM gateway_audit_anchors ORDER BY from_seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(recorded.len(), on_chain.len());
    for (row, batch) in recorded.iter().zip(&on_chain) {
        assert_eq!(row.3, "anchored");
        assert_eq!((row.0 as u64, row.1 as u64), (batch.from_seq, batch.to_seq));
        assert_eq!(row.2.as_slice(), batch.root.as_slice());
        assert_eq!(row.4 as u64, batch.batch_id);
    }
    assert_eq!(recorded[2].5.as_slice(), crashed_tx.as_slice());
    let report = verify_audit_log(&pool, &reader(&chain), None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.batches_checked, 6);
    assert_eq!(report.anchored_to, 23);
}

/// Runs the `carechain-audit` binary; returns (success, stdout as JSON).
async fn cli(chain: &TestChain, db: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_carechain-audit"))
        .env("DATABASE_URL", db)
        .env("CARECHAIN_RPC_URL", &chain.rpc_url)
        .env("CARECHAIN_MANIFEST", &chain.manifest_path)
        .args(args)
        .output()
        .await
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json)
}

/// A superuser connection with the append-only triggers switched off (as an attacker with
/// database access would).
async fn tamper(
    pool: &sqlx::PgPool,
    sql: &str,
    binds: impl FnOnce(
        sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    binds(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_finds_changed_and_deleted_rows() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let key = registered_anchor_key(&chain).await;
    let (_, officer) = compliance_member(&chain).await;
    let (_, practitioner) = chain.organisation_with_member().await;
    let patient = chain.wallet().await;
    let gw = anchoring_gateway(&chain, &db, &key, 4).await;
    let officer_token = gw.sign_in(&officer).await;
    let doctor_token = gw.sign_in(&practitioner).await;
    let patient_token = gw.sign_in(&patient).await;
    for _ in 0..6 {
        metadata(&gw).await;
    }
    let pool = gw.pool.clone();
    eventually(|| async { anchored_to(&pool).await >= 8 }).await;
    let anchors = reader(&chain);
    let report = verify_audit_log(&pool, &anchors, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(report.batches_checked >= 2);
    let (ok, json) = cli(&chain, &db, &["verify"]).await;
    assert!(ok, "{json}");
    assert_eq!(json["problem"], serde_json::Value::Null);
    let (ok, json) = cli(&chain, &db, &["proof", "--seq", "3"]).await;
    assert!(ok, "{json}");
    assert_eq!(json["verifiedOnChain"], true);

    // The endpoint: compliance only.
    let (status, body) = get(&gw, &officer_token, "/AuditEvent/$verify").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(param(&body, "result"), true);
    for token in [&doctor_token, &patient_token] {
        let (status, body) = get(&gw, token, "/AuditEvent/$verify").await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }

    // Inclusion proof of row 3 with its anchoring transaction, checked on chain and here.
    let (status, body) = get(&gw, &officer_token, "/AuditEvent/3/$proof").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(param(&body, "verifiedOnChain"), true);
    let hash: B256 = param(&body, "hash").as_str().unwrap().parse().unwrap();
    let root: B256 = param(&body, "root").as_str().unwrap().parse().unwrap();
    let siblings: Vec<B256> = body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "sibling")
        .map(|p| p["valueString"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(merkle::verify(hash, &siblings, root));
    let tx: B256 = param(&body, "txHash").as_str().unwrap().parse().unwrap();
    let batch_tx: Vec<u8> =
        sqlx::query_scalar("SELECT tx_hash FROM audit_batches WHERE from_seq <= 3 AND to_seq >= 3")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tx.as_slice(), batch_tx.as_slice());
    // Row 3 concerns no patient: the patient and the practitioner do not see it.
    for token in [&doctor_token, &patient_token] {
        let (status, _) = get(&gw, token, "/AuditEvent/3/$proof").await;
        assert_eq!(status, 404);
    }

    // A row changed in place (hash left alone) is found.
    let original: String =
        sqlx::query_scalar("SELECT event::text FROM gateway_audit_log WHERE seq = 3")
            .fetch_one(&pool)
            .await
            .unwrap();
    tamper(
        &pool,
        "UPDATE gateway_audit_log SET event = jsonb_set(event, '{outcome}', '\"8\"') WHERE seq = 3",
        |q| q,
    )
    .await;
    let report = verify_audit_log(&pool, &anchors, None).await.unwrap();
    let problem = report.problem.unwrap();
    assert_eq!((problem.seq, problem.kind), (3, ProblemKind::Tampered));
    let (ok, json) = cli(&chain, &db, &["verify"]).await;
    assert!(!ok);
    assert_eq!(json["problem"]["seq"], 3);
    assert_eq!(json["problem"]["kind"], "tampered");
    let (status, body) = get(&gw, &officer_token, "/AuditEvent/$verify").await;
    assert_eq!(status, 200);
    assert_eq!(param(&body, "result"), false);
    assert_eq!(param(&body, "firstBadSeq"), "3");
    // No proof is served over a tampered batch.
    let (status, _) = get(&gw, &officer_token, "/AuditEvent/4/$proof").await;
    assert_eq!(status, 500);
    tamper(
        &pool,
        "UPDATE gateway_audit_log SET event = $1::jsonb WHERE seq = 3",
        |q| q.bind(original.clone()),
    )
    .await;
    assert!(verify_audit_log(&pool, &anchors, None).await.unwrap().ok());

    // A deleted row is found.
    gw.stop().await;
    tamper(
        &pool,
        "CREATE TABLE saved AS SELECT * FROM gateway_audit_log WHERE seq = 6",
        |q| q,
    )
    .await;
    tamper(&pool, "DELETE FROM gateway_audit_log WHERE seq = 6", |q| q).await;
    let problem = verify_audit_log(&pool, &anchors, None)
        .await
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((problem.seq, problem.kind), (6, ProblemKind::Missing));
    tamper(
        &pool,
        "INSERT INTO gateway_audit_log SELECT * FROM saved",
        |q| q,
    )
    .await;
    assert!(verify_audit_log(&pool, &anchors, None).await.unwrap().ok());

    // Deleting the newest anchored rows is found too (the table ends inside a batch).
    let last_anchored = anchored_to(&pool).await;
    tamper(
        &pool,
        "DELETE FROM gateway_audit_log WHERE seq >= $1",
        |q| q.bind(last_anchored),
    )
    .await;
    let problem = verify_audit_log(&pool, &anchors, None)
        .await
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(problem.kind, ProblemKind::Missing);
    assert_eq!(problem.seq, last_anchored as u64);

    // A rewrite that recomputes every hash after the change chains correctly, but the anchored
    // root gives it away.
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, event::text FROM gateway_audit_log WHERE seq >= 2 ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let first: Vec<u8> = sqlx::query_scalar("SELECT hash FROM gateway_audit_log WHERE seq = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut prev = B256::from_slice(&first);
    for (seq, event) in rows {
        let mut event: serde_json::Value = serde_json::from_str(&event).unwrap();
        if seq == 2 {
            event["outcome"] = "0".into();
            event["outcomeDesc"] = "rewritten".into();
        }
        let hash = chain_hash(prev, seq as u64, &event);
        tamper(
            &pool,
            "UPDATE gateway_audit_log SET event = $2::jsonb, prev_hash = $3, hash = $4 WHERE seq = $1",
            |q| q.bind(seq).bind(event.to_string()).bind(prev.to_vec()).bind(hash.to_vec()),
        )
        .await;
        prev = hash;
    }
    let problem = verify_audit_log(&pool, &anchors, None)
        .await
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(problem.kind, ProblemKind::RootMismatch);
    assert_eq!((problem.seq, problem.batch_id), (1, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_batch_is_anchored_once_old_enough() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let key = registered_anchor_key(&chain).await;
    let hex = alloy::hex::encode(key.to_bytes());
    // Far fewer rows than a batch: only the age trigger can anchor them.
    let gw = common::TestGateway::start_with(&chain, &db, |c| {
        c.anchoring.audit_anchor_key = Some(hex);
        c.anchoring.audit_anchor_rows = 1000;
        c.anchoring.audit_anchor_interval_ms = 300;
        c.anchoring.audit_anchor_poll_ms = 50;
    })
    .await;
    for _ in 0..3 {
        metadata(&gw).await;
    }
    let pool = gw.pool.clone();
    eventually(|| async { anchored_to(&pool).await >= 3 }).await;
    gw.stop().await;
    let batches = reader(&chain).batches().await.unwrap();
    assert_eq!(batches[0].from_seq, 1);
    assert!(batches[0].to_seq >= 3 && batches[0].to_seq < 1000);
    assert!(
        verify_audit_log(&pool, &reader(&chain), None)
            .await
            .unwrap()
            .ok()
    );
}
