//! The real indexer, in process: the stack piece the gateway's and the CLI's suites run
//! against their test chain and database.

use crate::{chain::TestChain, wait::eventually};
use clap::Parser;
use sqlx::PgPool;
use tokio::task::JoinHandle;

/// `carechain_indexer::Indexer` following a test chain into a test database; stopped (its task
/// aborted) on drop.
#[derive(Debug)]
pub struct TestIndexer {
    task: JoinHandle<()>,
}

impl TestIndexer {
    /// Starts the indexer on `chain` into `database_url` (it runs the migrations first),
    /// polling every 50 ms.
    pub async fn start(chain: &TestChain, database_url: &str) -> Self {
        Self::start_with_args(chain, database_url, &["--poll-interval-ms", "50"]).await
    }

    /// Starts the indexer with `extra` flags after the chain, manifest and database (none: the
    /// settings it ships with, e.g. its default poll interval).
    pub async fn start_with_args(chain: &TestChain, database_url: &str, extra: &[&str]) -> Self {
        Self::try_start(&chain.rpc_url, chain, database_url, extra)
            .await
            .unwrap_or_else(|e| panic!("the indexer starts: {e}"))
    }

    /// Starts the indexer on `chain`'s manifest reaching the chain at `rpc_url` (a proxy in
    /// front of the test chain, say), with `extra` flags; the indexer's own start-up error
    /// when it refuses to start.
    pub async fn try_start(
        rpc_url: &str,
        chain: &TestChain,
        database_url: &str,
        extra: &[&str],
    ) -> Result<Self, carechain_indexer::IndexerError> {
        let manifest = chain
            .manifest_path
            .to_str()
            .expect("the manifest path is UTF-8");
        let mut args = vec![
            "carechain-indexer",
            "--rpc-url",
            rpc_url,
            "--manifest",
            manifest,
            "--database-url",
            database_url,
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        let config = carechain_indexer::Config::try_parse_from(args)
            .unwrap_or_else(|e| panic!("the test indexer's settings: {e}"));
        let indexer = carechain_indexer::Indexer::start(config).await?;
        let task = tokio::spawn(async move {
            if let Err(err) = indexer.run().await {
                eprintln!("indexer stopped: {err}");
            }
        });
        Ok(Self { task })
    }
}

impl Drop for TestIndexer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last block the indexer committed (its cursor), if it has committed one.
pub async fn indexed_block(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT block_number FROM indexer_cursor")
        .fetch_optional(pool)
        .await
        .unwrap_or_else(|e| panic!("read the indexer's cursor: {e}"))
}

/// Waits (at most 10 s, see [`eventually`]) until the indexer has committed `block`.
pub async fn wait_until_indexed(pool: &PgPool, block: u64) {
    let block = block as i64;
    eventually(|| async { indexed_block(pool).await >= Some(block) }).await;
}
