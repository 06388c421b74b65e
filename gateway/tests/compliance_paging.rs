//! Paging of the compliance lists (a patient's consent history, the break-glass review queue,
//! AuditEvent search with and without its total) and the export's date and patient
//! selections.

#![allow(clippy::unwrap_used)]

mod common;
mod compliance_support;

use alloy::primitives::{Address, B256, aliases::U40};
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_gateway::audit::AuditRecord;
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{TestChain, TestGateway, TestIndexer, fresh_database};
use compliance_support::*;
use serde_json::{Value, json};
use std::collections::HashSet;

/// A written audit row: sequence, recorded time, patient.
type Written = (u64, DateTime<Utc>, String);

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn next_path(gw: &TestGateway, bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(|url| url.strip_prefix(&gw.base).unwrap().to_owned())
}

/// Every page from `first` on: the pages' resources and the first page's bundle.
async fn pages(gw: &TestGateway, token: &str, first: &str) -> (Vec<Vec<Value>>, Value) {
    let (status, first_page) = get(gw, token, first).await;
    assert_eq!(status, 200, "{first_page}");
    let mut out = vec![entries(&first_page)];
    let mut page = first_page.clone();
    while let Some(next) = next_path(gw, &page) {
        let (status, body) = get(gw, token, &next).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["total"], first_page["total"],
            "the total is the first page's"
        );
        out.push(entries(&body));
        page = body;
    }
    (out, first_page)
}

fn ids(resources: &[Value]) -> Vec<String> {
    resources
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_history_and_break_glass_queue_are_paged() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let (_, officer) = compliance_member(&chain).await;
    let patient = chain.wallet().await;
    let other = chain.wallet().await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(chain.organisation_with_member().await.1);
    }
    let gw = TestGateway::start(&chain, &db).await;
    let pa = format!("{:#x}", patient.address());

    // Five grants to five grantees and one revocation; three break-glass sessions.
    let consents = chain.consents_as(&patient);
    let grantees: Vec<Address> = (1u8..=5).map(Address::repeat_byte).collect();
    for (i, grantee) in grantees.iter().enumerate() {
        mined(
            consents
                .grant(
                    patient.address(),
                    *grantee,
                    ResourceType::Observation.bit(),
                    Action::Read.bit(),
                    Purpose::Treat.bit(),
                    U40::ZERO,
                    U40::from(4_000_000_000u64),
                    B256::repeat_byte(i as u8 + 1),
                )
                .send()
                .await,
        )
        .await;
    }
    mined(consents.revoke(patient.address(), grantees[0]).send().await).await;
    for member in &members {
        mined(
            chain
                .consents_as(member)
                .openBreakGlass(patient.address(), 1, 600)
                .send()
                .await,
        )
        .await;
    }
    let officer_t = gw.sign_in(&officer).await;
    let patient_t = gw.sign_in(&patient).await;
    let other_t = gw.sign_in(&other).await;
    gw.wait_indexed(chain.head().await).await;

    // The consent history in pages of two, newest first: the same five as one page of 100.
    let (all, first) = pages(
        &gw,
        &patient_t,
        &format!("/Consent?patient={pa}&_count=100"),
    )
    .await;
    assert_eq!(all.len(), 1);
    assert_eq!(first["total"], 5);
    let whole = ids(&all[0]);
    assert_eq!(whole.len(), 5);
    let (paged, first) = pages(&gw, &patient_t, &format!("/Consent?patient={pa}&_count=2")).await;
    assert_eq!(first["total"], 5);
    assert_eq!(
        paged.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(ids(&paged.concat()), whole);
    let grantee_of = |c: &Value| {
        c["provision"]["actor"][0]["reference"]["reference"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Newest first: the last grant leads, the first (revoked since) comes last.
    assert!(grantee_of(&paged[0][0]).ends_with(&format!("{:#x}", grantees[4])));
    assert!(grantee_of(&paged[2][0]).ends_with(&format!("{:#x}", grantees[0])));
    assert_eq!(paged[2][0]["status"], "inactive");
    // A cursor serves the requester it was issued to, alone.
    let (_, page) = get(&gw, &officer_t, &format!("/Consent?patient={pa}&_count=2")).await;
    let next = next_path(&gw, &page).unwrap();
    let (s, _) = get(&gw, &other_t, &next).await;
    assert_eq!(s, 400, "another requester's cursor");
    let (s, _) = get(&gw, &officer_t, &format!("{next}&patient={pa}")).await;
    assert_eq!(s, 400, "a cursor is used alone");
    let (s, b) = get(&gw, &officer_t, &next).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(entries(&b).len(), 2);

    // The review queue in pages of two, oldest session first, every session once.
    let (paged, first) = pages(&gw, &officer_t, "/AuditEvent/$break-glass-queue?_count=2").await;
    assert_eq!(first["total"], 3);
    assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
    let sessions: Vec<u64> = paged
        .concat()
        .iter()
        .map(|r| param(r, "session").as_str().unwrap().parse().unwrap())
        .collect();
    let mut sorted = sessions.clone();
    sorted.sort_unstable();
    assert_eq!(sessions, sorted);
    assert_eq!(sessions.iter().collect::<HashSet<_>>().len(), 3);
    let (s, _) = get(
        &gw,
        &officer_t,
        "/AuditEvent/$break-glass-queue?status=open",
    )
    .await;
    assert_eq!(s, 400);
    // A consent cursor does not page the queue.
    let (_, page) = get(&gw, &officer_t, &format!("/Consent?patient={pa}&_count=2")).await;
    let token = next_path(&gw, &page).unwrap();
    let token = token.split("_cursor=").nth(1).unwrap();
    let (s, _) = get(
        &gw,
        &officer_t,
        &format!("/AuditEvent/$break-glass-queue?_cursor={token}"),
    )
    .await;
    assert_eq!(s, 400);
    // A reviewed session leaves the queue.
    let review = json!({"resourceType": "Parameters", "parameter": [
        {"name": "session", "valueString": sessions[0].to_string()},
        {"name": "outcome", "valueCode": "justified"}]});
    let (s, b) = post(&gw, &officer_t, "/AuditEvent/$break-glass-review", &review).await;
    assert_eq!(s, 200, "{b}");
    let (paged, first) = pages(&gw, &officer_t, "/AuditEvent/$break-glass-queue?_count=1").await;
    assert_eq!(first["total"], 2);
    let left: Vec<u64> = paged
        .concat()
        .iter()
        .map(|r| param(r, "session").as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(left, sessions[1..].to_vec());
    gw.stop().await;
}

/// Three days of rows about two patients, written day 3 first, then day 1, then day 2, so
/// that sequence order and time order differ.
async fn write_days(gw: &TestGateway, a: &str, b: &str) -> Vec<Written> {
    let day = |d: i64| Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap() + Duration::days(d);
    let mut written = Vec::new();
    for d in [2, 0, 1] {
        for i in 0..10 {
            let patient = if i % 3 == 0 { b } else { a };
            let recorded = day(d) + Duration::minutes(10 * i);
            let seq = gw
                .state
                .audit()
                .append(AuditRecord {
                    subtype: "read".into(),
                    action: 'R',
                    status: 200,
                    method: "GET".into(),
                    agent: Some("0x00000000000000000000000000000000000000cc".into()),
                    patient: Some(patient.to_owned()),
                    entity: Some(format!("Observation/{d}-{i}")),
                    recorded,
                    ..Default::default()
                })
                .await
                .unwrap();
            written.push((seq, recorded, patient.to_owned()));
        }
    }
    written
}

/// The ids of an export's lines.
async fn export(gw: &TestGateway, token: &str, query: &str) -> (u16, Vec<u64>) {
    let response = gw
        .http
        .get(gw.url(&format!("/AuditEvent/$export{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    if status != 200 {
        return (status, Vec::new());
    }
    let ids = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    (status, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_without_total_and_export_by_date_and_patient() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let (_, officer) = compliance_member(&chain).await;
    let gw = TestGateway::start(&chain, &db).await;
    let officer_t = gw.sign_in(&officer).await;
    // Compliance membership is read from the index.
    gw.wait_indexed(chain.head().await).await;
    let a = format!("{:#x}", Address::repeat_byte(0xa1));
    let b = format!("{:#x}", Address::repeat_byte(0xb2));
    let written = write_days(&gw, &a, &b).await;
    let of = |keep: &dyn Fn(&Written) -> bool| {
        let mut rows: Vec<&Written> = written.iter().filter(|r| keep(r)).collect();
        rows.sort_by_key(|r| (r.1, r.0));
        rows.iter().map(|r| r.0).collect::<Vec<u64>>()
    };
    let about_a = of(&|r| r.2 == a);
    assert_eq!(about_a.len(), 18);

    // A patient's log in pages of 4, oldest first and newest first, with and without a total.
    // (Each request is itself audited about the patient, today: the generated days are
    // selected, so that the requests' own rows stay out.)
    let (paged, first) = pages(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={a}&date=lt2026-02&_sort=date&_count=4"),
    )
    .await;
    assert_eq!(first["total"], 18);
    let asc: Vec<u64> = ids(&paged.concat())
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(asc, about_a);
    let (paged, first) = pages(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={a}&date=lt2026-02&_sort=-date&_count=4&_total=none"),
    )
    .await;
    assert!(first.get("total").is_none(), "{first}");
    let desc: Vec<u64> = ids(&paged.concat())
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(desc, about_a.iter().rev().copied().collect::<Vec<_>>());
    let (s, _) = get(
        &gw,
        &officer_t,
        &format!("/AuditEvent?patient={a}&_total=some"),
    )
    .await;
    assert_eq!(s, 400);
    // By agent and day, and by entity.
    let (_, bundle) = get(
        &gw,
        &officer_t,
        "/AuditEvent?agent=0x00000000000000000000000000000000000000cc&date=2026-01-11&_count=100",
    )
    .await;
    assert_eq!(bundle["total"], 10, "{bundle}");
    let (_, bundle) = get(&gw, &officer_t, "/AuditEvent?entity=Observation/1-3").await;
    assert_eq!(bundle["total"], 1, "{bundle}");
    let read: u64 = bundle["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (s, event) = get(&gw, &officer_t, &format!("/AuditEvent/{read}")).await;
    assert_eq!(s, 200);
    assert_eq!(event["id"], read.to_string());
    let (s, _) = get(&gw, &officer_t, &format!("/AuditEvent/0{read}")).await;
    assert_eq!(s, 404, "ids are canonical sequence numbers");

    // Export by date: the rows of the second day, in time order.
    let day2 = Utc.with_ymd_and_hms(2026, 1, 11, 0, 0, 0).unwrap();
    let day3 = day2 + Duration::days(1);
    let (s, got) = export(&gw, &officer_t, "?_since=2026-01-11&_until=2026-01-12").await;
    assert_eq!(s, 200);
    assert_eq!(got, of(&|r| r.1 >= day2 && r.1 < day3));
    // From an instant on (to the end of the generated days: the sign-in and the requests of
    // this test are recorded today).
    let (_, got) = export(
        &gw,
        &officer_t,
        "?_since=2026-01-11T01:00:00Z&_until=2026-02",
    )
    .await;
    let since = day2 + Duration::hours(1);
    assert_eq!(got, of(&|r| r.1 >= since));
    // By patient, with and without dates and sequence numbers (the requests' own rows about
    // the patient, today, left out by the date).
    let (_, got) = export(&gw, &officer_t, &format!("?patient={a}&_until=2026-02")).await;
    assert_eq!(got, about_a);
    let (_, got) = export(
        &gw,
        &officer_t,
        &format!("?patient=Patient/{b}&_until=2026-01-11"),
    )
    .await;
    assert_eq!(got, of(&|r| r.2 == b && r.1 < day2));
    let (from, to) = (written[5].0, written[24].0);
    let (_, got) = export(
        &gw,
        &officer_t,
        &format!("?patient={a}&from={from}&to={to}"),
    )
    .await;
    assert_eq!(got, of(&|r| r.2 == a && (from..=to).contains(&r.0)));
    // A sequence range alone stays in sequence order.
    let (_, got) = export(&gw, &officer_t, &format!("?from={from}&to={to}")).await;
    assert_eq!(got, (from..=to).collect::<Vec<_>>());
    for bad in ["?_since=yesterday", "?patient=nobody", "?_until=2026-13-01"] {
        let (s, _) = export(&gw, &officer_t, bad).await;
        assert_eq!(s, 400, "{bad}");
    }
    gw.stop().await;
}
