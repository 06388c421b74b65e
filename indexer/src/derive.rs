//! Current state derived from the event log.
//!
//! [`apply_range`] folds the events of blocks `[from, to]` (already inserted, in the same
//! transaction) into the derived tables. Applied to consecutive ranges it gives the same
//! result as applied once to their union. [`build`] computes the same state from scratch, set
//! based over the whole event log up to a block (latest event per key with `DISTINCT ON`
//! instead of upserts), into derived tables that hold nothing of the chain yet: the end of the
//! first backfill uses it (with the large tables' indexes built after the rows), and
//! [`recompute`] (after a reorg) empties the derived tables and calls it. Every statement reads
//! the event tables, never decoded values held in memory.

use sqlx::{PgConnection, Row};

/// Derived tables, emptied by [`recompute`].
pub const DERIVED_TABLES: &[&str] = &[
    "organisations",
    "members",
    "consents",
    "delegates",
    "break_glass_sessions",
    "audit_gateways",
];

/// The latest grant-or-revoke event per (patient, grantee) in blocks $2..=$3, as a query
/// (`granted` tells which); shared by [`CONSENTS`] and [`CONSENTS_BUILD`], which must agree.
macro_rules! latest_consent_events {
    () => {
        r#"
    SELECT DISTINCT ON (patient, grantee) *
    FROM (
        SELECT patient, grantee, TRUE AS granted, actor, resource_types, actions, purposes,
               valid_from, valid_until, consent_hash, block_number, log_index, tx_hash
        FROM ev_consent_granted
        WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
        UNION ALL
        SELECT patient, grantee, FALSE, actor, NULL, NULL, NULL, NULL, NULL, NULL,
               block_number, log_index, tx_hash
        FROM ev_consent_revoked
        WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
    ) e
    ORDER BY patient, grantee, block_number DESC, log_index DESC
"#
    };
}

/// Latest grant-or-revoke per (patient, grantee) in the range: a grant upserts, a revoke deletes.
const CONSENTS: &str = concat!(
    r#"
WITH latest AS ("#,
    latest_consent_events!(),
    r#"), revoked AS (
    DELETE FROM consents c
    USING latest l
    WHERE NOT l.granted AND c.chain_id = $1 AND c.patient = l.patient AND c.grantee = l.grantee
)
INSERT INTO consents (chain_id, patient, grantee, resource_types, actions, purposes, valid_from,
                      valid_until, consent_hash, actor, granted_block, granted_tx)
SELECT $1, patient, grantee, resource_types, actions, purposes, valid_from, valid_until,
       consent_hash, actor, block_number, tx_hash
FROM latest
WHERE granted
ON CONFLICT (chain_id, patient, grantee) DO UPDATE SET
    resource_types = EXCLUDED.resource_types,
    actions = EXCLUDED.actions,
    purposes = EXCLUDED.purposes,
    valid_from = EXCLUDED.valid_from,
    valid_until = EXCLUDED.valid_until,
    consent_hash = EXCLUDED.consent_hash,
    actor = EXCLUDED.actor,
    granted_block = EXCLUDED.granted_block,
    granted_tx = EXCLUDED.granted_tx
"#
);

/// Latest set-or-remove per (patient, delegate).
const DELEGATES: &str = r#"
WITH latest AS (
    SELECT DISTINCT ON (patient, delegate) *
    FROM (
        SELECT patient, delegate, TRUE AS present, kind, valid_until, block_number, log_index
        FROM ev_delegate_set
        WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
        UNION ALL
        SELECT patient, delegate, FALSE, NULL, NULL, block_number, log_index
        FROM ev_delegate_removed
        WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
    ) e
    ORDER BY patient, delegate, block_number DESC, log_index DESC
), removed AS (
    DELETE FROM delegates d
    USING latest l
    WHERE NOT l.present AND d.chain_id = $1 AND d.patient = l.patient AND d.delegate = l.delegate
)
INSERT INTO delegates (chain_id, patient, delegate, kind, valid_until, set_block)
SELECT $1, patient, delegate, kind, valid_until, block_number
FROM latest
WHERE present
ON CONFLICT (chain_id, patient, delegate) DO UPDATE SET
    kind = EXCLUDED.kind,
    valid_until = EXCLUDED.valid_until,
    set_block = EXCLUDED.set_block
"#;

const BREAK_GLASS_OPENED: &str = r#"
INSERT INTO break_glass_sessions (chain_id, session_id, patient, org, opener, reason, expires_at,
                                  opened_block, opened_tx)
SELECT $1, session_id, patient, org, opener, reason, expires_at, block_number, tx_hash
FROM ev_break_glass_opened
WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
ON CONFLICT (chain_id, session_id) DO UPDATE SET
    patient = EXCLUDED.patient,
    org = EXCLUDED.org,
    opener = EXCLUDED.opener,
    reason = EXCLUDED.reason,
    expires_at = EXCLUDED.expires_at,
    opened_block = EXCLUDED.opened_block,
    opened_tx = EXCLUDED.opened_tx,
    closer = NULL,
    closed_block = NULL
"#;

const BREAK_GLASS_CLOSED: &str = r#"
UPDATE break_glass_sessions s
SET closer = c.closer, closed_block = c.block_number
FROM ev_break_glass_closed c
WHERE c.chain_id = $1 AND c.block_number BETWEEN $2 AND $3
  AND s.chain_id = $1 AND s.session_id = c.session_id
"#;

/// Latest register-or-remove per gateway.
const AUDIT_GATEWAYS: &str = r#"
WITH latest AS (
    SELECT DISTINCT ON (gateway) *
    FROM (
        SELECT gateway, TRUE AS registered, block_number, log_index
        FROM ev_gateway_registered
        WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
        UNION ALL
        SELECT gateway, FALSE, block_number, log_index
        FROM ev_gateway_removed
        WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
    ) e
    ORDER BY gateway, block_number DESC, log_index DESC
), removed AS (
    DELETE FROM audit_gateways g
    USING latest l
    WHERE NOT l.registered AND g.chain_id = $1 AND g.gateway = l.gateway
)
INSERT INTO audit_gateways (chain_id, gateway, registered_block)
SELECT $1, gateway, block_number FROM latest WHERE registered
ON CONFLICT (chain_id, gateway) DO UPDATE SET registered_block = EXCLUDED.registered_block
"#;

/// Admission inserts the organisation as Active (1); it precedes any status change.
const ORGANISATIONS_ADMITTED: &str = r#"
INSERT INTO organisations (chain_id, org, kind, name, status, admitted_block, updated_block)
SELECT $1, org, kind, name, 1, block_number, block_number
FROM ev_organisation_admitted
WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
ON CONFLICT (chain_id, org) DO UPDATE SET
    kind = EXCLUDED.kind,
    name = EXCLUDED.name,
    status = 1,
    admitted_block = EXCLUDED.admitted_block,
    updated_block = EXCLUDED.updated_block
"#;

const ORGANISATIONS_STATUS: &str = r#"
UPDATE organisations o
SET status = s.status, updated_block = s.block_number
FROM (
    SELECT DISTINCT ON (org) org, status, block_number
    FROM ev_organisation_status_changed
    WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
    ORDER BY org, block_number DESC, log_index DESC
) s
WHERE o.chain_id = $1 AND o.org = s.org
"#;

/// Member events in order; a rotation depends on the old key's state, so they are applied
/// one by one (membership changes are rare).
const MEMBER_EVENTS: &str = r#"
SELECT 0::int2 AS kind, block_number, log_index, org, member_key AS a, NULL::bytea AS b, role AS v
FROM ev_member_added WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
UNION ALL
SELECT 1::int2, block_number, log_index, org, member_key, NULL, status
FROM ev_member_status_changed WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
UNION ALL
SELECT 2::int2, block_number, log_index, org, old_key, new_key, NULL
FROM ev_member_key_rotated WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
ORDER BY block_number, log_index
"#;

const MEMBER_ADDED: &str = r#"
INSERT INTO members (chain_id, member_key, org, role, status, added_block, updated_block)
VALUES ($1, $2, $3, $4, 1, $5, $5)
ON CONFLICT (chain_id, member_key) DO UPDATE SET
    org = EXCLUDED.org, role = EXCLUDED.role, status = 1,
    added_block = EXCLUDED.added_block, updated_block = EXCLUDED.updated_block
"#;

const MEMBER_STATUS: &str = r#"
UPDATE members SET status = $3, updated_block = $4 WHERE chain_id = $1 AND member_key = $2
"#;

/// The new key takes over the old key's organisation, role and status; the old key retires.
const MEMBER_ROTATED_NEW: &str = r#"
INSERT INTO members (chain_id, member_key, org, role, status, added_block, updated_block)
SELECT chain_id, $3, org, role, status, $4, $4
FROM members WHERE chain_id = $1 AND member_key = $2
ON CONFLICT (chain_id, member_key) DO UPDATE SET
    org = EXCLUDED.org, role = EXCLUDED.role, status = EXCLUDED.status,
    added_block = EXCLUDED.added_block, updated_block = EXCLUDED.updated_block
"#;

const MEMBER_ROTATED_OLD: &str = r#"
UPDATE members SET status = 3, updated_block = $3 WHERE chain_id = $1 AND member_key = $2
"#;

/// [`build`]: the stored consents, the latest grant-or-revoke per (patient, grantee) when it
/// is a grant (what folding every range with [`CONSENTS`] leaves).
const CONSENTS_BUILD: &str = concat!(
    r#"
INSERT INTO consents (chain_id, patient, grantee, resource_types, actions, purposes, valid_from,
                      valid_until, consent_hash, actor, granted_block, granted_tx)
SELECT $1, patient, grantee, resource_types, actions, purposes, valid_from, valid_until,
       consent_hash, actor, block_number, tx_hash
FROM ("#,
    latest_consent_events!(),
    r#") latest
WHERE granted
"#
);

/// Indexes of the tables [`build`] fills with one row per event, dropped before a bulk build
/// and created again after it (a sorted index build instead of one insertion per row), with
/// the same names and definitions as in `migrations/`: (drop, create).
const BULK_INDEXES: &[(&str, &str)] = &[
    (
        "ALTER TABLE consents DROP CONSTRAINT consents_pkey",
        "ALTER TABLE consents ADD CONSTRAINT consents_pkey PRIMARY KEY (chain_id, patient, grantee)",
    ),
    (
        "DROP INDEX consents_grantee",
        "CREATE INDEX consents_grantee ON consents (chain_id, grantee)",
    ),
];

/// Secondary indexes of the event tables that only readers need (a patient's consent history,
/// record anchors by hash, chain events by agent). A first backfill into empty event tables drops them
/// ([`crate::store::Store::defer_event_indexes`]) so that its inserts maintain only the primary
/// keys; [`build`] creates them again after the rows, in its transaction.
/// `(table, name, CREATE INDEX IF NOT EXISTS ...)`, as in the migrations.
pub(crate) const DEFERRED_EVENT_INDEXES: &[(&str, &str, &str)] = &[
    (
        "ev_consent_granted",
        "ev_consent_granted_patient",
        "CREATE INDEX IF NOT EXISTS ev_consent_granted_patient ON ev_consent_granted (chain_id, patient, grantee)",
    ),
    (
        "ev_consent_revoked",
        "ev_consent_revoked_patient",
        "CREATE INDEX IF NOT EXISTS ev_consent_revoked_patient ON ev_consent_revoked (chain_id, patient, grantee)",
    ),
    (
        "ev_record_anchored",
        "ev_record_anchored_hash",
        "CREATE INDEX IF NOT EXISTS ev_record_anchored_hash ON ev_record_anchored (chain_id, version_hash)",
    ),
    // The gateway's AuditEvent search by agent (migrations/0530_audit_search_at_scale.sql).
    (
        "ev_consent_granted",
        "ev_consent_granted_actor",
        "CREATE INDEX IF NOT EXISTS ev_consent_granted_actor ON ev_consent_granted (chain_id, actor)",
    ),
    (
        "ev_consent_revoked",
        "ev_consent_revoked_actor",
        "CREATE INDEX IF NOT EXISTS ev_consent_revoked_actor ON ev_consent_revoked (chain_id, actor)",
    ),
];

/// Folds the events of blocks `[from, to]` into the derived tables.
pub async fn apply_range(
    conn: &mut PgConnection,
    chain_id: i64,
    from: i64,
    to: i64,
    membership: bool,
) -> Result<(), sqlx::Error> {
    for sql in [
        CONSENTS,
        DELEGATES,
        BREAK_GLASS_OPENED,
        BREAK_GLASS_CLOSED,
        AUDIT_GATEWAYS,
    ] {
        sqlx::query(sql)
            .bind(chain_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
    }
    if membership {
        apply_membership(conn, chain_id, from, to).await?;
    }
    Ok(())
}

async fn apply_membership(
    conn: &mut PgConnection,
    chain_id: i64,
    from: i64,
    to: i64,
) -> Result<(), sqlx::Error> {
    for sql in [ORGANISATIONS_ADMITTED, ORGANISATIONS_STATUS] {
        sqlx::query(sql)
            .bind(chain_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
    }
    let events = sqlx::query(MEMBER_EVENTS)
        .bind(chain_id)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
    for event in events {
        let kind: i16 = event.try_get("kind")?;
        let block: i64 = event.try_get("block_number")?;
        let org: Vec<u8> = event.try_get("org")?;
        let a: Vec<u8> = event.try_get("a")?;
        match kind {
            0 => {
                let role: i16 = event.try_get("v")?;
                sqlx::query(MEMBER_ADDED)
                    .bind(chain_id)
                    .bind(&a)
                    .bind(&org)
                    .bind(role)
                    .bind(block)
                    .execute(&mut *conn)
                    .await?;
            }
            1 => {
                let status: i16 = event.try_get("v")?;
                sqlx::query(MEMBER_STATUS)
                    .bind(chain_id)
                    .bind(&a)
                    .bind(status)
                    .bind(block)
                    .execute(&mut *conn)
                    .await?;
            }
            _ => {
                let b: Vec<u8> = event.try_get("b")?;
                sqlx::query(MEMBER_ROTATED_NEW)
                    .bind(chain_id)
                    .bind(&a)
                    .bind(&b)
                    .bind(block)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(MEMBER_ROTATED_OLD)
                    .bind(chain_id)
                    .bind(&a)
                    .bind(block)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Computes the derived state of `chain_id` from the event log up to block `to` into derived
/// tables that hold no row of `chain_id`. With `bulk`, the indexes of the large tables are
/// dropped and built again after their rows are in: the transaction then holds those tables
/// exclusively until it ends (DDL is transactional: a failure or a kill leaves them as they
/// were).
pub async fn build(
    conn: &mut PgConnection,
    chain_id: i64,
    to: i64,
    bulk: bool,
) -> Result<(), sqlx::Error> {
    // Sorts for DISTINCT ON and the index builds stay in memory (this transaction only).
    sqlx::query("SELECT set_config('work_mem', '128MB', true), set_config('maintenance_work_mem', '256MB', true)")
        .execute(&mut *conn)
        .await?;
    if bulk {
        for (drop_sql, _) in BULK_INDEXES {
            sqlx::query(*drop_sql).execute(&mut *conn).await?;
        }
    }
    sqlx::query(CONSENTS_BUILD)
        .bind(chain_id)
        .bind(0_i64)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    if bulk {
        for (_, create_sql) in BULK_INDEXES {
            sqlx::query(*create_sql).execute(&mut *conn).await?;
        }
    }
    // The other tables get few rows per event: the range fold on empty tables builds them.
    for sql in [
        DELEGATES,
        BREAK_GLASS_OPENED,
        BREAK_GLASS_CLOSED,
        AUDIT_GATEWAYS,
    ] {
        sqlx::query(sql)
            .bind(chain_id)
            .bind(0_i64)
            .bind(to)
            .execute(&mut *conn)
            .await?;
    }
    apply_membership(conn, chain_id, 0, to).await?;
    // Whatever dropped them (a first backfill), the event tables have all their indexes again
    // once the derived state exists.
    for (_, _, create_sql) in DEFERRED_EVENT_INDEXES {
        sqlx::query(*create_sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rebuilds every derived table of `chain_id` from the event log up to block `to`.
pub async fn recompute(conn: &mut PgConnection, chain_id: i64, to: i64) -> Result<(), sqlx::Error> {
    for table in DERIVED_TABLES {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE chain_id = $1"
        )))
        .bind(chain_id)
        .execute(&mut *conn)
        .await?;
    }
    build(conn, chain_id, to, false).await
}
