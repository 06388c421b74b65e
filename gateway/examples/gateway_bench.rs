//! `bench/gateway`: read, search and import figures on loopback, consent checked against the
//! same gateway with the check switched off (`--bench-skip-consent`) as the baseline.
//!
//! Needs what the integration tests need (`DATABASE_URL` server, anvil, forge); prints
//! `FIGURE <name> <value> <unit>` lines.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long each load runs (`CARECHAIN_BENCH_SECONDS`, default 3).
fn run_length() -> Duration {
    let seconds = std::env::var("CARECHAIN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u64);
    Duration::from_secs(seconds.max(1))
}

struct Load {
    rps: f64,
    p99_ms: f64,
}

async fn load(http: &reqwest::Client, url: &str, token: &str, connections: usize) -> Load {
    eprintln!("load: {url} with {connections} connections");
    let run = run_length();
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let http = http.clone();
        // Parsed once: the load generator shares the cores with what it measures.
        let url = reqwest::Url::parse(url).unwrap();
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let response = http
                    .get(url.clone())
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
                latencies.push(start.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let at = |per_mille: usize| all[(all.len() * per_mille / 1000).min(all.len() - 1)];
    let p99 = at(990);
    eprintln!(
        "  {} requests: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        all.len(),
        at(500).as_secs_f64() * 1000.0,
        at(900).as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        at(999).as_secs_f64() * 1000.0,
        at(1000).as_secs_f64() * 1000.0,
    );
    Load {
        rps: all.len() as f64 / run.as_secs_f64(),
        p99_ms: p99.as_secs_f64() * 1000.0,
    }
}

fn figure(name: &str, value: f64, unit: &str) {
    println!("FIGURE {name} {value:.2} {unit}");
}

#[tokio::main]
async fn main() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let db = fresh_database().await;
    let kek = alloy::hex::encode([7u8; 32]);
    let settings = |skip: bool| {
        let kek = kek.clone();
        let custodian = &custodian;
        move |c: &mut carechain_gateway::GatewayConfig| {
            custodian.configure(c);
            c.kek = Some(kek);
            c.bench_skip_consent = skip;
        }
    };
    let checked = TestGateway::start_with(&chain, &db, settings(false)).await;
    let unchecked = TestGateway::start_with(&chain, &db, settings(true)).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let patient_wallet = chain.wallet().await;
    let patient = checked.sign_in(&patient_wallet).await;
    let me = format!("{:#x}", patient_wallet.address());
    let own = checked.url(&format!("/Observation?patient={me}"));
    common::eventually(|| async {
        checked
            .http
            .get(&own)
            .bearer_auth(&patient)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;

    // 50 observations through a transaction Bundle (also the import figure's warm-up).
    let observation = |i: usize| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": format!("Patient/{me}")},
               "effectiveDateTime": format!("2026-01-{:02}T08:00:00Z", 1 + i % 28),
               "valueQuantity": {"value": 60 + i, "unit": "/min"}})
    };
    let bundle = |n: usize| {
        json!({"resourceType": "Bundle", "type": "transaction",
               "entry": (0..n).map(|i| json!({"fullUrl": format!("urn:uuid:{i}"),
                   "request": {"method": "POST", "url": "Observation"},
                   "resource": observation(i)})).collect::<Vec<_>>()})
    };
    let post = |body: Value| {
        checked
            .http
            .post(checked.url("/"))
            .bearer_auth(&patient)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };
    let first: Value = post(bundle(50)).await.unwrap().json().await.unwrap();
    let location = first["entry"][0]["response"]["location"].as_str().unwrap();
    let read_path = format!("/{}", location.trim_end_matches("/_history/1"));
    let started = Instant::now();
    let imported = 500;
    let response = post(bundle(imported)).await.unwrap();
    assert_eq!(response.status(), 200);
    figure(
        "gateway.import.resources_per_s",
        imported as f64 / started.elapsed().as_secs_f64(),
        "resources/s",
    );

    // The practitioner's organisation gets read + search for TREAT.
    let consents = chain.consents_as(&patient_wallet);
    consents
        .grant(
            patient_wallet.address(),
            org.address(),
            carechain_contracts::ResourceType::Observation.bit(),
            carechain_contracts::Action::Read.bit() | carechain_contracts::Action::Search.bit(),
            carechain_contracts::Purpose::Treat.bit(),
            alloy::primitives::aliases::U40::ZERO,
            alloy::primitives::aliases::U40::from(4_000_000_000u64),
            alloy::primitives::B256::repeat_byte(9),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // The records read are older than the finality window (anvil: 64 blocks), as most reads
    // in practice are: their anchors are then verified once and remembered. A record younger
    // than that costs two `eth_call`s per read until it is final.
    checked.wait_indexed(chain.mine(70).await).await;
    let doctor_checked = checked.sign_in(&practitioner).await;
    let doctor_unchecked = unchecked.sign_in(&practitioner).await;
    let read_checked = checked.url(&read_path);
    common::eventually(|| async {
        checked
            .http
            .get(&read_checked)
            .bearer_auth(&doctor_checked)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let http = reqwest::Client::new();
    for connections in [1, 8, 32] {
        let on = load(&http, &read_checked, &doctor_checked, connections).await;
        let off = load(
            &http,
            &unchecked.url(&read_path),
            &doctor_unchecked,
            connections,
        )
        .await;
        figure(
            &format!("gateway.read.rps.checked.c{connections}"),
            on.rps,
            "req/s",
        );
        figure(
            &format!("gateway.read.rps.unchecked.c{connections}"),
            off.rps,
            "req/s",
        );
        figure(
            &format!("gateway.read.ratio.c{connections}"),
            on.rps / off.rps,
            "ratio",
        );
        figure(
            &format!("gateway.read.p99_ms.c{connections}"),
            on.p99_ms,
            "ms",
        );
    }
    let search = checked.url(&format!("/Observation?patient={me}&_count=50&_sort=-date"));
    let page = load(&http, &search, &doctor_checked, 8).await;
    figure("gateway.search.p99_ms.c8", page.p99_ms, "ms");
    checked.stop().await;
    unchecked.stop().await;
}
