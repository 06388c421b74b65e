//! The append-only, hash-chained audit log.
//!
//! Every request becomes exactly one IHE BALP-shaped `AuditEvent`, written by a single writer
//! task that batches rows (group commit) and answers each request only once its row is
//! committed. Rows carry a global, contiguous sequence number (assigned under a transaction
//! advisory lock, so several gateways can share the table) and the chained hash
//! `hash = keccak256(prev_hash ‖ seq (8 bytes, big-endian) ‖ JCS(event))`, with 32 zero bytes
//! before the first row. The table refuses UPDATE, DELETE and TRUNCATE (trigger), and the
//! writer inserts under a role that holds only INSERT and SELECT on it.
//!
//! The writer remembers the last row it committed and appends the next batch after it with a
//! single autocommitted INSERT; the primary key on `seq` turns a row another gateway appended
//! meanwhile into a failed INSERT, after which the tail is read again under the lock.

use alloy::primitives::B256;
use carechain_formats::audit_chain::Fault;
use carechain_formats::{
    audit_chain::{self, ChainChecker, StoredRow},
    canonical::canonicalize,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub mod anchor;
mod event;
pub mod verify;

pub use event::AuditRecord;

/// Advisory lock key serialising sequence assignment ("carechain audit").
const AUDIT_LOCK_KEY: i64 = 0x6361_7265_6175_6474;
/// Most rows committed in one transaction.
const MAX_BATCH: usize = 512;

/// Why anchoring, verifying or proving the audit log (or reading the chain events it shows)
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The chain failed or answered something unexpected.
    #[error("chain: {0}")]
    Chain(String),
    /// An audit row is missing.
    #[error("audit row {0} is missing")]
    Missing(u64),
    /// An audit row does not verify.
    #[error("audit row {0} does not verify")]
    Tampered(u64),
}

impl LogError {
    /// The error for the first bad row the audit chain's checker found.
    pub fn from_fault((seq, fault): (u64, Fault)) -> Self {
        match fault {
            Fault::Missing => Self::Missing(seq),
            Fault::Tampered | Fault::BrokenLink | Fault::RootMismatch => Self::Tampered(seq),
        }
    }
}

impl From<LogError> for crate::error::AppError {
    fn from(err: LogError) -> Self {
        match err {
            LogError::Chain(_) => {
                tracing::warn!(%err, "compliance chain call failed");
                Self::Unavailable("the chain is unreachable (fail closed)")
            }
            LogError::Missing(_) | LogError::Tampered(_) => {
                tracing::error!(%err, "audit log integrity failure");
                Self::Integrity
            }
            LogError::Database(e) => Self::internal(e),
        }
    }
}

/// Why an audit row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The writer task has stopped.
    #[error("the audit writer has stopped")]
    WriterGone,
    /// The database refused the batch.
    #[error("audit batch failed: {0}")]
    Database(String),
}

type Job = (AuditRecord, oneshot::Sender<Result<u64, AuditError>>);

/// Handle to the writer task.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
}

impl AuditLog {
    /// Starts the writer task; it stops once `stop` is cancelled (or every handle is dropped)
    /// and the queue is drained.
    pub fn start(
        pool: PgPool,
        role: Option<String>,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(8192);
        let handle = tokio::spawn(writer(pool, role, rx, stop));
        (Self { tx }, handle)
    }

    /// Appends a record; returns its sequence number once it is committed.
    pub async fn append(&self, record: AuditRecord) -> Result<u64, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((record, done))
            .await
            .map_err(|_| AuditError::WriterGone)?;
        wait.await.map_err(|_| AuditError::WriterGone)?
    }
}

/// The writer's connection and what it knows of the table's tail.
struct Writer {
    pool: PgPool,
    role: Option<String>,
    /// A connection taken out of the pool for the writer alone (its session runs as the audit
    /// role); dropped after any error.
    conn: Option<sqlx::PgConnection>,
    /// The last row this writer committed, `(seq, hash)`: the next batch links to it without
    /// asking, and a row another gateway appended meanwhile makes that insert fail on the
    /// primary key (then the tail is read under the lock).
    tail: Option<(u64, B256)>,
}

async fn writer(
    pool: PgPool,
    role: Option<String>,
    mut rx: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let mut state = Writer {
        pool,
        role,
        conn: None,
        tail: None,
    };
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    loop {
        let next = if closing {
            rx.recv().await
        } else {
            tokio::select! {
                job = rx.recv() => job,
                () = stop.cancelled() => {
                    // Refuse new rows, then write what is queued and stop.
                    rx.close();
                    closing = true;
                    continue;
                }
            }
        };
        let Some(first) = next else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let records: Vec<&AuditRecord> = batch.iter().map(|(r, _)| r).collect();
        match state.write_batch(&records).await {
            Ok(first_seq) => {
                for (i, (_, done)) in batch.drain(..).enumerate() {
                    let _ = done.send(Ok(first_seq + i as u64));
                }
            }
            Err(err) => {
                tracing::error!(%err, "audit batch failed; requests are answered with an error");
                state.conn = None;
                state.tail = None;
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(AuditError::Database(err.to_string())));
                }
            }
        }
    }
}

/// The rows of a batch linked after `tail`, as the INSERT binds them.
struct Rows {
    seqs: Vec<i64>,
    recorded: Vec<DateTime<Utc>>,
    subtypes: Vec<String>,
    outcomes: Vec<String>,
    statuses: Vec<i32>,
    agents: Vec<Option<String>>,
    patients: Vec<Option<String>>,
    purposes: Vec<Option<String>>,
    blocks: Vec<Option<i64>>,
    events: Vec<String>,
    prevs: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
    /// The new tail.
    last: (u64, B256),
}

impl Rows {
    fn link(tail: (u64, B256), records: &[&AuditRecord]) -> Self {
        let n = records.len();
        let (mut seq, mut prev) = tail;
        let mut rows = Self {
            seqs: Vec::with_capacity(n),
            recorded: Vec::with_capacity(n),
            subtypes: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
            agents: Vec::with_capacity(n),
            patients: Vec::with_capacity(n),
            purposes: Vec::with_capacity(n),
            blocks: Vec::with_capacity(n),
            events: Vec::with_capacity(n),
            prevs: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            last: tail,
        };
        for record in records {
            seq += 1;
            // The canonical form is hashed and also stored (it is JSON; the column re-parses it).
            let event = canonicalize(&record.to_audit_event(seq));
            let hash = audit_chain::link(prev, seq, &event);
            rows.seqs.push(seq as i64);
            rows.recorded.push(record.recorded);
            rows.subtypes.push(record.subtype.clone());
            rows.outcomes.push(record.outcome_code().to_owned());
            rows.statuses.push(i32::from(record.status));
            rows.agents.push(record.agent.clone());
            rows.patients.push(record.patient.clone());
            rows.purposes.push(record.purpose.clone());
            rows.blocks.push(record.consent_block.map(|b| b as i64));
            rows.events.push(event);
            rows.prevs.push(prev.to_vec());
            rows.hashes.push(hash.to_vec());
            prev = hash;
        }
        rows.last = (seq, prev);
        rows
    }

    async fn insert(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO gateway_audit_log
               (seq, recorded, subtype, outcome, http_status, agent, patient, purpose, consent_block, event, prev_hash, hash)
             SELECT seq, recorded, subtype, outcome, http_status, agent, patient, purpose, consent_block, event::jsonb, prev_hash, hash
             FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[],
                         $8::text[], $9::bigint[], $10::text[], $11::bytea[], $12::bytea[])
               AS t(seq, recorded, subtype, outcome, http_status, agent, patient, purpose, consent_block, event, prev_hash, hash)",
        )
        .bind(&self.seqs)
        .bind(&self.recorded)
        .bind(&self.subtypes)
        .bind(&self.outcomes)
        .bind(&self.statuses)
        .bind(&self.agents)
        .bind(&self.patients)
        .bind(&self.purposes)
        .bind(&self.blocks)
        .bind(&self.events)
        .bind(&self.prevs)
        .bind(&self.hashes)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl Writer {
    async fn connection(&mut self) -> Result<&mut sqlx::PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let mut conn = self.pool.acquire().await?.detach();
                if let Some(role) = &self.role {
                    // The role name comes from configuration, validated at start-up to be an
                    // identifier. The connection is the writer's alone, so the session keeps it.
                    sqlx::query(sqlx::AssertSqlSafe(format!("SET ROLE {role}")))
                        .execute(&mut conn)
                        .await?;
                }
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Appends `records`; returns the first sequence number. When the tail is known the
    /// batch is one autocommitted INSERT (one round trip and one WAL flush); otherwise, or
    /// when another writer got there first, the tail is read under the advisory lock.
    async fn write_batch(&mut self, records: &[&AuditRecord]) -> Result<u64, sqlx::Error> {
        if let Some(tail) = self.tail {
            let rows = Rows::link(tail, records);
            match rows.insert(self.connection().await?).await {
                Ok(()) => {
                    self.tail = Some(rows.last);
                    return Ok(tail.0 + 1);
                }
                Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                    self.tail = None;
                }
                Err(err) => return Err(err),
            }
        }
        let conn = self.connection().await?;
        let mut tx = sqlx::Connection::begin(conn).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM gateway_audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let tail = match last {
            Some((seq, hash)) => (
                seq as u64,
                B256::try_from(hash.as_slice()).unwrap_or_default(),
            ),
            None => (0, B256::ZERO),
        };
        let rows = Rows::link(tail, records);
        rows.insert(&mut tx).await?;
        tx.commit().await?;
        self.tail = Some(rows.last);
        Ok(tail.0 + 1)
    }
}

/// Recomputes the chain over the whole table; returns the number of rows, or the first
/// sequence number whose hash or link does not verify.
pub async fn verify_chain(pool: &PgPool) -> Result<Result<u64, u64>, sqlx::Error> {
    let rows = stored_rows(pool, 1, None).await?;
    Ok(ChainChecker::new()
        .check_page(&rows)
        .map(|hashes| hashes.len() as u64)
        .map_err(|(seq, _)| seq))
}

/// Up to `limit` stored rows from `from` on, in sequence order, as the hash chain reads them.
pub async fn stored_rows(
    pool: &PgPool,
    from: u64,
    limit: Option<i64>,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    let rows: Vec<(i64, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, event::text, prev_hash, hash FROM gateway_audit_log
         WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(i64::try_from(from).unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(stored_row).collect())
}

/// A row as selected (`seq, event::text, prev_hash, hash`) in the hash chain's terms.
pub fn stored_row((seq, event, prev_hash, hash): (i64, String, Vec<u8>, Vec<u8>)) -> StoredRow {
    StoredRow {
        seq: u64::try_from(seq).unwrap_or(0),
        event,
        prev_hash,
        hash,
    }
}
