//! PostgreSQL: the cursor, the window of block hashes, atomic commits of decoded events with
//! their derived state and notifications, and reorg rollbacks.

use crate::{
    derive,
    error::IndexerError,
    events::{EVENT_TABLES, EventBatch, Subjects},
};
use alloy::primitives::{Address, B256};
use carechain_contracts::DeploymentManifest;
use carechain_formats::index::{Channel, Notification, Subject};
use sqlx::{
    AssertSqlSafe, PgConnection, PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::time::Duration;

/// Above this many subjects in one commit, each channel gets one `"all":true` notification.
const MAX_SUBJECT_NOTIFICATIONS: usize = 256;

/// The last indexed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Its number (the deployment block minus one before anything is indexed).
    pub number: u64,
    /// Its hash, `None` before anything is indexed.
    pub hash: Option<B256>,
}

/// The events of blocks `[from, to]`, ready to commit.
#[derive(Debug, Default)]
pub struct RangeCommit {
    /// First block.
    pub from: u64,
    /// Last block; the cursor moves here.
    pub to: u64,
    /// Hash of block `to`.
    pub to_hash: B256,
    /// Block hashes to keep for reorg detection: (number, hash, parent hash).
    pub blocks: Vec<(u64, B256, Option<B256>)>,
    /// The decoded events.
    pub events: EventBatch,
}

/// The indexer's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    chain_id: i64,
    window: u64,
}

fn db_i64(v: u64) -> i64 {
    // Block numbers and chain ids beyond i64::MAX do not exist on any EVM chain.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn db_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn hash_from(bytes: &[u8]) -> Option<B256> {
    (bytes.len() == 32).then(|| B256::from_slice(bytes))
}

impl Store {
    /// Connects (failing fast with a clear error when the server is unreachable) and applies
    /// the migrations.
    pub async fn connect(
        options: PgConnectOptions,
        redacted: &str,
        max_connections: u32,
        chain_id: u64,
        window: u64,
    ) -> Result<Self, IndexerError> {
        let connect_error = |source| IndexerError::DatabaseConnect {
            url: redacted.to_owned(),
            source,
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        // The gateway shares the folder and the database: migrations it applied that this
        // build does not know (built at another time) are not an error.
        let mut migrator = sqlx::migrate!("../migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            chain_id: db_i64(chain_id),
            window,
        })
    }

    /// The pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Records the deployment on first use, refuses a database that indexes another
    /// deployment of the same chain, and creates the cursor.
    pub async fn init_deployment(&self, manifest: &DeploymentManifest) -> Result<(), IndexerError> {
        let c = &manifest.contracts;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO indexer_deployments (chain_id, deployment_block, provider_registry, \
             consent_registry, record_registry, audit_anchor) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (chain_id) DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(db_i64(manifest.deployment_block))
        .bind(c.provider_registry.as_slice())
        .bind(c.consent_registry.as_slice())
        .bind(c.record_registry.as_slice())
        .bind(c.audit_anchor.as_slice())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT deployment_block, provider_registry, consent_registry, record_registry, \
             audit_anchor FROM indexer_deployments WHERE chain_id = $1",
        )
        .bind(self.chain_id)
        .fetch_one(&mut *tx)
        .await?;
        let stored_block: i64 = row.try_get(0)?;
        let stored: [Vec<u8>; 4] = [
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
        ];
        let expected = [
            c.provider_registry,
            c.consent_registry,
            c.record_registry,
            c.audit_anchor,
        ];
        let same = stored_block == db_i64(manifest.deployment_block)
            && stored
                .iter()
                .zip(expected)
                .all(|(s, e)| s.as_slice() == e.as_slice());
        if !same {
            return Err(IndexerError::DeploymentMismatch {
                chain_id: manifest.chain_id,
                stored_block,
                stored_consent: format!("0x{}", alloy::hex::encode(&stored[1])),
            });
        }
        sqlx::query(
            "INSERT INTO indexer_cursor (chain_id, block_number, block_hash) VALUES ($1, $2, NULL) \
             ON CONFLICT (chain_id) DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(db_i64(manifest.deployment_block) - 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO indexer_derived_cursor (chain_id, block_number) VALUES ($1, $2) \
             ON CONFLICT (chain_id) DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(db_i64(manifest.deployment_block) - 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The cursor.
    pub async fn cursor(&self) -> Result<Cursor, IndexerError> {
        let row =
            sqlx::query("SELECT block_number, block_hash FROM indexer_cursor WHERE chain_id = $1")
                .bind(self.chain_id)
                .fetch_one(&self.pool)
                .await?;
        let number: i64 = row.try_get(0)?;
        let hash: Option<Vec<u8>> = row.try_get(1)?;
        Ok(Cursor {
            number: db_u64(number),
            hash: hash.as_deref().and_then(hash_from),
        })
    }

    /// Stored block hashes from `from` upwards, newest first.
    pub async fn stored_hashes(&self, from: u64) -> Result<Vec<(u64, B256)>, IndexerError> {
        let rows = sqlx::query(
            "SELECT block_number, block_hash FROM indexer_blocks \
             WHERE chain_id = $1 AND block_number >= $2 ORDER BY block_number DESC",
        )
        .bind(self.chain_id)
        .bind(db_i64(from))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let number: i64 = row.try_get(0)?;
            let hash: Vec<u8> = row.try_get(1)?;
            if let Some(hash) = hash_from(&hash) {
                out.push((db_u64(number), hash));
            }
        }
        Ok(out)
    }

    /// Writes the events of `range`, its block hashes and the cursor in one transaction. With
    /// `derive`, the derived state, its cursor and the notifications go in the same
    /// transaction (the derived cursor must then be at the cursor); without, they are left to
    /// [`Store::catch_up_derived`]. Fails with [`IndexerError::CursorMoved`] unless the cursor
    /// is at `range.from - 1`.
    pub async fn commit(&self, range: &RangeCommit, derive: bool) -> Result<(), IndexerError> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let expected = db_i64(range.from) - 1;
        let moved = sqlx::query(
            "UPDATE indexer_cursor SET block_number = $2, block_hash = $3, updated_at = now() \
             WHERE chain_id = $1 AND block_number = $4",
        )
        .bind(self.chain_id)
        .bind(db_i64(range.to))
        .bind(range.to_hash.as_slice())
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            let found: i64 =
                sqlx::query_scalar("SELECT block_number FROM indexer_cursor WHERE chain_id = $1")
                    .bind(self.chain_id)
                    .fetch_one(&mut *tx)
                    .await?;
            return Err(IndexerError::CursorMoved { expected, found });
        }
        range.events.rows.insert(&mut tx, self.chain_id).await?;
        if !range.blocks.is_empty() {
            let numbers: Vec<i64> = range.blocks.iter().map(|b| db_i64(b.0)).collect();
            let hashes: Vec<Vec<u8>> = range.blocks.iter().map(|b| b.1.to_vec()).collect();
            let parents: Vec<Option<Vec<u8>>> = range
                .blocks
                .iter()
                .map(|b| b.2.map(|p| p.to_vec()))
                .collect();
            sqlx::query(
                "INSERT INTO indexer_blocks (chain_id, block_number, block_hash, parent_hash) \
                 SELECT $1, n, h, p FROM UNNEST($2::int8[], $3::bytea[], $4::bytea[]) AS u(n, h, p) \
                 ON CONFLICT (chain_id, block_number) DO UPDATE \
                 SET block_hash = EXCLUDED.block_hash, parent_hash = EXCLUDED.parent_hash",
            )
            .bind(self.chain_id)
            .bind(&numbers)
            .bind(&hashes)
            .bind(&parents)
            .execute(&mut *tx)
            .await?;
        }
        // The last `window` + 1 hashes are kept: a reorg of `window` blocks replaces blocks
        // `to - window + 1 ..= to`, and its fork point `to - window` must still be known.
        sqlx::query("DELETE FROM indexer_blocks WHERE chain_id = $1 AND block_number < $2")
            .bind(self.chain_id)
            .bind(db_i64(range.to) - db_i64(self.window))
            .execute(&mut *tx)
            .await?;
        let inserted = std::time::Instant::now();
        if derive {
            let moved = sqlx::query(
                "UPDATE indexer_derived_cursor SET block_number = $2, updated_at = now() \
                 WHERE chain_id = $1 AND block_number = $3",
            )
            .bind(self.chain_id)
            .bind(db_i64(range.to))
            .bind(expected)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                return Err(IndexerError::Task(
                    "the derived state is behind the cursor while following the chain".into(),
                ));
            }
        }
        if derive && !range.events.is_empty() {
            derive::apply_range(
                &mut tx,
                self.chain_id,
                db_i64(range.from),
                db_i64(range.to),
                range.events.has_membership,
            )
            .await?;
            self.notify(&mut tx, &range.events.subjects, range.to)
                .await?;
        }
        if derive {
            // Every change up to `range.to` has been announced (by this commit or earlier).
            self.mark_indexed(&mut tx, range.to).await?;
        }
        let derived = std::time::Instant::now();
        tx.commit().await?;
        tracing::debug!(
            from = range.from,
            to = range.to,
            events = range.events.len(),
            insert_ms = (inserted - started).as_secs_f64() * 1e3,
            derive_ms = (derived - inserted).as_secs_f64() * 1e3,
            commit_ms = derived.elapsed().as_secs_f64() * 1e3,
            "range committed"
        );
        Ok(())
    }

    /// The derived-state cursor.
    pub async fn derived_cursor(&self) -> Result<u64, IndexerError> {
        let number: i64 = sqlx::query_scalar(
            "SELECT block_number FROM indexer_derived_cursor WHERE chain_id = $1",
        )
        .bind(self.chain_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(db_u64(number))
    }

    /// Before a first backfill: when the derived state holds nothing of this chain yet and
    /// the tables of the deferred indexes hold no row of any chain, drops the event tables'
    /// reader-only indexes ([`derive::DEFERRED_EVENT_INDEXES`]) so that the backfill's inserts
    /// maintain only the primary keys; the bulk build that ends the backfill ([`derive::build`]) creates them
    /// again, so an interrupted backfill leaves them missing only until it completes. Returns
    /// whether they were dropped.
    pub async fn defer_event_indexes(&self) -> Result<bool, IndexerError> {
        let mut tx = self.pool.begin().await?;
        let empty: String = derive::DEFERRED_EVENT_INDEXES
            .iter()
            .map(|(table, _, _)| format!(" AND NOT EXISTS (SELECT 1 FROM {table})"))
            .collect();
        let fresh: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT d.block_number < p.deployment_block{empty} \
             FROM indexer_derived_cursor d JOIN indexer_deployments p USING (chain_id) \
             WHERE chain_id = $1 FOR UPDATE OF d"
        )))
        .bind(self.chain_id)
        .fetch_one(&mut *tx)
        .await?;
        if fresh {
            for (_, name, _) in derive::DEFERRED_EVENT_INDEXES {
                sqlx::query(AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(fresh)
    }

    /// Folds the committed events above the derived cursor up to block `to` (at most the
    /// cursor) into the derived tables, moves the derived cursor there and tells every channel
    /// to drop its caches, in one transaction. When nothing was folded yet (the first
    /// backfill), the derived state is built in bulk instead ([`derive::build`]). Returns
    /// whether anything was folded.
    pub async fn catch_up_derived(&self, to: u64) -> Result<bool, IndexerError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT d.block_number, c.block_number, p.deployment_block \
             FROM indexer_derived_cursor d JOIN indexer_cursor c USING (chain_id) \
             JOIN indexer_deployments p USING (chain_id) WHERE chain_id = $1 FOR UPDATE OF d",
        )
        .bind(self.chain_id)
        .fetch_one(&mut *tx)
        .await?;
        let derived: i64 = row.try_get(0)?;
        let cursor: i64 = row.try_get(1)?;
        let deployment_block: i64 = row.try_get(2)?;
        let to = db_i64(to).min(cursor);
        if to <= derived {
            return Ok(false);
        }
        if derived < deployment_block {
            // The derived tables hold the fold of no event: nothing of this chain.
            tracing::info!(to, "building the derived state");
            derive::build(&mut tx, self.chain_id, to, true).await?;
        } else {
            derive::apply_range(&mut tx, self.chain_id, derived + 1, to, true).await?;
        }
        // Test hook (undocumented): hold the transaction open so that a test can kill the
        // process inside it.
        if let Some(ms) = std::env::var("CARECHAIN_TEST_FOLD_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
        {
            sqlx::query("SELECT pg_sleep($1)")
                .bind(f64::from(ms) / 1e3)
                .execute(&mut *tx)
                .await?;
        }
        self.derived_caught_up(&mut tx, db_u64(to)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn notify(
        &self,
        conn: &mut PgConnection,
        subjects: &Subjects,
        block: u64,
    ) -> Result<(), sqlx::Error> {
        type Group<'a> = (
            Channel,
            fn(Address) -> Subject,
            &'a std::collections::BTreeSet<Address>,
        );
        let groups: [Group<'_>; 4] = [
            (Channel::Consent, Subject::Patient, &subjects.patients),
            (Channel::Membership, Subject::Org, &subjects.organisations),
            (Channel::Anchor, Subject::Org, &subjects.anchor_orgs),
            (Channel::Anchor, Subject::Gateway, &subjects.audit_gateways),
        ];
        let total: usize = groups.iter().map(|g| g.2.len()).sum();
        let chain_id = self.chain_id as u64;
        let notifications: Vec<(Channel, Notification)> = if total > MAX_SUBJECT_NOTIFICATIONS {
            Channel::CHANGES
                .into_iter()
                .map(|channel| (channel, Notification::new(chain_id, block, Subject::All)))
                .collect()
        } else {
            groups
                .into_iter()
                .flat_map(|(channel, subject, set)| {
                    set.iter().map(move |who| {
                        (channel, Notification::new(chain_id, block, subject(*who)))
                    })
                })
                .collect()
        };
        send_notifications(conn, &notifications).await
    }

    /// Deletes everything above block `fork`, moves the cursor to `fork`, rebuilds the derived
    /// state from the event log and tells every channel to drop its caches, in one transaction.
    pub async fn rollback_to(&self, fork: u64, fork_hash: B256) -> Result<(), IndexerError> {
        let mut tx = self.pool.begin().await?;
        let fork_db = db_i64(fork);
        for table in EVENT_TABLES.iter().chain(["indexer_blocks"].iter()) {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE chain_id = $1 AND block_number > $2"
            )))
            .bind(self.chain_id)
            .bind(fork_db)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE indexer_cursor SET block_number = $2, block_hash = $3, updated_at = now() \
             WHERE chain_id = $1",
        )
        .bind(self.chain_id)
        .bind(fork_db)
        .bind(fork_hash.as_slice())
        .execute(&mut *tx)
        .await?;
        derive::recompute(&mut tx, self.chain_id, fork_db).await?;
        self.derived_caught_up(&mut tx, fork).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The derived state is current up to `block`: moves the derived cursor there and tells
    /// every channel to drop whatever its listeners derived from the index.
    async fn derived_caught_up(
        &self,
        conn: &mut PgConnection,
        block: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE indexer_derived_cursor SET block_number = $2, updated_at = now() WHERE chain_id = $1",
        )
        .bind(self.chain_id)
        .bind(db_i64(block))
        .execute(&mut *conn)
        .await?;
        let everything: Vec<(Channel, Notification)> = Channel::CHANGES
            .into_iter()
            .map(|channel| {
                let all = Notification::new(self.chain_id as u64, block, Subject::All);
                (channel, all)
            })
            .chain([(
                Channel::Indexed,
                Notification::new(self.chain_id as u64, block, Subject::All),
            )])
            .collect();
        send_notifications(conn, &everything).await
    }

    /// The progress mark ([`Channel::Indexed`]): sent last in a commit whose blocks' changes
    /// have all been announced, up to `block`.
    async fn mark_indexed(&self, conn: &mut PgConnection, block: u64) -> Result<(), sqlx::Error> {
        let mark = Notification::new(self.chain_id as u64, block, Subject::All);
        send_notifications(conn, &[(Channel::Indexed, mark)]).await
    }
}

async fn send_notifications(
    conn: &mut PgConnection,
    notifications: &[(Channel, Notification)],
) -> Result<(), sqlx::Error> {
    if notifications.is_empty() {
        return Ok(());
    }
    let channels: Vec<&str> = notifications.iter().map(|(c, _)| c.name()).collect();
    let payloads: Vec<String> = notifications.iter().map(|(_, n)| n.payload()).collect();
    sqlx::query("SELECT pg_notify(c, p) FROM UNNEST($1::text[], $2::text[]) AS u(c, p)")
        .bind(&channels)
        .bind(&payloads)
        .execute(conn)
        .await?;
    Ok(())
}
