//! NDJSON export of a large range of the audit log: streamed page by page, compliance only.

#![allow(clippy::unwrap_used)]

mod common;
mod compliance_support;

use carechain_gateway::audit::verify::{ProblemKind, verify_audit_log};
use common::{TestChain, TestGateway, TestIndexer, fresh_database};
use compliance_support::*;

const ROWS: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_a_large_range_to_compliance_only() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let (_, officer) = compliance_member(&chain).await;
    let (_, practitioner) = chain.organisation_with_member().await;
    let patient = chain.wallet().await;
    let gw = TestGateway::start(&chain, &db).await;
    let officer_t = gw.sign_in(&officer).await;
    let doctor_t = gw.sign_in(&practitioner).await;
    let patient_t = gw.sign_in(&patient).await;

    // A few hundred properly chained rows through the gateway's own writer: verification
    // hashes them page by page on every core and finds nothing.
    for _ in 0..300 {
        gw.state
            .audit()
            .append(carechain_gateway::audit::AuditRecord {
                subtype: "read".into(),
                action: 'R',
                status: 200,
                method: "GET".into(),
                patient: Some("0x00000000000000000000000000000000000000aa".into()),
                recorded: chrono::Utc::now(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let anchors = reader(&chain);
    let report = verify_audit_log(&gw.pool, &anchors, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    let base = report.last_seq;
    assert!(base > 300);
    // A row changed in the middle of a page is named, not just "somewhere in the page".
    let mut tx = gw.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE gateway_audit_log SET http_status = 500, event = jsonb_set(event, '{outcome}', '\"8\"') WHERE seq = 200")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let problem = verify_audit_log(&gw.pool, &anchors, None)
        .await
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((problem.seq, problem.kind), (200, ProblemKind::Tampered));
    let mut tx = gw.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE gateway_audit_log SET http_status = 200, event = jsonb_set(event, '{outcome}', '\"0\"') WHERE seq = 200")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        verify_audit_log(&gw.pool, &anchors, None)
            .await
            .unwrap()
            .ok()
    );

    // 100,000 more rows, appended after the ones the requests above wrote (no request is in
    // flight). Export does not check the chain, so the hashes are only unique placeholders.
    sqlx::query(
        "INSERT INTO gateway_audit_log
           (seq, recorded, subtype, outcome, http_status, patient, purpose, event, prev_hash, hash)
         SELECT b + s, now(), 'read', '0', 200, '0x00000000000000000000000000000000000000aa',
                'TREAT',
                jsonb_build_object('resourceType', 'AuditEvent', 'id', (b + s)::text,
                                   'action', 'R', 'outcome', '0'),
                sha256(int8send(b + s - 1)), sha256(int8send(b + s))
         FROM (SELECT max(seq) AS b FROM gateway_audit_log) m, generate_series(1, $1) s",
    )
    .bind(ROWS)
    .execute(&gw.pool)
    .await
    .unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(seq) FROM gateway_audit_log")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    assert!(last > ROWS);
    // Their placeholder hashes do not chain: the first of them is reported.
    let problem = verify_audit_log(&gw.pool, &anchors, None)
        .await
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (base + 1, ProblemKind::BrokenLink)
    );

    // Everyone else is refused.
    for token in [&doctor_t, &patient_t] {
        let (s, b) = get(&gw, token, "/AuditEvent/$export").await;
        assert_eq!(s, 403, "{b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    let (s, _) = get(&gw, &officer_t, "/AuditEvent/$export?since=yesterday").await;
    assert_eq!(s, 400);

    // The whole log, read chunk by chunk as it streams.
    let mut response = gw
        .http
        .get(gw.url(&format!("/AuditEvent/$export?to={last}")))
        .bearer_auth(&officer_t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/fhir+ndjson"
    );
    assert!(
        response.headers().get("content-length").is_none(),
        "not buffered"
    );
    let (mut chunks, mut lines, mut pending) = (0usize, 0i64, Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks += 1;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: serde_json::Value = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
            lines += 1;
            assert_eq!(event["resourceType"], "AuditEvent");
            assert_eq!(event["id"], lines.to_string(), "in order, none missing");
        }
    }
    assert!(pending.is_empty());
    assert_eq!(lines, last);
    assert!(
        chunks > 10,
        "streamed in pages, not one body ({chunks} chunks)"
    );

    // A sub-range.
    let text = gw
        .http
        .get(gw.url("/AuditEvent/$export?from=500&to=1499"))
        .bearer_auth(&officer_t)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!((ids[0].as_str(), ids[999].as_str()), ("500", "1499"));

    // Each export is itself audited.
    let exports: i64 =
        sqlx::query_scalar("SELECT count(*) FROM gateway_audit_log WHERE subtype = 'export'")
            .fetch_one(&gw.pool)
            .await
            .unwrap();
    assert_eq!(exports, 5);
    gw.stop().await;
}
