//! The federation: three organisations, each with its own gateway, database, indexer, key-
//! encryption key and audit log (anchored under its own sequence), on one chain. A user signed
//! in at one gateway finds and reads a patient's records at the others under the patient's
//! consent; every custodian decides and audits for the end user; the requesting gateway checks
//! every version against the custodian's anchor; a custodian down, or one that alters a record,
//! is reported; forged, replayed, expired, misaddressed and suspended-organisation requests are
//! refused. Real anvil, real PostgreSQL, real gateways over HTTP.

#![allow(clippy::unwrap_used)]

mod common;
mod compliance_support;

use alloy::{
    primitives::{Address, B256, aliases::U40},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{Action, AuditAnchor, Purpose, ResourceType};
use carechain_gateway::{
    audit::verify::{AnchorReader, verify_audit_log},
    auth::siwe::SiweMessage,
    federation::{capability, request},
};
use carechain_testkit::Custodian;
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, eventually, fresh_database};
use serde_json::{Value, json};
use std::time::Duration;

/// One member organisation's stack.
struct Member {
    custodian: Custodian,
    anchor_key: PrivateKeySigner,
    gw: TestGateway,
    _indexer: TestIndexer,
    _db: String,
}

async fn mined<T>(
    pending: Result<alloy::providers::PendingTransactionBuilder<T>, alloy::contract::Error>,
) -> u64
where
    T: alloy::network::Network,
{
    let receipt = pending.unwrap().get_receipt().await.unwrap();
    alloy::network::ReceiptResponse::block_number(&receipt).unwrap()
}

/// An organisation with its own database, indexer and gateway (anchoring its audit log with a
/// key of its own).
async fn start_member(chain: &TestChain) -> Member {
    let custodian = chain.custodian().await;
    let anchor_key = compliance_support::registered_anchor_key(chain).await;
    let db = fresh_database().await;
    let indexer = TestIndexer::start(chain, &db).await;
    let hex = alloy::hex::encode(anchor_key.to_bytes());
    let gw = TestGateway::start_with(chain, &db, |c| {
        custodian.configure(c);
        // Three gateways (and indexers) per test, two tests at a time on one server.
        c.db_max_connections = 8;
        c.federation.peer_allow_plain_http_loopback = true;
        c.federation.federation_timeout_ms = 3000;
        c.anchoring.audit_anchor_key = Some(hex);
        c.anchoring.audit_anchor_rows = 5;
        c.anchoring.audit_anchor_interval_ms = 300;
        c.anchoring.audit_anchor_poll_ms = 50;
    })
    .await;
    Member {
        custodian,
        anchor_key,
        gw,
        _indexer: indexer,
        _db: db,
    }
}

/// Hospital A, Hospital B and a lab, each publishing its gateway in the directory, indexed by
/// every member.
async fn consortium(chain: &TestChain) -> (Member, Member, Member) {
    let a = start_member(chain).await;
    let b = start_member(chain).await;
    let lab = start_member(chain).await;
    let mut block = 0;
    for m in [&a, &b, &lab] {
        block = publish(chain, m.custodian.org.address(), &m.gw.base).await;
    }
    wait_all(&[&a, &b, &lab], block).await;
    (a, b, lab)
}

async fn publish(chain: &TestChain, org: Address, url: &str) -> u64 {
    mined(
        chain
            .providers()
            .setEndpoint(org, url.to_owned())
            .send()
            .await,
    )
    .await
}

async fn wait_all(members: &[&Member], block: u64) {
    for m in members {
        m.gw.wait_indexed(block).await;
    }
}

fn observation(patient: Address, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient:#x}")},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "beats/minute"}
    })
}

async fn get(
    gw: &TestGateway,
    token: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = gw
        .http
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Writes `values` as the patient's own Observations at `member`; returns their ids once every
/// one is anchored.
async fn write_own(member: &Member, token: &str, patient: Address, values: &[f64]) -> Vec<String> {
    let mut ids = Vec::new();
    for value in values {
        let response = member
            .gw
            .http
            .post(member.gw.url("/Observation"))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(observation(patient, *value).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let pool = member.gw.pool.clone();
    eventually(|| async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM gateway_resource_versions WHERE anchor_pending",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            == 0
    })
    .await;
    ids
}

fn matches(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .collect()
        })
        .unwrap_or_default()
}

fn outcomes(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == "outcome")
                .map(|e| {
                    e["resource"]["issue"][0]["diagnostics"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The audit events of a gateway's log.
async fn events(pool: &sqlx::PgPool) -> Vec<Value> {
    carechain_gateway::audit::stored_rows(pool, 1, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.event).unwrap())
        .collect()
}

fn agent_ids(event: &Value) -> Vec<String> {
    event["agent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["who"]["identifier"]["value"].as_str().map(str::to_owned))
        .collect()
}

async fn grant(chain: &TestChain, patient: &PrivateKeySigner, grantee: Address) -> u64 {
    mined(
        chain
            .consents_as(patient)
            .grant(
                patient.address(),
                grantee,
                ResourceType::Observation.bit(),
                Action::to_bits(&[Action::Read, Action::Search]),
                Purpose::Treat.bit(),
                U40::ZERO,
                U40::from(4_000_000_000u64),
                B256::repeat_byte(7),
            )
            .send()
            .await,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_found_across_custodians_under_consent() {
    let chain = TestChain::start().await;
    let (a, b, lab) = consortium(&chain).await;
    let alice = chain.wallet().await;

    // Alice's own records at Hospital A (3) and at the lab (2); none at B.
    let alice_a = a.gw.sign_in(&alice).await;
    let alice_lab = lab.gw.sign_in(&alice).await;
    let at_a = write_own(&a, &alice_a, alice.address(), &[61.0, 62.0, 63.0]).await;
    let at_lab = write_own(&lab, &alice_lab, alice.address(), &[71.0, 72.0]).await;

    // Without consent Dr B finds nothing: refused at B (the chain's answer everywhere).
    let dr_b = &b.custodian.practitioner;
    let token = b.gw.sign_in(dr_b).await;
    let search = format!("/Observation?patient={:#x}", alice.address());
    let (status, _, _) = get(&b.gw, &token, &search).await;
    assert_eq!(status, 403);

    // Alice consents: one search at B returns A's and the lab's records, each saying where
    // it came from.
    let block = grant(&chain, &alice, dr_b.address()).await;
    wait_all(&[&a, &b, &lab], block).await;
    let (status, _, bundle) = get(&b.gw, &token, &search).await;
    assert_eq!(status, 200, "{bundle}");
    assert!(outcomes(&bundle).is_empty(), "{bundle}");
    let found = matches(&bundle);
    assert_eq!(found.len(), 5, "{bundle}");
    assert_eq!(bundle["total"], 5);
    for entry in &found {
        let id = entry["resource"]["id"].as_str().unwrap();
        let (home, url) = if at_a.iter().any(|i| i == id) {
            (&a, a.gw.base.clone())
        } else {
            assert!(at_lab.iter().any(|i| i == id));
            (&lab, lab.gw.base.clone())
        };
        assert_eq!(entry["resource"]["meta"]["source"], url.as_str());
        assert_eq!(
            entry["fullUrl"],
            format!("{}/Observation/{id}", home.gw.base)
        );
        assert!(
            entry.get("extension").is_none(),
            "proofs are checked, not passed on"
        );
    }
    // Paged with one cursor over both custodians: every record exactly once.
    let mut seen = Vec::new();
    let mut next = Some(format!("{search}&_count=2"));
    while let Some(path) = next.take() {
        let (status, _, page) = get(&b.gw, &token, &path).await;
        assert_eq!(status, 200, "{page}");
        assert!(matches(&page).len() <= 2);
        seen.extend(
            matches(&page)
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned()),
        );
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| {
                l["url"]
                    .as_str()
                    .unwrap()
                    .strip_prefix(&b.gw.base)
                    .unwrap()
                    .to_owned()
            });
    }
    seen.sort();
    let mut all: Vec<String> = at_a.iter().chain(&at_lab).cloned().collect();
    all.sort();
    assert_eq!(seen, all);

    // The directory, as FHIR: every member's Endpoint (with its gateway key) and Organization.
    let (status, _, directory) =
        get(&b.gw, &token, "/Endpoint?_include=Endpoint:organization").await;
    assert_eq!(status, 200, "{directory}");
    for m in [&a, &b, &lab] {
        let id = format!("{:#x}", m.custodian.org.address());
        let endpoint = matches(&directory)
            .into_iter()
            .find(|e| e["resource"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} in {directory}"));
        let endpoint = &endpoint["resource"];
        assert_eq!(endpoint["address"], m.gw.base.as_str());
        assert_eq!(endpoint["status"], "active");
        assert_eq!(
            endpoint["managingOrganization"]["reference"],
            format!("Organization/{id}")
        );
        assert_eq!(
            endpoint["extension"][0]["valueIdentifier"]["value"],
            format!("{:#x}", m.custodian.service.address())
        );
        carechain_fhir::validate(endpoint).unwrap();
        let (status, _, organization) = get(&b.gw, &token, &format!("/Organization/{id}")).await;
        assert_eq!(status, 200, "{organization}");
        assert_eq!(organization["name"], "General Hospital");
        assert_eq!(
            organization["endpoint"][0]["reference"],
            format!("Endpoint/{id}")
        );
        carechain_fhir::validate(&organization).unwrap();
    }
    let included = directory["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .count();
    assert_eq!(included, 3);

    // A remote record read by id at B.
    let (status, _, record) = get(&b.gw, &token, &format!("/Observation/{}", at_lab[0])).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["meta"]["source"], lab.gw.base.as_str());
    assert_eq!(record["valueQuantity"]["value"], 71.0);

    // Alice, signed in at B (which keeps none of her records), sees her access log at every
    // custodian: Dr B's searches were recorded by A and the lab.
    let alice_b = b.gw.sign_in(&alice).await;
    let (status, _, log) = get(
        &b.gw,
        &alice_b,
        &format!(
            "/AuditEvent?patient={:#x}&_sort=-date&_count=100",
            alice.address()
        ),
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert!(outcomes(&log).is_empty(), "{log}");
    for keeper in [&a, &lab] {
        assert!(
            matches(&log).iter().any(|e| {
                e["resource"]["meta"]["source"] == keeper.gw.base.as_str()
                    && agent_ids(&e["resource"]).contains(&format!("{:#x}", dr_b.address()))
            }),
            "{log}"
        );
    }
    let chain_events = matches(&log)
        .iter()
        .filter(|e| e["resource"]["id"].as_str().unwrap().starts_with("chain-"))
        .count();
    assert!(chain_events >= 1, "the consent grant is in the log: {log}");
    let mut ids: Vec<String> = matches(&log)
        .iter()
        .map(|e| {
            format!(
                "{}|{}",
                e["resource"]["meta"]["source"], e["resource"]["id"]
            )
        })
        .collect();
    let before = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        before,
        "no event twice (the chain's events come from B only)"
    );

    // Each custodian audited the requests for Dr B, with Hospital B as the requesting gateway.
    for custodian in [&a, &lab] {
        let rows = events(&custodian.gw.pool).await;
        let federated: Vec<&Value> = rows
            .iter()
            .filter(|e| agent_ids(e).contains(&format!("{:#x}", b.custodian.org.address())))
            .collect();
        // Dr B's requests, and Alice's own (her access log, asked through B).
        assert!(
            federated
                .iter()
                .any(|e| agent_ids(e).contains(&format!("{:#x}", dr_b.address())))
        );
        for event in &federated {
            let agents = agent_ids(event);
            assert!(
                agents.contains(&format!("{:#x}", dr_b.address()))
                    || agents.contains(&format!("{:#x}", alice.address())),
                "{event}"
            );
        }
    }
    // B's own row says how the search went (no PHI).
    let b_rows = events(&b.gw.pool).await;
    assert!(b_rows.iter().any(|e| {
        e["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("federated: 3 custodians asked, 0 failed")
    }));

    // No database holds another organisation's record.
    for m in [&a, &b, &lab] {
        let foreign: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM gateway_resource_versions WHERE custodian <> $1",
        )
        .bind(m.custodian.org.address().as_slice())
        .fetch_one(&m.gw.pool)
        .await
        .unwrap();
        assert_eq!(foreign, 0);
    }
    let at_b: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_resource_versions")
        .fetch_one(&b.gw.pool)
        .await
        .unwrap();
    assert_eq!(at_b, 0, "B stored nothing it fetched");

    // A custodian that is down: a partial Bundle with an outcome naming it.
    let lab_base = lab.gw.base.clone();
    let Member { gw: lab_gw, .. } = lab;
    lab_gw.stop().await;
    let (status, _, bundle) = get(&b.gw, &token, &search).await;
    assert_eq!(status, 200);
    assert_eq!(matches(&bundle).len(), 3);
    let said = outcomes(&bundle);
    assert_eq!(said.len(), 1, "{bundle}");
    assert!(said[0].contains(&lab_base), "{}", said[0]);
    assert!(
        bundle.get("total").is_none(),
        "no total when a custodian is missing"
    );

    // Alice revokes: refused at the custodian on its first request after indexing.
    let block = mined(
        chain
            .consents_as(&alice)
            .revoke(alice.address(), dr_b.address())
            .send()
            .await,
    )
    .await;
    wait_all(&[&a, &b], block).await;
    let (status, _, _) = get(&b.gw, &token, &search).await;
    assert_eq!(status, 403);

    // Every log still verifies against its own anchors (each gateway's own sequence).
    let reader = AnchorReader::new(
        &chain.rpc_url,
        chain.manifest.contracts.audit_anchor,
        Duration::from_secs(10),
    )
    .unwrap();
    for m in [&a, &b] {
        let pool = m.gw.pool.clone();
        eventually(|| async {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT max(to_seq) FROM gateway_audit_anchors WHERE state = 'anchored'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
            .unwrap_or(0)
                >= 5
        })
        .await;
        let report = verify_audit_log(&m.gw.pool, &reader, Some(m.anchor_key.address()))
            .await
            .unwrap();
        assert!(report.ok(), "{report:?}");
        assert!(report.batches_checked >= 1);
    }
    let anchor = AuditAnchor::new(
        chain.manifest.contracts.audit_anchor,
        chain.anvil.provider(),
    );
    assert!(anchor.nextSeq(a.anchor_key.address()).call().await.unwrap() > 1);
    assert!(anchor.nextSeq(b.anchor_key.address()).call().await.unwrap() > 1);
}

/// A user's signed sign-in at `gw` with the capability it offers (not sent to `gw`).
async fn session(
    gw: &TestGateway,
    user: &PrivateKeySigner,
    edit: impl FnOnce(&mut SiweMessage),
) -> request::SignedSession {
    let (message, signature) = gw.signed_sign_in(user, edit).await;
    request::SignedSession { message, signature }
}

/// Sends a hand-made federated request to `to`; the status.
#[allow(clippy::too_many_arguments)]
async fn federated(
    chain: &TestChain,
    to: &TestGateway,
    custodian: Address,
    gateway_key: &PrivateKeySigner,
    user: Address,
    session: &request::SignedSession,
    target: &str,
    at: chrono::DateTime<chrono::Utc>,
    chain_id: u64,
) -> (u16, String) {
    let domain = request::domain(chain_id, chain.manifest.contracts.provider_registry);
    let authorization = request::authorization(
        gateway_key,
        &domain,
        custodian,
        user,
        session,
        "GET",
        target,
        at,
    )
    .unwrap();
    send_raw(to, target, &authorization).await
}

async fn send_raw(to: &TestGateway, target: &str, authorization: &str) -> (u16, String) {
    let response = to
        .http
        .get(to.url(target))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_replayed_and_misaddressed_requests_are_refused() {
    let chain = TestChain::start().await;
    let (a, b, lab) = consortium(&chain).await;
    let alice = chain.wallet().await;
    let alice_a = a.gw.sign_in(&alice).await;
    write_own(&a, &alice_a, alice.address(), &[60.0]).await;
    let dr_b = b.custodian.practitioner.clone();
    let block = grant(&chain, &alice, dr_b.address()).await;
    wait_all(&[&a, &b, &lab], block).await;

    let a_org = a.custodian.org.address();
    let b_service = b.custodian.service.clone();
    let target = format!("/Observation?patient={:#x}&_count=10", alice.address());
    let now = chrono::Utc::now();
    let chain_id = chain.manifest.chain_id;
    let good = session(&b.gw, &dr_b, |_| {}).await;
    assert!(capability::carries_any(
        &SiweMessage::parse(&good.message).unwrap()
    ));

    // A well-formed request from B's gateway for Dr B is served, once.
    let domain = request::domain(chain_id, chain.manifest.contracts.provider_registry);
    let authorization = request::authorization(
        &b_service,
        &domain,
        a_org,
        dr_b.address(),
        &good,
        "GET",
        &target,
        now,
    )
    .unwrap();
    let (status, body) = send_raw(&a.gw, &target, &authorization).await;
    assert_eq!(status, 200, "{body}");
    let bundle: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(matches(&bundle).len(), 1);
    assert!(
        matches(&bundle)[0]["extension"][0]["valueString"]
            .as_str()
            .unwrap()
            .starts_with("batch:")
    );
    // Replayed: refused.
    let (status, body) = send_raw(&a.gw, &target, &authorization).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("replay"), "{body}");
    // Another target than the one signed.
    let (status, _) = send_raw(&a.gw, &format!("{target}&code=x"), &authorization).await;
    assert_eq!(status, 401);

    // Signed by a key that is not a registered gateway key (Dr B's own key).
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &dr_b,
        dr_b.address(),
        &good,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("registered gateway"), "{body}");
    // Another organisation's gateway (the lab's) for a sign-in made at B.
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &lab.custodian.service,
        dr_b.address(),
        &good,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // Addressed to the lab, sent to A.
    let (status, body) = federated(
        &chain,
        &a.gw,
        lab.custodian.org.address(),
        &b_service,
        dr_b.address(),
        &good,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // Expired.
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        dr_b.address(),
        &good,
        &target,
        now - chrono::Duration::minutes(5),
        chain_id,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    // Signed for another chain.
    let (status, _) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        dr_b.address(),
        &good,
        &target,
        now,
        chain_id + 1,
    )
    .await;
    assert_eq!(status, 401);
    // A sign-in for another chain, or without a capability, or for another user.
    let other_chain = session(&b.gw, &dr_b, |m| m.chain_id += 1).await;
    let (status, _) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        dr_b.address(),
        &other_chain,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401);
    let no_capability = session(&b.gw, &dr_b, |m| m.resources.clear()).await;
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        dr_b.address(),
        &no_capability,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("capability"), "{body}");
    let (status, _) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        alice.address(),
        &good,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401);
    // A forged user signature.
    let mut forged = good.clone();
    forged.signature = session(&b.gw, &alice, |_| {}).await.signature;
    let (status, _) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        dr_b.address(),
        &forged,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 401);
    // A practitioner of B asking through the lab's gateway (signed in at the lab).
    let at_lab = session(&lab.gw, &dr_b, |_| {}).await;
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &lab.custodian.service,
        dr_b.address(),
        &at_lab,
        &target,
        now,
        chain_id,
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Hospital B suspended: its gateway's requests and its users are refused.
    let block = mined(
        chain
            .providers()
            .suspendOrganisation(b.custodian.org.address())
            .send()
            .await,
    )
    .await;
    wait_all(&[&a, &b], block).await;
    let fresh = session(&lab.gw, &alice, |_| {}).await;
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &b_service,
        alice.address(),
        &fresh,
        &target,
        chrono::Utc::now(),
        chain_id,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = b.gw.sign_in_raw(&dr_b, |_| {}).await;
    assert_eq!(
        status, 403,
        "a suspended organisation's practitioner cannot sign in"
    );
    // The directory shows it suspended, and a search across custodians no longer asks it.
    let alice_lab = lab.gw.sign_in(&alice).await;
    let (status, _, endpoints) = get(&lab.gw, &alice_lab, "/Endpoint?status=active").await;
    assert_eq!(status, 200);
    assert_eq!(matches(&endpoints).len(), 2, "{endpoints}");
    let (_, _, suspended) = get(
        &lab.gw,
        &alice_lab,
        &format!("/Endpoint/{:#x}", b.custodian.org.address()),
    )
    .await;
    assert_eq!(suspended["status"], "suspended");
    // A patient asking through a still-active member's gateway is served.
    let (status, body) = federated(
        &chain,
        &a.gw,
        a_org,
        &lab.custodian.service,
        alice.address(),
        &fresh,
        &target,
        chrono::Utc::now(),
        chain_id,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Every refusal is in A's log, with the reason and without PHI.
    let rows = events(&a.gw.pool).await;
    let refused = rows
        .iter()
        .filter(|e| {
            e["outcomeDesc"]
                .as_str()
                .unwrap()
                .contains("federated request refused")
        })
        .count();
    assert!(refused >= 10, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_altered_record_from_a_custodian_is_dropped_and_reported() {
    let chain = TestChain::start().await;
    let a = start_member(&chain).await;
    let b = start_member(&chain).await;
    // Hospital A's endpoint as published is a tampering relay in front of its gateway (a
    // compromised custodian, or anyone on the path): it changes the first value it serves.
    let relay = Tamper::start(&a.gw.base).await;
    publish(&chain, a.custodian.org.address(), &relay.base).await;
    publish(&chain, b.custodian.org.address(), &b.gw.base).await;
    let alice = chain.wallet().await;
    let block = chain.head().await;
    wait_all(&[&a, &b], block).await;
    let alice_a = a.gw.sign_in(&alice).await;
    let ids = write_own(&a, &alice_a, alice.address(), &[50.0, 51.0]).await;
    let dr_b = b.custodian.practitioner.clone();
    let block = grant(&chain, &alice, dr_b.address()).await;
    wait_all(&[&a, &b], block).await;
    let token = b.gw.sign_in(&dr_b).await;
    let (status, _, bundle) = get(
        &b.gw,
        &token,
        &format!("/Observation?patient={:#x}", alice.address()),
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    let found = matches(&bundle);
    assert_eq!(
        found.len(),
        1,
        "the altered version is not served: {bundle}"
    );
    assert_ne!(found[0]["resource"]["valueQuantity"]["value"], 999.0);
    let said = outcomes(&bundle);
    assert_eq!(said.len(), 1, "{bundle}");
    assert!(
        said[0].contains("did not match the custodian's anchor"),
        "{}",
        said[0]
    );
    // The read by id of the altered record is refused (not found anywhere verified).
    let altered = ids
        .iter()
        .find(|id| **id != found[0]["resource"]["id"].as_str().unwrap())
        .unwrap();
    let (status, _, _) = get(&b.gw, &token, &format!("/Observation/{altered}")).await;
    assert_eq!(status, 404);
    // B audited it.
    let rows = events(&b.gw.pool).await;
    assert!(rows.iter().any(|e| {
        e["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("1 versions failed verification")
    }));
}

/// A relay that forwards GETs to a gateway and alters the first `valueQuantity` of what it
/// returns (search entries and reads alike).
struct Tamper {
    base: String,
    _server: carechain_testkit::BackgroundServer<std::io::Result<()>>,
}

impl Tamper {
    async fn start(upstream: &str) -> Self {
        use axum::{body::Body, extract::Request, response::Response};
        let upstream = upstream.to_owned();
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: Request| {
            let upstream = upstream.clone();
            let http = http.clone();
            async move {
                let target = request
                    .uri()
                    .path_and_query()
                    .map(|pq| pq.as_str().to_owned())
                    .unwrap_or_default();
                let mut forward = http.get(format!("{upstream}{target}"));
                for (name, value) in request.headers() {
                    if name != "host" {
                        forward = forward.header(name.as_str(), value.as_bytes());
                    }
                }
                let answer = forward.send().await.unwrap();
                let status = answer.status().as_u16();
                let proof = answer.headers().get("x-anchor-proof").cloned();
                let mut body: Value = answer.json().await.unwrap_or(Value::Null);
                if let Some(entry) = body["entry"].as_array_mut().and_then(|e| e.first_mut()) {
                    entry["resource"]["valueQuantity"]["value"] = json!(999.0);
                } else if body["resourceType"] == "Observation" {
                    body["valueQuantity"]["value"] = json!(999.0);
                }
                let mut response = Response::builder()
                    .status(status)
                    .header("content-type", "application/fhir+json");
                if let Some(proof) = proof {
                    response = response.header("x-anchor-proof", proof);
                }
                response.body(Body::from(body.to_string())).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = carechain_testkit::BackgroundServer::spawn(|shutdown| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        Self {
            base,
            _server: server,
        }
    }
}
