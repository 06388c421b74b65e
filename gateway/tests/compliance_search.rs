//! AuditEvent search (compliance staff, patients, delegates), the chain's history as
//! AuditEvents and Consents, the break-glass review queue, and who may see what.

#![allow(clippy::unwrap_used)]

mod common;
mod compliance_support;

use alloy::primitives::{B256, aliases::U40};
use carechain_contracts::{Action, Purpose, ResourceType};
use common::{TestChain, TestGateway, TestIndexer, eventually, fresh_database};
use compliance_support::*;
use serde_json::{Value, json};
use std::collections::HashSet;

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn subtypes(bundle: &Value) -> HashSet<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    e["resource"]["subtype"][0]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn patients(bundle: &Value) -> HashSet<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .flat_map(|e| {
                    e["resource"]["entity"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|x| x["what"]["reference"].as_str().map(str::to_owned))
                .filter(|r| r.starts_with("Patient/"))
                .collect()
        })
        .unwrap_or_default()
}

/// Follows `next` links; returns every id (in order) and the first page's total.
async fn all_pages(gw: &TestGateway, token: &str, first: &str) -> (Vec<String>, i64) {
    let (status, mut page) = get(gw, token, first).await;
    assert_eq!(status, 200, "{page}");
    let total = page["total"].as_i64().unwrap();
    let mut out = ids(&page);
    loop {
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        let Some(next) = next else { break };
        let path = next.strip_prefix(&gw.base).unwrap().to_owned();
        let (status, body) = get(gw, token, &path).await;
        assert_eq!(status, 200, "{body}");
        out.extend(ids(&body));
        page = body;
    }
    (out, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_consents_and_break_glass_review() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let (_, officer) = compliance_member(&chain).await;
    let (org, practitioner) = chain.organisation_with_member().await;
    let (_, emergency) = chain.organisation_with_member().await;
    let patient = chain.wallet().await;
    let other = chain.wallet().await;
    let guardian = chain.wallet().await;
    let gw = TestGateway::start(&chain, &db).await;
    let pa = format!("{:#x}", patient.address());
    let oa = format!("{:#x}", other.address());

    // Chain history: a consent, a delegate, a break-glass session, a revocation.
    let consents = chain.consents_as(&patient);
    mined(
        consents
            .grant(
                patient.address(),
                org.address(),
                ResourceType::Observation.bit() | ResourceType::Condition.bit(),
                Action::Read.bit() | Action::Search.bit(),
                Purpose::Treat.bit(),
                U40::ZERO,
                U40::from(4_000_000_000u64),
                B256::repeat_byte(7),
            )
            .send()
            .await,
    )
    .await;
    mined(
        consents
            .setDelegate(guardian.address(), 1, U40::from(4_000_000_000u64))
            .send()
            .await,
    )
    .await;
    mined(
        chain
            .consents_as(&emergency)
            .openBreakGlass(patient.address(), 1, 600)
            .send()
            .await,
    )
    .await;

    let officer_t = gw.sign_in(&officer).await;
    let doctor_t = gw.sign_in(&practitioner).await;
    let er_t = gw.sign_in(&emergency).await;
    let patient_t = gw.sign_in(&patient).await;
    let other_t = gw.sign_in(&other).await;
    let guardian_t = gw.sign_in(&guardian).await;

    // Decisions are made at the indexer's block: wait until it has the set-up.
    gw.wait_indexed(chain.head().await).await;

    // Gateway rows about the patient: a consented search, a break-glass search, and a search
    // about the other patient.
    let (s, _) = get(&gw, &doctor_t, &format!("/Observation?patient={pa}")).await;
    assert_eq!(s, 200);
    let response = gw
        .http
        .get(gw.url(&format!("/Condition?patient={pa}")))
        .bearer_auth(&er_t)
        .header("x-purpose-of-use", "ETREAT")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (s, _) = get(&gw, &doctor_t, &format!("/Observation?patient={oa}")).await;
    assert_eq!(s, 403);

    // Chain events show up once their block time is known.
    let path = format!("/AuditEvent?patient={pa}&_count=100");
    eventually(|| async {
        let (s, b) = get(&gw, &officer_t, &path).await;
        s == 200
            && [
                "consent-grant",
                "delegate-set",
                "break-glass-open",
                "search-type",
            ]
            .iter()
            .all(|t| subtypes(&b).contains(*t))
    })
    .await;

    // Compliance: filters.
    let (_, b) = get(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={pa}&subtype=break-glass-open"),
    )
    .await;
    assert_eq!(b["total"], 1, "{b}");
    let bg = &b["entry"][0]["resource"];
    assert_eq!(bg["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
    assert!(bg["entity"].to_string().contains("tx-hash"));
    let bg_id = bg["id"].as_str().unwrap().to_owned();
    assert!(bg_id.starts_with("chain-"));
    let (s, e) = get(&gw, &patient_t, &format!("/AuditEvent/{bg_id}")).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["subtype"][0]["code"], "break-glass-open");
    let (s, _) = get(&gw, &other_t, &format!("/AuditEvent/{bg_id}")).await;
    assert_eq!(s, 404);
    let (s, _) = get(&gw, &officer_t, "/AuditEvent/chain-1-2").await;
    assert_eq!(s, 404);
    let (_, b) = get(
        &gw,
        &officer_t,
        &format!("/AuditEvent?agent={:#x}", emergency.address()),
    )
    .await;
    let st = subtypes(&b);
    assert!(
        st.contains("break-glass-open") && st.contains("search-type") && st.contains("login"),
        "{st:?}"
    );
    for e in b["entry"].as_array().unwrap() {
        assert!(
            e["resource"]["agent"]
                .to_string()
                .contains(&format!("{:#x}", emergency.address()))
        );
    }
    let (_, b) = get(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={pa}&purpose=ETREAT"),
    )
    .await;
    assert_eq!(
        b["total"], 2,
        "break-glass opening and the ETREAT search: {b}"
    );
    let (_, b) = get(&gw, &officer_t, "/AuditEvent?outcome=4").await;
    assert!(b["total"].as_i64().unwrap() >= 1);
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["outcome"] == "4")
    );
    let (_, b) = get(&gw, &officer_t, &format!("/AuditEvent?entity=Patient/{oa}")).await;
    assert_eq!(
        b["total"], 1,
        "the refused search about the other patient: {b}"
    );
    let (_, b) = get(
        &gw,
        &officer_t,
        "/AuditEvent?action=C&subtype=consent-grant",
    )
    .await;
    assert_eq!(b["total"], 1);
    let (_, b) = get(&gw, &officer_t, "/AuditEvent?date=lt2000-01-01").await;
    assert_eq!(b["total"], 0);
    let (_, all) = get(&gw, &officer_t, "/AuditEvent?date=ge2000-01-01&_count=0").await;
    let (_, none) = get(&gw, &officer_t, "/AuditEvent?date=gt2999").await;
    assert!(all["total"].as_i64().unwrap() > 10);
    assert_eq!(none["total"], 0);
    let (s, b) = get(&gw, &officer_t, "/AuditEvent?colour=blue").await;
    assert_eq!(
        (s, b["resourceType"].as_str()),
        (400, Some("OperationOutcome"))
    );

    // Paging: small pages, no overlap, nothing lost, both directions.
    let (asc, total) = all_pages(&gw, &officer_t, "/AuditEvent?_count=3").await;
    assert!(total >= 10);
    assert!(asc.len() as i64 >= total);
    let unique: HashSet<_> = asc.iter().collect();
    assert_eq!(unique.len(), asc.len(), "pages overlap");
    let (desc, _) = all_pages(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={pa}&_count=2&_sort=-date"),
    )
    .await;
    let (_, b) = get(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={pa}&_count=100&_sort=-date"),
    )
    .await;
    // The page requests are audited about the patient too: they are newer than the first
    // page, so the pages are exactly the older end of a later full listing.
    assert!(ids(&b).ends_with(&desc), "{desc:?} vs {:?}", ids(&b));
    assert!(desc.len() > 5);
    // A cursor is bound to whoever it was issued to.
    let (_, b) = get(
        &gw,
        &patient_t,
        &format!("/AuditEvent?patient={pa}&_count=1"),
    )
    .await;
    let next = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&gw.base)
        .unwrap()
        .to_owned();
    let (s, _) = get(&gw, &other_t, &next).await;
    assert_eq!(s, 400);

    // Patients and delegates: their own log, break-glass included, nothing else.
    for token in [&patient_t, &guardian_t] {
        let (s, b) = get(&gw, token, &format!("/AuditEvent?patient={pa}&_count=100")).await;
        assert_eq!(s, 200, "{b}");
        assert!(subtypes(&b).contains("break-glass-open"));
        assert_eq!(
            patients(&b),
            HashSet::from([format!("Patient/{pa}")]),
            "{b}"
        );
        let (s, _) = get(&gw, token, &format!("/AuditEvent?patient={oa}")).await;
        assert_eq!(s, 403);
        let (s, _) = get(&gw, token, "/AuditEvent").await;
        assert_eq!(s, 403);
    }
    let (s, _) = get(&gw, &other_t, &format!("/AuditEvent?patient={pa}")).await;
    assert_eq!(s, 403);
    // Members of other organisations are not compliance staff.
    for token in [&doctor_t, &er_t] {
        for path in [
            format!("/AuditEvent?patient={pa}"),
            "/AuditEvent".to_owned(),
            "/AuditEvent/$export".to_owned(),
            "/AuditEvent/$verify".to_owned(),
            "/AuditEvent/$break-glass-queue".to_owned(),
            format!("/Consent?patient={pa}"),
        ] {
            let (s, b) = get(&gw, token, &path).await;
            assert_eq!(s, 403, "{path}: {b}");
            assert_eq!(b["resourceType"], "OperationOutcome");
        }
    }
    let (s, _) = gw
        .http
        .get(gw.url("/AuditEvent"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 401);

    // Reading one event: compliance any, the patient only their own.
    let (_, b) = get(&gw, &officer_t, &format!("/AuditEvent?entity=Patient/{oa}")).await;
    let other_event = ids(&b)[0].clone();
    let (s, _) = get(&gw, &officer_t, &format!("/AuditEvent/{other_event}")).await;
    assert_eq!(s, 200);
    let (s, _) = get(&gw, &patient_t, &format!("/AuditEvent/{other_event}")).await;
    assert_eq!(s, 404);
    let (s, _) = get(&gw, &other_t, &format!("/AuditEvent/{other_event}")).await;
    assert_eq!(s, 200);

    // Consent history with chain proofs, then a revocation.
    let (s, b) = get(&gw, &patient_t, &format!("/Consent?patient={pa}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["total"], 1);
    let c = &b["entry"][0]["resource"];
    assert_eq!(c["status"], "active");
    assert_eq!(
        c["provision"]["actor"][0]["reference"]["reference"],
        format!("Organization/{:#x}", org.address())
    );
    assert_eq!(c["provision"]["purpose"][0]["code"], "TREAT");
    let classes: HashSet<_> = c["provision"]["class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(classes, HashSet::from(["Observation", "Condition"]));
    assert!(
        c["extension"][0]["extension"]
            .to_string()
            .contains("txHash")
    );
    mined(
        consents
            .revoke(patient.address(), org.address())
            .send()
            .await,
    )
    .await;
    eventually(|| async {
        let (_, b) = get(&gw, &guardian_t, &format!("/Consent?patient={pa}")).await;
        b["entry"][0]["resource"]["status"] == "inactive"
    })
    .await;
    let (_, b) = get(&gw, &officer_t, &format!("/Consent?patient={pa}")).await;
    assert!(
        b["entry"][0]["resource"]["extension"][0]["extension"]
            .to_string()
            .contains("revoked")
    );
    let (s, _) = get(&gw, &other_t, &format!("/Consent?patient={pa}")).await;
    assert_eq!(s, 403);
    // Only the search is the chain's: other methods still reach the record store.
    let (s, b) = post(
        &gw,
        &patient_t,
        "/Consent",
        &json!({"resourceType": "Patient"}),
    )
    .await;
    assert_eq!(s, 400, "the records' type check answered: {b}");
    assert!(b.to_string().contains("resourceType"), "{b}");
    let r = gw
        .http
        .delete(gw.url("/Consent"))
        .bearer_auth(&patient_t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["resourceType"], "OperationOutcome");
    eventually(|| async {
        let (_, b) = get(
            &gw,
            &patient_t,
            &format!("/AuditEvent?patient={pa}&subtype=consent-revoke"),
        )
        .await;
        b["total"] == 1
    })
    .await;

    // Break-glass review queue.
    let (s, q) = get(&gw, &officer_t, "/AuditEvent/$break-glass-queue").await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["total"], 1);
    let session = param(&q["entry"][0]["resource"], "session")
        .as_str()
        .unwrap()
        .to_owned();
    let review = |outcome: &str| {
        json!({"resourceType": "Parameters", "parameter": [
        {"name": "session", "valueString": session}, {"name": "outcome", "valueCode": outcome}]})
    };
    let (s, _) = post(
        &gw,
        &doctor_t,
        "/AuditEvent/$break-glass-review",
        &review("justified"),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = post(
        &gw,
        &officer_t,
        "/AuditEvent/$break-glass-review",
        &review("fine"),
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = post(
        &gw,
        &officer_t,
        "/AuditEvent/$break-glass-review",
        &review("justified"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = post(
        &gw,
        &officer_t,
        "/AuditEvent/$break-glass-review",
        &review("unjustified"),
    )
    .await;
    assert_eq!(s, 409);
    let (_, q) = get(&gw, &officer_t, "/AuditEvent/$break-glass-queue").await;
    assert_eq!(q["total"], 0);
    // The review is audited, and the patient sees it in their own log.
    let (_, b) = get(
        &gw,
        &patient_t,
        &format!("/AuditEvent?patient={pa}&subtype=break-glass-review"),
    )
    .await;
    assert_eq!(b["total"], 2, "the refused and the accepted review: {b}");

    // A suspended member key shows up as an AuditEvent, and a suspended compliance key loses
    // access at once.
    mined(
        chain
            .providers()
            .suspendMember(officer.address())
            .send()
            .await,
    )
    .await;
    eventually(|| async { get(&gw, &officer_t, "/AuditEvent?_count=1").await.0 == 403 }).await;
    let (_, b) = get(
        &gw,
        &patient_t,
        &format!("/AuditEvent?patient={pa}&_count=100"),
    )
    .await;
    assert!(
        !subtypes(&b).contains("member-status"),
        "not about the patient"
    );
    mined(
        chain
            .providers()
            .reinstateMember(officer.address())
            .send()
            .await,
    )
    .await;
    eventually(|| async {
        let (s, b) = get(
            &gw,
            &officer_t,
            &format!(
                "/AuditEvent?subtype=member-status&agent={:#x}",
                officer.address()
            ),
        )
        .await;
        s == 200 && b["total"] == 2
    })
    .await;
    gw.stop().await;
}
