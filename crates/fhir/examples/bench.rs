//! Time per validation, printed as `FIGURE <name> <value> ns` lines like `bench/run`'s.
//!
//! `cargo run --release -p carechain-fhir --example bench` (`FHIR_BENCH_MS` sets how long each
//! case runs, default 1000 ms). Cases: the 3.5 kB blood-pressure Observation of the tests, the
//! gateway's own small Observation, the 500-entry transaction Bundle of `bench/run gateway`'s
//! import, and the 319-entry Synthea Bundle. Parsing the JSON is not timed: the gateway has
//! parsed the body already when it validates.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn main() {
    let budget = Duration::from_millis(
        std::env::var("FHIR_BENCH_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(1000),
    );
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(format!("{data}{name}")).expect("test data");
        serde_json::from_str(&text).expect("JSON")
    };
    let observation = read("valid/Observation.json");
    let small = small_observation(0);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": (0..500).map(|i| json!({
            "fullUrl": format!("urn:uuid:{i}"),
            "request": {"method": "POST", "url": "Observation"},
            "resource": small_observation(i),
        })).collect::<Vec<_>>(),
    });
    let synthea = read("synthea-r4-transaction.json");
    for (name, resource) in [
        ("fhir.validate.observation_bp_3_5kb", &observation),
        ("fhir.validate.observation_small", &small),
        ("fhir.validate.bundle_500_observations", &bundle),
        ("fhir.validate.synthea_bundle_319_entries", &synthea),
    ] {
        assert!(
            carechain_fhir::validate(resource).is_ok(),
            "{name} is valid"
        );
        let ns = time(budget, || {
            carechain_fhir::validate(black_box(resource)).is_ok()
        });
        println!("FIGURE {name} {ns:.0} ns");
    }
    // For scale: what parsing the same Observation from its bytes costs.
    let bytes = serde_json::to_vec(&observation).expect("serialise");
    let ns = time(budget, || {
        serde_json::from_slice::<Value>(black_box(&bytes)).is_ok()
    });
    println!(
        "FIGURE fhir.parse.observation_bp_3_5kb {ns:.0} ns ({} bytes)",
        bytes.len()
    );
}

/// Mean time of one call in ns over about `budget`, after a warm-up.
fn time(budget: Duration, mut f: impl FnMut() -> bool) -> f64 {
    let mut calls = 0u64;
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        assert!(f());
        calls += 1;
    }
    let batch = (calls / 10).max(1);
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < budget {
        for _ in 0..batch {
            assert!(f());
        }
        done += batch;
    }
    started.elapsed().as_nanos() as f64 / done as f64
}

/// The Observation `bench/run gateway` imports.
fn small_observation(i: usize) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": "Patient/0x70997970c51812dc3a010c7d01b50e0d17dc79c8"},
           "effectiveDateTime": format!("2026-01-{:02}T08:00:00Z", 1 + i % 28),
           "valueQuantity": {"value": 60 + i, "unit": "/min"}})
}
