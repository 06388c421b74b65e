//! `bench/audit`: audit log figures on loopback against a real anvil, indexer and PostgreSQL.
//!
//! - `audit.write_per_s`: audited requests per second the gateway sustains (`GET /metadata`,
//!   32 connections; every request commits one hash-chained row before its response), with
//!   the audit writer alone (appends without HTTP) as the baseline;
//! - `audit.verify_rows_per_s`: full verification (hash chain and every anchored root read
//!   from the chain), with a plain read of the same rows as the baseline;
//! - `audit.export_rows_per_s`, `audit.export_peak_rss_mb`: NDJSON export of the whole log over
//!   HTTP; peak RSS of the process (gateway and client) during the export, after resetting the
//!   high-water mark, against the RSS before it;
//! - at scale, on logs of 100,000 and of `AUDIT_BENCH_SCALE_ROWS` (10,000,000) generated
//!   chained rows (compact events, COPY, anchored on chain in batches of 100,000), each on its
//!   own chain and database: `audit.search.p99_ms.<size>` of a patient's access log and of a
//!   compliance search by agent and month over HTTP (and of the same searches' queries alone),
//!   `audit.search.ratio_10m_vs_100k`, and `audit.verify_rows_per_s.<size>`.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/compliance_support/mod.rs"]
mod compliance_support;

use alloy::primitives::B256;
use carechain_contracts::{AuditAnchor, merkle::MerkleTree};
use carechain_formats::{audit_chain::link, canonical::canonicalize};
use carechain_gateway::{
    audit::{AuditRecord, verify::verify_audit_log},
    compliance::events::{AuditQuery, search},
};
use chrono::{DateTime, TimeZone, Utc};
use common::{TestChain, TestGateway, TestIndexer, fresh_database, wallet_provider};
use compliance_support::*;
use sqlx::{Connection, PgConnection};
use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

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
    // AUDIT_BENCH_PARTS=scale measures the search and verification at scale only.
    let parts = std::env::var("AUDIT_BENCH_PARTS").unwrap_or_else(|_| "all".into());
    if parts != "scale" {
        log_figures().await;
    }
    scale_figures().await;
}

/// Write, verification and export figures on a log written through the gateway.
async fn log_figures() {
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
    let report = verify_audit_log(&gw.pool, &anchors, None).await.unwrap();
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

/// Search and verification at 100,000 rows and at scale.
async fn scale_figures() {
    let large: u64 = std::env::var("AUDIT_BENCH_SCALE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let small = at_scale(100_000, "100k").await;
    let label = if large == 10_000_000 {
        "10m".to_owned()
    } else {
        format!("{large}")
    };
    let big = at_scale(large, &label).await;
    let http_ratio = (big.patient_p99 / small.patient_p99).max(big.agent_p99 / small.agent_p99);
    let query_ratio = (big.patient_query_p99 / small.patient_query_p99)
        .max(big.agent_query_p99 / small.agent_query_p99);
    figure(
        &format!("audit.search.ratio_{label}_vs_100k"),
        http_ratio,
        "ratio",
    );
    figure(
        &format!("audit.search.query_ratio_{label}_vs_100k"),
        query_ratio,
        "ratio",
    );
}

/// Rows per anchored batch of the generated logs.
const SCALE_BATCH: u64 = 100_000;
/// Searches of each kind measured per size.
const SEARCHES: usize = 200;
/// Rows per patient and per agent: the same at every size, so that the same searches find as
/// many rows at 100,000 rows as at 10,000,000.
const ROWS_PER_PATIENT: u64 = 100;
const ROWS_PER_AGENT: u64 = 10_000;

/// p99 latencies (ms) at one size.
struct ScaleFigures {
    patient_p99: f64,
    agent_p99: f64,
    patient_query_p99: f64,
    agent_query_p99: f64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn patient_address(p: u64) -> String {
    format!("0x{:040x}", (1u128 << 100) + u128::from(p))
}

fn agent_address(a: u64) -> String {
    format!("0x{:040x}", (2u128 << 100) + u128::from(a))
}

/// The first instant of the generated year; row `i` of `n` is recorded at
/// `YEAR_START + i * year / n` (a log grows in time with its sequence numbers).
fn year_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap()
}

/// Generated row `i` of `n` (0-based) with sequence number `seq`: its columns and its event in
/// canonical (RFC 8785) form, keys in order, as the hash chain needs it. About 560 bytes: the
/// BALP fields a search or a reviewer reads (subtype, action, outcome, the requesting agent and
/// purpose, the patient and the resource), not the full 2.5 kB event the gateway writes.
struct GeneratedRow {
    recorded: DateTime<Utc>,
    subtype: &'static str,
    outcome: &'static str,
    status: i32,
    agent: String,
    patient: String,
    purpose: &'static str,
    event: String,
}

fn generated_row(i: u64, n: u64, seq: u64) -> GeneratedRow {
    let r = splitmix(i);
    let patients = (n / ROWS_PER_PATIENT).max(1);
    let agents = (n / ROWS_PER_AGENT).max(1);
    let patient = patient_address(r % patients);
    let agent = agent_address(splitmix(r) % agents);
    let year_us = 365 * 24 * 3600 * 1_000_000i64;
    let offset = i128::from(year_us) * i128::from(i) / i128::from(n);
    let recorded = year_start() + chrono::Duration::microseconds(offset as i64);
    let (subtype, action) = match (r >> 20) % 20 {
        0..=15 => ("read", "R"),
        16..=18 => ("search-type", "E"),
        _ => ("update", "U"),
    };
    let (outcome, status) = match (r >> 30) % 100 {
        0..=94 => ("0", 200),
        95..=98 => ("4", 403),
        _ => ("8", 500),
    };
    let purpose = if (r >> 40).is_multiple_of(10) {
        "HPAYMT"
    } else {
        "TREAT"
    };
    let stamp = recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let resource = format!("Observation/{:016x}", splitmix(r ^ 0x5eed));
    let event = format!(
        concat!(
            r#"{{"action":"{action}","agent":[{{"purposeOfUse":[{{"coding":[{{"code":"{purpose}","#,
            r#""system":"http://terminology.hl7.org/CodeSystem/v3-ActReason"}}]}}],"requestor":true,"#,
            r#""who":{{"identifier":{{"system":"urn:carechain:wallet","value":"{agent}"}}}}}}],"#,
            r#""entity":[{{"what":{{"reference":"Patient/{patient}"}}}},{{"what":{{"reference":"{resource}"}}}}],"#,
            r#""id":"{seq}","outcome":"{outcome}","recorded":"{stamp}","resourceType":"AuditEvent","#,
            r#""subtype":[{{"code":"{subtype}","system":"http://hl7.org/fhir/restful-interaction"}}]}}"#
        ),
        action = action,
        purpose = purpose,
        agent = agent,
        patient = patient,
        resource = resource,
        seq = seq,
        outcome = outcome,
        stamp = stamp,
        subtype = subtype,
    );
    GeneratedRow {
        recorded,
        subtype,
        outcome,
        status,
        agent,
        patient,
        purpose,
        event,
    }
}

fn hex_bytea(out: &mut String, bytes: &[u8]) {
    out.push_str("\\\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// Appends `n` generated rows after the log's last row (chained from it), loaded with COPY
/// with the log's secondary indexes dropped and built again afterwards (as a restore would),
/// then vacuumed and analysed. Returns the anchored-batch ranges `(from, to, root)` covering
/// the whole log, in batches of [`SCALE_BATCH`] sequence numbers.
async fn generate_log(url: &str, n: u64) -> Vec<(u64, u64, B256)> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let existing: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM gateway_audit_log ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut batch: Vec<B256> = existing.iter().map(|(_, h)| B256::from_slice(h)).collect();
    let (mut seq, mut prev) = existing
        .last()
        .map(|(s, h)| (*s as u64, B256::from_slice(h)))
        .unwrap_or((0, B256::ZERO));
    let mut batch_from = 1u64;
    let mut batches = Vec::new();
    // The log's secondary indexes and unique constraints, dropped for the load.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname::text, i.indexdef FROM pg_indexes i
         WHERE i.tablename = 'gateway_audit_log' AND NOT EXISTS (
           SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let uniques: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = 'gateway_audit_log'::regclass AND contype = 'u'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for (name, _) in &indexes {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for (name, _) in &uniques {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE gateway_audit_log DROP CONSTRAINT {name}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // The first event checks the template against the canonicaliser the verifier uses.
    let sample = generated_row(0, n, 1).event;
    let parsed: serde_json::Value = serde_json::from_str(&sample).unwrap();
    assert_eq!(
        canonicalize(&parsed),
        sample,
        "the template is canonical JSON"
    );

    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(2);
    let url_owned = url.to_owned();
    let loader = tokio::spawn(async move {
        let mut conn = PgConnection::connect(&url_owned).await.unwrap();
        while let Some(chunk) = rx.recv().await {
            let mut copy = conn
                .copy_in_raw(
                    "COPY gateway_audit_log (seq, recorded, subtype, outcome, http_status, agent, \
                     patient, purpose, event, prev_hash, hash) FROM STDIN",
                )
                .await
                .unwrap();
            copy.send(chunk.as_bytes()).await.unwrap();
            copy.finish().await.unwrap();
        }
    });
    let chunk_rows = 50_000u64;
    let mut i = 0u64;
    while i < n {
        let end = (i + chunk_rows).min(n);
        let (chunk, last, hashes) = tokio::task::block_in_place(|| {
            let mut out = String::with_capacity((end - i) as usize * 900);
            let mut hashes = Vec::with_capacity((end - i) as usize);
            let mut prev = prev;
            for j in i..end {
                let s = seq + 1 + (j - i);
                let row = generated_row(j, n, s);
                let hash = link(prev, s, &row.event);
                let _ = write!(
                    out,
                    "{s}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t",
                    row.recorded
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    row.subtype,
                    row.outcome,
                    row.status,
                    row.agent,
                    row.patient,
                    row.purpose,
                    row.event
                );
                hex_bytea(&mut out, prev.as_slice());
                out.push('\t');
                hex_bytea(&mut out, hash.as_slice());
                out.push('\n');
                hashes.push(hash);
                prev = hash;
            }
            (out, prev, hashes)
        });
        for hash in hashes {
            seq += 1;
            batch.push(hash);
            if seq % SCALE_BATCH == 0 {
                let root = MerkleTree::new(&batch).unwrap().root();
                batches.push((batch_from, seq, root));
                batch.clear();
                batch_from = seq + 1;
            }
        }
        prev = last;
        tx.send(chunk).await.unwrap();
        i = end;
    }
    drop(tx);
    loader.await.unwrap();
    if !batch.is_empty() {
        batches.push((batch_from, seq, MerkleTree::new(&batch).unwrap().root()));
    }
    let loaded = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
        .execute(&mut conn)
        .await
        .unwrap();
    for (name, definition) in &uniques {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE gateway_audit_log ADD CONSTRAINT {name} {definition}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    for (_, definition) in &indexes {
        sqlx::raw_sql(sqlx::AssertSqlSafe(definition.clone()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let indexed = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE) gateway_audit_log")
        .execute(&mut conn)
        .await
        .unwrap();
    let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('gateway_audit_log')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    eprintln!(
        "generated {n} chained rows: loaded in {loaded:.0} s, indexes built in {indexed:.0} s, \
         vacuumed in {:.0} s; the log and its indexes take {:.1} GB",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e9
    );
    // Every patient consented once on chain: the access log merges one chain event each
    // (blocks far above the test chain's head, with their block times).
    let patients = (n / ROWS_PER_PATIENT).max(1) as i64;
    sqlx::query(
        "INSERT INTO ev_consent_granted (chain_id, block_number, log_index, tx_hash, patient,
           grantee, actor, resource_types, actions, purposes, valid_from, valid_until, consent_hash)
         SELECT c.chain_id, 1000000000 + p, 0, sha256(int8send(p)),
                decode(lpad('1' || lpad(to_hex(p), 25, '0'), 40, '0'), 'hex'),
                decode('00000000000000000000000000000000000000ee', 'hex'),
                decode(lpad('1' || lpad(to_hex(p), 25, '0'), 40, '0'), 'hex'),
                2, 3, 1, 0, 4000000000, sha256(int8send(-p))
         FROM indexer_cursor c, generate_series(0, $1 - 1) p",
    )
    .bind(patients)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO gateway_block_times (chain_id, block_number, block_time)
         SELECT c.chain_id, 1000000000 + p, $2 + (p * interval '1 second')
         FROM indexer_cursor c, generate_series(0, $1 - 1) p",
    )
    .bind(patients)
    .bind(year_start())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql("ANALYZE ev_consent_granted; ANALYZE gateway_block_times")
        .execute(&mut conn)
        .await
        .unwrap();
    batches
}

fn p99(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((0.99 * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// One log of `n` generated rows on a chain of its own: search latencies and verification.
async fn at_scale(n: u64, label: &str) -> ScaleFigures {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let indexer = TestIndexer::start(&chain, &db).await;
    let key = registered_anchor_key(&chain).await;
    let (_, officer) = compliance_member(&chain).await;
    let gw = TestGateway::start(&chain, &db).await;
    gw.wait_indexed(chain.head().await).await;
    drop(indexer);

    let batches = generate_log(&db, n).await;
    // Anchor the whole log, as the gateway's anchorer would have (in larger batches).
    let anchor = AuditAnchor::new(
        chain.manifest.contracts.audit_anchor,
        wallet_provider(&chain.rpc_url, key),
    );
    for (from, to, root) in &batches {
        mined(anchor.anchorBatch(*from, *to, *root).send().await).await;
    }
    // The anchoring transactions moved the chain on: index them (the gateway fails closed on
    // a stale index), then stop the indexer again so the head stays put. Signed in once the
    // log exists: generating ten million rows outlasts a token.
    let indexer = TestIndexer::start(&chain, &db).await;
    gw.wait_indexed(chain.head().await).await;
    drop(indexer);
    let token = gw.sign_in(&officer).await;

    // The same searches at every size: patients and agents that exist at 100,000 rows.
    let patients = (100_000 / ROWS_PER_PATIENT).max(1);
    let agents = (100_000 / ROWS_PER_AGENT).max(1);
    let months = [
        "2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07",
        "2026-08", "2026-09", "2026-10", "2026-11",
    ];
    let patient_path = |k: usize| {
        let p = patient_address(splitmix(k as u64) % patients);
        format!("/AuditEvent?patient={p}&_sort=-date&_count=50")
    };
    let agent_path = |k: usize| {
        let a = agent_address(splitmix(k as u64 + 7) % agents);
        let month = months[k % months.len()];
        format!("/AuditEvent?agent={a}&date={month}&_sort=-date&_count=50")
    };
    let mut found = (0u64, 0u64);
    let mut timings = [Vec::new(), Vec::new()];
    for k in 0..SEARCHES {
        for (kind, path) in [patient_path(k), agent_path(k)].into_iter().enumerate() {
            let started = Instant::now();
            let (status, bundle) = get(&gw, &token, &path).await;
            timings[kind].push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "{bundle}");
            let total = bundle["total"].as_u64().unwrap();
            if kind == 0 {
                found.0 += total;
            } else {
                found.1 += total;
            }
        }
    }
    // The same searches' queries alone (count and page), without HTTP and audit.
    let mut query_timings = [Vec::new(), Vec::new()];
    for k in 0..SEARCHES {
        for (kind, path) in [patient_path(k), agent_path(k)].into_iter().enumerate() {
            let params: Vec<(String, String)> =
                url::form_urlencoded::parse(path.split('?').nth(1).unwrap().as_bytes())
                    .into_owned()
                    .collect();
            let query = AuditQuery::parse(&params, 50, 100).unwrap();
            let started = Instant::now();
            let page = search(
                &gw.pool,
                gw.state.cursors(),
                &query,
                gw.chain_id as i64,
                None,
                officer.address(),
            )
            .await
            .unwrap();
            query_timings[kind].push(started.elapsed().as_secs_f64() * 1e3);
            assert!(page.total.is_some());
        }
    }
    let [patient_ms, agent_ms] = timings;
    let [patient_query_ms, agent_query_ms] = query_timings;
    let figures = ScaleFigures {
        patient_p99: p99(patient_ms),
        agent_p99: p99(agent_ms),
        patient_query_p99: p99(patient_query_ms),
        agent_query_p99: p99(agent_query_ms),
    };
    figure(&format!("audit.search.rows.{label}"), n as f64, "rows");
    figure(
        &format!("audit.search.patient_p99_ms.{label}"),
        figures.patient_p99,
        "ms",
    );
    figure(
        &format!("audit.search.agent_date_p99_ms.{label}"),
        figures.agent_p99,
        "ms",
    );
    figure(
        &format!("audit.search.p99_ms.{label}"),
        figures.patient_p99.max(figures.agent_p99),
        "ms",
    );
    figure(
        &format!("audit.search.patient_query_p99_ms.{label}"),
        figures.patient_query_p99,
        "ms",
    );
    figure(
        &format!("audit.search.agent_date_query_p99_ms.{label}"),
        figures.agent_query_p99,
        "ms",
    );
    figure(
        &format!("audit.search.patient_matches_avg.{label}"),
        found.0 as f64 / SEARCHES as f64,
        "events",
    );
    figure(
        &format!("audit.search.agent_date_matches_avg.{label}"),
        found.1 as f64 / SEARCHES as f64,
        "events",
    );

    // Verification of the whole log: every row re-chained, every anchored root recomputed.
    let started = Instant::now();
    let report = verify_audit_log(&gw.pool, &reader(&chain), None)
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.batches_checked, batches.len() as u64);
    figure(
        &format!("audit.verify_rows_per_s.{label}"),
        report.rows as f64 / secs,
        "rows/s",
    );
    gw.stop().await;
    drop_database(&db).await;
    figures
}

/// Drops the database at `url` (its disk space is what the next size needs).
async fn drop_database(url: &str) {
    let server = std::env::var("DATABASE_URL").unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut conn = PgConnection::connect(&server).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}
