//! Full verification of the audit log, and inclusion proofs of single rows.
//!
//! [`verify_audit_log`] streams the whole table in sequence order (bounded memory: one page of
//! rows and one batch of hashes at a time), recomputes every row's chained hash and link, and
//! recomputes the Merkle root of every batch anchored in `AuditAnchor` (read from the chain,
//! not from the database) over the stored hashes. It reports the first row that is missing or
//! does not verify. The CLI calls it through [`AnchorReader`] and a database pool.

use super::{LogError, anchor::range_hashes};
use alloy::{
    primitives::{Address, B256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use carechain_contracts::{AuditAnchor, merkle::MerkleTree};
use carechain_formats::audit_chain::{ChainChecker, Fault, recompute_all};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;

/// Rows fetched per page while verifying.
const PAGE: i64 = 5000;

/// Read access to `AuditAnchor`.
#[derive(Debug, Clone)]
pub struct AnchorReader {
    provider: DynProvider,
    contract: Address,
    timeout: Duration,
}

/// One anchored batch as the contract reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnchoredBatch {
    /// Batch id.
    pub batch_id: u64,
    /// First sequence number.
    pub from_seq: u64,
    /// Last sequence number.
    pub to_seq: u64,
    /// Anchored Merkle root.
    pub root: B256,
    /// The anchoring key.
    pub gateway: Address,
}

impl AnchorReader {
    /// A reader of the `AuditAnchor` at `contract` through `rpc_url` (plain HTTP, or HTTPS
    /// trusting the system's roots).
    pub fn new(rpc_url: &str, contract: Address, timeout: Duration) -> Result<Self, LogError> {
        let rpc = carechain_tls::RpcEndpoint::parse(rpc_url, None)
            .map_err(|e| LogError::Chain(e.to_string()))?;
        Self::connect(&rpc, contract, timeout)
    }

    /// A reader of the `AuditAnchor` at `contract` through `rpc`.
    pub fn connect(
        rpc: &carechain_tls::RpcEndpoint,
        contract: Address,
        timeout: Duration,
    ) -> Result<Self, LogError> {
        let client = rpc
            .client(timeout)
            .map_err(|e| LogError::Chain(e.to_string()))?;
        Ok(Self {
            provider: ProviderBuilder::new().connect_client(client).erased(),
            contract,
            timeout,
        })
    }

    /// The contract's address.
    pub fn contract(&self) -> Address {
        self.contract
    }

    /// The provider (plain JSON-RPC, no signer).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, LogError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| LogError::Chain("chain call timed out".into()))?
            .map_err(|e| LogError::Chain(e.to_string()))
    }

    /// Every batch `gateway` anchored (its log's sequence), in order.
    pub async fn batches_of(&self, gateway: Address) -> Result<Vec<AnchoredBatch>, LogError> {
        Ok(self
            .batches()
            .await?
            .into_iter()
            .filter(|b| b.gateway == gateway)
            .collect())
    }

    /// Every anchored batch of every gateway, in order.
    pub async fn batches(&self) -> Result<Vec<AnchoredBatch>, LogError> {
        let anchor = AuditAnchor::new(self.contract, &self.provider);
        let count = self
            .timed(async { anchor.batchCount().call().await })
            .await?;
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for id in 1..=count {
            let b = self.timed(async { anchor.batch(id).call().await }).await?;
            out.push(AnchoredBatch {
                batch_id: id,
                from_seq: b.fromSeq,
                to_seq: b.toSeq,
                root: b.root,
                gateway: b.gateway,
            });
        }
        Ok(out)
    }

    /// `AuditAnchor.verifyInclusion` on chain.
    pub async fn verify_inclusion(
        &self,
        batch_id: u64,
        value: B256,
        proof: Vec<B256>,
    ) -> Result<bool, LogError> {
        let anchor = AuditAnchor::new(self.contract, &self.provider);
        self.timed(async { anchor.verifyInclusion(batch_id, value, proof).call().await })
            .await
    }
}

/// What is wrong with a row: the audit chain's faults.
pub type ProblemKind = Fault;

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Sequence number of the first bad row.
    pub seq: u64,
    /// What is wrong.
    pub kind: ProblemKind,
    /// The anchored batch concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none", rename = "batchId")]
    pub batch_id: Option<u64>,
}

/// The result of a full verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Rows read.
    pub rows: u64,
    /// Highest sequence number read.
    pub last_seq: u64,
    /// Anchored batches whose root was recomputed.
    pub batches_checked: u64,
    /// Last sequence number covered by an anchored batch (0 when none).
    pub anchored_to: u64,
    /// The first problem, or `None` when the log verifies.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether the log verified.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The key this database's log is anchored with, as its anchoring records say (the most recent
/// anchored range's), or `None` before its first batch.
pub async fn log_anchor_key(pool: &PgPool) -> Result<Option<Address>, LogError> {
    let key: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT gateway FROM gateway_audit_anchors WHERE state = 'anchored'
         ORDER BY to_seq DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(key.and_then(|k| (k.len() == 20).then(|| Address::from_slice(&k))))
}

/// Recomputes the hash chain of the whole audit log and every root anchored by `gateway`
/// (the log's anchoring key; `None`: the key its anchoring records name), read from the chain
/// through `anchors`; reports the first missing or tampered row. Every gateway's log has its
/// own sequence on chain.
pub async fn verify_audit_log(
    pool: &PgPool,
    anchors: &AnchorReader,
    gateway: Option<Address>,
) -> Result<VerifyReport, LogError> {
    let batches = match gateway {
        Some(key) => anchors.batches_of(key).await?,
        None => match log_anchor_key(pool).await? {
            Some(key) => anchors.batches_of(key).await?,
            None => Vec::new(),
        },
    };
    let anchored_to = batches.last().map(|b| b.to_seq).unwrap_or(0);
    let mut report = VerifyReport {
        rows: 0,
        last_seq: 0,
        batches_checked: 0,
        anchored_to,
        problem: None,
    };
    let mut batch_iter = batches.iter().peekable();
    let mut batch_hashes: Vec<B256> = Vec::new();
    let mut checker = ChainChecker::new();
    'pages: loop {
        let rows = crate::audit::stored_rows(pool, checker.next_seq(), Some(PAGE)).await?;
        if rows.is_empty() {
            break;
        }
        // Each row's hash depends only on its own stored `prev_hash`, so a page is hashed on
        // every core; the checker then walks the links in order.
        let (rows, computed) = tokio::task::spawn_blocking(move || {
            let computed = recompute_all(&rows);
            (rows, computed)
        })
        .await
        .map_err(|e| LogError::Chain(format!("verification task failed: {e}")))?;
        for (row, computed) in rows.iter().zip(computed) {
            let current = batch_iter.peek().copied();
            let hash = match checker.check(row, computed) {
                Ok(hash) => hash,
                Err((seq, kind)) => {
                    report.problem = Some(Problem {
                        seq,
                        kind,
                        batch_id: current
                            .filter(|b| b.from_seq <= seq && seq <= b.to_seq)
                            .map(|b| b.batch_id),
                    });
                    break 'pages;
                }
            };
            let seq = row.seq;
            report.rows += 1;
            report.last_seq = seq;
            if let Some(batch) = current
                && batch.from_seq <= seq
            {
                batch_hashes.push(hash);
                if seq == batch.to_seq {
                    let root = MerkleTree::new(&batch_hashes).map(|t| t.root());
                    if root != Some(batch.root) {
                        report.problem = Some(Problem {
                            seq: batch.from_seq,
                            kind: ProblemKind::RootMismatch,
                            batch_id: Some(batch.batch_id),
                        });
                        break 'pages;
                    }
                    report.batches_checked += 1;
                    batch_hashes.clear();
                    batch_iter.next();
                }
            }
        }
    }
    if report.problem.is_none()
        && let Some(batch) = batch_iter.peek()
    {
        // The table ends inside (or before) an anchored range.
        report.problem = Some(Problem {
            seq: checker.next_seq(),
            kind: ProblemKind::Missing,
            batch_id: Some(batch.batch_id),
        });
    }
    Ok(report)
}

/// An audit row's inclusion in its anchored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    /// The row.
    pub seq: u64,
    /// Its chained hash (the Merkle value).
    pub hash: B256,
    /// The batch.
    pub batch_id: u64,
    /// First row of the batch.
    pub from_seq: u64,
    /// Last row of the batch.
    pub to_seq: u64,
    /// The anchored root.
    pub root: B256,
    /// Sibling hashes from the leaf upwards (`AnchorTree` convention).
    pub proof: Vec<B256>,
    /// The anchoring transaction.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: u64,
    /// `AuditAnchor.verifyInclusion(batchId, hash, proof)` evaluated on chain now.
    pub verified_on_chain: bool,
}

/// `(from_seq, to_seq, root, tx_hash, block_number, batch_id)` of an anchored range.
type AnchorRow = (i64, i64, Vec<u8>, Vec<u8>, i64, i64);

/// The inclusion proof of row `seq`, or `None` when the row is not anchored yet. The batch's
/// rows are re-chained first: a proof is never produced over tampered rows.
pub async fn inclusion_proof(
    pool: &PgPool,
    anchors: &AnchorReader,
    seq: u64,
) -> Result<Option<InclusionProof>, LogError> {
    let seq_i = i64::try_from(seq).map_err(|_| LogError::Missing(seq))?;
    let batch: Option<AnchorRow> = sqlx::query_as(
        "SELECT from_seq, to_seq, root, tx_hash, block_number, batch_id FROM gateway_audit_anchors
         WHERE state = 'anchored' AND from_seq <= $1 AND to_seq >= $1",
    )
    .bind(seq_i)
    .fetch_optional(pool)
    .await?;
    let Some((from, to, root, tx_hash, block, batch_id)) = batch else {
        return Ok(None);
    };
    let (from, to) = (from as u64, to as u64);
    let hashes = range_hashes(pool, from, to, true).await?;
    let tree = MerkleTree::new(&hashes).ok_or(LogError::Missing(from))?;
    let root = B256::try_from(root.as_slice()).map_err(|_| LogError::Tampered(from))?;
    if tree.root() != root {
        return Err(LogError::Tampered(from));
    }
    let index = usize::try_from(seq - from).map_err(|_| LogError::Missing(seq))?;
    let proof = tree.proof(index).ok_or(LogError::Missing(seq))?;
    let hash = hashes[index];
    let verified_on_chain = anchors
        .verify_inclusion(batch_id as u64, hash, proof.clone())
        .await?;
    Ok(Some(InclusionProof {
        seq,
        hash,
        batch_id: batch_id as u64,
        from_seq: from,
        to_seq: to,
        root,
        proof,
        tx_hash: B256::try_from(tx_hash.as_slice()).unwrap_or_default(),
        block_number: block as u64,
        verified_on_chain,
    }))
}
