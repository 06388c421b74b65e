//! `bench/audit`: audit log figures on loopback against a real anvil, indexer and PostgreSQL.
//!
//! - `audit.write_per_s`: audited requests per second the gateway sustains (`GET /metadata`,
//!   32 connections; every request commits one hash-chained row before its response), with
//!   the audit writer alone (appends without HTTP) as the baseline;
//! - `audit.verify_rows_per_s`: full verification (hash chain and every anchored root read
//!   from the chain), with a plain read of the same rows as the baseline;
//! - `audit.export_rows_per_s`, `audit.export_peak_rss_mb`: NDJSON export of the whole log over
//!   HTTP; peak RSS of the process (gateway and client) during the export, after resetting the
//!   high-water mark, against the RSS before it.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/compliance_support/mod.rs"]
mod compliance_support;

use carechain_gateway::{audit::AuditRecord, audit::verify::verify_audit_log};
use common::{TestChain, TestIndexer, fresh_database};
use compliance_support::*;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);
const LOG_ROWS: i64 = 100_000;

fn figure(name: &str, value: f64, unit: &str) {
    println!("FIGURE {name} {value:.2} {unit}");
}

fn status_kb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn record() -> AuditRecord {
    AuditRecord {
        subtype: "read".into(),
        action: 'R',
        status: 200,
        agent: Some("0x00000000000000000000000000000000000000bb".into()),
        patient: Some("0x00000000000000000000000000000000000000aa".into()),
        entity: Some("Observation/0123456789abcdef0123456789abcdef".into()),
        purpose: Some("TREAT".into()),
        consent_block: Some(42),
        basis: Some("MemberConsent".into()),
        method: "GET".into(),
        recorded: chrono::Utc::now(),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let key = registered_anchor_key(&chain).await;
    let (_, officer) = compliance_member(&chain).await;
    let gw = anchoring_gateway(&chain, &db, &key, 1000).await;
    let token = gw.sign_in(&officer).await;

    // Audited requests per second over HTTP.
    let url = gw.url("/metadata");
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let http = gw.http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut requests = 0;
    for t in tasks {
        requests += t.await.unwrap();
    }
    let http_rate = requests as f64 / RUN.as_secs_f64();

    // The writer alone: 64 concurrent appends, no HTTP.
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let audit = gw.state.audit().clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                audit.append(record()).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut appended = 0;
    for t in tasks {
        appended += t.await.unwrap();
    }
    let direct_rate = appended as f64 / RUN.as_secs_f64();
    figure("audit.write_per_s", http_rate, "requests/s");
    figure("audit.write_direct_per_s", direct_rate, "rows/s");
    figure("audit.write_ratio", http_rate / direct_rate, "ratio");

    // Grow the log to 100,000 properly chained rows through the writer, and let the anchorer
    // catch up (batches of 1000).
    let mut rows: i64 = sqlx::query_scalar("SELECT max(seq) FROM gateway_audit_log")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    while rows < LOG_ROWS {
        let n = (LOG_ROWS - rows).min(4096);
        let mut joins = Vec::new();
        for _ in 0..n {
            let audit = gw.state.audit().clone();
            joins.push(tokio::spawn(async move {
                audit.append(record()).await.unwrap()
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
        rows += n;
    }
    let last: i64 = sqlx::query_scalar("SELECT max(seq) FROM gateway_audit_log")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    let anchored_target = last / 1000 * 1000;
    let waited = Instant::now();
    while anchored_to(&gw.pool).await < anchored_target
        && waited.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Verification against the chain, and a plain read of the same rows as the baseline.
    let anchors = reader(&chain);
    let start = Instant::now();
    let report = verify_audit_log(&gw.pool, &anchors).await.unwrap();
    let verify_secs = start.elapsed().as_secs_f64();
    assert!(report.ok(), "{report:?}");
    let start = Instant::now();
    let mut read = 0usize;
    let mut after = 0i64;
    loop {
        let page: Vec<(i64, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, event::text, prev_hash, hash FROM gateway_audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&gw.pool)
        .await
        .unwrap();
        let Some(l) = page.last() else { break };
        after = l.0;
        read += page.len();
    }
    let read_secs = start.elapsed().as_secs_f64();
    let verify_rate = report.rows as f64 / verify_secs;
    figure("audit.verify_rows_per_s", verify_rate, "rows/s");
    figure(
        "audit.verify_read_baseline_rows_per_s",
        read as f64 / read_secs,
        "rows/s",
    );
    figure(
        "audit.verify_ratio",
        verify_rate / (read as f64 / read_secs),
        "ratio",
    );
    figure("audit.verify_rows", report.rows as f64, "rows");
    figure(
        "audit.verify_batches",
        report.batches_checked as f64,
        "batches",
    );

    // Export of the whole log over HTTP, peak RSS reset just before.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_kb("VmRSS:") / 1024.0;
    let start = Instant::now();
    let mut response = gw
        .http
        .get(gw.url(&format!("/AuditEvent/$export?to={last}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let export_secs = start.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:") / 1024.0;
    assert!(lines >= last as u64);
    figure(
        "audit.export_rows_per_s",
        lines as f64 / export_secs,
        "rows/s",
    );
    figure("audit.export_rows", lines as f64, "rows");
    figure("audit.export_mb", bytes as f64 / 1_048_576.0, "MB");
    figure("audit.export_peak_rss_mb", peak, "MB");
    figure("audit.export_rss_before_mb", rss_before, "MB");
    figure("audit.export_peak_rss_ratio", peak / rss_before, "ratio");
    gw.stop().await;
}
