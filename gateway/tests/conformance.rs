//! FHIR conformance: writes that are not valid R4 are refused with each issue's location and
//! store nothing; a record may reference only its own patient's records; the search
//! parameters clients send (`_summary`, `_elements`, `_total`, `_id`, `_revinclude`); JSON only
//! (406 for XML); `If-Match` when required. Real anvil, real PostgreSQL, the gateway over HTTP.

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
use std::cell::Cell;

fn me(wallet: &PrivateKeySigner) -> String {
    format!("{:#x}", wallet.address())
}

fn observation(patient: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {"value": 72.5, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn encounter(patient: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": "2026-11-20T09:00:00Z", "end": "2026-11-20T10:00:00Z"}
    })
}

fn with(mut value: Value, key: &str, v: Value) -> Value {
    value[key] = v;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

/// The (code, expression) of every issue of an OperationOutcome.
fn issues(outcome: &Value) -> Vec<(String, String)> {
    outcome["issue"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                i["code"].as_str().unwrap_or_default().to_owned(),
                i["expression"][0].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn stored_versions(gw: &TestGateway) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM gateway_resource_versions")
        .fetch_one(&gw.pool)
        .await
        .unwrap()
}

/// A gateway (anchoring for one custodian) with the indexer, ready to decide.
async fn started(
    chain: &TestChain,
    custodian: &carechain_testkit::Custodian,
    require_if_match: bool,
) -> (TestGateway, TestIndexer) {
    let db = fresh_database().await;
    let gw = TestGateway::start_with(chain, &db, |c| {
        custodian.configure(c);
        c.require_if_match = require_if_match;
    })
    .await;
    let indexer = TestIndexer::start(chain, &db).await;
    (gw, indexer)
}

/// The patient grants `grantee` the `actions` on `types` for TREAT for a day; waits until the
/// gateway's index has seen it.
async fn grant(
    chain: &TestChain,
    gw: &TestGateway,
    patient: &PrivateKeySigner,
    grantee: alloy::primitives::Address,
    types: &[ResourceType],
    actions: &[Action],
) {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let receipt = chain
        .consents_as(patient)
        .grant(
            patient.address(),
            grantee,
            ResourceType::to_bits(types),
            Action::to_bits(actions),
            Purpose::Treat.bit(),
            U40::ZERO,
            U40::from(until),
            B256::repeat_byte(7),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    gw.wait_indexed(receipt.block_number.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_are_not_valid_r4_are_refused_with_locations_and_store_nothing() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (gw, _indexer) = started(&chain, &custodian, false).await;
    let requests = Cell::new(0i64);
    let alice_wallet = chain.wallet().await;
    let alice = Client::sign_in(&gw, &alice_wallet, &requests).await;
    let a = me(&alice_wallet);
    let own = format!("/Observation?patient={a}");
    common::eventually(|| async { alice.get(&own).await.0 == 200 }).await;
    let (status, _, created) = alice.post("/Observation", observation(&a)).await;
    assert_eq!(status, 201, "a valid Observation is stored: {created}");

    let contained =
        json!([{"resourceType": "Medication", "id": "med", "code": {"text": "aspirin"}}]);
    let cases: Vec<(&str, Value, (&str, &str))> = vec![
        (
            "status 123",
            with(observation(&a), "status", json!(123)),
            ("structure", "Observation.status"),
        ),
        (
            "status bogus (a required binding)",
            with(observation(&a), "status", json!("bogus")),
            ("code-invalid", "Observation.status"),
        ),
        (
            "no code (1..1)",
            without(observation(&a), "code"),
            ("required", "Observation.code"),
        ),
        (
            "an element R4 does not have",
            with(observation(&a), "mood", json!("cheerful")),
            ("structure", "Observation.mood"),
        ),
        (
            "effectiveDateTime yesterday",
            with(observation(&a), "effectiveDateTime", json!("yesterday")),
            ("value", "Observation.effectiveDateTime"),
        ),
        (
            "valueQuantity as a string",
            with(observation(&a), "valueQuantity", json!("12 mg")),
            ("structure", "Observation.valueQuantity"),
        ),
        (
            "two value[x]",
            with(observation(&a), "valueString", json!("72")),
            ("structure", "Observation.valueString"),
        ),
        (
            "a contained resource nothing references",
            with(observation(&a), "contained", contained),
            ("invariant", "Observation.contained[0]"),
        ),
        (
            "an Encounter class outside its binding's shape",
            with(encounter(&a), "class", json!("AMB")),
            ("structure", "Encounter.class"),
        ),
    ];
    for (name, body, (code, expression)) in cases {
        let before = stored_versions(&gw).await;
        let path = format!("/{}", body["resourceType"].as_str().unwrap());
        let (status, _, outcome) = alice.post(&path, body).await;
        assert_eq!(status, 422, "{name}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{name}");
        assert!(
            issues(&outcome).contains(&(code.to_owned(), expression.to_owned())),
            "{name}: expected ({code}, {expression}) in {outcome}"
        );
        assert_eq!(stored_versions(&gw).await, before, "{name}: nothing stored");
    }

    // An update is validated too.
    let id = created["id"].as_str().unwrap();
    let mut bad = created.clone();
    bad["status"] = json!("nonsense");
    let (status, _, outcome) = alice
        .send(
            reqwest::Method::PUT,
            &format!("/Observation/{id}"),
            Some(bad),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    assert!(issues(&outcome).contains(&("code-invalid".into(), "Observation.status".into())));

    // A transaction is validated whole before anything is decided or stored: one bad entry
    // refuses all of them, naming the entry.
    let before = stored_versions(&gw).await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0b6f9d4e-1c1f-4b8e-9a57-5d0e2b1c0001", "resource": encounter(&a), "request": {"method": "POST", "url": "Encounter"}},
            {"resource": with(observation(&a), "status", json!("bogus")), "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let (status, _, outcome) = alice.post_bundle(bundle).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        issues(&outcome).contains(&(
            "code-invalid".into(),
            "Bundle.entry[1].resource.status".into()
        )),
        "{outcome}"
    );
    assert_eq!(stored_versions(&gw).await, before);

    // A valid Synthea-style transaction (urn:uuid references between its entries) imports.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": format!("urn:uuid:{a}"), "resource": {"resourceType": "Patient", "id": a, "identifier": [{"system": "urn:carechain:wallet", "value": a}], "name": [{"family": "Liddell", "given": ["Alice"]}], "gender": "female", "birthDate": "1990-04-12"}, "request": {"method": "PUT", "url": format!("Patient/{a}")}},
            {"fullUrl": "urn:uuid:7d3c1e1a-0f5e-4c1b-8e0e-3b2a1f000001", "resource": encounter(&a), "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:7d3c1e1a-0f5e-4c1b-8e0e-3b2a1f000002", "resource": with(observation(&a), "encounter", json!({"reference": "urn:uuid:7d3c1e1a-0f5e-4c1b-8e0e-3b2a1f000001"})), "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:7d3c1e1a-0f5e-4c1b-8e0e-3b2a1f000003", "resource": {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
                "subject": {"reference": format!("Patient/{a}")},
                "encounter": {"reference": "urn:uuid:7d3c1e1a-0f5e-4c1b-8e0e-3b2a1f000001"},
                "onsetDateTime": "2020-01-01"
            }, "request": {"method": "POST", "url": "Condition"}}
        ]
    });
    // The Patient does not exist yet, so the import creates it with POST.
    let mut bundle = bundle;
    bundle["entry"][0]["request"] = json!({"method": "POST", "url": "Patient"});
    bundle["entry"][0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    let (status, _, response) = alice.post_bundle(bundle).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["entry"].as_array().unwrap().len(), 4);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_may_reference_only_its_own_patients_records() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (gw, _indexer) = started(&chain, &custodian, false).await;
    let requests = Cell::new(0i64);
    let (bob_wallet, carol_wallet) = (chain.wallet().await, chain.wallet().await);
    let bob = Client::sign_in(&gw, &bob_wallet, &requests).await;
    let carol = Client::sign_in(&gw, &carol_wallet, &requests).await;
    let (b, c) = (me(&bob_wallet), me(&carol_wallet));
    let own = format!("/Observation?patient={b}");
    common::eventually(|| async { bob.get(&own).await.0 == 200 }).await;

    let (_, _, bob_encounter) = bob.post("/Encounter", encounter(&b)).await;
    let (_, _, bob_obs) = bob.post("/Observation", observation(&b)).await;
    let bob_encounter = format!("Encounter/{}", bob_encounter["id"].as_str().unwrap());
    let bob_obs = format!("Observation/{}", bob_obs["id"].as_str().unwrap());

    // Carol's Observation pointing at Bob's encounter, at Bob's observation and at Bob.
    let before = stored_versions(&gw).await;
    let mut crossed = observation(&c);
    crossed["encounter"] = json!({"reference": bob_encounter});
    crossed["hasMember"] = json!([{"reference": bob_obs}]);
    crossed["performer"] = json!([{"reference": format!("Patient/{b}")}]);
    let (status, _, outcome) = carol.post("/Observation", crossed).await;
    assert_eq!(status, 422, "{outcome}");
    let found = issues(&outcome);
    for expression in [
        "Observation.encounter",
        "Observation.hasMember[0]",
        "Observation.performer[0]",
    ] {
        assert!(
            found.contains(&("business-rule".into(), expression.into())),
            "{expression}: {outcome}"
        );
    }
    assert_eq!(stored_versions(&gw).await, before);

    // Her own encounter is fine, and so is an organisation (no patient's compartment).
    let (_, _, carol_encounter) = carol.post("/Encounter", encounter(&c)).await;
    let mut fine = observation(&c);
    fine["encounter"] =
        json!({"reference": format!("Encounter/{}", carol_encounter["id"].as_str().unwrap())});
    fine["performer"] = json!([{"reference": "Organization/general-hospital"}]);
    let (status, _, body) = carol.post("/Observation", fine).await;
    assert_eq!(status, 201, "{body}");

    // In a transaction: an entry of Carol's pointing at an Encounter created in the same
    // Bundle for Bob is refused as well (and nothing is written).
    let before = stored_versions(&gw).await;
    let mut theirs = encounter(&b);
    theirs["subject"] = json!({"reference": format!("Patient/{b}")});
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:5f0c4b7e-2d1a-4f6b-9c3e-000000000001", "resource": theirs, "request": {"method": "POST", "url": "Encounter"}},
            {"resource": with(observation(&c), "encounter", json!({"reference": "urn:uuid:5f0c4b7e-2d1a-4f6b-9c3e-000000000001"})), "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    // Bob's entry is not Carol's to write anyway; a member writing for both shows the rule.
    let doctor = Client::sign_in(&gw, &custodian.practitioner, &requests).await;
    for patient in [&bob_wallet, &carol_wallet] {
        grant(
            &chain,
            &gw,
            patient,
            custodian.practitioner.address(),
            &[ResourceType::Encounter, ResourceType::Observation],
            &[Action::Create, Action::Read],
        )
        .await;
    }
    let (status, _, outcome) = doctor.post_bundle(bundle).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        issues(&outcome).contains(&("business-rule".into(), "Observation.encounter".into())),
        "{outcome}"
    );
    assert_eq!(stored_versions(&gw).await, before);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_parameters_clients_send_and_json_only() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (gw, _indexer) = started(&chain, &custodian, false).await;
    let requests = Cell::new(0i64);
    let alice_wallet = chain.wallet().await;
    let alice = Client::sign_in(&gw, &alice_wallet, &requests).await;
    let doctor = Client::sign_in(&gw, &custodian.practitioner, &requests).await;
    let a = me(&alice_wallet);
    let own = format!("/Observation?patient={a}");
    common::eventually(|| async { alice.get(&own).await.0 == 200 }).await;

    let (_, _, enc) = alice.post("/Encounter", encounter(&a)).await;
    let enc_id = enc["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut obs = observation(&a);
        if i == 0 {
            obs["encounter"] = json!({"reference": format!("Encounter/{enc_id}")});
        }
        let (status, _, created) = alice.post("/Observation", obs).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let condition = json!({
        "resourceType": "Condition",
        "code": {"text": "hypertension"},
        "subject": {"reference": format!("Patient/{a}")},
        "encounter": {"reference": format!("Encounter/{enc_id}")}
    });
    let (status, _, body) = alice.post("/Condition", condition).await;
    assert_eq!(status, 201, "{body}");
    let patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:carechain:wallet", "value": a}], "name": [{"family": "Liddell"}]});
    let (status, _, body) = alice.post("/Patient", patient).await;
    assert_eq!(status, 201, "{body}");

    // _total=none: no count; the default counts.
    let (_, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_total=none"))
        .await;
    assert!(bundle.get("total").is_none(), "{bundle}");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);
    let (_, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_total=accurate"))
        .await;
    assert_eq!(bundle["total"], 3);

    // _id: one record, or several.
    let (_, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_id={}", ids[1]))
        .await;
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["id"], ids[1].as_str());
    let (_, _, bundle) = alice
        .get(&format!(
            "/Observation?patient={a}&_id={},{}",
            ids[0], ids[2]
        ))
        .await;
    assert_eq!(bundle["total"], 2, "{bundle}");

    // _summary=count: the total only.
    let (status, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_summary=count"))
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 3);
    assert!(
        bundle["entry"].as_array().is_none_or(Vec::is_empty),
        "{bundle}"
    );

    // _summary=true: the R4 summary elements (and the mandatory ones), tagged SUBSETTED;
    // _summary=data drops the narrative; _elements keeps what is named (a choice by its base).
    let subsetted = |resource: &Value| {
        resource["meta"]["tag"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t["code"] == "SUBSETTED"))
    };
    let (status, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_summary=true"))
        .await;
    assert_eq!(status, 200, "{bundle}");
    for entry in bundle["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        assert!(subsetted(resource), "{resource}");
        assert!(resource.get("code").is_some() && resource.get("status").is_some());
        carechain_fhir::validate(resource).unwrap();
    }
    let (_, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_elements=value,subject"))
        .await;
    for entry in bundle["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        assert!(subsetted(resource), "{resource}");
        assert!(resource.get("valueQuantity").is_some(), "{resource}");
        assert!(resource.get("effectiveDateTime").is_none(), "{resource}");
        assert!(
            resource.get("status").is_some(),
            "mandatory elements stay: {resource}"
        );
        carechain_fhir::validate(resource).unwrap();
    }
    let (status, _, outcome) = alice
        .get(&format!("/Observation?patient={a}&_elements=mood"))
        .await;
    assert_eq!(
        status, 400,
        "an element Observation does not have: {outcome}"
    );
    let (status, _, _) = alice
        .get(&format!("/Observation?patient={a}&_summary=maybe"))
        .await;
    assert_eq!(status, 400);
    let (_, _, bundle) = alice
        .get(&format!("/Observation?patient={a}&_summary=false"))
        .await;
    assert!(!subsetted(&bundle["entry"][0]["resource"]));

    // _revinclude, filtered by consent exactly like _include: the doctor may read Alice's
    // Observations and Encounters, not her Conditions.
    grant(
        &chain,
        &gw,
        &alice_wallet,
        custodian.practitioner.address(),
        &[
            ResourceType::Observation,
            ResourceType::Encounter,
            ResourceType::Patient,
        ],
        &[Action::Read, Action::Search],
    )
    .await;
    let (status, _, bundle) = doctor
        .get(&format!(
            "/Encounter?patient={a}&_revinclude=Observation:encounter&_revinclude=Condition:encounter"
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["entry"].as_array().unwrap();
    let modes: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["resource"]["resourceType"].as_str().unwrap().to_owned(),
                e["search"]["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        modes.contains(&("Encounter".into(), "match".into())),
        "{bundle}"
    );
    assert!(
        modes.contains(&("Observation".into(), "include".into())),
        "{bundle}"
    );
    assert_eq!(
        modes.iter().filter(|(t, _)| t == "Observation").count(),
        1,
        "only the Observation of that Encounter: {bundle}"
    );
    assert!(
        !modes.iter().any(|(t, _)| t == "Condition"),
        "no consent for Conditions: {bundle}"
    );
    let (status, _, bundle) = doctor
        .get(&format!("/Patient?_id={a}&_revinclude=Observation:patient"))
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .count(),
        3,
        "{bundle}"
    );
    let (status, _, _) = doctor
        .get(&format!(
            "/Observation?patient={a}&_revinclude=Condition:encounter"
        ))
        .await;
    assert_eq!(
        status, 400,
        "_revinclude applies to Patient and Encounter searches"
    );

    // JSON only: an Accept naming only XML is 406 (never a JSON body under a 200), and so is
    // _format=xml.
    for (path, accept) in [
        ("/metadata", "application/fhir+xml"),
        (own.as_str(), "application/fhir+xml"),
        (own.as_str(), "application/xml, text/xml"),
    ] {
        let (status, headers, body) = alice
            .send(reqwest::Method::GET, path, None, &[("accept", accept)])
            .await;
        assert_eq!(status, 406, "{path} {accept}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert!(
            headers.contains_key("x-audit-seq"),
            "the refusal is audited"
        );
    }
    let (status, _, _) = alice.get(&format!("{own}&_format=xml")).await;
    assert_eq!(status, 406);
    let (status, _, _) = alice
        .send(
            reqwest::Method::GET,
            &own,
            None,
            &[(
                "accept",
                "application/fhir+xml;q=0.9, application/fhir+json",
            )],
        )
        .await;
    assert_eq!(status, 200);

    // The CapabilityStatement names each parameter and is itself valid R4.
    let (status, _, capability) = alice.get("/metadata").await;
    assert_eq!(status, 200);
    let observation_entry = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap()
        .clone();
    let names: Vec<&str> = observation_entry["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["_id", "_summary", "_elements", "_total"] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    carechain_fhir::validate(&capability).unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_can_be_required_on_update() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (gw, _indexer) = started(&chain, &custodian, true).await;
    let requests = Cell::new(0i64);
    let alice_wallet = chain.wallet().await;
    let alice = Client::sign_in(&gw, &alice_wallet, &requests).await;
    let a = me(&alice_wallet);
    let own = format!("/Observation?patient={a}");
    common::eventually(|| async { alice.get(&own).await.0 == 200 }).await;
    let (_, _, created) = alice.post("/Observation", observation(&a)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/Observation/{id}");
    let mut changed = created.clone();
    changed["status"] = json!("amended");
    let (status, _, outcome) = alice
        .send(reqwest::Method::PUT, &path, Some(changed.clone()), &[])
        .await;
    assert_eq!(status, 428, "{outcome}");
    let (status, _, body) = alice
        .send(
            reqwest::Method::PUT,
            &path,
            Some(changed.clone()),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": changed, "request": {"method": "PUT", "url": format!("Observation/{id}")}}]
    });
    let (status, _, outcome) = alice.post_bundle(bundle).await;
    assert_eq!(status, 428, "{outcome}");
    let (_, _, capability) = alice.get("/metadata").await;
    assert_eq!(capability["rest"][0]["extension"][0]["valueBoolean"], true);
    gw.stop().await;
}
