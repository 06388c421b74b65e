//! JSON-RPC access to the chain: every call retried with backoff (and logged) until it
//! succeeds, eth_getLogs ranges split when the provider refuses them.

use crate::metrics::Metrics;
use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256, U64},
    providers::{Provider, RootProvider},
    rpc::types::{Filter, Log},
    transports::TransportError,
};
use carechain_tls::{RpcEndpoint, TlsError};
use serde::Deserialize;
use std::{collections::VecDeque, future::Future, sync::Arc, time::Duration};

/// The fields of a block header the indexer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockRef {
    /// Block number.
    pub number: U64,
    /// Block hash.
    pub hash: B256,
    /// Parent block hash.
    pub parent_hash: B256,
}

impl BlockRef {
    /// The block number as `u64`.
    pub fn num(&self) -> u64 {
        self.number.to::<u64>()
    }
}

/// A chain endpoint with retries.
#[derive(Debug, Clone)]
pub struct Chain {
    provider: RootProvider,
    addresses: Vec<Address>,
    topics: Vec<B256>,
    metrics: Arc<Metrics>,
    max_backoff: Duration,
}

impl Chain {
    /// The endpoint whose requests time out after `timeout` (HTTPS checked against its
    /// trust; errors name it by its redacted URL only); log filters select `addresses` and
    /// event signatures `topics`.
    pub fn new(
        endpoint: &RpcEndpoint,
        timeout: Duration,
        max_backoff: Duration,
        addresses: Vec<Address>,
        topics: Vec<B256>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            provider: RootProvider::new(endpoint.client(timeout)?),
            addresses,
            topics,
            metrics,
            max_backoff,
        })
    }

    /// Runs `call` until it succeeds, pausing 100 ms, 200 ms, ... up to the maximum backoff
    /// between attempts and logging each failure.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let mut pause = Duration::from_millis(100);
        let mut attempt: u32 = 0;
        loop {
            match call().await {
                Ok(value) => {
                    if attempt > 0 {
                        tracing::info!(
                            call = what,
                            attempts = attempt + 1,
                            "RPC call succeeded after retries"
                        );
                    }
                    return value;
                }
                Err(error) => {
                    attempt += 1;
                    Metrics::add(&self.metrics.rpc_retries, 1);
                    tracing::warn!(
                        call = what,
                        attempt,
                        retry_in_ms = pause.as_millis() as u64,
                        %error,
                        "RPC call failed; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> u64 {
        self.retry("eth_chainId", || self.provider.get_chain_id().into_future())
            .await
    }

    /// `eth_blockNumber`.
    pub async fn head(&self) -> u64 {
        let head = self
            .retry("eth_blockNumber", || {
                self.provider.get_block_number().into_future()
            })
            .await;
        Metrics::set(&self.metrics.chain_head, head);
        head
    }

    /// The header of block `tag` (a number or a tag), `None` if the node has no such block.
    pub async fn block(&self, tag: BlockNumberOrTag) -> Option<BlockRef> {
        self.retry("eth_getBlockByNumber", || {
            self.provider
                .raw_request::<_, Option<BlockRef>>("eth_getBlockByNumber".into(), (tag, false))
        })
        .await
    }

    /// The node's `finalized` block number, `None` if it does not know the tag.
    pub async fn finalized(&self) -> Option<u64> {
        // A node without the tag answers with an error, which is not worth retrying.
        match self
            .provider
            .raw_request::<_, Option<BlockRef>>(
                "eth_getBlockByNumber".into(),
                (BlockNumberOrTag::Finalized, false),
            )
            .await
        {
            Ok(block) => block.map(|b| b.num()),
            Err(error) if error.is_error_resp() => None,
            Err(_) => self
                .block(BlockNumberOrTag::Finalized)
                .await
                .map(|b| b.num()),
        }
    }

    fn filter(&self) -> Filter {
        Filter::new()
            .address(self.addresses.clone())
            .event_signature(self.topics.clone())
    }

    /// The header of the block with hash `hash`, `None` if the node does not know it (any
    /// more: a block reorganised away).
    pub async fn block_by_hash(&self, hash: B256) -> Option<BlockRef> {
        self.retry("eth_getBlockByHash", || {
            self.provider
                .raw_request::<_, Option<BlockRef>>("eth_getBlockByHash".into(), (hash, false))
        })
        .await
    }

    /// The logs of the block with hash `hash`, or `None` when the node no longer knows that
    /// block: it was reorganised away after its header was read (nodes answer "unknown block",
    /// or "block not found", with an error). An error answer for a block the node still knows,
    /// and every transport error, is retried with backoff.
    pub async fn logs_at(&self, hash: B256) -> Option<Vec<Log>> {
        let filter = self.filter().at_block_hash(hash);
        let mut pause = Duration::from_millis(100);
        loop {
            match self.provider.get_logs(&filter).await {
                Ok(logs) => return Some(logs),
                Err(error) => {
                    // Whatever the error says (its wording differs between nodes), a block the
                    // node cannot find by its hash is gone from the canonical chain.
                    if error.is_error_resp() && self.block_by_hash(hash).await.is_none() {
                        tracing::warn!(
                            block_hash = %hash,
                            %error,
                            "the block vanished before its logs were fetched: chain reorganised"
                        );
                        return None;
                    }
                    Metrics::add(&self.metrics.rpc_retries, 1);
                    tracing::warn!(
                        call = "eth_getLogs(blockHash)",
                        retry_in_ms = pause.as_millis() as u64,
                        %error,
                        "RPC call failed; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// The logs of blocks `[from, to]`, in order. A range the provider refuses (an error
    /// answer, e.g. a result limit) is split in halves; `on_split` learns the size that worked.
    pub async fn logs_in_range(&self, from: u64, to: u64, on_split: impl Fn(u64)) -> Vec<Log> {
        let mut pieces = VecDeque::from([(from, to)]);
        let mut logs = Vec::new();
        let mut pause = Duration::from_millis(100);
        while let Some((a, b)) = pieces.pop_front() {
            let filter = self.filter().from_block(a).to_block(b);
            match self.provider.get_logs(&filter).await {
                Ok(mut found) => {
                    if logs.is_empty() {
                        logs = found;
                    } else {
                        logs.append(&mut found);
                    }
                    pause = Duration::from_millis(100);
                }
                Err(error) if error.is_error_resp() && b > a => {
                    let mid = a + (b - a) / 2;
                    tracing::debug!(from = a, to = b, %error, "eth_getLogs range refused; splitting");
                    on_split(mid - a + 1);
                    pieces.push_front((mid + 1, b));
                    pieces.push_front((a, mid));
                }
                Err(error) => {
                    Metrics::add(&self.metrics.rpc_retries, 1);
                    tracing::warn!(
                        call = "eth_getLogs",
                        from = a,
                        to = b,
                        retry_in_ms = pause.as_millis() as u64,
                        %error,
                        "RPC call failed; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.max_backoff);
                    pieces.push_front((a, b));
                }
            }
        }
        logs
    }
}
