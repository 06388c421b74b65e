//! Compliance: the audit log searched and exported by compliance staff and shown to patients
//! ("who accessed my data"), the consent history, and the break-glass review. The log itself,
//! its anchoring and its verification are in [`crate::audit`]; the routes in
//! [`crate::http::compliance`].
//!
//! - [`events`]: the AuditEvent index (gateway rows and chain events) and its search;
//! - [`access`]: who may see what (compliance members, patients, delegates);
//! - [`consents`]: a patient's consent history from the chain's index, as FHIR Consent;
//! - [`lists`]: the paging of the consent history and of the break-glass review queue.

pub mod access;
pub mod consents;
pub mod events;
pub mod lists;

use crate::audit::{LogError, anchor, verify};
use alloy::{eips::BlockNumberOrTag, primitives::Address, providers::Provider};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The compliance part of the gateway's state.
#[derive(Debug, Clone)]
pub struct Compliance {
    anchors: verify::AnchorReader,
    chain_id: u64,
    anchor_key: Option<Address>,
}

impl Compliance {
    /// Reads `AuditAnchor` at `contract` through `rpc`; this gateway's log is anchored with
    /// `anchor_key` (when it anchors at all).
    pub fn new(
        rpc: &carechain_tls::RpcEndpoint,
        contract: Address,
        chain_id: u64,
        timeout: Duration,
        anchor_key: Option<Address>,
    ) -> Result<Self, LogError> {
        Ok(Self {
            anchors: verify::AnchorReader::connect(rpc, contract, timeout)?,
            chain_id,
            anchor_key,
        })
    }

    /// The key this gateway anchors its audit log with, when configured (the log's sequence
    /// on chain is that key's).
    pub fn anchor_key(&self) -> Option<Address> {
        self.anchor_key
    }

    /// Read access to `AuditAnchor`.
    pub fn anchors(&self) -> &verify::AnchorReader {
        &self.anchors
    }

    /// The chain.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Starts the background tasks: block times of chain events (always) and, with a key,
    /// audit anchoring.
    pub fn spawn_background(
        &self,
        pool: PgPool,
        anchorer: Option<anchor::Anchorer>,
        poll: Duration,
        stop: CancellationToken,
    ) {
        if let Some(anchorer) = anchorer {
            anchorer.spawn(stop.clone());
        }
        let this = self.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                match this.fill_block_times(&pool).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "block times of chain events not fetched"),
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
    }

    /// Fetches the timestamps of up to 200 blocks holding chain events served as AuditEvents;
    /// returns how many were stored.
    pub async fn fill_block_times(&self, pool: &PgPool) -> Result<usize, LogError> {
        let chain_id = i64::try_from(self.chain_id)
            .map_err(|_| LogError::Chain("chain id out of range".into()))?;
        let blocks: Vec<i64> = sqlx::query_scalar(
            // The indexer appends blocks in order: only blocks above the newest known time
            // can lack one (a reorg's replaced blocks keep their old time; see the README).
            "SELECT DISTINCT c.block_number FROM gateway_chain_audit_events c
             WHERE c.chain_id = $1 AND c.block_number > COALESCE(
               (SELECT max(block_number) FROM gateway_block_times WHERE chain_id = $1), -1)
             ORDER BY c.block_number LIMIT 200",
        )
        .bind(chain_id)
        .fetch_all(pool)
        .await?;
        let provider = self.anchors.provider();
        let mut numbers = Vec::with_capacity(blocks.len());
        let mut times = Vec::with_capacity(blocks.len());
        for number in blocks {
            let block = provider
                .get_block_by_number(BlockNumberOrTag::Number(number as u64))
                .await
                .map_err(|e| LogError::Chain(e.to_string()))?
                .ok_or_else(|| LogError::Chain(format!("block {number} not found")))?;
            let ts = chrono::DateTime::<chrono::Utc>::from_timestamp(
                i64::try_from(block.header.timestamp).unwrap_or(i64::MAX),
                0,
            )
            .ok_or_else(|| LogError::Chain("block time out of range".into()))?;
            numbers.push(number);
            times.push(ts);
        }
        let n = numbers.len();
        if n > 0 {
            sqlx::query(
                "INSERT INTO gateway_block_times (chain_id, block_number, block_time)
                 SELECT $1, b, t FROM UNNEST($2::bigint[], $3::timestamptz[]) AS x(b, t)
                 ON CONFLICT DO NOTHING",
            )
            .bind(chain_id)
            .bind(&numbers)
            .bind(&times)
            .execute(pool)
            .await?;
        }
        Ok(n)
    }
}

/// Sets up the compliance services from the gateway's configuration and starts their
/// background tasks (stopped by `stop`).
pub fn start(
    config: &crate::GatewayConfig,
    rpc: &carechain_tls::RpcEndpoint,
    pool: &PgPool,
    audit_anchor: Address,
    chain_id: u64,
    stop: CancellationToken,
) -> Result<Compliance, crate::GatewayError> {
    let timeout = Duration::from_millis(config.chain_timeout_ms);
    let settings = &config.anchoring;
    let signer = settings.anchor_signer()?;
    let compliance = Compliance::new(
        rpc,
        audit_anchor,
        chain_id,
        timeout,
        signer.as_ref().map(|s| s.address()),
    )?;
    let poll = Duration::from_millis(settings.audit_anchor_poll_ms);
    let anchorer = match signer {
        None => None,
        Some(signer) => Some(anchor::Anchorer::new(
            pool.clone(),
            rpc,
            audit_anchor,
            chain_id,
            signer,
            anchor::AnchorSettings {
                batch_rows: settings.audit_anchor_rows,
                max_age: Duration::from_millis(settings.audit_anchor_interval_ms),
                poll,
                chain_timeout: timeout,
            },
        )?),
    };
    compliance.spawn_background(pool.clone(), anchorer, poll, stop);
    Ok(compliance)
}
