//! Time per resource of Safe Harbor de-identification, against the plain export's own work on
//! the same resources: `cargo run --release -p carechain-deid --example bench`.
//!
//! The plain export of one stored resource at least parses its JSON and writes it as an NDJSON
//! line; the de-identified export does the same with `deidentify` in between. Both figures
//! leave out what both exports pay alike (the database, decryption), so their ratio is the
//! lowest the rate ratio can be.
//!
//! Times are this thread's CPU time (`/proc/thread-self/schedstat`, wall time where that is
//! missing): on a machine shared with other work, waiting for a core is not counted.

use std::hint::black_box;
use std::time::{Duration, Instant};

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

    let parsed: Vec<(String, Value)> = stored
        .iter()
        .map(|(w, j)| (w.clone(), serde_json::from_str(j).expect("JSON")))
        .collect();

    // Plain and de-identified runs alternate, each figure the best of its runs: the machine is
    // shared, and what other work takes from one phase it takes from the other too.
    let n = stored.len();
    let (mut plain_ns, mut deid_ns, mut alone_ns) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let (mut obs_plain, mut obs_deid) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..15 {
        plain_ns = plain_ns.min(time_ns(|| plain(&stored), n));
        deid_ns = deid_ns.min(time_ns(|| deidentified(&stored), n));
        alone_ns = alone_ns.min(deidentify_alone(&deid, &parsed));
        obs_plain = obs_plain.min(time_ns(|| plain(one_observation), 1));
        obs_deid = obs_deid.min(time_ns(&observation_deidentified, 1));
    }
    let bytes: usize = stored.iter().map(|(_, j)| j.len()).sum();
    println!("resources: {n} (two Synthea bundles, {bytes} bytes of JSON)");
    println!("FIGURE deid.plain_export_ns_per_resource {plain_ns:.0} ns (parse + write)");
    println!(
        "FIGURE deid.deid_export_ns_per_resource {deid_ns:.0} ns (parse + deidentify + write)"
    );
    println!(
        "FIGURE deid.deidentify_ns_per_resource {alone_ns:.0} ns (deidentify alone, in place)"
    );
    println!(
        "FIGURE deid.observation_ns {obs_plain:.0} / {obs_deid:.0} ns (a vital-signs Observation, plain / de-identified export)"
    );
    println!(
        "FIGURE deid.rate_ratio_vs_plain {:.2} (target >= 0.5)",
        plain_ns / deid_ns
    );
}

/// `deidentify_owned` alone over copies of the parsed resources (copied outside the timing).
fn deidentify_alone(deid: &Deidentifier, parsed: &[(String, Value)]) -> f64 {
    let mut total = Duration::ZERO;
    let mut count = 0usize;
    while total.as_millis() < 30 {
        let batch = parsed.to_vec();
        let clock = Clock::start();
        let mut scope = None::<(String, carechain_deid::PatientScope<'_>)>;
        for (wallet, value) in batch {
            if scope.as_ref().is_none_or(|(w, _)| *w != wallet) {
                let patient = deid.patient(&wallet).expect("wallet");
                scope = Some((wallet, patient));
            }
            let Some((_, patient)) = &scope else { continue };
            black_box(patient.deidentify_owned(value).expect("resource"));
        }
        total += clock.elapsed();
        count += parsed.len();
    }
    total.as_nanos() as f64 / count as f64
}

/// One timed stretch of at least 30 ms of CPU time, in nanoseconds per item.
fn time_ns(mut run: impl FnMut(), items: usize) -> f64 {
    let clock = Clock::start();
    let mut reps = 0usize;
    while clock.elapsed().as_millis() < 30 {
        run();
        reps += 1;
    }
    clock.elapsed().as_nanos() as f64 / (reps * items) as f64
}

/// The CPU time this thread has run, or the wall time where the kernel does not say.
struct Clock {
    cpu: Option<u64>,
    wall: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            cpu: thread_cpu_ns(),
            wall: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        match (self.cpu, thread_cpu_ns()) {
            (Some(start), Some(now)) => Duration::from_nanos(now.saturating_sub(start)),
            _ => self.wall.elapsed(),
        }
    }
}

fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
