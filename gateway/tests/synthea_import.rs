//! Real EHR output in: Synthea transaction Bundles (`tests/data/synthea`) import whole through a
//! real gateway over HTTP (real anvil, real PostgreSQL, the indexer in process), directory
//! resources included, and every resource reads back identical to what was sent (canonical
//! hash equal, once the gateway's own rewriting is applied: new ids, references to them, the
//! wallet as the Patient's id, and `meta.versionId` / `meta.lastUpdated`).

#![allow(clippy::unwrap_used)]

mod client;
mod common;

use alloy::{
    primitives::{B256, aliases::U40},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_fhir::import::{WalletLinks, link_patients};
use carechain_formats::canonical::canonical_hash;
use client::Client;
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};
use std::collections::HashMap;

const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";

fn synthea(file: &str) -> Value {
    let path = format!(
        "{}/../tests/data/synthea/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Rewrites every reference string of `value` through `f`.
fn map_references(value: &mut Value, f: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(obj) => {
            for (key, item) in obj.iter_mut() {
                match item {
                    Value::String(s) if key == "reference" => {
                        if let Some(new) = f(s) {
                            *s = new;
                        }
                    }
                    _ => map_references(item, f),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| map_references(i, f)),
        _ => {}
    }
}

/// What a read gives back, less what the gateway adds to every version (its version id, its
/// time, and the not-yet-anchored tag).
fn without_gateway_meta(mut resource: Value) -> Value {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if let Some(tags) = meta.get_mut("tag").and_then(Value::as_array_mut) {
            tags.retain(|t| t["system"] != "urn:carechain:anchor");
            if tags.is_empty() {
                meta.remove("tag");
            }
        }
        if meta.is_empty() {
            resource.as_object_mut().unwrap().remove("meta");
        }
    }
    resource
}

/// `Type/id` of a transaction-response `location` (`Type/id/_history/1` or `Type/id`).
fn type_and_id(location: &str) -> String {
    location.split('/').take(2).collect::<Vec<_>>().join("/")
}

/// The patient grants the organisation create, read and search of every type for TREAT.
async fn grant_all(
    chain: &TestChain,
    patient: &PrivateKeySigner,
    org: alloy::primitives::Address,
) -> u64 {
    chain
        .consents_as(patient)
        .grant(
            patient.address(),
            org,
            ResourceType::ALL_BITS,
            Action::Create.bit() | Action::Read.bit() | Action::Search.bit(),
            Purpose::Treat.bit(),
            U40::ZERO,
            U40::from(4_000_000_000u64),
            B256::repeat_byte(3),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .block_number
        .unwrap()
}

/// Imports `bundle` (already linked to its wallet) and checks that every entry reads back
/// identical; `resolve` maps a reference of the source to the `Type/id` it must have become,
/// given the `Type/id` of every entry by its fullUrl.
async fn import_and_read_back(
    doctor: &Client<'_>,
    bundle: &Value,
    wallet: &str,
) -> HashMap<String, String> {
    let (status, _, answer) = doctor.post_bundle(bundle.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let entries = bundle["entry"].as_array().unwrap();
    let responses = answer["entry"].as_array().unwrap();
    assert_eq!(responses.len(), entries.len());
    // fullUrl -> Type/id, and (type, identifier) -> Type/id for conditional references.
    let mut by_url = HashMap::new();
    let mut by_identifier = HashMap::new();
    for (entry, response) in entries.iter().zip(responses) {
        let target = type_and_id(response["response"]["location"].as_str().unwrap());
        by_url.insert(
            entry["fullUrl"].as_str().unwrap().to_owned(),
            target.clone(),
        );
        let rt = entry["resource"]["resourceType"].as_str().unwrap();
        for ident in entry["resource"]["identifier"]
            .as_array()
            .into_iter()
            .flatten()
        {
            by_identifier.insert(
                format!(
                    "{rt}?identifier={}|{}",
                    ident["system"].as_str().unwrap_or_default(),
                    ident["value"].as_str().unwrap_or_default()
                ),
                target.clone(),
            );
        }
    }
    let mut read_back = 0;
    for (entry, response) in entries.iter().zip(responses) {
        let status = response["response"]["status"].as_str().unwrap();
        if status.starts_with("200") {
            // A conditional create that found its resource: nothing new to read back.
            continue;
        }
        assert!(status.starts_with("201"), "{response}");
        let target = type_and_id(response["response"]["location"].as_str().unwrap());
        let mut expected = entry["resource"].clone();
        let id = target.split('/').nth(1).unwrap().to_owned();
        expected["id"] = json!(id);
        map_references(&mut expected, &|r| {
            by_url.get(r).or_else(|| by_identifier.get(r)).cloned()
        });
        if expected["resourceType"] == "Patient" {
            assert_eq!(id, wallet);
        }
        let (status, _, got) = doctor.get(&format!("/{target}")).await;
        assert_eq!(status, 200, "{target}: {got}");
        assert_eq!(
            canonical_hash(&without_gateway_meta(got.clone())),
            canonical_hash(&expected),
            "{target} reads back changed:\n{got}\n{expected}"
        );
        read_back += 1;
    }
    assert!(read_back > 0);
    by_url
}

/// Synthea 2.5 and later write hospitals and clinicians as conditional creates and refer to them
/// by identifier: the same Bundle in that style.
fn conditional_style(mut bundle: Value) -> Value {
    let mut by_url = HashMap::new();
    for entry in bundle["entry"].as_array_mut().unwrap() {
        let rt = entry["resource"]["resourceType"]
            .as_str()
            .unwrap()
            .to_owned();
        if rt == "Organization" || rt == "Practitioner" {
            let ident = &entry["resource"]["identifier"][0];
            let token = format!(
                "{}|{}",
                ident["system"].as_str().unwrap(),
                ident["value"].as_str().unwrap()
            );
            entry["request"]["ifNoneExist"] = json!(format!("identifier={token}"));
            by_url.insert(
                entry["fullUrl"].as_str().unwrap().to_owned(),
                format!("{rt}?identifier={token}"),
            );
        }
    }
    map_references(&mut bundle, &|r| by_url.get(r).cloned());
    bundle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthea_bundles_import_whole_and_read_back_identical() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);

    let (alice, carol) = (chain.wallet().await, chain.wallet().await);
    grant_all(&chain, &alice, custodian.org.address()).await;
    let block = grant_all(&chain, &carol, custodian.org.address()).await;
    gw.wait_indexed(block).await;
    let doctor = Client::sign_in(&gw, &custodian.practitioner, &requests).await;

    // Bundle A as Synthea 2.4 writes it: urn:uuid references throughout; the importer links
    // its Patient to Alice's wallet.
    let mut a = synthea("bundle-afhir.json");
    let alice_wallet = format!("{:#x}", alice.address());
    let linked = link_patients(&mut a, &WalletLinks::One(alice_wallet.clone())).unwrap();
    assert_eq!(linked, [alice_wallet.as_str()]);
    let a_targets = import_and_read_back(&doctor, &a, &alice_wallet).await;
    assert_eq!(a_targets.len(), 319);

    // Bundle C in the conditional style (Synthea 2.5 and later: hospitals and clinicians as
    // conditional creates, referred to by identifier), for Carol, by a mapping from the
    // source's Patient: its directory entries are created, and its conditional references
    // resolve to them within the Bundle.
    let c_style = conditional_style(synthea("bundle-cfhir.json"));
    let mut c = c_style.clone();
    let carol_wallet = format!("{:#x}", carol.address());
    let source_patient = format!(
        "urn:uuid:{}",
        c["entry"][0]["resource"]["id"].as_str().unwrap()
    );
    let mapping = WalletLinks::from_mapping(&json!({source_patient: carol_wallet})).unwrap();
    link_patients(&mut c, &mapping).unwrap();
    let (status, _, carol_answer) = doctor.post_bundle(c.clone()).await;
    assert_eq!(status, 200, "{carol_answer}");
    let directory_count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM gateway_resources WHERE resource_type IN ('Organization', 'Practitioner')",
        )
        .fetch_one(&gw.pool)
        .await
        .unwrap()
    };
    assert_eq!(directory_count().await, 4 + 6);

    // The same hospitals and clinicians in Dave's records: every conditional create finds the
    // stored one (200, its location), every conditional reference resolves to it, nothing is
    // copied.
    let dave = chain.wallet().await;
    let block = grant_all(&chain, &dave, custodian.org.address()).await;
    gw.wait_indexed(block).await;
    let mut d = c_style.clone();
    let dave_wallet = format!("{:#x}", dave.address());
    link_patients(&mut d, &WalletLinks::One(dave_wallet.clone())).unwrap();
    let (status, _, dave_answer) = doctor.post_bundle(d.clone()).await;
    assert_eq!(status, 200, "{dave_answer}");
    assert_eq!(directory_count().await, 4 + 6);
    let mut shared = HashMap::new();
    for (i, entry) in d["entry"].as_array().unwrap().iter().enumerate() {
        let rt = entry["resource"]["resourceType"].as_str().unwrap();
        if rt == "Organization" || rt == "Practitioner" {
            let (carol_at, dave_at) = (
                &carol_answer["entry"][i]["response"],
                &dave_answer["entry"][i]["response"],
            );
            assert_eq!(carol_at["status"], "201 Created");
            assert_eq!(dave_at["status"], "200 OK");
            let target = type_and_id(carol_at["location"].as_str().unwrap());
            assert_eq!(dave_at["location"].as_str().unwrap(), target);
            shared.insert(entry["fullUrl"].as_str().unwrap().to_owned(), target);
        }
    }
    // Dave's first Encounter names its hospital by Carol's stored id.
    let (index, encounter) = d["entry"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, e)| e["resource"]["resourceType"] == "Encounter")
        .unwrap();
    let location = type_and_id(
        dave_answer["entry"][index]["response"]["location"]
            .as_str()
            .unwrap(),
    );
    let (_, _, got) = doctor.get(&format!("/{location}")).await;
    let wanted = encounter["resource"]["serviceProvider"]["reference"]
        .as_str()
        .unwrap();
    assert!(wanted.starts_with("Organization?identifier="));
    let org_entry = d["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["resource"]["resourceType"] == "Organization"
                && wanted.ends_with(e["resource"]["identifier"][0]["value"].as_str().unwrap())
        })
        .unwrap();
    assert_eq!(
        got["serviceProvider"]["reference"].as_str().unwrap(),
        shared[org_entry["fullUrl"].as_str().unwrap()]
    );
    let a_org = a["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Organization")
        .unwrap()["fullUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let shared_id = a["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fullUrl"] == a_org.as_str())
        .unwrap()["resource"]["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    // Directory resources are for members: a patient is refused, the doctor reads them.
    let patient = Client::sign_in(&gw, &alice, &requests).await;
    let org_path = format!("/{}", a_targets[&a_org]);
    let (status, _, _) = patient.get(&org_path).await;
    assert_eq!(status, 403);
    let (status, _, org) = doctor.get(&org_path).await;
    assert_eq!(
        (status, org["identifier"][0]["value"].as_str()),
        (200, Some(shared_id.as_str()))
    );
    let (status, _, outcome) = patient
        .post(
            "/Organization",
            json!({"resourceType": "Organization", "name": "Mine"}),
        )
        .await;
    assert_eq!(status, 403, "{outcome}");

    // A conditional reference that matches nothing is refused, and nothing is written.
    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:0c6d5a0e-0000-4000-8000-000000000001",
        "resource": {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{alice_wallet}")},
            "performer": [{"reference": format!("Practitioner?identifier={NPI_SYSTEM}|no-such-npi")}]},
        "request": {"method": "POST", "url": "Observation"}}]});
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_resources")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    let (status, _, outcome) = doctor.post_bundle(dangling).await;
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_resources")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_style_bundle_reads_back_identical() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    let gw = TestGateway::start_with(&chain, &db, |c| custodian.configure(c)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);
    let carol = chain.wallet().await;
    let block = grant_all(&chain, &carol, custodian.org.address()).await;
    gw.wait_indexed(block).await;
    let doctor = Client::sign_in(&gw, &custodian.practitioner, &requests).await;
    let mut c = conditional_style(synthea("bundle-cfhir.json"));
    let carol_wallet = format!("{:#x}", carol.address());
    link_patients(&mut c, &WalletLinks::One(carol_wallet.clone())).unwrap();
    let targets = import_and_read_back(&doctor, &c, &carol_wallet).await;
    assert_eq!(targets.len(), 556);
}
