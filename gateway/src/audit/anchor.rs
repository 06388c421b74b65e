//! Anchoring the audit log in `AuditAnchor`.
//!
//! A background task batches the hash-chained audit rows by count or age, builds the Merkle
//! tree of `carechain_contracts::merkle` (the contract's `AnchorTree`) over the rows' chained
//! hashes, and anchors the root with the gateway's audit key. Each batch is written to
//! `gateway_audit_anchors` as `pending` (committed) *before* its transaction is sent and
//! becomes `anchored` with the transaction's hash, block and batch id once mined.
//!
//! Restarts: the contract accepts only the range starting at its `nextSeq`, so no range is ever
//! anchored twice; on every round the task first reconciles its pending rows with the chain
//! (`nextSeq`) and the indexer's `audit_batches` (a pending range below `nextSeq` was mined:
//! its transaction is taken from the index), and re-sends a pending range the chain has not
//! seen. Ranges therefore follow each other without gap or overlap. Several gateways sharing
//! the database elect one anchorer through a PostgreSQL advisory lock.

use super::LogError;
use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{AuditAnchor, merkle::MerkleTree};
use carechain_formats::audit_chain::{ChainChecker, StoredRow};
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Session advisory lock held by the one anchoring gateway ("carechain anchor").
const ANCHOR_LOCK_KEY: i64 = 0x6361_7265_616e_6368;

/// How batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct AnchorSettings {
    /// Anchor as soon as this many rows are unanchored; also the largest batch.
    pub batch_rows: u64,
    /// Anchor whatever is unanchored once its oldest row is this old.
    pub max_age: Duration,
    /// Pause between rounds.
    pub poll: Duration,
    /// Time limit of one chain call (a receipt wait gets four times as long).
    pub chain_timeout: Duration,
}

/// What one anchoring round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Nothing to anchor yet.
    Idle,
    /// A pending range is mined but the indexer has not recorded it yet.
    WaitingForIndex,
    /// A range was anchored.
    Anchored {
        /// First sequence number.
        from: u64,
        /// Last sequence number.
        to: u64,
        /// The anchoring transaction.
        tx_hash: B256,
    },
}

/// The anchoring side of `AuditAnchor`, with the gateway's audit key.
#[derive(Debug, Clone)]
pub struct Anchorer {
    pool: PgPool,
    provider: DynProvider,
    contract: Address,
    chain_id: u64,
    key: Address,
    settings: AnchorSettings,
}

fn chain_err(err: impl std::fmt::Display) -> LogError {
    LogError::Chain(err.to_string())
}

fn to_i64(v: u64) -> Result<i64, LogError> {
    i64::try_from(v).map_err(|_| LogError::Chain("sequence number out of range".into()))
}

impl Anchorer {
    /// An anchorer sending with `signer` to the `AuditAnchor` at `contract`.
    pub fn new(
        pool: PgPool,
        rpc: &carechain_tls::RpcEndpoint,
        contract: Address,
        chain_id: u64,
        signer: PrivateKeySigner,
        settings: AnchorSettings,
    ) -> Result<Self, LogError> {
        let client = rpc.client(settings.chain_timeout).map_err(chain_err)?;
        let key = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_client(client)
            .erased();
        Ok(Self {
            pool,
            provider,
            contract,
            chain_id,
            key,
            settings,
        })
    }

    /// The anchoring key.
    pub fn key(&self) -> Address {
        self.key
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, LogError>>,
    ) -> Result<T, LogError> {
        tokio::time::timeout(self.settings.chain_timeout, fut)
            .await
            .map_err(|_| LogError::Chain("chain call timed out".into()))?
    }

    /// The contract's next expected sequence number.
    async fn next_seq(&self) -> Result<u64, LogError> {
        let anchor = AuditAnchor::new(self.contract, &self.provider);
        self.timed(async { anchor.nextSeq(self.key).call().await.map_err(chain_err) })
            .await
    }

    /// Runs rounds until `stop` is cancelled, while holding the anchoring lock.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut lock: Option<PgConnection> = None;
            while !stop.is_cancelled() {
                if lock.is_none() {
                    lock = self.try_lock().await;
                }
                if lock.is_some() {
                    match self.round().await {
                        Ok(Round::Anchored { .. }) => continue,
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(%err, "audit anchoring round failed; retrying");
                            // The lock connection may be the broken part: take it again.
                            if let Some(conn) = lock.take() {
                                let _ = conn.close().await;
                            }
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.settings.poll) => {}
                }
            }
            if let Some(conn) = lock {
                let _ = conn.close().await;
            }
        })
    }

    /// A connection holding the anchoring lock, or `None` when another gateway holds it.
    async fn try_lock(&self) -> Option<PgConnection> {
        crate::db::try_advisory_lock(&self.pool, ANCHOR_LOCK_KEY).await
    }

    /// One round: reconcile, then anchor the next range when one is due. Callers must hold the
    /// anchoring lock (or be alone, as in tests).
    pub async fn round(&self) -> Result<Round, LogError> {
        let next = self.next_seq().await?;
        if !self.reconcile(next).await? {
            return Ok(Round::WaitingForIndex);
        }
        // A pending range the chain has not seen yet (sent before a crash, or never sent):
        // send it again, exactly as recorded.
        let pending: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT from_seq, to_seq, root FROM gateway_audit_anchors
             WHERE state = 'pending' ORDER BY from_seq LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let (from, to, root) = match pending {
            Some((from, to, root)) => {
                let (from, to) = (from as u64, to as u64);
                if from != next {
                    return Err(LogError::Chain(format!(
                        "pending audit range {from}..{to} does not start at the contract's next sequence {next}"
                    )));
                }
                let recomputed = self.range_root(from, to).await?;
                if recomputed.as_slice() != root.as_slice() {
                    return Err(LogError::Tampered(from));
                }
                (from, to, recomputed)
            }
            None => match self.due_range(next).await? {
                None => return Ok(Round::Idle),
                Some((from, to)) => {
                    let root = self.range_root(from, to).await?;
                    let inserted = sqlx::query(
                        "INSERT INTO gateway_audit_anchors (from_seq, to_seq, root, state, gateway)
                         VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(to_i64(from)?)
                    .bind(to_i64(to)?)
                    .bind(root.as_slice())
                    .bind(self.key.as_slice())
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        return Ok(Round::Idle);
                    }
                    (from, to, root)
                }
            },
        };
        let (tx_hash, block, batch_id) = self.send(from, to, root).await?;
        sqlx::query(
            "UPDATE gateway_audit_anchors
             SET state = 'anchored', tx_hash = $2, block_number = $3, batch_id = $4, anchored_at = now()
             WHERE from_seq = $1",
        )
        .bind(to_i64(from)?)
        .bind(tx_hash.as_slice())
        .bind(to_i64(block)?)
        .bind(to_i64(batch_id)?)
        .execute(&self.pool)
        .await?;
        tracing::info!(from, to, %tx_hash, block, batch_id, "audit range anchored");
        Ok(Round::Anchored { from, to, tx_hash })
    }

    /// Brings `gateway_audit_anchors` in line with the chain: pending ranges below `next` are
    /// marked anchored from the indexer's `audit_batches`, and batches anchored by someone else
    /// are mirrored. Returns false while a mined range is not indexed yet.
    async fn reconcile(&self, next: u64) -> Result<bool, LogError> {
        let chain_id = to_i64(self.chain_id)?;
        // Only this key's batches: every anchoring key has a sequence of its own.
        let key = self.key.as_slice();
        let mut tx = self.pool.begin().await?;
        // A pending range the chain holds with another end or root was anchored by someone
        // else: the chain's batch replaces it.
        sqlx::query(
            "DELETE FROM gateway_audit_anchors a USING audit_batches b
             WHERE a.state = 'pending' AND b.chain_id = $1 AND b.gateway = $2
               AND b.from_seq = a.from_seq AND (b.to_seq <> a.to_seq OR b.root <> a.root)",
        )
        .bind(chain_id)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE gateway_audit_anchors a
             SET state = 'anchored', tx_hash = b.tx_hash, block_number = b.block_number,
                 batch_id = b.batch_id::bigint, gateway = b.gateway, anchored_at = now()
             FROM audit_batches b
             WHERE a.state = 'pending' AND b.chain_id = $1 AND b.gateway = $2
               AND b.from_seq = a.from_seq AND b.to_seq = a.to_seq AND b.root = a.root",
        )
        .bind(chain_id)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO gateway_audit_anchors
               (from_seq, to_seq, root, state, gateway, tx_hash, batch_id, block_number, anchored_at)
             SELECT b.from_seq::bigint, b.to_seq::bigint, b.root, 'anchored', b.gateway, b.tx_hash,
                    b.batch_id::bigint, b.block_number, now()
             FROM audit_batches b
             WHERE b.chain_id = $1 AND b.gateway = $2 AND b.to_seq > (
               SELECT COALESCE(max(to_seq), 0) FROM gateway_audit_anchors WHERE state = 'anchored')
             ON CONFLICT DO NOTHING",
        )
        .bind(chain_id)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        let unindexed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM gateway_audit_anchors WHERE state = 'pending' AND from_seq < $1",
        )
        .bind(to_i64(next)?)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(unindexed == 0)
    }

    /// The range starting at `from` when one is due (enough rows, or old enough).
    async fn due_range(&self, from: u64) -> Result<Option<(u64, u64)>, LogError> {
        let (last, oldest): (Option<i64>, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT (SELECT max(seq) FROM gateway_audit_log),
                    (SELECT recorded FROM gateway_audit_log WHERE seq = $1)",
        )
        .bind(to_i64(from)?)
        .fetch_one(&self.pool)
        .await?;
        let (Some(last), Some(oldest)) = (last, oldest) else {
            return Ok(None);
        };
        let last = last as u64;
        if last < from {
            return Ok(None);
        }
        let available = last - from + 1;
        let age = (Utc::now() - oldest).to_std().unwrap_or_default();
        if available < self.settings.batch_rows && age < self.settings.max_age {
            return Ok(None);
        }
        Ok(Some((from, last.min(from + self.settings.batch_rows - 1))))
    }

    /// The Merkle root over rows `from..=to`, after checking their hash chain: a tampered row is
    /// never anchored.
    async fn range_root(&self, from: u64, to: u64) -> Result<B256, LogError> {
        let hashes = range_hashes(&self.pool, from, to, true).await?;
        MerkleTree::new(&hashes)
            .map(|t| t.root())
            .ok_or(LogError::Missing(from))
    }

    async fn send(&self, from: u64, to: u64, root: B256) -> Result<(B256, u64, u64), LogError> {
        let anchor = AuditAnchor::new(self.contract, &self.provider);
        let pending = self
            .timed(async {
                anchor
                    .anchorBatch(from, to, root)
                    .send()
                    .await
                    .map_err(chain_err)
            })
            .await?;
        let tx_hash = *pending.tx_hash();
        let poll = async {
            let mut delay = Duration::from_millis(5);
            loop {
                if let Some(receipt) = self
                    .provider
                    .get_transaction_receipt(tx_hash)
                    .await
                    .map_err(chain_err)?
                {
                    return Ok::<_, LogError>(receipt);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
        };
        let receipt = tokio::time::timeout(self.settings.chain_timeout * 4, poll)
            .await
            .map_err(|_| LogError::Chain("no receipt in time".into()))??;
        if !receipt.status() {
            return Err(LogError::Chain(format!(
                "anchoring transaction {tx_hash} reverted"
            )));
        }
        let batch_id = receipt
            .logs()
            .iter()
            .filter(|log| log.address() == self.contract)
            .find_map(|log| log.log_decode::<AuditAnchor::AuditBatchAnchored>().ok())
            .map(|log| log.inner.data.batchId)
            .ok_or_else(|| LogError::Chain("no AuditBatchAnchored event".into()))?;
        Ok((tx_hash, receipt.block_number.unwrap_or_default(), batch_id))
    }
}

/// The chained hashes of rows `from..=to`, in order. With `check`, the chain is recomputed
/// (from the hash of row `from - 1`) by the audit chain's checker, and a missing or tampered
/// row is an error; without, only gaps and malformed hashes are.
pub(crate) async fn range_hashes(
    pool: &PgPool,
    from: u64,
    to: u64,
    check: bool,
) -> Result<Vec<B256>, LogError> {
    let mut checker = if from > 1 && check {
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM gateway_audit_log WHERE seq = $1")
                .bind(to_i64(from - 1)?)
                .fetch_optional(pool)
                .await?;
        let hash = hash.ok_or(LogError::Missing(from - 1))?;
        let hash = B256::try_from(hash.as_slice()).map_err(|_| LogError::Tampered(from - 1))?;
        ChainChecker::after(from - 1, hash)
    } else {
        ChainChecker::new()
    };
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT seq, event::text, prev_hash, hash FROM gateway_audit_log
         WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
    )
    .bind(to_i64(from)?)
    .bind(to_i64(to)?)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(crate::audit::stored_row)
    .collect();
    let hashes = if check {
        checker.check_page(&rows).map_err(LogError::from_fault)?
    } else {
        let mut hashes = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let expected_seq = from + i as u64;
            if row.seq != expected_seq {
                return Err(LogError::Missing(expected_seq));
            }
            hashes.push(
                B256::try_from(row.hash.as_slice())
                    .map_err(|_| LogError::Tampered(expected_seq))?,
            );
        }
        hashes
    };
    if (hashes.len() as u64) < to - from + 1 {
        return Err(LogError::Missing(from + hashes.len() as u64));
    }
    Ok(hashes)
}
