//! `bench/gateway`: read, search and import figures on loopback, consent checked against the
//! same gateway with the check switched off (`--bench-skip-consent`) as the baseline, and
//! HTTPS reads against plain reads (a second consent-checking gateway serving TLS).
//!
//! The bench drives one user at thousands of requests per second: every gateway here sets the
//! per-user limits (`--user-*-per-minute`) to `u32::MAX`, so the limiter stays on the request
//! path (its cost is measured) but never refuses.
//!
//! Needs what the integration tests need (`DATABASE_URL` server, anvil, forge); prints
//! `FIGURE <name> <value> <unit>` lines.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "bench_support/mod.rs"]
mod bench_support;
#[path = "../tests/common/mod.rs"]
mod common;

use bench_support::{Load, figure, load, load_spread, run_length};

use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Closed-loop single-resource creates (`POST url` with `body`) on `connections` connections
/// for `run`: the load, and each created id with when its answer arrived.
async fn create_load(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    (connections, run): (usize, Duration),
) -> (Load, Vec<(String, chrono::DateTime<chrono::Utc>)>) {
    eprintln!("create load: {url} with {connections} connections");
    let deadline = Instant::now() + run;
    let body = body.to_string();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, token, body) = (http.clone(), token.to_owned(), body.clone());
        let url = reqwest::Url::parse(url).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut created = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let response = http
                    .post(url.clone())
                    .bearer_auth(&token)
                    .header("content-type", "application/fhir+json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let answer = response.bytes().await.unwrap();
                latencies.push(start.elapsed());
                let answered = chrono::Utc::now();
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
                let answer: Value = serde_json::from_slice(&answer).unwrap();
                created.push((answer["id"].as_str().unwrap().to_owned(), answered));
            }
            (latencies, created)
        }));
    }
    let (mut all, mut created) = (Vec::new(), Vec::new());
    for task in tasks {
        let (latencies, ids) = task.await.unwrap();
        all.extend(latencies);
        created.extend(ids);
    }
    all.sort();
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    eprintln!(
        "  {} creates, p99 {:.2} ms",
        all.len(),
        p99.as_secs_f64() * 1000.0
    );
    (
        Load {
            rps: all.len() as f64 / run.as_secs_f64(),
            p99_ms: p99.as_secs_f64() * 1000.0,
            requests: all.len(),
        },
        created,
    )
}

/// A client trusting `ca` only, offering the ALPN protocols `alpn`.
fn https_client(ca: &std::path::Path, alpn: &[&[u8]]) -> reqwest::Client {
    let mut config = carechain_tls::Trust::CaFile(ca.to_owned())
        .client_config()
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

#[tokio::main]
async fn main() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (org, practitioner) = (&custodian.org, custodian.practitioner.clone());
    let db = fresh_database().await;
    let kek = alloy::hex::encode([7u8; 32]);
    // The baseline of the write figure anchors for an organisation of its own: two gateways
    // sending transactions with one service key would race for its nonces.
    let baseline_custodian = chain.custodian().await;
    let settings_for =
        |custodian: &carechain_testkit::Custodian, skip: bool, skip_validation: bool| {
            let kek = kek.clone();
            let custodian = custodian.clone();
            move |c: &mut carechain_gateway::GatewayConfig| {
                custodian.configure(c);
                c.kek = Some(kek);
                c.bench_skip_consent = skip;
                c.bench_skip_validation = skip_validation;
                // anvil mines a block per transaction and every create sends one, so at hundreds
                // of writes a second the indexer (polling every 100 ms) is tens of blocks behind
                // although it is milliseconds behind: the lag in blocks would measure the write
                // rate, not staleness, and refuse the writes. Staleness is measured as time
                // (`gateway.revocation_lag_p99_ms`).
                c.max_index_lag_blocks = 100_000;
                c.user_limits = carechain_gateway::config::UserLimits {
                    reads_per_minute: u32::MAX,
                    searches_per_minute: u32::MAX,
                    writes_per_minute: u32::MAX,
                };
            }
        };
    let settings =
        |skip: bool, skip_validation: bool| settings_for(&custodian, skip, skip_validation);
    let checked = TestGateway::start_with(&chain, &db, settings(false, false)).await;
    let unchecked = TestGateway::start_with(&chain, &db, settings(true, false)).await;
    let unvalidated =
        TestGateway::start_with(&chain, &db, settings_for(&baseline_custodian, false, true)).await;
    // The same as `checked`, on HTTPS (a certificate from a CA made here).
    let tls_dir = carechain_testkit::TempDir::new("bench-tls");
    let ca = carechain_tls::testing::TestCa::new(tls_dir.path(), "bench");
    let cert = ca.issue(&["127.0.0.1"], "gateway");
    let mut https = TestGateway::start_with(&chain, &db, {
        let plain = settings(false, false);
        move |c: &mut carechain_gateway::GatewayConfig| {
            plain(c);
            c.tls_cert = Some(cert.cert);
            c.tls_key = Some(cert.key);
        }
    })
    .await;
    https.http = https_client(ca.ca_file(), &[b"h2", b"http/1.1"]);
    // The indexer as it ships (its default poll interval: the revocation lag is measured with
    // it).
    let indexer = TestIndexer::start_with_args(&chain, &db, &[]).await;
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

    // Single creates at 8 connections, validated (the gateway as it ships) and not (the
    // baseline), both deciding consent and anchoring each version: a patient of their own, so
    // that the search below still pages the first patient's 550 observations. Two rounds in
    // alternating order, so that neither side always runs on the warmer machine or the
    // larger table.
    let http = reqwest::Client::new();
    let writer_wallet = chain.wallet().await;
    let writer = format!("{:#x}", writer_wallet.address());
    let mut one = observation(3);
    one["subject"] = json!({"reference": format!("Patient/{writer}")});
    let writer_validated = checked.sign_in(&writer_wallet).await;
    let writer_unvalidated = unvalidated.sign_in(&writer_wallet).await;
    let (validated_url, unvalidated_url) =
        (checked.url("/Observation"), unvalidated.url("/Observation"));
    let (mut validated, mut baseline) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let with = || {
            create_load(
                &http,
                &validated_url,
                &writer_validated,
                &one,
                (8, run_length()),
            )
        };
        let without = || {
            create_load(
                &http,
                &unvalidated_url,
                &writer_unvalidated,
                &one,
                (8, run_length()),
            )
        };
        if round == 0 {
            validated.push(with().await.0.rps);
            baseline.push(without().await.0.rps);
        } else {
            baseline.push(without().await.0.rps);
            validated.push(with().await.0.rps);
        }
    }
    let (validated, baseline) = (
        validated.iter().sum::<f64>() / 2.0,
        baseline.iter().sum::<f64>() / 2.0,
    );
    figure("gateway.write.per_s.validated.c8", validated, "creates/s");
    figure("gateway.write.per_s.unvalidated.c8", baseline, "creates/s");
    figure(
        "gateway.write.validate_ratio",
        validated / baseline,
        "ratio",
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
    // HTTPS against plain HTTP: the same reads on 8 connections each, kept and reused (HTTP/1.1
    // over TLS, so both sides hold 8 connections; HTTP/2 would multiplex them onto one), twice
    // in alternating order so that neither side always runs on the warmer machine.
    let doctor_https = https.sign_in(&practitioner).await;
    let read_https = https.url(&read_path);
    common::eventually(|| async {
        https
            .http
            .get(&read_https)
            .bearer_auth(&doctor_https)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let tls_h1 = https_client(ca.ca_file(), &[b"http/1.1"]);
    let (mut plain_loads, mut tls_loads) = (Vec::new(), Vec::new());
    for round in 0..2 {
        if round == 0 {
            plain_loads.push(load(&http, &read_checked, &doctor_checked, 8).await);
            tls_loads.push(load(&tls_h1, &read_https, &doctor_https, 8).await);
        } else {
            tls_loads.push(load(&tls_h1, &read_https, &doctor_https, 8).await);
            plain_loads.push(load(&http, &read_checked, &doctor_checked, 8).await);
        }
    }
    let mean_rps = |loads: &[Load]| loads.iter().map(|l| l.rps).sum::<f64>() / loads.len() as f64;
    let worst_p99 = |loads: &[Load]| loads.iter().map(|l| l.p99_ms).fold(0.0, f64::max);
    figure("gateway.read.rps.plain.c8", mean_rps(&plain_loads), "req/s");
    figure("gateway.read.rps.tls.c8", mean_rps(&tls_loads), "req/s");
    figure(
        "gateway.read.tls_ratio.c8",
        mean_rps(&tls_loads) / mean_rps(&plain_loads),
        "ratio",
    );
    figure("gateway.read.p99_ms.c8.tls", worst_p99(&tls_loads), "ms");

    let search = checked.url(&format!("/Observation?patient={me}&_count=50&_sort=-date"));
    let page = load(&http, &search, &doctor_checked, 8).await;
    figure("gateway.search.p99_ms.c8", page.p99_ms, "ms");

    // Revocation lag: a second patient grants the practitioner's own key read access, the
    // practitioner reads in a tight loop, the patient revokes; from the moment the revoking
    // block is mined (its receipt is back) to the first refused read. 50 rounds.
    let second = chain.wallet().await;
    let second_token = checked.sign_in(&second).await;
    let second_me = format!("{:#x}", second.address());
    let mut own_record = observation(1);
    own_record["subject"] = json!({"reference": format!("Patient/{second_me}")});
    let answer = checked
        .http
        .post(checked.url("/Observation"))
        .bearer_auth(&second_token)
        .header("content-type", "application/fhir+json")
        .body(own_record.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let created: Value = answer.json().await.unwrap();
    assert_eq!(status, 201, "the second patient's own record: {created}");
    let revoked_read = reqwest::Url::parse(
        &checked.url(&format!("/Observation/{}", created["id"].as_str().unwrap())),
    )
    .unwrap();
    let status_of = || async {
        http.get(revoked_read.clone())
            .bearer_auth(&doctor_checked)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let second_consents = chain.consents_as(&second);
    let mut lags = Vec::new();
    for round in 0..50u8 {
        second_consents
            .grant(
                second.address(),
                practitioner.address(),
                carechain_contracts::ResourceType::Observation.bit(),
                carechain_contracts::Action::Read.bit(),
                carechain_contracts::Purpose::Treat.bit(),
                alloy::primitives::aliases::U40::ZERO,
                alloy::primitives::aliases::U40::from(4_000_000_000u64),
                alloy::primitives::B256::repeat_byte(round),
            )
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        while status_of().await != 200 {}
        // anvil mines a block per transaction as it accepts it: the block holding the
        // revocation exists when `send` returns (waiting for the receipt would add the
        // client's receipt polling to the figure's start).
        let pending = second_consents
            .revoke(second.address(), practitioner.address())
            .send()
            .await
            .unwrap();
        let mined = Instant::now();
        while status_of().await == 200 {}
        lags.push(mined.elapsed());
        pending.get_receipt().await.unwrap();
    }
    lags.sort();
    let lag_at = |per_cent: usize| lags[(lags.len() * per_cent / 100).min(lags.len() - 1)];
    eprintln!(
        "revocation lag over {} revocations: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        lag_at(50).as_secs_f64() * 1000.0,
        lag_at(99).as_secs_f64() * 1000.0,
        lag_at(100).as_secs_f64() * 1000.0
    );
    figure(
        "gateway.revocation_lag_p99_ms",
        lag_at(99).as_secs_f64() * 1000.0,
        "ms",
    );
    // The many-patient reads before the block-time writes: those add tens of thousands of
    // versions (and audit rows), and the reads are measured on the tables the earlier sections
    // leave.
    many_patients_at_a_block_time(&chain, &checked, &unchecked, &custodian).await;
    writes_at_a_block_time(&chain, &checked, &writer_validated, &one).await;

    drop(indexer);
    https.stop().await;
    unvalidated.stop().await;
    checked.stop().await;
    unchecked.stop().await;
}

/// Waits until no version (of `ids`, or at all) waits for its batch to be mined; panics after
/// `limit`.
async fn wait_anchored(pool: &sqlx::PgPool, ids: Option<&[String]>, limit: Duration) {
    let since = Instant::now();
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM gateway_resource_versions
             WHERE anchor_pending AND ($1::text[] IS NULL OR id = ANY($1))",
        )
        .bind(ids)
        .fetch_one(pool)
        .await
        .unwrap();
        if pending == 0 {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "{pending} versions still not anchored after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Switches anvil between a block every 2 s (`interval`) and a block per transaction.
async fn block_every_2s(chain: &TestChain, interval: bool) {
    use alloy::providers::Provider;
    let provider = chain.anvil.provider();
    let calls: [(&str, Value); 2] = if interval {
        [
            ("evm_setAutomine", json!([false])),
            ("evm_setIntervalMining", json!([2])),
        ]
    } else {
        [
            ("evm_setIntervalMining", json!([0])),
            ("evm_setAutomine", json!([true])),
        ]
    };
    for (method, params) in calls {
        let _: Value = provider
            .raw_request(method.into(), params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
    }
}

/// Single creates at 8 connections while anvil makes a block every 2 s, against the same
/// creates with a block per transaction, twice in alternating order (each load at least 10 s,
/// five blocks); then, for every version written at the block time, how long after its answer
/// its batch was seen mined, and the gas of those batches per version. Leaves anvil mining
/// every 2 s.
async fn writes_at_a_block_time(
    chain: &TestChain,
    gateway: &TestGateway,
    token: &str,
    body: &Value,
) {
    let http = reqwest::Client::new();
    let url = gateway.url("/Observation");
    let run = run_length().max(Duration::from_secs(10));
    let (mut at_block_time, mut automine, mut created) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..2 {
        let order = if round == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for interval in order {
            block_every_2s(chain, interval).await;
            let (load, ids) = create_load(&http, &url, token, body, (8, run)).await;
            if interval {
                at_block_time.push(load);
                created.extend(ids);
            } else {
                automine.push(load);
            }
        }
    }
    block_every_2s(chain, true).await;
    let ids: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
    wait_anchored(&gateway.pool, Some(&ids), Duration::from_secs(120)).await;
    let anchored: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        sqlx::query_as(
            "SELECT v.id, b.anchored_at FROM gateway_resource_versions v
             JOIN gateway_record_batches b ON b.custodian = v.custodian AND b.root = v.batch_root
             WHERE v.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&gateway.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut waits: Vec<f64> = created
        .iter()
        .map(|(id, answered)| {
            (anchored[id] - *answered)
                .num_microseconds()
                .unwrap_or_default() as f64
                / 1000.0
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    let (gas, versions): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT sum(gas_used)::bigint, sum(versions)::bigint FROM gateway_record_batches
         WHERE root IN (SELECT DISTINCT batch_root FROM gateway_resource_versions WHERE id = ANY($1))",
    )
    .bind(&ids)
    .fetch_one(&gateway.pool)
    .await
    .unwrap();
    let batches: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT batch_root) FROM gateway_resource_versions WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&gateway.pool)
    .await
    .unwrap();
    eprintln!(
        "  {} versions at the block time in {batches} batches; anchored after p50 {:.0} ms, max {:.0} ms",
        waits.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    let rps = |loads: &[Load]| loads.iter().map(|l| l.rps).sum::<f64>() / loads.len() as f64;
    figure(
        "gateway.write.per_s.block2s",
        rps(&at_block_time),
        "creates/s",
    );
    figure("gateway.write.per_s.automine", rps(&automine), "creates/s");
    figure(
        "gateway.write.p99_ms.block2s",
        at_block_time.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
        "ms",
    );
    figure(
        "gateway.write.anchored_p99_ms.block2s",
        waits[(waits.len() * 99 / 100).min(waits.len() - 1)],
        "ms",
    );
    figure(
        "gateway.write.gas_per_version.block2s",
        gas.unwrap_or_default() as f64 / versions.unwrap_or(1).max(1) as f64,
        "gas",
    );
    figure(
        "gateway.write.ratio_vs_automine",
        rps(&at_block_time) / rps(&automine),
        "ratio",
    );
}

/// Reads spread over many patients and records while the chain makes a block every 2 s:
/// `BENCH_PATIENTS` patients (default 10,000) each grant the custodian read and create on
/// Observation for treatment, the practitioner imports 10 observations for each (transaction
/// Bundles of 500), and then, with anvil mining every 2 s, 8 connections read records drawn
/// uniformly from all of them, on the consent-checking gateway and on the baseline, twice in
/// alternating order after a warm-up pass. Leaves anvil mining every 2 s.
async fn many_patients_at_a_block_time(
    chain: &TestChain,
    checked: &TestGateway,
    unchecked: &TestGateway,
    custodian: &carechain_testkit::Custodian,
) {
    use alloy::{
        network::TransactionBuilder,
        primitives::{Address, U256, aliases::U40, keccak256},
        providers::Provider,
        rpc::types::TransactionRequest,
        sol_types::SolCall,
    };
    use carechain_contracts::{Action, ConsentRegistry, Purpose, ResourceType};
    let patients_n: usize = std::env::var("BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let per_patient = 10usize;
    let provider = chain.anvil.provider();
    let raw = |method: &'static str, params: serde_json::Value| {
        let provider = provider.clone();
        async move {
            let _: serde_json::Value = provider
                .raw_request(method.into(), params)
                .await
                .unwrap_or_else(|e| panic!("{method}: {e}"));
        }
    };
    let patients: Vec<Address> = (0..patients_n)
        .map(|i| Address::from_slice(&keccak256(format!("bench patient {i}"))[12..]))
        .collect();
    eprintln!("many patients: {patients_n} grants");
    // Every patient grants from its own address: anvil signs for any address
    // (`anvil_autoImpersonateAccount`) once it has gas money. Sent with automine off and mined
    // in full blocks, then automine again for the imports.
    raw("anvil_autoImpersonateAccount", json!([true])).await;
    let registry = chain.manifest.contracts.consent_registry;
    raw("evm_setAutomine", json!([false])).await;
    for chunk in patients.chunks(250) {
        let sends = chunk.iter().map(|patient| {
            let provider = provider.clone();
            let patient = *patient;
            async move {
                chain
                    .anvil
                    .set_balance(patient, U256::from(10u64).pow(U256::from(18)))
                    .await;
                let call = ConsentRegistry::grantCall {
                    patient,
                    grantee: custodian.org.address(),
                    resourceTypes: ResourceType::Observation.bit(),
                    actions: Action::Read.bit() | Action::Create.bit(),
                    purposes: Purpose::Treat.bit(),
                    validFrom: U40::ZERO,
                    validUntil: U40::from(4_000_000_000u64),
                    consentHash: alloy::primitives::B256::repeat_byte(1),
                };
                let tx = TransactionRequest::default()
                    .with_from(patient)
                    .with_to(registry)
                    .with_input(call.abi_encode())
                    .with_gas_limit(300_000);
                let _: alloy::primitives::B256 = provider
                    .raw_request("eth_sendTransaction".into(), (tx,))
                    .await
                    .expect("eth_sendTransaction");
            }
        });
        futures::future::join_all(sends).await;
    }
    loop {
        raw("evm_mine", json!([])).await;
        let status: serde_json::Value = provider
            .raw_request("txpool_status".into(), ())
            .await
            .expect("txpool_status");
        let pending = status["pending"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .or_else(|| status["pending"].as_u64())
            .unwrap_or(0);
        if pending == 0 {
            break;
        }
    }
    raw("evm_setAutomine", json!([true])).await;
    let doctor = checked.sign_in(&custodian.practitioner).await;
    checked.wait_indexed(chain.head().await).await;
    // Every grant allows (spot checks: the first and the last patient).
    for patient in [patients[0], patients[patients_n - 1]] {
        assert!(
            chain
                .decide_read(patient, custodian.practitioner.address())
                .await
                .is_allowed(),
            "the bench patients' grants are in force"
        );
    }

    eprintln!(
        "many patients: importing {} observations",
        patients_n * per_patient
    );
    let mut paths = Vec::with_capacity(patients_n * per_patient);
    let started = Instant::now();
    for group in patients.chunks(500 / per_patient) {
        let entries: Vec<Value> = group
            .iter()
            .flat_map(|patient| {
                (0..per_patient).map(move |i| {
                    json!({"fullUrl": format!("urn:uuid:{patient:#x}-{i}"),
                           "request": {"method": "POST", "url": "Observation"},
                           "resource": {"resourceType": "Observation", "status": "final",
                               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                               "subject": {"reference": format!("Patient/{patient:#x}")},
                               "effectiveDateTime": format!("2026-02-{:02}T08:00:00Z", 1 + i),
                               "valueQuantity": {"value": 60 + i, "unit": "/min"}}})
                })
            })
            .collect();
        let response = checked
            .http
            .post(checked.url("/"))
            .bearer_auth(&doctor)
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        for entry in answer["entry"].as_array().unwrap() {
            let location = entry["response"]["location"].as_str().unwrap();
            paths.push(format!("/{}", location.trim_end_matches("/_history/1")));
        }
    }
    eprintln!(
        "  imported in {:.1} s ({:.0} resources/s)",
        started.elapsed().as_secs_f64(),
        paths.len() as f64 / started.elapsed().as_secs_f64()
    );
    // Reads are measured on anchored versions older than finality, as most reads in practice
    // are (see the single-record reads above): every batch mined, then 70 blocks.
    wait_anchored(&checked.pool, None, Duration::from_secs(300)).await;
    checked.wait_indexed(chain.mine(70).await).await;
    raw("evm_setAutomine", json!([false])).await;
    raw("evm_setIntervalMining", json!([2])).await;

    let http = reqwest::Client::new();
    let doctor_unchecked = unchecked.sign_in(&custodian.practitioner).await;
    let on: Vec<String> = paths.iter().map(|p| checked.url(p)).collect();
    let off: Vec<String> = paths.iter().map(|p| unchecked.url(p)).collect();
    // Warm-up, on both gateways: every patient's decision made once on the checking one, and
    // the anchor of every batch checked (and remembered, as final) on each.
    for (gateway, token) in [(checked, &doctor), (unchecked, &doctor_unchecked)] {
        let warm: Vec<String> = paths
            .iter()
            .step_by(per_patient)
            .map(|p| gateway.url(p))
            .collect();
        warm_up(&http, &warm, token).await;
    }
    let chain_client = checked.state.chain();
    let (mut checked_loads, mut baseline_loads, mut requests) = (Vec::new(), Vec::new(), 0u64);
    for round in 0..2 {
        let mut measure_checked = async || {
            let before = chain_client.requests();
            let l = load_spread(&http, &on, &doctor, 8).await;
            requests += chain_client.requests() - before;
            l
        };
        if round == 0 {
            checked_loads.push(measure_checked().await);
            baseline_loads.push(load_spread(&http, &off, &doctor_unchecked, 8).await);
        } else {
            baseline_loads.push(load_spread(&http, &off, &doctor_unchecked, 8).await);
            checked_loads.push(measure_checked().await);
        }
    }
    let reads: usize = checked_loads.iter().map(|l| l.requests).sum();
    let rps = |loads: &[Load]| loads.iter().map(|l| l.rps).sum::<f64>() / loads.len() as f64;
    figure(
        "gateway.read.rps.checked.c8.many.block2s",
        rps(&checked_loads),
        "req/s",
    );
    figure(
        "gateway.read.rps.unchecked.c8.many.block2s",
        rps(&baseline_loads),
        "req/s",
    );
    figure(
        "gateway.read.ratio.c8.many.block2s",
        rps(&checked_loads) / rps(&baseline_loads),
        "ratio",
    );
    figure(
        "gateway.read.p99_ms.c8.many.block2s",
        checked_loads.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
        "ms",
    );
    figure(
        "gateway.read.eth_calls_per_read.c8.many.block2s",
        requests as f64 / reads as f64,
        "calls/read",
    );
}

/// Reads each of `urls` once, 8 at a time.
async fn warm_up(http: &reqwest::Client, urls: &[String], token: &str) {
    eprintln!("warm-up: {} reads", urls.len());
    for chunk in urls.chunks(8) {
        let reads = chunk.iter().map(|url| async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, 200, "{url}: {body}");
        });
        futures::future::join_all(reads).await;
    }
}
