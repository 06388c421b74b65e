//! Time per resource of Safe Harbor de-identification, against the plain export's own work on
//! the same resources: `cargo run --release -p carechain-deid --example bench`.
//!
//! The plain export of one stored resource at least parses its JSON and writes it as an NDJSON
//! line; the de-identified export does the same with `deidentify` in between. Both figures
//! leave out what both exports pay alike (the database, decryption), so their ratio is the
//! lowest the rate ratio can be.

use std::hint::black_box;
use std::time::Instant;

use carechain_deid::{DeidSecret, Deidentifier, Rules};
use serde_json::Value;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/synthea");
    let mut stored: Vec<(String, String)> = Vec::new(); // (wallet, resource JSON)
    for name in ["bundle-afhir.json", "bundle-cfhir.json"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("vendored Synthea data");
        let bundle: Value = serde_json::from_str(&text).expect("JSON");
        let entries = bundle["entry"].as_array().expect("entries");
        let wallet = format!("0x{:040x}", stored.len() + 1);
        for entry in entries {
            stored.push((wallet.clone(), entry["resource"].to_string()));
        }
    }
    let observation = stored
        .iter()
        .find(|(_, r)| r.contains("\"resourceType\":\"Observation\""))
        .cloned()
        .expect("an Observation");
    let secret = DeidSecret::from_bytes(&[7u8; 32]).expect("secret");
    let deid = Deidentifier::new(Rules::safe_harbor(), &secret, "bench-study", "bench-org")
        .expect("deidentifier");

    let plain = |set: &[(String, String)]| {
        for (_, json) in set {
            let value: Value = serde_json::from_str(json).expect("JSON");
            black_box(serde_json::to_string(&value).expect("JSON"));
        }
    };
    let deidentified = |set: &[(String, String)]| {
        let mut scope = None::<(String, carechain_deid::PatientScope<'_>)>;
        for (wallet, json) in set {
            if scope.as_ref().is_none_or(|(w, _)| w != wallet) {
                scope = Some((wallet.clone(), deid.patient(wallet).expect("wallet")));
            }
            let value: Value = serde_json::from_str(json).expect("JSON");
            let Some((_, patient)) = &scope else { continue };
            if let Some(out) = patient.deidentify_owned(value).expect("resource") {
                black_box(serde_json::to_string(&out).expect("JSON"));
            }
        }
    };
    let one_observation = std::slice::from_ref(&observation);
    let observation_scope = deid.patient(&observation.0).expect("wallet");
    let observation_deidentified = || {
        let value: Value = serde_json::from_str(&observation.1).expect("JSON");
        if let Some(out) = observation_scope.deidentify_owned(value).expect("resource") {
            black_box(serde_json::to_string(&out).expect("JSON"));
        }
    };

    let n = stored.len();
    let plain_ns = best_ns(|| plain(&stored), n);
    let deid_ns = best_ns(|| deidentified(&stored), n);
    let obs_plain = best_ns(|| plain(one_observation), 1);
    let obs_deid = best_ns(observation_deidentified, 1);
    let bytes: usize = stored.iter().map(|(_, j)| j.len()).sum();
    println!("resources: {n} (two Synthea bundles, {bytes} bytes of JSON)");
    println!("FIGURE deid.plain_export_ns_per_resource {plain_ns:.0} ns (parse + write)");
    println!(
        "FIGURE deid.deid_export_ns_per_resource {deid_ns:.0} ns (parse + deidentify + write)"
    );
    println!(
        "FIGURE deid.deidentify_ns_per_resource {:.0} ns (the difference)",
        deid_ns - plain_ns
    );
    println!(
        "FIGURE deid.deidentify_ns_observation {:.0} ns (a vital-signs Observation: {obs_plain:.0} ns plain, {obs_deid:.0} ns de-identified)",
        obs_deid - obs_plain
    );
    println!(
        "FIGURE deid.rate_ratio_vs_plain {:.2} (target >= 0.5)",
        plain_ns / deid_ns
    );
}

/// The best of several timed runs, in nanoseconds per item.
fn best_ns(mut run: impl FnMut(), items: usize) -> f64 {
    let mut reps = 1usize;
    loop {
        let start = Instant::now();
        for _ in 0..reps {
            run();
        }
        if start.elapsed().as_millis() >= 50 {
            break;
        }
        reps *= 2;
    }
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                run();
            }
            start.elapsed().as_nanos() as f64 / (reps * items) as f64
        })
        .fold(f64::INFINITY, f64::min)
}
