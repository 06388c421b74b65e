//! Prometheus metrics in the text exposition format, served at `GET /metrics`.

use crate::error::IndexerError;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// The indexer's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Latest chain head seen.
    pub chain_head: AtomicU64,
    /// Latest block whose events are all committed.
    pub cursor: AtomicU64,
    /// Event rows committed since start.
    pub events_indexed: AtomicU64,
    /// Reorgs rolled back since start.
    pub reorgs_handled: AtomicU64,
    /// Blocks rolled back by reorgs since start.
    pub reorged_blocks: AtomicU64,
    /// RPC calls retried since start.
    pub rpc_retries: AtomicU64,
    /// Passes restarted after a database error since start.
    pub db_retries: AtomicU64,
    /// Ranges and blocks committed since start.
    pub commits: AtomicU64,
}

impl Metrics {
    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let head = self.chain_head.load(Ordering::Relaxed);
        let cursor = self.cursor.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "carechain_indexer_chain_head",
            "gauge",
            "Latest chain head block seen.",
            head,
        );
        metric(
            "carechain_indexer_cursor",
            "gauge",
            "Latest block fully indexed.",
            cursor,
        );
        metric(
            "carechain_indexer_lag_blocks",
            "gauge",
            "Chain head minus cursor.",
            head.saturating_sub(cursor),
        );
        metric(
            "carechain_indexer_events_indexed_total",
            "counter",
            "Event rows committed since start.",
            self.events_indexed.load(Ordering::Relaxed),
        );
        metric(
            "carechain_indexer_reorgs_handled_total",
            "counter",
            "Chain reorganisations rolled back since start.",
            self.reorgs_handled.load(Ordering::Relaxed),
        );
        metric(
            "carechain_indexer_reorged_blocks_total",
            "counter",
            "Blocks rolled back by reorganisations since start.",
            self.reorged_blocks.load(Ordering::Relaxed),
        );
        metric(
            "carechain_indexer_rpc_retries_total",
            "counter",
            "JSON-RPC calls retried after an error since start.",
            self.rpc_retries.load(Ordering::Relaxed),
        );
        metric(
            "carechain_indexer_db_retries_total",
            "counter",
            "Passes restarted after a database error since start.",
            self.db_retries.load(Ordering::Relaxed),
        );
        metric(
            "carechain_indexer_commits_total",
            "counter",
            "Transactions committed (backfill ranges and live blocks) since start.",
            self.commits.load(Ordering::Relaxed),
        );
        out
    }
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Binds `addr` and serves the metrics in a background task; returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, IndexerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| IndexerError::MetricsListen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| IndexerError::MetricsListen { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lag() {
        let m = Metrics::default();
        Metrics::set(&m.chain_head, 110);
        Metrics::set(&m.cursor, 100);
        Metrics::add(&m.events_indexed, 7);
        let text = m.render();
        assert!(text.contains("carechain_indexer_lag_blocks 10\n"), "{text}");
        assert!(
            text.contains("carechain_indexer_events_indexed_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE carechain_indexer_cursor gauge"),
            "{text}"
        );
    }
}
