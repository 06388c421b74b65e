//! What the gateway benchmarks share: closed-loop GET load on kept connections, its
//! latency percentiles, and the `FIGURE` lines.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

/// How long each load runs (`CARECHAIN_BENCH_SECONDS`, default 3).
pub fn run_length() -> Duration {
    let seconds = std::env::var("CARECHAIN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u64);
    Duration::from_secs(seconds.max(1))
}

pub struct Load {
    pub rps: f64,
    pub p99_ms: f64,
    pub requests: usize,
}

pub async fn load(http: &reqwest::Client, url: &str, token: &str, connections: usize) -> Load {
    eprintln!("load: {url} with {connections} connections");
    load_spread(http, &[url.to_owned()], token, connections).await
}

/// Closed-loop `GET`s on `connections` connections, each request of a URL drawn uniformly
/// from `urls`.
pub async fn load_spread(
    http: &reqwest::Client,
    urls: &[String],
    token: &str,
    connections: usize,
) -> Load {
    let run = run_length();
    let deadline = Instant::now() + run;
    // Parsed once: the load generator shares the cores with what it measures.
    let urls: std::sync::Arc<Vec<reqwest::Url>> = std::sync::Arc::new(
        urls.iter()
            .map(|u| reqwest::Url::parse(u).unwrap())
            .collect(),
    );
    let mut tasks = Vec::new();
    for task in 0..connections {
        let http = http.clone();
        let urls = std::sync::Arc::clone(&urls);
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // xorshift64, seeded per connection.
            let mut x =
                0x9E37_79B9_7F4A_7C15u64 ^ (task as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let url = &urls[(x % urls.len() as u64) as usize];
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
        requests: all.len(),
    }
}

/// Prints one figure.
pub fn figure(name: &str, value: f64, unit: &str) {
    println!("FIGURE {name} {value:.2} {unit}");
}
