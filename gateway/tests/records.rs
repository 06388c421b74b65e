//! Consent enforcement and the encrypted, anchored store, end to end against a real anvil
//! (contracts deployed by the deploy script) and a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod client;
mod common;

use alloy::{
    primitives::{B256, aliases::U40},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{Action, Purpose, ResourceType};
use client::Client;
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};

fn observation(patient: &PrivateKeySigner) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{:#x}", patient.address())},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {"value": 72.5, "unit": "beats/minute"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_decides_before_the_store_and_records_are_verified() {
    let chain = TestChain::start().await;
    // The organisation's service key anchors record versions for it.
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    // Let the health probe see the chain and the index.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let requests = std::cell::Cell::new(0i64);

    let patient_wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &patient_wallet, &requests).await;
    let doctor = Client::sign_in(&gw, &practitioner, &requests).await;

    // Wait until the gateway has seen the chain and the index (a decision is possible).
    let own = format!("/Observation?patient={:#x}", patient_wallet.address());
    common::eventually(|| async { patient.get(&own).await.0 == 200 }).await;
    // The patient writes their own record (own data); it is anchored for the custodian.
    let (status, headers, created) = patient
        .post("/Observation", observation(&patient_wallet))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        gw.url(&format!("/Observation/{id}/_history/1"))
    );
    assert_eq!(headers["etag"].to_str().unwrap(), "W/\"1\"");
    assert!(headers.contains_key("x-consent-block"));
    let path = format!("/Observation/{id}");

    // Content is encrypted at rest: the plaintext is nowhere in the row.
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM gateway_resource_versions WHERE id = $1")
            .bind(&id)
            .fetch_one(&gw.pool)
            .await
            .unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("Heart rate"));

    // No consent: the practitioner is refused exactly as if the id did not exist (status,
    // outcome, headers), so the refusal reveals nothing; the audit row records the denial and
    // its decision block.
    let (status, headers, body) = doctor.get(&path).await;
    let unknown = "/Observation/0123456789abcdef0123456789abcdef";
    let (unknown_status, unknown_headers, unknown_body) = doctor.get(unknown).await;
    assert_eq!((status, unknown_status), (404, 404), "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .replace(&id, "ID"),
        unknown_body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .replace("0123456789abcdef0123456789abcdef", "ID")
    );
    assert_eq!(body["issue"][0]["code"], unknown_body["issue"][0]["code"]);
    let names = |h: &reqwest::header::HeaderMap| {
        let mut names: Vec<String> = h.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&headers), names(&unknown_headers));
    assert!(!headers.contains_key("x-consent-block"));
    let denied = gw.audit_row(&headers).await;
    assert_eq!(
        (
            denied.http_status,
            denied.outcome.as_str(),
            denied.basis.as_deref()
        ),
        (404, "4", Some("NoConsent"))
    );
    assert!(denied.description.contains("consent-denied"), "{denied:?}");
    let denied_block = denied.consent_block.unwrap() as u64;
    let missing = gw.audit_row(&unknown_headers).await;
    assert_eq!(
        (missing.basis.as_deref(), missing.consent_block),
        (None, None)
    );
    assert!(missing.description.contains("not-found"), "{missing:?}");

    // The patient grants Observation read+search for TREAT to the organisation.
    let consents = chain.consents_as(&patient_wallet);
    let receipt = consents
        .grant(
            patient_wallet.address(),
            org.address(),
            ResourceType::Observation.bit(),
            Action::Read.bit() | Action::Search.bit(),
            Purpose::Treat.bit(),
            U40::ZERO,
            U40::from(4_000_000_000u64),
            B256::repeat_byte(7),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let granted_at = receipt.block_number.unwrap();
    common::eventually(|| async {
        let (status, _, _) = doctor.get(&path).await;
        status == 200
    })
    .await;
    let (status, headers, body) = doctor.get(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valueQuantity"]["value"], 72.5);
    let block: u64 = headers["x-consent-block"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(block >= granted_at && block > denied_block);

    // Search: the patient adds three more observations; the practitioner pages through them.
    for (day, code) in [
        ("2026-11-01", "8867-4"),
        ("2026-10-01", "2339-0"),
        ("2026-09-01", "8867-4"),
    ] {
        let mut obs = observation(&patient_wallet);
        obs["effectiveDateTime"] = json!(format!("{day}T08:00:00Z"));
        obs["code"]["coding"][0]["code"] = json!(code);
        let (status, _, body) = patient.post("/Observation", obs).await;
        assert_eq!(status, 201, "{body}");
    }
    let me = format!("{:#x}", patient_wallet.address());
    let (status, _, page1) = doctor
        .get(&format!("/Observation?patient={me}&_count=2&_sort=-date"))
        .await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["total"], 4);
    assert_eq!(page1["entry"].as_array().unwrap().len(), 2);
    assert_eq!(
        page1["entry"][0]["resource"]["effectiveDateTime"],
        "2026-11-20T10:00:00Z"
    );
    let next = page1["link"][1]["url"].as_str().unwrap().to_owned();
    assert!(
        !next.contains(&me),
        "cursors carry no patient in clear: {next}"
    );
    let (status, _, page2) = doctor.get(next.strip_prefix(&gw.base).unwrap()).await;
    assert_eq!(status, 200, "{page2}");
    assert_eq!(page2["entry"].as_array().unwrap().len(), 2);
    assert!(
        page2["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next")
    );
    let mut seen: Vec<String> = page1["entry"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["entry"].as_array().unwrap())
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "pages never overlap");
    // The cursor belongs to the practitioner.
    let (status, _, _) = patient.get(next.strip_prefix(&gw.base).unwrap()).await;
    assert_eq!(status, 400);
    let (status, _, body) = doctor
        .get(&format!(
            "/Observation?patient={me}&code=http://loinc.org|8867-4&date=ge2026-10-15"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2, "{body}");
    let (status, _, body) = doctor
        .get(&format!(
            "/Observation?patient={me}&_lastUpdated=lt2000-01-01"
        ))
        .await;
    assert_eq!((status, body["total"].as_i64()), (200, Some(0)));
    // A search across patients spans only the patients whose consent allows it: another
    // patient's matching records are neither counted, paged nor included.
    let other_wallet = chain.wallet().await;
    let other = Client::sign_in(&gw, &other_wallet, &requests).await;
    for _ in 0..2 {
        let (status, _, body) = other.post("/Observation", observation(&other_wallet)).await;
        assert_eq!(status, 201, "{body}");
    }
    let subjects = |page: &Value| -> Vec<String> {
        page["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["search"]["mode"].as_str().unwrap(),
                    e["resource"]["subject"]["reference"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let mine = format!("match:Patient/{me}");
    let (status, headers, page1) = doctor
        .get("/Observation?code=http://loinc.org|8867-4&_count=2&_include=Observation:patient")
        .await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(
        page1["total"], 3,
        "only the consenting patient's matches: {page1}"
    );
    assert_eq!(subjects(&page1), vec![mine.clone(), mine.clone()]);
    let scope = gw.audit_row(&headers).await;
    assert_eq!(scope.basis.as_deref(), Some("per-patient (1 allowed)"));
    assert!(scope.consent_block.is_some());
    let next = page1["link"][1]["url"].as_str().unwrap().to_owned();
    let (status, _, page2) = doctor.get(next.strip_prefix(&gw.base).unwrap()).await;
    assert_eq!(status, 200, "{page2}");
    assert_eq!(
        (page2["total"].as_i64(), subjects(&page2)),
        (Some(3), vec![mine.clone()])
    );
    // The other patient sees their own two (own data), the first patient's none.
    let (status, _, theirs) = other.get("/Observation?code=8867-4").await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(theirs["total"], 2);
    assert_eq!(
        subjects(&theirs),
        vec![format!("match:Patient/{:#x}", other_wallet.address()); 2]
    );
    let (status, _, body) = doctor.get(&format!("/Condition?patient={me}")).await;
    assert_eq!(status, 403, "no consent for Condition: {body}");

    // Another purpose, another type, another action: refused (as not found).
    let (status, headers, body) = doctor
        .send(
            reqwest::Method::GET,
            &path,
            None,
            &[("X-Purpose-Of-Use", "HRESCH")],
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        gw.audit_row(&headers).await.basis.as_deref(),
        Some("PurposeNotCovered")
    );
    let (status, _, body) = doctor
        .get(&format!("/Patient/{:#x}", patient_wallet.address()))
        .await;
    assert_eq!(status, 404, "no Patient resource stored yet: {body}");
    let mut changed = observation(&patient_wallet);
    changed["id"] = json!(id);
    let (status, headers, body) = doctor
        .send(reqwest::Method::PUT, &path, Some(changed.clone()), &[])
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        gw.audit_row(&headers).await.basis.as_deref(),
        Some("ActionNotCovered")
    );
    let (status, headers, body) = doctor.send(reqwest::Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        gw.audit_row(&headers).await.basis.as_deref(),
        Some("ActionNotCovered")
    );
    // The patient's own update naming an id of nobody's is a plain 404 as well.
    let mut stray = changed.clone();
    stray["id"] = json!("0123456789abcdef0123456789abcdef");
    let (status, _, body) = patient
        .send(reqwest::Method::PUT, unknown, Some(stray), &[])
        .await;
    assert_eq!(status, 404, "{body}");

    // Update with If-Match: stale is 412, current succeeds.
    changed["valueQuantity"]["value"] = json!(80);
    let (status, _, body) = patient
        .send(
            reqwest::Method::PUT,
            &path,
            Some(changed.clone()),
            &[("If-Match", "W/\"7\"")],
        )
        .await;
    assert_eq!(status, 412, "{body}");
    let (status, headers, body) = patient
        .send(
            reqwest::Method::PUT,
            &path,
            Some(changed.clone()),
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"].to_str().unwrap(), "W/\"2\"");
    // Version 1 becomes final (anvil: 64 blocks): its anchor is now read at the finalized
    // block and remembered; version 2 is younger and still asked at the head.
    gw.wait_indexed(chain.mine(70).await).await;
    let v1_path = format!("{path}/_history/1");
    // Asked at the finalized block once, then answered from memory.
    let (status, _, _) = doctor.get(&v1_path).await;
    assert_eq!(status, 200);
    let (status, _, v1) = doctor.get(&v1_path).await;
    assert_eq!(status, 200);
    assert_eq!(v1["valueQuantity"]["value"], 72.5);
    let (status, _, history) = doctor.get(&format!("{path}/_history")).await;
    assert_eq!(status, 200);
    assert_eq!(history["total"], 2);

    // Bad input is 4xx.
    for (method, p, body, want) in [
        (
            reqwest::Method::GET,
            "/Observation/bad id!".to_owned(),
            None,
            400,
        ),
        (reqwest::Method::GET, "/Nonsense/1".to_owned(), None, 400),
        (reqwest::Method::GET, format!("{path}?foo=bar"), None, 400),
        (
            reqwest::Method::GET,
            format!("{path}?_purpose=NOPE"),
            None,
            400,
        ),
        (
            reqwest::Method::GET,
            format!("{path}/_history/zero"),
            None,
            400,
        ),
        (
            reqwest::Method::POST,
            "/Observation".to_owned(),
            Some(json!({"resourceType": "Condition"})),
            400,
        ),
        (
            reqwest::Method::POST,
            "/Observation".to_owned(),
            Some(json!({"resourceType": "Observation"})),
            422,
        ),
        (
            reqwest::Method::POST,
            "/Observation".to_owned(),
            Some(json!([1, 2])),
            400,
        ),
    ] {
        let (status, _, outcome) = patient.send(method, &p, body, &[]).await;
        assert_eq!(status, want, "{p}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }

    // Revocation takes effect on the first request after the indexer has seen it: the
    // decision is cached (allowed) until then.
    let (status, _, _) = doctor.get(&path).await;
    assert_eq!(status, 200);
    let receipt = consents
        .revoke(patient_wallet.address(), org.address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let revoked_at = receipt.block_number.unwrap() as i64;
    // (No wait for the notification: the per-request cursor check alone must refuse.)
    common::eventually(|| async { gw.indexed_block().await >= Some(revoked_at) }).await;
    let (status, headers, body) = doctor.get(&path).await;
    assert_eq!(
        status, 404,
        "the first request after indexing is refused: {body}"
    );
    let refused = gw.audit_row(&headers).await;
    assert_eq!(refused.basis.as_deref(), Some("NoConsent"));
    assert!(refused.consent_block.unwrap() >= revoked_at);

    // Tampered ciphertext is detected and refused.
    sqlx::query(
        "UPDATE gateway_resource_versions SET sealed = overlay(sealed placing '\\x00'::bytea from 20 for 1)
         WHERE id = $1 AND version_id = 2",
    )
    .bind(&id)
    .execute(&gw.pool)
    .await
    .unwrap();
    let (status, _, body) = patient.get(&path).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["issue"][0]["code"], "processing");

    // Delete, then the record is gone.
    let (status, _, _) = patient
        .send(reqwest::Method::DELETE, &path, None, &[])
        .await;
    assert_eq!(status, 204);
    let (status, _, body) = patient.get(&path).await;
    assert_eq!(status, 410, "{body}");

    // Erasure: only the patient (or a delegate); afterwards every record is gone.
    let erase = format!("/Patient/{me}/$erase");
    let (status, _, body) = doctor.send(reqwest::Method::POST, &erase, None, &[]).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = patient.send(reqwest::Method::POST, &erase, None, &[]).await;
    assert_eq!(status, 204, "{body}");
    let remaining = seen
        .iter()
        .find(|id| !path.ends_with(id.as_str()))
        .unwrap()
        .clone();
    let (status, _, body) = patient.get(&format!("/Observation/{remaining}")).await;
    assert_eq!(status, 410, "{body}");
    let (status, _, body) = patient.get(&format!("/Observation?patient={me}")).await;
    assert_eq!(status, 410, "{body}");
    let (status, _, _) = patient.send(reqwest::Method::POST, &erase, None, &[]).await;
    assert_eq!(status, 410);

    // Unauthenticated requests are refused and audited too.
    let response = gw.http.get(gw.url(&path)).send().await.unwrap();
    requests.set(requests.get() + 1);
    assert_eq!(response.status(), 401);
    let (subtype, agent): (String, Option<String>) = sqlx::query_as(
        "SELECT subtype, agent FROM gateway_audit_log WHERE http_status = 401 ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&gw.pool)
    .await
    .unwrap();
    assert_eq!((subtype.as_str(), agent), ("read", None));

    assert_eq!(gw.audit_rows().await, requests.get());
    assert_eq!(
        carechain_gateway::audit::verify_chain(&gw.pool)
            .await
            .unwrap(),
        Ok(requests.get() as u64)
    );
    let _ = practitioner.address();
    gw.stop().await;
}

async fn mined<T: alloy::network::Network>(
    pending: Result<alloy::providers::PendingTransactionBuilder<T>, alloy::contract::Error>,
) -> u64 {
    let receipt = pending.unwrap().get_receipt().await.unwrap();
    alloy::network::ReceiptResponse::block_number(&receipt).unwrap()
}

/// The patient grants `grantee` the `actions` on Observations for TREAT, valid until `until`
/// (seconds), the consent hash made of `tag`; returns the block of the grant.
async fn grant_observations(
    consents: &carechain_contracts::ConsentRegistry::ConsentRegistryInstance<
        alloy::providers::DynProvider,
    >,
    patient: alloy::primitives::Address,
    grantee: alloy::primitives::Address,
    actions: &[Action],
    until: u64,
    tag: u8,
) -> u64 {
    mined(
        consents
            .grant(
                patient,
                grantee,
                ResourceType::Observation.bit(),
                Action::to_bits(actions),
                Purpose::Treat.bit(),
                U40::ZERO,
                U40::from(until),
                B256::repeat_byte(tag),
            )
            .send()
            .await,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_matrix() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let (other_org, emergency) = chain.organisation_with_member().await;
    let registry = chain.providers();
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);
    let patient_wallet = chain.wallet().await;
    let guardian = chain.wallet().await;
    let patient = Client::sign_in(&gw, &patient_wallet, &requests).await;
    let doctor = Client::sign_in(&gw, &practitioner, &requests).await;
    let er = Client::sign_in(&gw, &emergency, &requests).await;
    let guardian_client = Client::sign_in(&gw, &guardian, &requests).await;
    common::eventually(|| async {
        // Wait until the gateway has seen the chain and the index (a decision is possible).
        let (status, _, _) = patient
            .get(&format!(
                "/Observation?patient={:#x}",
                patient_wallet.address()
            ))
            .await;
        status == 200
    })
    .await;
    let (status, _, created) = patient
        .post("/Observation", observation(&patient_wallet))
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/Observation/{}", created["id"].as_str().unwrap());

    // Delegate (guardian) acts for the patient.
    let (status, _, _) = guardian_client.get(&path).await;
    assert_eq!(status, 404);
    let consents = chain.consents_as(&patient_wallet);
    mined(
        consents
            .setDelegate(guardian.address(), 1, U40::from(4_000_000_000u64))
            .send()
            .await,
    )
    .await;
    common::eventually(|| async { guardian_client.get(&path).await.0 == 200 }).await;

    // A consent to the member key that expires: allowed, then refused once it has ended.
    let now = chrono::Utc::now().timestamp() as u64;
    grant_observations(
        &consents,
        patient_wallet.address(),
        practitioner.address(),
        &[Action::Read],
        now + 6,
        1,
    )
    .await;
    common::eventually(|| async { doctor.get(&path).await.0 == 200 }).await;
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let (status, headers, body) = doctor.get(&path).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        gw.audit_row(&headers).await.basis.as_deref(),
        Some("ConsentExpired")
    );

    // A consent to the organisation; then the key, then the organisation, are suspended.
    grant_observations(
        &consents,
        patient_wallet.address(),
        org.address(),
        &[Action::Read],
        4_000_000_000u64,
        2,
    )
    .await;
    common::eventually(|| async { doctor.get(&path).await.0 == 200 }).await;
    mined(registry.suspendMember(practitioner.address()).send().await).await;
    common::eventually(|| async { doctor.get(&path).await.0 == 404 }).await;
    let (_, headers, _) = doctor.get(&path).await;
    assert_eq!(
        gw.audit_row(&headers).await.basis.as_deref(),
        Some("KeySuspended")
    );
    mined(
        registry
            .reinstateMember(practitioner.address())
            .send()
            .await,
    )
    .await;
    common::eventually(|| async { doctor.get(&path).await.0 == 200 }).await;
    mined(registry.suspendOrganisation(org.address()).send().await).await;
    common::eventually(|| async { doctor.get(&path).await.0 == 404 }).await;
    let (_, headers, _) = doctor.get(&path).await;
    assert_eq!(
        gw.audit_row(&headers).await.basis.as_deref(),
        Some("OrganisationSuspended")
    );
    mined(registry.reinstateOrganisation(org.address()).send().await).await;

    // Break-glass: another organisation's key opens an emergency session; it counts for
    // ETREAT only.
    let (status, _, _) = er.get(&path).await;
    assert_eq!(status, 404);
    let er_consents = chain.consents_as(&emergency);
    mined(
        er_consents
            .openBreakGlass(patient_wallet.address(), 1, 600)
            .send()
            .await,
    )
    .await;
    common::eventually(|| async {
        er.send(
            reqwest::Method::GET,
            &path,
            None,
            &[("X-Purpose-Of-Use", "ETREAT")],
        )
        .await
        .0 == 200
    })
    .await;
    let (status, headers, body) = er.get(&path).await;
    assert_eq!(status, 404, "break-glass is for ETREAT only: {body}");
    let refused = gw.audit_row(&headers).await;
    assert!(refused.consent_block.is_some(), "{refused:?}");
    assert!(
        refused.description.contains("consent-denied"),
        "{refused:?}"
    );

    // A transaction Bundle (Synthea style: urn:uuid references) imports all or nothing.
    let me = format!("{:#x}", patient_wallet.address());
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "request": {"method": "POST", "url": "Patient"},
             "resource": {"resourceType": "Patient",
                          "identifier": [{"system": "urn:carechain:wallet", "value": me}]}},
            {"fullUrl": "urn:uuid:e1", "request": {"method": "POST", "url": "Encounter"},
             "resource": {"resourceType": "Encounter", "status": "finished",
                          "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:p1"}}},
            {"fullUrl": "urn:uuid:o1", "request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                          "subject": {"reference": "urn:uuid:p1"},
                          "encounter": {"reference": "urn:uuid:e1"}}}
        ]
    });
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_resource_versions")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    let mut broken = bundle.clone();
    broken["entry"][2]["resource"]["subject"] = json!({"reference": "Patient/123"});
    let (status, _, body) = patient.post_bundle(broken).await;
    assert_eq!(status, 422, "{body}");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_resource_versions")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    assert_eq!(before, after, "no partial write");
    let (status, _, body) = patient.post_bundle(bundle).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "transaction-response");
    let location = body["entry"][2]["response"]["location"].as_str().unwrap();
    let observation_path = format!("/{}", location.trim_end_matches("/_history/1"));
    let encounter = body["entry"][1]["response"]["location"].as_str().unwrap();
    let (status, _, obs) = patient.get(&observation_path).await;
    assert_eq!(status, 200, "batch-anchored version verifies: {obs}");
    assert_eq!(obs["subject"]["reference"], format!("Patient/{me}"));
    assert_eq!(
        obs["encounter"]["reference"].as_str().unwrap(),
        encounter.trim_end_matches("/_history/1")
    );
    let (status, _, p) = patient.get(&format!("/Patient/{me}")).await;
    assert_eq!((status, p["id"].as_str()), (200, Some(me.as_str())));

    // A batch Bundle: each entry stands alone.
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": observation(&patient_wallet)},
            {"request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "subject": {"reference": "Patient/123"}}},
            {"request": {"method": "GET", "url": "Observation?code=2339-0"}},
            {"request": {"method": "GET", "url": observation_path.trim_start_matches('/')}},
            {"request": {"method": "DELETE", "url": "Observation/0123456789abcdef0123456789abcdef"}},
            {"request": {"method": "PATCH", "url": observation_path.trim_start_matches('/')}}
        ]
    });
    let (status, _, body) = patient.post_bundle(batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "batch-response");
    assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(body["entry"][1]["response"]["status"], "422");
    assert_eq!(
        body["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(body["entry"][2]["response"]["status"], "200 OK");
    assert_eq!(body["entry"][2]["resource"]["total"], 1, "{body}");
    assert_eq!(body["entry"][3]["response"]["status"], "200 OK");
    assert_eq!(
        body["entry"][3]["resource"]["code"]["coding"][0]["code"],
        "2339-0"
    );
    assert_eq!(body["entry"][4]["response"]["status"], "404");
    assert_eq!(body["entry"][5]["response"]["status"], "400");
    let first = body["entry"][0]["response"]["location"].as_str().unwrap();
    let (status, _, _) = patient
        .get(&format!("/{}", first.trim_end_matches("/_history/1")))
        .await;
    assert_eq!(status, 200);

    // A transaction with PUT, DELETE and GET entries: all or nothing.
    let (_, _, current) = patient.get(&observation_path).await;
    let mut changed = current.clone();
    changed["status"] = json!("amended");
    let batch_id = first
        .trim_end_matches("/_history/1")
        .trim_start_matches("Observation/")
        .to_owned();
    let versions = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_resource_versions")
            .fetch_one(&gw.pool)
            .await
            .unwrap();
        n
    };
    let mixed = |if_match: &str, delete: &str| {
        json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"request": {"method": "GET", "url": observation_path.trim_start_matches('/')}},
                {"request": {"method": "PUT", "url": observation_path.trim_start_matches('/'), "ifMatch": if_match},
                 "resource": changed.clone()},
                {"request": {"method": "DELETE", "url": format!("Observation/{delete}")}},
                {"fullUrl": "urn:uuid:new", "request": {"method": "POST", "url": "Observation"},
                 "resource": observation(&patient_wallet)}
            ]
        })
    };
    let before = versions().await;
    for (if_match, delete, want) in [
        ("W/\"9\"", batch_id.as_str(), 412),
        ("W/\"1\"", "0123456789abcdef0123456789abcdef", 404),
    ] {
        let (status, _, body) = patient.post_bundle(mixed(if_match, delete)).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(versions().await, before, "no partial write");
    }
    let (status, _, body) = patient.post_bundle(mixed("W/\"1\"", &batch_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(versions().await, before + 3);
    let statuses: Vec<&str> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["200 OK", "200 OK", "204 No Content", "201 Created"]
    );
    assert_eq!(
        body["entry"][0]["resource"]["status"], "amended",
        "GET runs last"
    );
    let (status, headers, amended) = patient.get(&observation_path).await;
    assert_eq!((status, amended["status"].as_str()), (200, Some("amended")));
    assert_eq!(headers["etag"], "W/\"2\"");
    let (status, _, _) = patient.get(&format!("/Observation/{batch_id}")).await;
    assert_eq!(status, 410);
    // The practitioner may not update: the refusal is a 404 and nothing is written.
    let (status, _, body) = doctor.post_bundle(mixed("W/\"2\"", &batch_id)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(versions().await, before + 3);

    // _include follows patient-centric references, only where consent covers the target.
    let search = format!(
        "/Observation?patient={me}&code=2339-0&_include=Observation:encounter&_include=Observation:patient"
    );
    let (status, _, own) = patient.get(&search).await;
    assert_eq!(status, 200, "{own}");
    let modes: Vec<(&str, &str)> = own["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"]["resourceType"].as_str().unwrap(),
                e["search"]["mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        vec![
            ("Observation", "match"),
            ("Encounter", "include"),
            ("Patient", "include")
        ]
    );
    assert_eq!(own["total"], 1);
    grant_observations(
        &consents,
        patient_wallet.address(),
        other_org.address(),
        &[Action::Read, Action::Search],
        4_000_000_000u64,
        3,
    )
    .await;
    common::eventually(|| async { er.get(&search).await.0 == 200 }).await;
    let (_, _, theirs) = er.get(&search).await;
    let entries = theirs["entry"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "no Patient or Encounter without consent: {theirs}"
    );
    assert_eq!(entries[0]["search"]["mode"], "match");

    assert_eq!(gw.audit_rows().await, requests.get());
    let breakglass_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gateway_audit_log WHERE purpose = 'ETREAT' AND outcome = '0'",
    )
    .fetch_one(&gw.pool)
    .await
    .unwrap();
    assert!(breakglass_rows >= 1);
    gw.stop().await;
}

/// A read answered under a cached decision is guarded, in the same statement as the data, by
/// the indexer's cursor the decision was made at. With the indexer stopped, a revocation on
/// chain is not yet seen and the cached decision keeps serving (as designed: a change takes
/// effect once indexed); the moment the cursor moves, with no notification at all, the read
/// is decided again and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_decisions_serve_only_while_the_indexer_cursor_stands() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);
    let patient_wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &patient_wallet, &requests).await;
    let doctor = Client::sign_in(&gw, &practitioner, &requests).await;
    let own = format!("/Observation?patient={:#x}", patient_wallet.address());
    common::eventually(|| async { patient.get(&own).await.0 == 200 }).await;
    let (status, _, created) = patient
        .post("/Observation", observation(&patient_wallet))
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/Observation/{}", created["id"].as_str().unwrap());
    let consents = chain.consents_as(&patient_wallet);
    let granted_at = grant_observations(
        &consents,
        patient_wallet.address(),
        org.address(),
        &[Action::Read],
        4_000_000_000u64,
        9,
    )
    .await;
    gw.wait_indexed(granted_at).await;
    // Two reads: the first learns the record's patient and caches the decision.
    common::eventually(|| async { doctor.get(&path).await.0 == 200 }).await;
    let (status, headers, _) = doctor.get(&path).await;
    assert_eq!(status, 200);
    let cached_block = headers["x-consent-block"].to_str().unwrap().to_owned();

    drop(indexer);
    let cursor = gw.indexed_block().await.unwrap();
    let revoked_at = mined(
        consents
            .revoke(patient_wallet.address(), org.address())
            .send()
            .await,
    )
    .await;
    assert!(revoked_at as i64 > cursor);
    let (status, headers, body) = doctor.get(&path).await;
    assert_eq!(status, 200, "the index has not seen the revocation: {body}");
    assert_eq!(headers["x-consent-block"].to_str().unwrap(), cached_block);
    assert_eq!(gw.indexed_block().await, Some(cursor));

    // The cursor moves (no NOTIFY is sent): the very next read is refused.
    sqlx::query("UPDATE indexer_cursor SET block_number = $1")
        .bind(revoked_at as i64)
        .execute(&gw.pool)
        .await
        .unwrap();
    let (status, headers, body) = doctor.get(&path).await;
    assert_eq!(status, 404, "{body}");
    let refused = gw.audit_row(&headers).await;
    assert_eq!(refused.basis.as_deref(), Some("NoConsent"));
    assert!(refused.consent_block.unwrap() >= revoked_at as i64);
}

/// At a real block time most blocks touch no given patient's consent: a cached decision keeps
/// answering while the indexer's progress marks say that no change up to the new cursor
/// concerned it, and a revocation still ends it on the first request after it is indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_decisions_outlive_blocks_that_do_not_touch_them() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);
    let patient_wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &patient_wallet, &requests).await;
    let doctor = Client::sign_in(&gw, &practitioner, &requests).await;
    let own = format!("/Observation?patient={:#x}", patient_wallet.address());
    common::eventually(|| async { patient.get(&own).await.0 == 200 }).await;
    let (status, _, created) = patient
        .post("/Observation", observation(&patient_wallet))
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/Observation/{}", created["id"].as_str().unwrap());
    let consents = chain.consents_as(&patient_wallet);
    let granted_at = grant_observations(
        &consents,
        patient_wallet.address(),
        org.address(),
        &[Action::Read],
        4_000_000_000u64,
        9,
    )
    .await;
    gw.wait_indexed(granted_at).await;
    common::eventually(|| async { doctor.get(&path).await.0 == 200 }).await;
    let (status, headers, _) = doctor.get(&path).await;
    assert_eq!(status, 200);
    let cached_block = headers["x-consent-block"].to_str().unwrap().to_owned();
    let consent = gw.state.consent();
    let asked = consent.decisions_asked();

    // Ten blocks that change nothing, indexed and marked.
    let head = chain.mine(10).await;
    gw.wait_indexed(head).await;
    common::eventually(|| async { consent.marked_through() >= head }).await;
    for _ in 0..5 {
        let (status, headers, body) = doctor.get(&path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            headers["x-consent-block"].to_str().unwrap(),
            cached_block,
            "the decision made before the ten blocks still answers"
        );
    }
    assert_eq!(consent.decisions_asked(), asked, "no decision asked again");

    // A revocation: once indexed, the very next read is refused, whether or not its
    // notification has been read yet.
    let revoked_at = mined(
        consents
            .revoke(patient_wallet.address(), org.address())
            .send()
            .await,
    )
    .await;
    gw.wait_indexed(revoked_at).await;
    let (status, headers, body) = doctor.get(&path).await;
    assert_eq!(status, 404, "{body}");
    let refused = gw.audit_row(&headers).await;
    assert_eq!(refused.basis.as_deref(), Some("NoConsent"));
    assert!(refused.consent_block.unwrap() >= revoked_at as i64);
}

/// A refusal because a consent has not started yet is not kept past the consent's start: the
/// first read after a block at or past `validFrom` is allowed, although no consent event
/// came in between (the blocks in between only move the indexer's progress marks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_a_consent_starts_ends_when_it_starts() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);
    let patient_wallet = chain.wallet().await;
    let patient = Client::sign_in(&gw, &patient_wallet, &requests).await;
    let doctor = Client::sign_in(&gw, &practitioner, &requests).await;
    let own = format!("/Observation?patient={:#x}", patient_wallet.address());
    common::eventually(|| async { patient.get(&own).await.0 == 200 }).await;
    let (status, _, created) = patient
        .post("/Observation", observation(&patient_wallet))
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/Observation/{}", created["id"].as_str().unwrap());
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let starts = now + 4;
    let granted_at = mined(
        chain
            .consents_as(&patient_wallet)
            .grant(
                patient_wallet.address(),
                org.address(),
                ResourceType::Observation.bit(),
                Action::to_bits(&[Action::Read]),
                Purpose::Treat.bit(),
                U40::from(starts),
                U40::from(4_000_000_000u64),
                B256::repeat_byte(3),
            )
            .send()
            .await,
    )
    .await;
    gw.wait_indexed(granted_at).await;
    for _ in 0..3 {
        let (status, _, body) = doctor.get(&path).await;
        assert_eq!(status, 404, "not started yet: {body}");
    }

    // Past the start, a block (with no consent event) and its progress mark.
    let wait = (starts + 1).saturating_sub(u64::try_from(chrono::Utc::now().timestamp()).unwrap());
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let head = chain.mine(1).await;
    gw.wait_indexed(head).await;
    let consent = gw.state.consent();
    common::eventually(|| async { consent.marked_through() >= head }).await;
    let (status, _, body) = doctor.get(&path).await;
    assert_eq!(status, 200, "the consent has started: {body}");
}
