//! The indexing loop: start-up checks, pipelined backfill, live following, reorg handling.

use crate::{
    config::Config,
    error::IndexerError,
    events::{EventBatch, event_signatures},
    metrics::{self, Metrics},
    rpc::{BlockRef, Chain},
    store::{Cursor, RangeCommit, Store},
};
use alloy::{eips::BlockNumberOrTag, rpc::types::Log};
use carechain_contracts::{ContractAddresses, DeploymentManifest};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::{
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc;

/// A running indexer's shared parts.
#[derive(Debug, Clone)]
pub struct Indexer {
    config: Arc<Config>,
    manifest: Arc<DeploymentManifest>,
    chain: Chain,
    store: Store,
    metrics: Arc<Metrics>,
    confirmations: u64,
    /// The eth_getLogs range size in blocks, adapted to the logs per range and to refusals.
    range_size: Arc<AtomicU64>,
}

/// What a backfill pass or a live step achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Progress was made or a reorg was handled; go on at once.
    Progress,
    /// The cursor is at the safe head.
    Synced,
}

impl Indexer {
    /// Loads the manifest, checks the RPC's chain id, connects to the database, applies the
    /// migrations and records the deployment. Configuration errors are reported here.
    pub async fn start(config: Config) -> Result<Self, IndexerError> {
        let manifest = DeploymentManifest::load(&config.manifest)?;
        let metrics = Arc::new(Metrics::default());
        let endpoint = config.rpc_endpoint();
        // A missing or malformed CA file is a configuration error: say so now, not in retries.
        endpoint.trust().check()?;
        let chain = Chain::new(
            &endpoint,
            Duration::from_secs(config.rpc_timeout_s.max(1)),
            Duration::from_millis(config.max_backoff_ms.max(100)),
            manifest.addresses(),
            event_signatures(),
            metrics.clone(),
        )?;
        let store = Store::connect(
            config.db_tls.connect_options(&config.database_url)?,
            &config.redacted_database_url(),
            config.db_connections,
            manifest.chain_id,
            config.reorg_window,
        )
        .await?;
        let rpc_chain_id = chain.chain_id().await;
        if rpc_chain_id != manifest.chain_id {
            return Err(IndexerError::ChainIdMismatch {
                manifest_path: config.manifest.clone(),
                manifest_chain_id: manifest.chain_id,
                rpc_url: config.rpc_url.to_string(),
                rpc_chain_id,
            });
        }
        store.init_deployment(&manifest).await?;
        if let Some(addr) = config.metrics_listen {
            let bound = metrics::serve(addr, metrics.clone()).await?;
            tracing::info!(%bound, "serving Prometheus metrics at /metrics");
        }
        let confirmations = config.confirmations_for(manifest.chain_id);
        let range_size = Arc::new(AtomicU64::new(
            config.initial_range.clamp(1, config.max_range.max(1)),
        ));
        Ok(Self {
            range_size,
            config: Arc::new(config),
            manifest: Arc::new(manifest),
            chain,
            store,
            metrics,
            confirmations,
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Indexes until a fatal error (or, with `--exit-when-synced`, until the cursor reaches
    /// the safe head). Database outages restart the pass from the stored cursor.
    pub async fn run(&self) -> Result<(), IndexerError> {
        tracing::info!(
            chain_id = self.manifest.chain_id,
            deployment_block = self.manifest.deployment_block,
            confirmations = self.confirmations,
            reorg_window = self.config.reorg_window,
            "indexer started"
        );
        let mut pause = Duration::from_millis(200);
        loop {
            match self.pass().await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_transient() => {
                    Metrics::add(&self.metrics.db_retries, 1);
                    tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "indexing pass failed; resuming from the stored cursor");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One pass: verify the stored window, backfill, follow.
    async fn pass(&self) -> Result<(), IndexerError> {
        let mut cursor = self.store.cursor().await?;
        Metrics::set(&self.metrics.cursor, cursor.number);
        // A restart (or a pass after an outage) first re-checks the stored hashes.
        if let Some(hash) = cursor.hash {
            let head = self.chain.head().await;
            if head < cursor.number {
                let behind = cursor.number - head;
                if behind > self.config.reorg_window {
                    return Err(IndexerError::ChainBehindCursor {
                        head,
                        cursor: cursor.number,
                        behind,
                        window: self.config.reorg_window,
                    });
                }
            }
            let on_chain = self
                .chain
                .block(BlockNumberOrTag::Number(cursor.number))
                .await;
            if on_chain.map(|b| b.hash) != Some(hash) {
                cursor = self.handle_reorg(cursor).await?;
            }
        }
        loop {
            loop {
                let head = self.chain.head().await;
                let target = self.backfill_target(head).await;
                if target > cursor.number {
                    cursor = self.backfill(cursor, target).await?;
                    continue;
                }
                break;
            }
            // A backfill stopped before its derived state was folded in (killed, or a failed
            // fold) left the derived cursor behind: the next backfill's fold catches up, and
            // without one it is done here, before following block by block.
            if self.store.catch_up_derived(cursor.number).await? {
                tracing::info!(
                    cursor = cursor.number,
                    "derived state caught up with the cursor"
                );
            }
            tracing::info!(cursor = cursor.number, "following the chain block by block");
            let mut steps: u64 = 0;
            loop {
                match self.live_step(&mut cursor).await? {
                    Step::Progress => {
                        steps += 1;
                        // Far behind (e.g. after a long RPC outage): go back to ranges.
                        if steps.is_multiple_of(64) {
                            let head = self.chain.head().await;
                            let target = self.backfill_target(head).await;
                            if target > cursor.number + self.config.reorg_window {
                                tracing::info!(
                                    cursor = cursor.number,
                                    target,
                                    "far behind the chain; backfilling in ranges again"
                                );
                                break;
                            }
                        }
                    }
                    Step::Synced => {
                        if self.config.exit_when_synced {
                            tracing::info!(cursor = cursor.number, "synced; exiting as asked");
                            return Ok(());
                        }
                        tokio::time::sleep(self.config.poll_interval()).await;
                    }
                }
            }
        }
    }

    /// The last block the backfill may reach: the node's finalized block when it reports one,
    /// else head - confirmations - window (blocks above are followed one by one).
    async fn backfill_target(&self, head: u64) -> u64 {
        let safe = head.saturating_sub(self.confirmations);
        let finalized = if self.config.no_finalized_tag {
            None
        } else {
            self.chain.finalized().await
        };
        match finalized {
            Some(finalized) => finalized.min(safe),
            None => safe.saturating_sub(self.config.reorg_window),
        }
    }

    /// Fetches `(cursor, target]` in adaptive ranges, several ahead of the writer, and commits
    /// them in order.
    async fn backfill(&self, cursor: Cursor, target: u64) -> Result<Cursor, IndexerError> {
        let start = cursor.number + 1;
        let blocks = target - cursor.number;
        tracing::info!(from = start, to = target, blocks, "backfilling");
        if self.store.defer_event_indexes().await? {
            tracing::info!("first backfill: the event tables' reader indexes are built at its end");
        }
        let progress = self.progress_bar(blocks);
        let range_size = self.range_size.clone();
        let (tx, mut rx) = mpsc::channel::<Result<RangeCommit, IndexerError>>(2);
        let fetcher = {
            let this = self.clone();
            let range_size = range_size.clone();
            tokio::spawn(async move {
                let ranges = futures::stream::unfold(start, move |next| {
                    let size = range_size.load(Ordering::Relaxed).max(1);
                    async move {
                        (next <= target).then(|| {
                            let end = next.saturating_add(size - 1).min(target);
                            ((next, end), end + 1)
                        })
                    }
                });
                let fetched = ranges
                    .map(|(from, to)| {
                        let this = this.clone();
                        tokio::spawn(async move { this.fetch_range(from, to).await })
                    })
                    .buffered(this.config.fetch_concurrency.max(1));
                let mut fetched = std::pin::pin!(fetched);
                while let Some(joined) = fetched.next().await {
                    let result = joined
                        .map_err(|e| IndexerError::Task(e.to_string()))
                        .and_then(|r| r);
                    let failed = result.is_err();
                    if tx.send(result).await.is_err() || failed {
                        break;
                    }
                }
            })
        };
        let started = Instant::now();
        let mut events_total: u64 = 0;
        let mut last_log = Instant::now();
        let mut cursor = cursor;
        // Where the writer's time goes: waiting for fetches vs. committing.
        let mut waiting = Duration::ZERO;
        let mut writing = Duration::ZERO;
        let outcome = async {
            loop {
                let wait_start = Instant::now();
                let Some(range) = rx.recv().await else { break };
                waiting += wait_start.elapsed();
                let range = range?;
                let write_start = Instant::now();
                self.store.commit(&range, false).await?;
                writing += write_start.elapsed();
                let n = range.events.len() as u64;
                events_total += n;
                Metrics::add(&self.metrics.events_indexed, n);
                Metrics::add(&self.metrics.commits, 1);
                Metrics::set(&self.metrics.cursor, range.to);
                cursor = Cursor {
                    number: range.to,
                    hash: Some(range.to_hash),
                };
                let done = range.to - start + 1;
                let rate = events_total as f64 / started.elapsed().as_secs_f64().max(1e-3);
                if let Some(bar) = &progress {
                    bar.set_position(done);
                    bar.set_message(format!("{events_total} events, {rate:.0} events/s"));
                } else if last_log.elapsed() >= Duration::from_secs(5) || range.to == target {
                    last_log = Instant::now();
                    tracing::info!(
                        cursor = range.to,
                        target,
                        blocks_done = done,
                        blocks_total = blocks,
                        events = events_total,
                        events_per_s = rate.round() as u64,
                        range_blocks = range_size.load(Ordering::Relaxed),
                        "backfill progress"
                    );
                }
                if range.to >= target {
                    break;
                }
            }
            Ok::<(), IndexerError>(())
        }
        .await;
        fetcher.abort();
        outcome?;
        // The derived state is folded in once, set-based, over the whole pass (and anything an
        // earlier, interrupted pass left unfolded), in one transaction with its cursor.
        if let Some(bar) = &progress {
            bar.set_message("folding the derived state");
        }
        let fold_start = Instant::now();
        self.store.catch_up_derived(cursor.number).await?;
        let folding = fold_start.elapsed();
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        tracing::info!(
            cursor = cursor.number,
            events = events_total,
            seconds = started.elapsed().as_secs_f64(),
            writer_waiting_s = waiting.as_secs_f64(),
            writer_committing_s = writing.as_secs_f64(),
            derived_fold_s = folding.as_secs_f64(),
            "backfill pass done"
        );
        Ok(cursor)
    }

    fn progress_bar(&self, blocks: u64) -> Option<ProgressBar> {
        if self.config.no_progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new(blocks);
        let style = ProgressStyle::with_template(
            "{spinner} backfill [{elapsed_precise}] {wide_bar} {pos}/{len} blocks, {msg} (ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Some(bar)
    }

    /// Fetches and decodes blocks `[from, to]` and resizes the next ranges after the number of
    /// logs returned.
    async fn fetch_range(&self, from: u64, to: u64) -> Result<RangeCommit, IndexerError> {
        let size = Arc::new(AtomicU64::new(0));
        let logs = {
            let size = size.clone();
            self.chain
                .logs_in_range(from, to, move |worked| {
                    size.store(worked, Ordering::Relaxed);
                })
                .await
        };
        let end = loop {
            match self.chain.block(BlockNumberOrTag::Number(to)).await {
                Some(block) => break block,
                None => {
                    tracing::warn!(
                        block = to,
                        "the node does not know a block below its head yet; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        self.adapt_range(
            to - from + 1,
            logs.len() as u64,
            size.load(Ordering::Relaxed),
        );
        let events = decode(&logs, &self.manifest.contracts)?;
        Ok(RangeCommit {
            from,
            to,
            to_hash: end.hash,
            blocks: vec![(to, end.hash, Some(end.parent_hash))],
            events,
        })
    }

    fn adapt_range(&self, span: u64, logs: u64, refused_split: u64) {
        let max = self.config.max_range.max(1);
        let target = self.config.target_logs.max(1);
        let current = self.range_size.load(Ordering::Relaxed);
        let next = if refused_split > 0 {
            // The provider refused larger ranges: stay at the size that worked.
            refused_split.min(current)
        } else if logs > target {
            (span.saturating_mul(target) / logs).max(1)
        } else if logs.saturating_mul(2) < target && span >= current {
            span.saturating_mul(2).min(max)
        } else {
            current
        };
        if next != current {
            self.range_size.store(next, Ordering::Relaxed);
            tracing::debug!(
                from = current,
                to = next,
                logs,
                span,
                "getLogs range resized"
            );
        }
    }

    /// Indexes the next block above the cursor if it is within the safe head, checking its
    /// parent hash; at the head, checks that the cursor block is still canonical.
    async fn live_step(&self, cursor: &mut Cursor) -> Result<Step, IndexerError> {
        let head = self.chain.head().await;
        let safe = head.saturating_sub(self.confirmations);
        if cursor.number >= safe {
            // Nothing new: a reorg replacing blocks at the same height shows here.
            if let Some(hash) = cursor.hash {
                let on_chain = self
                    .chain
                    .block(BlockNumberOrTag::Number(cursor.number))
                    .await;
                if on_chain.map(|b| b.hash) != Some(hash) {
                    *cursor = self.handle_reorg(*cursor).await?;
                    return Ok(Step::Progress);
                }
            }
            return Ok(Step::Synced);
        }
        let number = cursor.number + 1;
        let Some(block) = self.chain.block(BlockNumberOrTag::Number(number)).await else {
            return Ok(Step::Synced);
        };
        if let Some(hash) = cursor.hash
            && block.parent_hash != hash
        {
            tracing::warn!(
                block = number,
                parent = %block.parent_hash,
                stored = %hash,
                "parent hash mismatch: chain reorganised"
            );
            *cursor = self.handle_reorg(*cursor).await?;
            return Ok(Step::Progress);
        }
        let Some(logs) = self.chain.logs_at(block.hash).await else {
            // Replaced between its header and its logs: the next step reads the block now at
            // this height and checks its parent like any other (a deeper reorg shows there).
            Metrics::add(&self.metrics.reorgs_handled, 1);
            return Ok(Step::Progress);
        };
        let events = decode(&logs, &self.manifest.contracts)?;
        let n = events.len() as u64;
        self.store
            .commit(
                &RangeCommit {
                    from: number,
                    to: number,
                    to_hash: block.hash,
                    blocks: vec![(number, block.hash, Some(block.parent_hash))],
                    events,
                },
                true,
            )
            .await?;
        Metrics::add(&self.metrics.events_indexed, n);
        Metrics::add(&self.metrics.commits, 1);
        Metrics::set(&self.metrics.cursor, number);
        if n > 0 {
            tracing::debug!(block = number, events = n, "block indexed");
        }
        *cursor = Cursor {
            number,
            hash: Some(block.hash),
        };
        Ok(Step::Progress)
    }

    /// Finds the highest stored block still on the chain, rolls back above it and recomputes
    /// the derived state; refuses a reorg deeper than the window.
    async fn handle_reorg(&self, cursor: Cursor) -> Result<Cursor, IndexerError> {
        let window = self.config.reorg_window;
        let lowest = cursor.number.saturating_sub(window);
        let stored = self.store.stored_hashes(lowest).await?;
        let mut fork: Option<BlockRef> = None;
        for (number, hash) in &stored {
            if let Some(block) = self.chain.block(BlockNumberOrTag::Number(*number)).await
                && block.hash == *hash
            {
                fork = Some(block);
                break;
            }
        }
        let Some(fork) = fork else {
            return Err(IndexerError::DeepReorg {
                cursor: cursor.number,
                lowest: stored.last().map_or(lowest, |s| s.0),
                checked: stored.len(),
                window,
            });
        };
        let depth = cursor.number - fork.num();
        self.store.rollback_to(fork.num(), fork.hash).await?;
        Metrics::add(&self.metrics.reorgs_handled, 1);
        Metrics::add(&self.metrics.reorged_blocks, depth);
        Metrics::set(&self.metrics.cursor, fork.num());
        tracing::warn!(
            fork_block = fork.num(),
            depth,
            old_cursor = cursor.number,
            "reorg handled: rolled back above the fork point and recomputed the derived state"
        );
        Ok(Cursor {
            number: fork.num(),
            hash: Some(fork.hash),
        })
    }
}

fn decode(logs: &[Log], contracts: &ContractAddresses) -> Result<EventBatch, IndexerError> {
    let mut batch = EventBatch::default();
    for log in logs {
        if log.removed {
            continue;
        }
        batch.push_log(log, contracts)?;
    }
    Ok(batch)
}
