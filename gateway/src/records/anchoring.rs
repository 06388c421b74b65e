//! Group anchoring: record versions accepted within a short window are anchored together.
//!
//! A write stores its version with `anchor_pending` and is answered at once. For each custodian
//! whose service key it holds, the gateway runs one anchorer, which:
//!
//! 1. **cuts** a batch when the oldest waiting version has waited `window`, or `max_batch` are
//!    waiting: in one database transaction it takes the waiting versions from the queue
//!    (`gateway_anchor_queue`, filled by the write that stores each version), builds the Merkle
//!    tree of `carechain_contracts::merkle` (the contract's `AnchorTree`) over their hashes,
//!    gives each queued version the root and its inclusion proof, and records the batch with
//!    the next nonce of the service key;
//! 2. **sends** `RecordRegistry.anchorBatch(root, count)`: the transaction is signed here and its
//!    hash recorded *before* it is sent, so a crash never leaves a transaction the database does
//!    not know. Up to `max_in_flight` batches are in flight with consecutive nonces;
//! 3. **follows** the batches in flight at every new block: a mined batch gives its versions
//!    their root and proof and clears their `anchor_pending` in one update of each version row
//!    (reads then verify them against the chain), and leaves the queue; a transaction the node no
//!    longer knows (dropped) is sent again with the same nonce; one not mined after `bump_after`
//!    is replaced with the same nonce and fees 25% higher; a nonce taken by another transaction
//!    of the key leaves the batch to be found anchored on chain or sent again with a new nonce.
//!    The contract refuses a root anchored twice, so no version is ever anchored twice.
//!
//! After a restart the batches in the database are exactly what is in flight: they are
//! followed (and re-sent when the node lost them) as above, and versions accepted but not cut
//! are cut as usual. Several gateways sharing a database elect one anchorer per custodian with
//! a PostgreSQL advisory lock. A read of a version still pending is served marked as not yet
//! anchored (a header and a `meta.tag`); after `grace` without an anchor it is refused as
//! unverifiable (fail closed).

use crate::{
    chain::{ChainClient, ChainError, Mined, SendOutcome, ServiceKey},
    error::AppError,
};
use alloy::primitives::{Address, B256, keccak256};
use carechain_contracts::merkle::MerkleTree;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// The header saying whether the served version's anchor was verified (`verified`) or its
/// batch is not mined yet (`pending`).
pub const ANCHOR_STATUS_HEADER: &str = "x-anchor-status";
/// The `meta.tag` system of a version's anchoring state.
pub const ANCHOR_TAG_SYSTEM: &str = "urn:carechain:anchor";
/// The `meta.tag` code of a version whose batch is not mined yet.
pub const NOT_YET_ANCHORED: &str = "not-yet-anchored";

/// How often an anchorer that does not hold its custodian's lock asks for it again.
const LOCK_RETRY: Duration = Duration::from_secs(5);

/// How often anchored batches are checked against the chain's finalized block.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

/// Gas limit of one `anchorBatch` transaction (it uses about 48,000 whatever the batch size).
const ANCHOR_BATCH_GAS: u64 = 100_000;

/// How batches are cut, sent and followed.
#[derive(Debug, Clone, Copy)]
pub struct AnchoringSettings {
    /// Cut a batch once its oldest version has waited this long.
    pub window: Duration,
    /// Cut a batch as soon as this many versions wait; also the largest batch.
    pub max_batch: usize,
    /// Most batches of one custodian sent and not yet mined.
    pub max_in_flight: usize,
    /// Replace a transaction not mined after this long (same nonce, higher fees).
    pub bump_after: Duration,
    /// How often the anchorer looks at the store and the chain.
    pub poll: Duration,
    /// How long after its write a version may be served not yet anchored; after that a read
    /// refuses it as unverifiable.
    pub grace: Duration,
}

impl AnchoringSettings {
    /// The defaults (the flags').
    pub const DEFAULT: Self = Self {
        window: Duration::from_millis(500),
        max_batch: 4096,
        max_in_flight: 16,
        bump_after: Duration::from_secs(12),
        poll: Duration::from_millis(50),
        grace: Duration::from_secs(600),
    };
}

/// Whether a version is anchored on chain yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorState {
    /// Its anchor (single or batch) was verified on chain for this answer.
    Verified,
    /// Accepted and queued for anchoring; its batch is not mined yet.
    Pending,
}

impl AnchorState {
    /// What a served resource says: pending when it carries the not-yet-anchored tag.
    pub fn of(resource: &serde_json::Value) -> Self {
        let pending = resource["meta"]["tag"].as_array().is_some_and(|tags| {
            tags.iter()
                .any(|t| t["system"] == ANCHOR_TAG_SYSTEM && t["code"] == NOT_YET_ANCHORED)
        });
        if pending {
            Self::Pending
        } else {
            Self::Verified
        }
    }

    /// Whether the version is still waiting for its batch.
    pub fn is_pending(self) -> bool {
        self == Self::Pending
    }

    /// The [`ANCHOR_STATUS_HEADER`]'s value.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Pending => "pending",
        }
    }

    /// The resource as served: a pending version carries the not-yet-anchored tag.
    pub fn mark(self, resource: &mut serde_json::Value) {
        if self == Self::Pending
            && let Some(meta) = resource
                .get_mut("meta")
                .and_then(serde_json::Value::as_object_mut)
        {
            let tags = meta
                .entry("tag")
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let Some(tags) = tags.as_array_mut() {
                tags.push(serde_json::json!({
                    "system": ANCHOR_TAG_SYSTEM,
                    "code": NOT_YET_ANCHORED,
                    "display": "Accepted; not yet anchored on chain"
                }));
            }
        }
    }
}

/// Removes the anchoring tag from a body written by a client: the gateway alone says whether
/// a version is anchored, and what is hashed is the version itself.
pub fn strip_mark(resource: &mut serde_json::Value) {
    let Some(meta) = resource
        .get_mut("meta")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let empty = match meta
        .get_mut("tag")
        .and_then(serde_json::Value::as_array_mut)
    {
        Some(tags) => {
            tags.retain(|t| {
                t.get("system").and_then(serde_json::Value::as_str) != Some(ANCHOR_TAG_SYSTEM)
            });
            tags.is_empty()
        }
        None => false,
    };
    if empty {
        meta.remove("tag");
    }
}

/// Checks, at read time, that a pending version is still within its grace period.
pub fn check_pending(
    settings: &AnchoringSettings,
    written: DateTime<Utc>,
) -> Result<AnchorState, AppError> {
    let age = (Utc::now() - written).to_std().unwrap_or_default();
    if age > settings.grace {
        tracing::error!(
            age_s = age.as_secs(),
            "a record version is still not anchored after its grace period"
        );
        return Err(AppError::Unavailable(
            "record verification is unavailable: the version's anchoring on chain is overdue",
        ));
    }
    Ok(AnchorState::Pending)
}

/// Starts one anchorer per custodian whose service key the chain client holds.
pub fn spawn(
    pool: &PgPool,
    chain: &Arc<ChainClient>,
    settings: AnchoringSettings,
    stop: &CancellationToken,
) {
    for org in chain.custodians().copied().collect::<Vec<_>>() {
        let Some(key) = chain.service_key(org).cloned() else {
            continue;
        };
        let anchorer = Anchorer {
            pool: pool.clone(),
            chain: Arc::clone(chain),
            org,
            key,
            settings,
        };
        let stop = stop.clone();
        tokio::spawn(async move { anchorer.run(stop).await });
    }
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchoringError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The chain failed.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// A stored value is out of range.
    #[error("stored batch is malformed: {0}")]
    Malformed(&'static str),
}

/// One batch in flight, as recorded.
#[derive(Debug, Clone)]
struct InFlight {
    root: B256,
    versions: u32,
    nonce: u64,
    fees: Option<(u128, u128)>,
    tx_hashes: Vec<B256>,
    sent_at: Option<DateTime<Utc>>,
}

/// The anchorer of one custodian.
struct Anchorer {
    pool: PgPool,
    chain: Arc<ChainClient>,
    org: Address,
    key: ServiceKey,
    settings: AnchoringSettings,
}

/// State of one anchorer while it holds its lock.
#[derive(Debug, Default)]
struct Session {
    /// The next nonce to give a new batch (`None`: ask the chain).
    next_nonce: Option<u64>,
    /// The head at which the batches in flight were last followed.
    followed_at: Option<u64>,
    /// When anchored batches were last confirmed against finality.
    confirmed_at: Option<tokio::time::Instant>,
}

fn to_i64(v: u128) -> Result<i64, AnchoringError> {
    i64::try_from(v).map_err(|_| AnchoringError::Malformed("value out of range"))
}

fn bump(fee: u128) -> u128 {
    fee.saturating_add(fee / 4).saturating_add(1)
}

impl Anchorer {
    /// The advisory lock of this custodian's anchorer (from "carechain record anchor" and the
    /// organisation's address).
    fn lock_key(&self) -> i64 {
        let mut seed = b"carechain record anchor".to_vec();
        seed.extend_from_slice(self.org.as_slice());
        let hash = keccak256(&seed);
        i64::from_be_bytes(hash.0[..8].try_into().unwrap_or_default())
    }

    async fn run(self, stop: CancellationToken) {
        let mut lock: Option<PgConnection> = None;
        let mut session = Session::default();
        let mut next_try = tokio::time::Instant::now();
        while !stop.is_cancelled() {
            if lock.is_none() && tokio::time::Instant::now() >= next_try {
                lock = self.try_lock().await;
                session = Session::default();
                // Another gateway anchors for this custodian: ask again now and then, not at
                // every poll.
                next_try = tokio::time::Instant::now() + LOCK_RETRY;
            }
            if lock.is_some()
                && let Err(err) = self.round(&mut session).await
            {
                tracing::warn!(%err, org = %self.org, "record anchoring round failed; retrying");
                session = Session::default();
                if let Some(conn) = lock.take() {
                    let _ = conn.close().await;
                }
                next_try = tokio::time::Instant::now();
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        if let Some(conn) = lock {
            let _ = conn.close().await;
        }
    }

    /// A connection holding the anchoring lock, or `None` when another gateway holds it.
    async fn try_lock(&self) -> Option<PgConnection> {
        crate::db::try_advisory_lock(&self.pool, self.lock_key()).await
    }

    /// One round: follow the batches in flight at a new block, then cut and send what is due.
    async fn round(&self, session: &mut Session) -> Result<(), AnchoringError> {
        let mut in_flight = self.in_flight().await?;
        if session.next_nonce.is_none() {
            let pooled = self.chain.nonce(self.key.address, true).await?;
            let recorded = in_flight.iter().map(|b| b.nonce + 1).max().unwrap_or(0);
            session.next_nonce = Some(pooled.max(recorded));
        }
        if !in_flight.is_empty() {
            let head = self.chain.head().await?;
            let stale = in_flight.iter().any(|b| {
                b.tx_hashes.is_empty()
                    || b.sent_at.is_none_or(|at| {
                        (Utc::now() - at).to_std().unwrap_or_default() > self.settings.bump_after
                    })
            });
            if session.followed_at != Some(head) || stale {
                self.follow(&in_flight, session).await?;
                session.followed_at = Some(head);
                in_flight = self.in_flight().await?;
            }
        }
        self.confirm_final(session).await?;
        let mut flying = in_flight.len();
        while flying < self.settings.max_in_flight {
            let Some(batch) = self.cut(session).await? else {
                break;
            };
            self.send(&batch, session, None).await?;
            flying += 1;
        }
        Ok(())
    }

    async fn in_flight(&self) -> Result<Vec<InFlight>, AnchoringError> {
        type Row = (
            Vec<u8>,
            i32,
            i64,
            Option<i64>,
            Option<i64>,
            Vec<Vec<u8>>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT root, versions, nonce, max_fee, priority_fee, tx_hashes, sent_at
             FROM gateway_record_batches WHERE custodian = $1 AND state = 'pending' ORDER BY nonce",
        )
        .bind(self.org.as_slice())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(root, versions, nonce, max_fee, priority_fee, hashes, sent_at)| {
                    let malformed = AnchoringError::Malformed;
                    Ok(InFlight {
                        root: B256::try_from(root.as_slice()).map_err(|_| malformed("root"))?,
                        versions: u32::try_from(versions).map_err(|_| malformed("count"))?,
                        nonce: u64::try_from(nonce).map_err(|_| malformed("nonce"))?,
                        fees: match (max_fee, priority_fee) {
                            (Some(max), Some(tip)) => Some((
                                u128::try_from(max).map_err(|_| malformed("fee"))?,
                                u128::try_from(tip).map_err(|_| malformed("fee"))?,
                            )),
                            _ => None,
                        },
                        tx_hashes: hashes
                            .iter()
                            .map(|h| B256::try_from(h.as_slice()).map_err(|_| malformed("tx hash")))
                            .collect::<Result<_, _>>()?,
                        sent_at,
                    })
                },
            )
            .collect()
    }

    /// Follows each batch in flight (see the module documentation).
    async fn follow(
        &self,
        in_flight: &[InFlight],
        session: &mut Session,
    ) -> Result<(), AnchoringError> {
        let mut mined_nonce: Option<u64> = None;
        for batch in in_flight {
            if batch.tx_hashes.is_empty() {
                // Cut, then a crash before its first transaction was signed.
                self.send(batch, session, None).await?;
                continue;
            }
            let waited = batch
                .sent_at
                .map(|at| (Utc::now() - at).to_std().unwrap_or_default())
                .unwrap_or_default();
            if let Some((tx_hash, mined)) = self.receipt_of(batch).await? {
                if mined.success {
                    self.mark_anchored(batch.root, Some((tx_hash, mined)))
                        .await?;
                } else if self.chain.batch_anchored(batch.root, self.org).await? {
                    // Reverted because another transaction anchored the root first.
                    self.mark_anchored(batch.root, None).await?;
                } else if waited > self.settings.bump_after {
                    // Reverted (a key suspended, say): tried again with a new nonce, but no
                    // more often than the bump delay, so a key that cannot anchor does not
                    // spend gas at every block.
                    tracing::warn!(org = %self.org, %tx_hash, "record batch transaction reverted; sending it again");
                    let nonce = self.take_nonce(session)?;
                    self.send(batch, session, Some(nonce)).await?;
                }
                continue;
            }
            let mined_count = match mined_nonce {
                Some(n) => n,
                None => *mined_nonce.insert(self.chain.nonce(self.key.address, false).await?),
            };
            if mined_count > batch.nonce {
                // The nonce went to a transaction whose receipt is not ours: anchored by a
                // transaction we did not record (a crash between signing and recording cannot
                // happen, but another gateway with the same key can), or not at all.
                if self.chain.batch_anchored(batch.root, self.org).await? {
                    self.mark_anchored(batch.root, None).await?;
                } else {
                    let nonce = self.take_nonce(session)?;
                    self.send(batch, session, Some(nonce)).await?;
                }
                continue;
            }
            let latest = batch.tx_hashes.last().copied().unwrap_or_default();
            if waited > self.settings.bump_after {
                tracing::info!(org = %self.org, nonce = batch.nonce, "record batch not mined in time; replacing it with higher fees");
                self.send(batch, session, None).await?;
            } else if !self.chain.is_known(latest).await? {
                // The same signed transaction again (signatures are deterministic: same hash).
                tracing::warn!(org = %self.org, nonce = batch.nonce, "record batch transaction dropped by the node; sending it again");
                self.send(batch, session, Some(batch.nonce)).await?;
            }
        }
        Ok(())
    }

    /// Every second: each anchored batch whose block is now final is checked at the
    /// `finalized` block. One that a reorganisation took away goes back into the queue with its
    /// versions (pending again, their proofs unchanged) and is followed as a batch in flight:
    /// the same transaction is sent again, or with a new nonce if its own went to another.
    async fn confirm_final(&self, session: &mut Session) -> Result<(), AnchoringError> {
        let now = tokio::time::Instant::now();
        if session
            .confirmed_at
            .is_some_and(|at| now.duration_since(at) < CONFIRM_EVERY)
        {
            return Ok(());
        }
        session.confirmed_at = Some(now);
        let young: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT root, block_number FROM gateway_record_batches
             WHERE custodian = $1 AND state = 'anchored' AND NOT final
             ORDER BY block_number LIMIT 256",
        )
        .bind(self.org.as_slice())
        .fetch_all(&self.pool)
        .await?;
        if young.is_empty() {
            return Ok(());
        }
        // A chain without a `finalized` tag: nothing becomes final, nothing is confirmed.
        let Some(finalized) = self.chain.finalized().await? else {
            return Ok(());
        };
        for (root, block) in young {
            if u64::try_from(block).unwrap_or(u64::MAX) > finalized {
                break;
            }
            let root =
                B256::try_from(root.as_slice()).map_err(|_| AnchoringError::Malformed("root"))?;
            let at = alloy::eips::BlockId::number(finalized);
            if self.chain.batch_anchored_at(root, self.org, at).await? {
                sqlx::query(
                    "UPDATE gateway_record_batches SET final = true WHERE custodian = $1 AND root = $2",
                )
                .bind(self.org.as_slice())
                .bind(root.as_slice())
                .execute(&self.pool)
                .await?;
            } else {
                tracing::warn!(org = %self.org, %root, "record batch reorganised away before finality; anchoring it again");
                self.requeue(root).await?;
            }
        }
        Ok(())
    }

    /// Puts an anchored batch back in flight with its versions (see [`Self::confirm_final`]).
    async fn requeue(&self, root: B256) -> Result<(), AnchoringError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO gateway_anchor_queue
               (custodian, resource_type, id, version_id, version_hash, queued_at, batch_root, batch_proof)
             SELECT custodian, resource_type, id, version_id, version_hash, last_updated, batch_root, batch_proof
             FROM gateway_resource_versions WHERE custodian = $1 AND batch_root = $2
             ON CONFLICT DO NOTHING",
        )
        .bind(self.org.as_slice())
        .bind(root.as_slice())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE gateway_resource_versions SET anchor_pending = true
             WHERE custodian = $1 AND batch_root = $2",
        )
        .bind(self.org.as_slice())
        .bind(root.as_slice())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE gateway_record_batches
             SET state = 'pending', tx_hash = NULL, block_number = NULL, gas_used = NULL,
                 anchored_at = NULL, sent_at = NULL
             WHERE custodian = $1 AND root = $2",
        )
        .bind(self.org.as_slice())
        .bind(root.as_slice())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The first mined receipt among the batch's transactions, newest first.
    async fn receipt_of(&self, batch: &InFlight) -> Result<Option<(B256, Mined)>, AnchoringError> {
        for tx_hash in batch.tx_hashes.iter().rev() {
            if let Some(mined) = self.chain.mined(*tx_hash).await? {
                return Ok(Some((*tx_hash, mined)));
            }
        }
        Ok(None)
    }

    fn take_nonce(&self, session: &mut Session) -> Result<u64, AnchoringError> {
        let nonce = session
            .next_nonce
            .ok_or(AnchoringError::Malformed("no nonce"))?;
        session.next_nonce = Some(nonce + 1);
        Ok(nonce)
    }

    /// Cuts the next batch when one is due: records it and gives its versions root and proof.
    async fn cut(&self, session: &mut Session) -> Result<Option<InFlight>, AnchoringError> {
        let limit = i64::try_from(self.settings.max_batch).unwrap_or(i64::MAX);
        // Whether a batch is due, without locking anything (this runs at every poll).
        let (count, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(queued_at) FROM (
               SELECT queued_at FROM gateway_anchor_queue
               WHERE custodian = $1 AND batch_root IS NULL
               ORDER BY queued_at LIMIT $2) waiting",
        )
        .bind(self.org.as_slice())
        .bind(limit)
        .fetch_one(&self.pool)
        .await?;
        let Some(oldest) = oldest else {
            return Ok(None);
        };
        let age = (Utc::now() - oldest).to_std().unwrap_or_default();
        if count < limit && age < self.settings.window {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        let waiting: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT resource_type, id, version_id, version_hash
             FROM gateway_anchor_queue
             WHERE custodian = $1 AND batch_root IS NULL
             ORDER BY queued_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.org.as_slice())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if waiting.is_empty() {
            return Ok(None);
        }
        let hashes = waiting
            .iter()
            .map(|w| B256::try_from(w.3.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| AnchoringError::Malformed("version hash"))?;
        let tree = MerkleTree::new(&hashes).ok_or(AnchoringError::Malformed("empty batch"))?;
        let root = tree.root();
        let mut proofs = Vec::with_capacity(hashes.len());
        for leaf in 0..hashes.len() {
            let proof = tree.proof(leaf).ok_or(AnchoringError::Malformed("proof"))?;
            proofs.push(proof.iter().flat_map(|h| h.0).collect::<Vec<u8>>());
        }
        let nonce = self.take_nonce(session)?;
        let versions =
            u32::try_from(hashes.len()).map_err(|_| AnchoringError::Malformed("count"))?;
        sqlx::query(
            "INSERT INTO gateway_record_batches (custodian, root, versions, sender, nonce)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(self.org.as_slice())
        .bind(root.as_slice())
        .bind(i32::try_from(versions).map_err(|_| AnchoringError::Malformed("count"))?)
        .bind(self.key.address.as_slice())
        .bind(i64::try_from(nonce).map_err(|_| AnchoringError::Malformed("nonce"))?)
        .execute(&mut *tx)
        .await?;
        let (types, ids, version_ids): (Vec<String>, Vec<String>, Vec<i64>) =
            waiting.into_iter().map(|(t, i, v, _)| (t, i, v)).collect();
        sqlx::query(
            "UPDATE gateway_anchor_queue q SET batch_root = $1, batch_proof = w.proof
             FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bytea[])
                  AS w(resource_type, id, version_id, proof)
             WHERE q.resource_type = w.resource_type AND q.id = w.id AND q.version_id = w.version_id",
        )
        .bind(root.as_slice())
        .bind(&types)
        .bind(&ids)
        .bind(&version_ids)
        .bind(&proofs)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(InFlight {
            root,
            versions,
            nonce,
            fees: None,
            tx_hashes: Vec::new(),
            sent_at: None,
        }))
    }

    /// Signs the batch's transaction and sends it, after recording its hash (when new). With
    /// `nonce` the batch's own, the transaction is the one already sent (same fees, same hash);
    /// with another nonce or none, it pays at least 25% more than the batch's last one (a
    /// replacement), at the node's current fees at least.
    async fn send(
        &self,
        batch: &InFlight,
        session: &mut Session,
        nonce: Option<u64>,
    ) -> Result<(), AnchoringError> {
        let again = nonce == Some(batch.nonce);
        let mut nonce = nonce.unwrap_or(batch.nonce);
        let mut fees = match batch.fees {
            Some(fees) if again => fees,
            Some((old_max, old_tip)) => {
                let (max_fee, tip) = self.chain.fees().await?;
                (bump(old_max).max(max_fee), bump(old_tip).max(tip))
            }
            None => self.chain.fees().await?,
        };
        // Three tries: a nonce found used takes the next one; an underpriced replacement pays
        // more.
        for _ in 0..3 {
            let (tx_hash, raw) = self
                .chain
                .sign_anchor_batch(
                    &self.key,
                    (batch.root, batch.versions),
                    nonce,
                    fees,
                    ANCHOR_BATCH_GAS,
                )
                .await?;
            sqlx::query(
                "UPDATE gateway_record_batches
                 SET tx_hashes = CASE WHEN $3 = ANY(tx_hashes) THEN tx_hashes
                                      ELSE array_append(tx_hashes, $3) END,
                     nonce = $4, max_fee = $5, priority_fee = $6, sent_at = now()
                 WHERE custodian = $1 AND root = $2",
            )
            .bind(self.org.as_slice())
            .bind(batch.root.as_slice())
            .bind(tx_hash.as_slice())
            .bind(i64::try_from(nonce).map_err(|_| AnchoringError::Malformed("nonce"))?)
            .bind(to_i64(fees.0)?)
            .bind(to_i64(fees.1)?)
            .execute(&self.pool)
            .await?;
            match self.chain.send_raw(&raw).await? {
                SendOutcome::Accepted => return Ok(()),
                SendOutcome::NonceUsed => {
                    if self.chain.batch_anchored(batch.root, self.org).await? {
                        return Ok(());
                    }
                    let pooled = self.chain.nonce(self.key.address, true).await?;
                    session.next_nonce = Some(session.next_nonce.unwrap_or(0).max(pooled));
                    nonce = self.take_nonce(session)?;
                }
                SendOutcome::Underpriced => fees = (bump(bump(fees.0)), bump(bump(fees.1))),
            }
        }
        Err(AnchoringError::Chain(ChainError::Rpc(
            "the node refused the record batch transaction three times".into(),
        )))
    }

    /// Marks a batch anchored and its versions no longer pending.
    async fn mark_anchored(
        &self,
        root: B256,
        receipt: Option<(B256, Mined)>,
    ) -> Result<(), AnchoringError> {
        let mut tx = self.pool.begin().await?;
        // One update of each version row (root, proof and state together), then the queue
        // forgets the batch.
        sqlx::query(
            "UPDATE gateway_resource_versions v
             SET batch_root = q.batch_root, batch_proof = q.batch_proof, anchor_pending = false
             FROM gateway_anchor_queue q
             WHERE q.custodian = $1 AND q.batch_root = $2 AND v.resource_type = q.resource_type
               AND v.id = q.id AND v.version_id = q.version_id",
        )
        .bind(self.org.as_slice())
        .bind(root.as_slice())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM gateway_anchor_queue WHERE custodian = $1 AND batch_root = $2")
            .bind(self.org.as_slice())
            .bind(root.as_slice())
            .execute(&mut *tx)
            .await?;
        let (tx_hash, block, gas) = match receipt {
            Some((hash, mined)) => (
                Some(hash.to_vec()),
                Some(to_i64(u128::from(mined.block))?),
                Some(to_i64(u128::from(mined.gas_used))?),
            ),
            // Found anchored without a receipt of ours: it was at the head, at the latest.
            None => (
                None,
                Some(to_i64(u128::from(self.chain.head().await?))?),
                None,
            ),
        };
        sqlx::query(
            "UPDATE gateway_record_batches
             SET state = 'anchored', tx_hash = $3, block_number = $4, gas_used = $5, anchored_at = now()
             WHERE custodian = $1 AND root = $2",
        )
        .bind(self.org.as_slice())
        .bind(root.as_slice())
        .bind(tx_hash)
        .bind(block)
        .bind(gas)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::debug!(org = %self.org, %root, "record batch anchored");
        Ok(())
    }
}
