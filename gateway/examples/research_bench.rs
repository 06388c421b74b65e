//! `bench/research`: Synthea import rate and research export figures on loopback.
//!
//! Patients are made of the Synthea Bundles in `tests/data/synthea`: each patient gets bundle A
//! whole and bundle C three times without its Patient (1,984 resources a patient), imported as
//! transactions by the hospital's practitioner (consent checked, validated, encrypted, anchored
//! in groups). Every patient grants the research organisation read of every type for HRESCH,
//! so the export decides (on chain, at its start block) and exports everyone.
//!
//! Figures:
//! - `research.import.resources_per_s`: resources imported per second (4 transactions in flight);
//! - `research.export.resources_per_s`: a de-identified export of about 100,000 resources,
//!   kick-off to manifest;
//! - `research.export.ratio_vs_plain`: that rate over the rate of the same export without
//!   de-identification (`_deidentify=false`, a benchmark-only switch), same run;
//! - `research.export.peak_rss_mb` at 100,000 and at 400,000 resources: the largest resident
//!   set of the process (gateway, indexer and this driver) sampled while the export runs.
//!
//! `CARECHAIN_BENCH_RESEARCH_SMALL=1` runs at a tenth of the sizes (a quick check).
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use alloy::{
    primitives::{B256, aliases::U40},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{Action, MemberRole, OrgKind, Purpose, ResourceType};
use carechain_fhir::import::{WalletLinks, link_patients};
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::Value;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

fn figure(name: &str, value: f64, unit: &str) {
    println!("FIGURE {name} {value:.2} {unit}");
}

fn synthea(file: &str) -> Value {
    let path = format!(
        "{}/../tests/data/synthea/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The resident set of this process now, in MiB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A wallet that stands for the patient in the templates (replaced per patient).
const PLACEHOLDER: &str = "0x00000000000000000000000000000000000000c0";

/// The Bundles of one patient as text, with [`PLACEHOLDER`] for the wallet: A linked to the
/// wallet, and C with its Patient left out and its references to that Patient pointed at the
/// wallet. The text of each patient's Bundles is made while importing, so the driver holds a
/// few Bundles at a time, not the whole data set (which would weigh on the RSS figures).
fn templates(a: &Value, c: &Value) -> (String, String) {
    let mut first = a.clone();
    link_patients(&mut first, &WalletLinks::One(PLACEHOLDER.to_owned())).unwrap();
    let mut more = c.clone();
    let entries = more["entry"].as_array_mut().unwrap();
    let patient_url = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["fullUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    entries.retain(|e| e["resource"]["resourceType"] != "Patient");
    let more = more.to_string().replace(
        &format!("\"{patient_url}\""),
        &format!("\"Patient/{PLACEHOLDER}\""),
    );
    (first.to_string(), more)
}

fn entries(bundle: &Value) -> u64 {
    bundle["entry"].as_array().map_or(0, |e| e.len() as u64)
}

/// Imports each patient's Bundles (A once, then C `copies` times) with 4 transactions in
/// flight; resources imported.
async fn import(
    gw: &TestGateway,
    token: &str,
    wallets: Vec<String>,
    (a, c, copies): (&str, &str, usize),
) -> u64 {
    let count = |text: &str| entries(&serde_json::from_str(text).unwrap());
    let (in_a, in_c) = (count(a), count(c));
    let queue = Arc::new(std::sync::Mutex::new(wallets));
    let done = Arc::new(AtomicU64::new(0));
    let (a, c) = (Arc::new(a.to_owned()), Arc::new(c.to_owned()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (queue, done) = (Arc::clone(&queue), Arc::clone(&done));
        let (a, c) = (Arc::clone(&a), Arc::clone(&c));
        let (http, url, token) = (gw.http.clone(), gw.url("/"), token.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(wallet) = queue.lock().unwrap().pop() else {
                    return;
                };
                let bodies = std::iter::once((a.as_str(), in_a))
                    .chain(std::iter::repeat_n((c.as_str(), in_c), copies));
                for (template, n) in bodies {
                    let response = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/fhir+json")
                        .body(template.replace(PLACEHOLDER, &wallet))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let text = response.text().await.unwrap();
                    assert_eq!(status, 200, "{}", &text[..text.len().min(400)]);
                    done.fetch_add(n, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

/// Runs one export to its manifest: (resources, seconds, peak RSS MiB while it ran).
async fn export(gw: &TestGateway, token: &str, query: &str) -> (u64, f64, f64) {
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak));
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max((rss_mb() * 1024.0) as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eprintln!(
        "export {query}: resident set at kick-off {:.0} MiB",
        rss_mb()
    );
    let start = Instant::now();
    let response = gw
        .http
        .get(gw.url(&format!("/$export?{query}")))
        .bearer_auth(token)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let status_url = response.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let manifest: Value = loop {
        let response = gw
            .http
            .get(&status_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            202 => tokio::time::sleep(Duration::from_millis(50)).await,
            200 => break response.json().await.unwrap(),
            other => panic!("export failed: {other} {}", response.text().await.unwrap()),
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let resources: u64 = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    // Cancelling deletes the files (they are not needed here).
    let _ = gw.http.delete(&status_url).bearer_auth(token).send().await;
    (
        resources,
        seconds,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
    )
}

#[tokio::main]
async fn main() {
    let small = std::env::var("CARECHAIN_BENCH_RESEARCH_SMALL").is_ok_and(|v| v == "1");
    let scale: usize = if small { 10 } else { 1 };
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let research = chain.wallet().await;
    let researcher = chain.wallet().await;
    chain
        .admit_organisation(research.address(), OrgKind::Research, "Bench Institute")
        .await;
    chain
        .add_member(
            research.address(),
            researcher.address(),
            MemberRole::Practitioner,
        )
        .await;
    let db = fresh_database().await;
    let export_dir =
        std::env::temp_dir().join(format!("carechain-bench-export-{}", common::rand_suffix()));
    let gw = TestGateway::start_with(&chain, &db, |c| {
        custodian.configure(c);
        c.research.deid_secret = Some(alloy::hex::encode([9u8; 32]));
        c.research.export_dir = Some(export_dir.clone());
        c.research.bench_export_identified = true;
        // anvil mines a block per transaction: the lag in blocks measures the grant rate here.
        c.max_index_lag_blocks = 100_000;
        c.user_limits = carechain_gateway::config::UserLimits {
            reads_per_minute: u32::MAX,
            searches_per_minute: u32::MAX,
            writes_per_minute: u32::MAX,
        };
    })
    .await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let (a, c) = (synthea("bundle-afhir.json"), synthea("bundle-cfhir.json"));
    let per_patient = entries(&a) + 3 * (entries(&c) - 1);

    // Patients, each granting the hospital (import) and the research organisation (export).
    let mut patients: Vec<PrivateKeySigner> = Vec::new();
    let add_patients = |n: usize| {
        let chain = &chain;
        let (hospital, research) = (custodian.org.address(), research.address());
        async move {
            let mut made = Vec::new();
            let mut block = 0;
            for _ in 0..n {
                let p = chain.wallet().await;
                for (grantee, actions, purpose) in [
                    (
                        hospital,
                        Action::Create.bit() | Action::Read.bit(),
                        Purpose::Treat.bit(),
                    ),
                    (research, Action::Read.bit(), Purpose::Research.bit()),
                ] {
                    block = chain
                        .consents_as(&p)
                        .grant(
                            p.address(),
                            grantee,
                            ResourceType::ALL_BITS,
                            actions,
                            purpose,
                            U40::ZERO,
                            U40::from(4_000_000_000u64),
                            B256::repeat_byte(1),
                        )
                        .send()
                        .await
                        .unwrap()
                        .get_receipt()
                        .await
                        .unwrap()
                        .block_number
                        .unwrap();
                }
                made.push(p);
            }
            (made, block)
        }
    };
    let first = (100_000 / scale).div_ceil(per_patient as usize);
    let (made, block) = add_patients(first).await;
    patients.extend(made);
    gw.wait_indexed(block).await;
    let doctor = gw.sign_in(&custodian.practitioner).await;
    let scientist = gw.sign_in(&researcher).await;

    let (a_text, c_text) = templates(&a, &c);
    let wallets = |ps: &[PrivateKeySigner]| -> Vec<String> {
        ps.iter().map(|p| format!("{:#x}", p.address())).collect()
    };
    eprintln!(
        "importing {} patients of {per_patient} resources",
        patients.len()
    );
    let start = Instant::now();
    let imported = import(&gw, &doctor, wallets(&patients), (&a_text, &c_text, 3)).await;
    let import_rate = imported as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "imported {imported} in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // Same run: plain, then de-identified, over the same store (directory types are not
    // exported: the count is patient data only).
    let (plain_n, plain_s, _) = export(&gw, &scientist, "study=bench&_deidentify=false").await;
    let (deid_n, deid_s, rss_100k) = export(&gw, &scientist, "study=bench").await;
    eprintln!("plain: {plain_n} in {plain_s:.1} s; de-identified: {deid_n} in {deid_s:.1} s");
    let deid_rate = deid_n as f64 / deid_s;
    let plain_rate = plain_n as f64 / plain_s;

    // Grow to about 400,000 resources and export again.
    let more = (400_000 / scale).div_ceil(per_patient as usize) - first;
    let (made, block) = add_patients(more).await;
    gw.wait_indexed(block).await;
    let doctor = gw.sign_in(&custodian.practitioner).await;
    let scientist = gw.sign_in(&researcher).await;
    let start = Instant::now();
    let imported_more = import(&gw, &doctor, wallets(&made), (&a_text, &c_text, 3)).await;
    eprintln!(
        "imported {imported_more} more in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let (big_n, big_s, rss_400k) = export(&gw, &scientist, "study=bench").await;
    eprintln!("de-identified: {big_n} in {big_s:.1} s");

    figure(
        "research.import.resources_per_s",
        import_rate,
        "resources/s",
    );
    figure("research.export.resources_per_s", deid_rate, "resources/s");
    figure(
        "research.export.ratio_vs_plain",
        deid_rate / plain_rate,
        "ratio",
    );
    figure(
        &format!("research.export.peak_rss_mb.{}k", deid_n / 1000),
        rss_100k,
        "MiB",
    );
    figure(
        &format!("research.export.peak_rss_mb.{}k", big_n / 1000),
        rss_400k,
        "MiB",
    );
    let _ = std::fs::remove_dir_all(&export_dir);
}
