//! Group anchoring of record versions: a write answers before its batch is mined and says so;
//! the versions of a window share one `anchorBatch`, each verified on read by its inclusion
//! proof; a dropped transaction is sent again and a stuck one replaced with the same nonce; a
//! version left unanchored past its grace period is refused; a restart anchors everything
//! accepted before it, without anchoring anything twice. Real anvil, real PostgreSQL, the
//! gateway over HTTP.

#![allow(clippy::unwrap_used)]

mod client;
mod common;

use alloy::{
    primitives::{Address, B256},
    providers::Provider,
    signers::local::PrivateKeySigner,
};
use carechain_contracts::RecordRegistry;
use carechain_testkit::Custodian;
use client::Client;
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, eventually, fresh_database};
use serde_json::{Value, json};
use std::{cell::Cell, time::Duration};

fn observation(patient: &PrivateKeySigner, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{:#x}", patient.address())},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "beats/minute"}
    })
}

fn anchor_tags(resource: &Value) -> usize {
    resource["meta"]["tag"].as_array().map_or(0, |tags| {
        tags.iter()
            .filter(|t| t["system"] == "urn:carechain:anchor" && t["code"] == "not-yet-anchored")
            .count()
    })
}

fn status_of(headers: &reqwest::header::HeaderMap) -> &str {
    headers["x-anchor-status"].to_str().unwrap()
}

/// A batch as the gateway recorded it.
#[derive(Debug, sqlx::FromRow)]
struct BatchRow {
    root: Vec<u8>,
    versions: i32,
    state: String,
    nonce: i64,
    max_fee: Option<i64>,
    tx_hashes: Vec<Vec<u8>>,
    gas_used: Option<i64>,
}

async fn batches(pool: &sqlx::PgPool) -> Vec<BatchRow> {
    sqlx::query_as(
        "SELECT root, versions, state, nonce, max_fee, tx_hashes, gas_used
         FROM gateway_record_batches ORDER BY nonce",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn pending_versions(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM gateway_resource_versions WHERE anchor_pending")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Transactions of `account` mined so far.
async fn mined_nonce(chain: &TestChain, account: Address) -> u64 {
    chain
        .anvil
        .provider()
        .get_transaction_count(account)
        .latest()
        .await
        .unwrap()
}

/// Waits until `condition` holds, asking every 50 ms; panics after 30 s (the dropped and
/// replaced transaction test waits on the chain and on a bump delay of its own, on a machine
/// that may be running every other suite at once).
async fn patiently<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 30 s");
}

/// A custodian's gateway with its anchoring settings tweaked.
async fn gateway(
    chain: &TestChain,
    db: &str,
    custodian: &Custodian,
    tweak: impl FnOnce(&mut carechain_gateway::GatewayConfig),
) -> TestGateway {
    TestGateway::start_with(chain, db, |c| {
        custodian.configure(c);
        tweak(c);
    })
    .await
}

/// Waits until the gateway can decide (it has seen the chain and the index).
async fn ready(client: &Client<'_>, patient: &PrivateKeySigner) {
    let own = format!("/Observation?patient={:#x}", patient.address());
    eventually(|| async { client.get(&own).await.0 == 200 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_before_their_batch_and_verify_by_inclusion_once_mined() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    // A window long enough that the writes below all fall into it.
    let gw = gateway(&chain, &db, &custodian, |c| {
        c.record_anchoring.record_anchor_window_ms = 3000;
    })
    .await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = Cell::new(0);
    let wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &wallet, &requests).await;
    ready(&patient, &wallet).await;

    let mut ids = Vec::new();
    for value in [60.0, 61.0, 62.0, 63.0, 64.0] {
        let (status, headers, body) = patient
            .post("/Observation", observation(&wallet, value))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(status_of(&headers), "pending");
        assert_eq!(anchor_tags(&body), 1, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // Until its batch is mined, a read says so, in the header and in meta.tag.
    let first = format!("/Observation/{}", ids[0]);
    let (status, headers, body) = patient.get(&first).await;
    assert_eq!((status, status_of(&headers)), (200, "pending"), "{body}");
    assert_eq!(anchor_tags(&body), 1);
    // The anchoring tag is the gateway's: a client that sends it back does not store it.
    let mut echoed = body.clone();
    echoed["meta"]["tag"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "http://example.org/tags", "code": "kept"}));
    let (status, _, updated) = patient
        .send(reqwest::Method::PUT, &first, Some(echoed), &[])
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(anchor_tags(&updated), 1, "one tag: the new version's state");

    // One batch for the six versions of the window, mined with one transaction.
    eventually(|| async { pending_versions(&gw.pool).await == 0 }).await;
    let recorded = batches(&gw.pool).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let batch = &recorded[0];
    assert_eq!((batch.versions, batch.state.as_str()), (6, "anchored"));
    assert_eq!(batch.tx_hashes.len(), 1);
    let gas = batch.gas_used.unwrap();
    assert!(gas > 21_000 && gas < 100_000, "anchorBatch used {gas} gas");

    // Each version's inclusion proof holds on chain for the custodian.
    let registry = RecordRegistry::new(
        chain.manifest.contracts.record_registry,
        chain.anvil.provider(),
    );
    let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT version_hash, batch_root, batch_proof FROM gateway_resource_versions ORDER BY id, version_id",
    )
    .fetch_all(&gw.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 6);
    for (hash, root, proof) in &rows {
        assert_eq!(root, &batch.root);
        let proof: Vec<B256> = proof.chunks(32).map(B256::from_slice).collect();
        let included = registry
            .verifyInclusion(
                B256::from_slice(hash),
                B256::from_slice(root),
                proof,
                custodian.org.address(),
            )
            .call()
            .await
            .unwrap();
        assert!(included);
    }

    // Reads now verify the version against the chain and say so; the tag is gone.
    let (status, headers, body) = patient.get(&first).await;
    assert_eq!((status, status_of(&headers)), (200, "verified"), "{body}");
    assert_eq!(anchor_tags(&body), 0, "{body}");
    assert_eq!(body["meta"]["tag"][0]["code"], "kept");

    // A proof that does not lead to the anchored root (another version's) is an integrity
    // failure, never served.
    let second = format!("/Observation/{}", ids[1]);
    sqlx::query(
        "UPDATE gateway_resource_versions SET batch_proof = (
           SELECT batch_proof FROM gateway_resource_versions WHERE id = $2 AND version_id = 1)
         WHERE id = $1",
    )
    .bind(&ids[1])
    .bind(&ids[2])
    .execute(&gw.pool)
    .await
    .unwrap();
    let (status, _, body) = patient.get(&second).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_is_sent_again_and_a_stuck_one_replaced() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    let gw = gateway(&chain, &db, &custodian, |c| {
        c.record_anchoring.record_anchor_window_ms = 50;
        // Long enough that a loaded machine does not replace the transaction before the drop is
        // handled.
        c.record_anchoring.record_anchor_bump_ms = 8000;
        c.record_anchoring.record_anchor_grace_ms = 1000;
    })
    .await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = Cell::new(0);
    let wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &wallet, &requests).await;
    ready(&patient, &wallet).await;
    let service = custodian.service.address();
    let nonce_before = mined_nonce(&chain, service).await;

    // No block is mined from here on until the test says so.
    chain.anvil.set_automine(false).await;
    let (status, _, body) = patient
        .post("/Observation", observation(&wallet, 70.0))
        .await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/Observation/{}", body["id"].as_str().unwrap());
    patiently(|| async {
        batches(&gw.pool)
            .await
            .first()
            .is_some_and(|b| !b.tx_hashes.is_empty())
    })
    .await;
    let sent = batches(&gw.pool).await.remove(0);
    let first_tx = B256::from_slice(&sent.tx_hashes[0]);

    // The node drops it; at the next block (empty) the anchorer finds it gone and sends the
    // same transaction again: same nonce, same fees, same hash.
    let node = chain.anvil.provider();
    let known = |hash: B256| {
        let node = node.clone();
        async move { node.get_transaction_by_hash(hash).await.unwrap().is_some() }
    };
    // The hash is recorded before the transaction is sent: wait until the node has it.
    patiently(|| async { known(first_tx).await }).await;
    chain.anvil.drop_transaction(first_tx).await;
    assert!(!known(first_tx).await);
    chain.anvil.mine(1).await;
    patiently(|| async { known(first_tx).await }).await;
    let resent = batches(&gw.pool).await.remove(0);
    assert_eq!(resent.tx_hashes.len(), 1, "{resent:?}");
    assert_eq!((resent.nonce, resent.max_fee), (sent.nonce, sent.max_fee));

    // Not mined within the bump delay: replaced with the same nonce and higher fees.
    patiently(|| async { batches(&gw.pool).await[0].tx_hashes.len() >= 2 }).await;
    let bumped = batches(&gw.pool).await.remove(0);
    assert_eq!(bumped.nonce, sent.nonce);
    assert!(
        bumped.max_fee > resent.max_fee,
        "{bumped:?} after {resent:?}"
    );
    assert_eq!(bumped.state, "pending");
    assert!(
        !known(first_tx).await,
        "the replacement took the original's place"
    );

    // Past its grace period, a version still not anchored is not served as if it were.
    let (status, _, body) = patient.get(&path).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");

    // One block: exactly one of the batch's transactions is mined (they share a nonce), so the
    // root is anchored once; the read verifies it.
    chain.anvil.mine(1).await;
    chain.anvil.set_automine(true).await;
    patiently(|| async { batches(&gw.pool).await[0].state == "anchored" }).await;
    assert_eq!(mined_nonce(&chain, service).await, nonce_before + 1);
    assert_eq!(pending_versions(&gw.pool).await, 0);
    let (status, headers, body) = patient.get(&path).await;
    assert_eq!((status, status_of(&headers)), (200, "verified"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_anchors_everything_accepted_before_it_and_nothing_twice() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let wallet = chain.wallet().await;
    let service = custodian.service.address();
    let requests = Cell::new(0);
    let mut paths = Vec::new();
    // The same key-encryption key across the restarts (the gateway's data keys are wrapped
    // with it).
    let kek = carechain_testkit::random_hex::<32>();

    // 1. Accepted, never cut: the window is far longer than the gateway lives.
    let gw = gateway(&chain, &db, &custodian, |c| {
        c.kek = Some(kek.clone());
        c.record_anchoring.record_anchor_window_ms = 600_000;
    })
    .await;
    {
        let patient = Client::sign_in(&gw, &wallet, &requests).await;
        ready(&patient, &wallet).await;
        for value in [80.0, 81.0] {
            let (status, _, body) = patient
                .post("/Observation", observation(&wallet, value))
                .await;
            assert_eq!(status, 201, "{body}");
            paths.push(format!("/Observation/{}", body["id"].as_str().unwrap()));
        }
    }
    gw.stop().await;
    assert!(batches(&fresh_pool(&db).await).await.is_empty());
    let nonce_before = mined_nonce(&chain, service).await;

    // 2. Cut and sent, then the gateway stops before anything is mined.
    chain.anvil.set_automine(false).await;
    let gw = gateway(&chain, &db, &custodian, |c| {
        c.kek = Some(kek.clone());
        c.record_anchoring.record_anchor_window_ms = 50;
    })
    .await;
    eventually(|| async {
        batches(&gw.pool)
            .await
            .first()
            .is_some_and(|b| !b.tx_hashes.is_empty())
    })
    .await;
    {
        let patient = Client::sign_in(&gw, &wallet, &requests).await;
        let (status, _, body) = patient
            .post("/Observation", observation(&wallet, 82.0))
            .await;
        assert_eq!(status, 201, "{body}");
        paths.push(format!("/Observation/{}", body["id"].as_str().unwrap()));
    }
    eventually(|| async {
        let b = batches(&gw.pool).await;
        b.len() == 2 && b.iter().all(|b| !b.tx_hashes.is_empty())
    })
    .await;
    // Both transactions reached the node (their hashes are recorded just before sending).
    let node = chain.anvil.provider();
    for batch in batches(&gw.pool).await {
        let hash = B256::from_slice(&batch.tx_hashes[0]);
        eventually(|| async { node.get_transaction_by_hash(hash).await.unwrap().is_some() }).await;
    }
    let pool = gw.pool.clone();
    gw.stop().await;
    let recorded = batches(&pool).await;
    assert_eq!(
        recorded.iter().map(|b| b.versions).collect::<Vec<_>>(),
        vec![2, 1]
    );
    // While it is down: the second batch's transaction is lost (as if the gateway had stopped
    // after recording the batch and before sending it), and the first is mined.
    let second = &recorded[1];
    chain
        .anvil
        .drop_transaction(B256::from_slice(&second.tx_hashes[0]))
        .await;
    sqlx::query(
        "UPDATE gateway_record_batches SET tx_hashes = '{}', sent_at = NULL, max_fee = NULL,
           priority_fee = NULL WHERE root = $1",
    )
    .bind(&second.root)
    .execute(&pool)
    .await
    .unwrap();
    chain.anvil.mine(1).await;
    chain.anvil.set_automine(true).await;
    assert_eq!(mined_nonce(&chain, service).await, nonce_before + 1);

    // 3. After the restart: the mined batch is recognised, the unsent one sent; every version
    // accepted before is anchored, each root once.
    let gw = gateway(&chain, &db, &custodian, |c| c.kek = Some(kek.clone())).await;
    eventually(|| async { pending_versions(&gw.pool).await == 0 }).await;
    let recorded = batches(&gw.pool).await;
    assert!(
        recorded.iter().all(|b| b.state == "anchored"),
        "{recorded:?}"
    );
    assert_eq!(recorded.len(), 2);
    assert_eq!(mined_nonce(&chain, service).await, nonce_before + 2);
    let patient = Client::sign_in(&gw, &wallet, &requests).await;
    for path in &paths {
        let (status, headers, body) = patient.get(path).await;
        assert_eq!((status, status_of(&headers)), (200, "verified"), "{body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(batches(&gw.pool).await.len(), 2, "nothing cut twice");
}

async fn fresh_pool(db: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reorganised_away_before_finality_is_anchored_again() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    let gw = gateway(&chain, &db, &custodian, |c| {
        c.record_anchoring.record_anchor_window_ms = 50;
    })
    .await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = Cell::new(0);
    let wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &wallet, &requests).await;
    ready(&patient, &wallet).await;
    let (status, _, body) = patient
        .post("/Observation", observation(&wallet, 90.0))
        .await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/Observation/{}", body["id"].as_str().unwrap());
    eventually(|| async { pending_versions(&gw.pool).await == 0 }).await;
    let root = B256::from_slice(&batches(&gw.pool).await[0].root);
    let block: i64 = sqlx::query_scalar("SELECT block_number FROM gateway_record_batches")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    let registry = RecordRegistry::new(
        chain.manifest.contracts.record_registry,
        chain.anvil.provider(),
    );
    let org = custodian.org.address();
    let anchored = || async { registry.batchOf(root, org).call().await.unwrap().org == org };
    assert!(anchored().await);

    // The blocks from the batch's on are replaced by empty ones: the anchor is gone, while the
    // gateway had seen it mined.
    let head = chain.anvil.head().await;
    chain
        .anvil
        .reorg(head - u64::try_from(block).unwrap() + 1)
        .await;
    assert!(!anchored().await, "the reorganisation took the anchor away");

    // Once the batch's block would be final, the anchorer finds it missing there and anchors
    // it again: the version verifies, and the batch is final.
    chain.anvil.mine(70).await;
    eventually(|| async { anchored().await }).await;
    chain.anvil.mine(70).await;
    eventually(|| async {
        sqlx::query_scalar::<_, bool>("SELECT final FROM gateway_record_batches")
            .fetch_one(&gw.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(pending_versions(&gw.pool).await, 0);
    let (status, headers, body) = patient.get(&path).await;
    assert_eq!((status, status_of(&headers)), (200, "verified"), "{body}");
}
