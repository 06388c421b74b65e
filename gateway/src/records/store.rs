//! The encrypted record store and its minimal search index (PostgreSQL).
//!
//! Only this module writes the `gateway_*` store tables, apart from the anchoring queue and
//! the anchoring state of a version (its batch root, proof and `anchor_pending`), which belong
//! to [`super::anchoring`] once a version is queued.
//! Content is sealed here with the patient's data key; callers see plaintext JSON only.

use crate::{
    crypto::{CryptoError, SecretKey, record_aad},
    error::AppError,
    fhir::resource::SearchFields,
};
use alloy::primitives::{Address, B256};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};

/// The state of a patient's data key.
#[derive(Debug)]
pub enum KeyState {
    /// The key exists.
    Active(SecretKey),
    /// The key was destroyed: the patient's data is gone.
    Erased,
    /// No record was ever written for the patient.
    Missing,
}

/// One stored version.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// Resource type name.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version number, from 1.
    pub version_id: i64,
    /// The patient (lower-case address).
    pub patient: String,
    /// When this version was written.
    pub last_updated: DateTime<Utc>,
    /// Whether this version is a deletion.
    pub deleted: bool,
    /// Sealed content.
    pub sealed: Option<Vec<u8>>,
    /// Anchored hash.
    pub version_hash: Option<B256>,
    /// Custodian organisation.
    pub custodian: Address,
    /// Batch root, for batch-anchored versions.
    pub batch_root: Option<B256>,
    /// Batch proof, for batch-anchored versions.
    pub batch_proof: Vec<B256>,
    /// Accepted and queued for anchoring; its batch is not mined yet.
    pub anchor_pending: bool,
}

fn b256(bytes: Option<Vec<u8>>) -> Option<B256> {
    bytes.and_then(|b| B256::try_from(b.as_slice()).ok())
}

impl StoredVersion {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let proof: Option<Vec<u8>> = row.try_get("batch_proof")?;
        let custodian: Vec<u8> = row.try_get("custodian")?;
        Ok(Self {
            resource_type: row.try_get("resource_type")?,
            id: row.try_get("id")?,
            version_id: row.try_get("version_id")?,
            patient: row.try_get("patient")?,
            last_updated: row.try_get("last_updated")?,
            deleted: row.try_get("deleted")?,
            sealed: row.try_get("sealed")?,
            version_hash: b256(row.try_get("version_hash")?),
            custodian: Address::try_from(custodian.as_slice()).unwrap_or_default(),
            batch_root: b256(row.try_get("batch_root")?),
            batch_proof: proof
                .unwrap_or_default()
                .chunks_exact(32)
                .filter_map(|c| B256::try_from(c).ok())
                .collect(),
            anchor_pending: row.try_get("anchor_pending")?,
        })
    }
}

const VERSION_COLUMNS: &str = "resource_type, id, version_id, patient, last_updated, deleted, sealed, version_hash, \
                               custodian, batch_root, batch_proof, anchor_pending";

/// A version about to be written.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Resource type name.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version number.
    pub version_id: i64,
    /// The patient.
    pub patient: String,
    /// Timestamp of the version.
    pub last_updated: DateTime<Utc>,
    /// The resource JSON (`None` for a delete).
    pub content: Option<Vec<u8>>,
    /// Its anchored hash (`None` for a delete).
    pub version_hash: Option<B256>,
    /// Custodian organisation (its anchorer anchors the version).
    pub custodian: Address,
    /// Searchable fields (ignored for a delete).
    pub fields: SearchFields,
}

/// Keyed hashing of the coded terms searches match (FHIR token parameters, `system|code`):
/// the index holds these hashes, never the codes.
#[derive(Clone)]
pub struct SearchTermHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for SearchTermHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SearchTermHasher(..)")
    }
}

impl SearchTermHasher {
    /// A hasher keyed from the gateway secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&Self::mac(secret, b"carechain/search-index"));
        Self { key }
    }

    fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
        match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// Hash of one token form: `s:system|code`, `c:code` or `y:system`.
    pub fn hash(&self, form: &str) -> Vec<u8> {
        Self::mac(&self.key, form.as_bytes())
    }

    /// Every searchable form of the tokens.
    pub fn index_forms(&self, tokens: &[(Option<String>, String)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (system, code) in tokens {
            out.push(self.hash(&format!("c:{code}")));
            out.push(self.hash(&format!("s:{}|{code}", system.as_deref().unwrap_or(""))));
            if let Some(system) = system {
                out.push(self.hash(&format!("y:{system}")));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The form a search value matches: `system|code`, `code`, `|code` or `system|`.
    pub fn query_form(&self, value: &str) -> Vec<u8> {
        match value.split_once('|') {
            None => self.hash(&format!("c:{value}")),
            Some((system, "")) => self.hash(&format!("y:{system}")),
            Some((system, code)) => self.hash(&format!("s:{system}|{code}")),
        }
    }
}

/// The data key of `patient`; creates one when `create` and none exists.
pub async fn data_key(
    conn: &mut PgConnection,
    kek: &SecretKey,
    patient: &str,
    create: bool,
) -> Result<KeyState, AppError> {
    if create {
        let wrapped = kek
            .wrap(&SecretKey::generate(), patient)
            .map_err(AppError::internal)?;
        sqlx::query("INSERT INTO gateway_patient_keys (patient, wrapped_key) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(patient)
            .bind(wrapped)
            .execute(&mut *conn)
            .await?;
    }
    let row: Option<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT wrapped_key FROM gateway_patient_keys WHERE patient = $1")
            .bind(patient)
            .fetch_optional(&mut *conn)
            .await?;
    key_state(kek, patient, row.map(|(wrapped,)| wrapped))
}

/// The state of a patient's key from its row: none, erased (`NULL`), or a wrapped key.
fn key_state(
    kek: &SecretKey,
    patient: &str,
    row: Option<Option<Vec<u8>>>,
) -> Result<KeyState, AppError> {
    match row {
        None => Ok(KeyState::Missing),
        Some(None) => Ok(KeyState::Erased),
        Some(Some(wrapped)) => {
            let key = kek.unwrap_key(&wrapped, patient).map_err(|err| match err {
                CryptoError::Tampered => AppError::Integrity,
                other => AppError::internal(other),
            })?;
            Ok(KeyState::Active(key))
        }
    }
}

/// The current version number, patient and deletion flag of a record, from the index.
pub async fn locate(
    pool: &PgPool,
    resource_type: &str,
    id: &str,
) -> Result<Option<(String, i64, bool)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT patient, version_id, deleted FROM gateway_resources WHERE resource_type = $1 AND id = $2",
    )
    .bind(resource_type)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The patient of any version of a record (also for records whose index row was erased)
/// and, in the same query,
/// the indexer's cursor for `chain_id` (for [`ConsentService::decide_at_cursor`]).
///
/// [`ConsentService::decide_at_cursor`]: crate::consent::ConsentService::decide_at_cursor
pub async fn patient_of_record_and_cursor(
    conn: &mut sqlx::PgConnection,
    resource_type: &str,
    id: &str,
    chain_id: u64,
) -> Result<(Option<String>, Option<u64>), AppError> {
    let chain_id = i64::try_from(chain_id).map_err(AppError::internal)?;
    let sql = format!(
        "SELECT (SELECT patient FROM gateway_resource_versions
                 WHERE resource_type = $1 AND id = $2 LIMIT 1),
                {}",
        carechain_formats::index::cursor_subquery("$3")
    );
    let (patient, cursor): (Option<String>, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(resource_type)
        .bind(id)
        .bind(chain_id)
        .fetch_one(conn)
        .await?;
    Ok((patient, cursor.map(|b| u64::try_from(b).unwrap_or(0))))
}

/// One version (the current one when `version` is `None`).
pub async fn version(
    pool: &PgPool,
    resource_type: &str,
    id: &str,
    version: Option<i64>,
) -> Result<Option<StoredVersion>, AppError> {
    let sql = match version {
        Some(_) => format!(
            "SELECT {VERSION_COLUMNS} FROM gateway_resource_versions
             WHERE resource_type = $1 AND id = $2 AND version_id = $3"
        ),
        None => format!(
            "SELECT {VERSION_COLUMNS} FROM gateway_resource_versions
             WHERE resource_type = $1 AND id = $2 AND version_id >= $3 ORDER BY version_id DESC LIMIT 1"
        ),
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(resource_type)
        .bind(id)
        .bind(version.unwrap_or(0))
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(StoredVersion::from_row)
        .transpose()
        .map_err(AppError::from)
}

/// The condition under which a read may be answered in the same query that decides nothing:
/// the record belongs to `patient`, and (unless `cursor` is `None`) the indexer's cursor is
/// still the one a cached decision was made at.
#[derive(Debug, Clone, Copy)]
pub struct DecisionGuard<'a> {
    /// The patient the cached decision is about.
    pub patient: &'a str,
    /// The chain whose cursor is checked.
    pub chain_id: u64,
    /// The cursors the decision holds at (`None`: any, benchmark mode only).
    pub cursor: Option<crate::consent::CursorSpan>,
}

/// One version (the current one when `version` is `None`) with its patient's data key, in
/// one query. With a `guard`, nothing is returned unless the guard holds in the same snapshot.
pub async fn version_with_key(
    conn: &mut sqlx::PgConnection,
    kek: &SecretKey,
    resource_type: &str,
    id: &str,
    version: Option<i64>,
    guard: Option<DecisionGuard<'_>>,
) -> Result<Option<(StoredVersion, KeyState)>, AppError> {
    let version_filter = match version {
        Some(_) => "version_id = $3",
        None => "version_id >= $3",
    };
    let guard_filter = match guard {
        None => String::new(),
        Some(DecisionGuard { cursor: None, .. }) => " AND v.patient = $4".to_owned(),
        Some(DecisionGuard {
            cursor: Some(_), ..
        }) => format!(
            " AND v.patient = $4 AND {} BETWEEN $6 AND $7",
            carechain_formats::index::cursor_subquery("$5")
        ),
    };
    let order = match version {
        Some(_) => "",
        None => " ORDER BY version_id DESC LIMIT 1",
    };
    let sql = format!(
        "SELECT {VERSION_COLUMNS},
                EXISTS (SELECT 1 FROM gateway_patient_keys k WHERE k.patient = v.patient) AS has_key,
                (SELECT k.wrapped_key FROM gateway_patient_keys k WHERE k.patient = v.patient) AS wrapped_key
         FROM gateway_resource_versions v
         WHERE resource_type = $1 AND id = $2 AND {version_filter}{guard_filter}{order}"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(resource_type)
        .bind(id)
        .bind(version.unwrap_or(0));
    if let Some(guard) = guard {
        query = query.bind(guard.patient);
        if let Some(span) = guard.cursor {
            query = query
                .bind(i64::try_from(guard.chain_id).map_err(AppError::internal)?)
                .bind(i64::try_from(span.from).map_err(AppError::internal)?)
                .bind(i64::try_from(span.to).map_err(AppError::internal)?);
        }
    }
    let Some(row) = query.fetch_optional(conn).await? else {
        return Ok(None);
    };
    let stored = StoredVersion::from_row(&row)?;
    let has_key: bool = row.try_get("has_key")?;
    let wrapped: Option<Vec<u8>> = row.try_get("wrapped_key")?;
    let key = key_state(kek, &stored.patient, has_key.then_some(wrapped))?;
    Ok(Some((stored, key)))
}

/// Current versions of many records, in the order given.
pub async fn current_versions(
    pool: &PgPool,
    keys: &[(String, String)],
) -> Result<Vec<StoredVersion>, AppError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let types: Vec<&str> = keys.iter().map(|(t, _)| t.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|(_, i)| i.as_str()).collect();
    let sql = "SELECT v.resource_type, v.id, v.version_id, v.patient, v.last_updated, v.deleted, v.sealed,
                      v.version_hash, v.custodian, v.batch_root, v.batch_proof, v.anchor_pending
               FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS k(rt, rid, ord)
               JOIN gateway_resources r ON r.resource_type = k.rt AND r.id = k.rid
               JOIN gateway_resource_versions v
                 ON v.resource_type = r.resource_type AND v.id = r.id AND v.version_id = r.version_id
               ORDER BY k.ord";
    let rows = sqlx::query(sql)
        .bind(&types)
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(StoredVersion::from_row)
        .collect::<Result<_, _>>()
        .map_err(AppError::from)
}

/// The current (not deleted) versions of every record of `resource_type` of `patient`, changed
/// at or after `since` when given, in id order: what a research export reads of one patient.
pub async fn patient_current_versions(
    pool: &PgPool,
    resource_type: &str,
    patient: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<StoredVersion>, AppError> {
    let sql = "SELECT v.resource_type, v.id, v.version_id, v.patient, v.last_updated, v.deleted, v.sealed,
                      v.version_hash, v.custodian, v.batch_root, v.batch_proof, v.anchor_pending
               FROM gateway_resources r
               JOIN gateway_resource_versions v
                 ON v.resource_type = r.resource_type AND v.id = r.id AND v.version_id = r.version_id
               WHERE r.resource_type = $1 AND r.patient = $2 AND NOT r.deleted
                 AND ($3::timestamptz IS NULL OR r.last_updated >= $3)
               ORDER BY r.id";
    let rows = sqlx::query(sql)
        .bind(resource_type)
        .bind(patient)
        .bind(since)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(StoredVersion::from_row)
        .collect::<Result<_, _>>()
        .map_err(AppError::from)
}

/// The current records of `resource_type` of `patient` (those referencing one of `encounters`,
/// when given), at most `limit`, oldest first: what `_revinclude` adds to a search page.
pub async fn referencing(
    pool: &PgPool,
    resource_type: &str,
    patient: &str,
    encounters: Option<&[String]>,
    limit: i64,
) -> Result<Vec<(String, String)>, AppError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM gateway_resources
         WHERE resource_type = $1 AND patient = $2 AND NOT deleted
           AND ($3::text[] IS NULL OR encounter = ANY($3::text[]))
         ORDER BY last_updated, id LIMIT $4",
    )
    .bind(resource_type)
    .bind(patient)
    .bind(encounters)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(ids
        .into_iter()
        .map(|id| (resource_type.to_owned(), id))
        .collect())
}

/// Every version, newest first.
pub async fn history(
    pool: &PgPool,
    resource_type: &str,
    id: &str,
    limit: i64,
) -> Result<Vec<StoredVersion>, AppError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM gateway_resource_versions
         WHERE resource_type = $1 AND id = $2 ORDER BY version_id DESC LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(resource_type)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(StoredVersion::from_row)
        .collect::<Result<_, _>>()
        .map_err(AppError::from)
}

/// Writes a version and moves the index to it. `expected_current` is the version the write
/// was based on (0 for a new record); a concurrent change makes this fail with 412/409.
pub async fn write_version(
    conn: &mut PgConnection,
    key: &SecretKey,
    hasher: &SearchTermHasher,
    v: &NewVersion,
    expected_current: i64,
) -> Result<(), AppError> {
    let sealed = match &v.content {
        Some(content) => Some(
            key.seal(
                content,
                record_aad(&v.resource_type, &v.id, v.version_id).as_bytes(),
            )
            .map_err(AppError::internal)?,
        ),
        None => None,
    };
    let inserted = sqlx::query(
        "INSERT INTO gateway_resource_versions
           (resource_type, id, version_id, patient, last_updated, deleted, sealed, version_hash, custodian, anchor_pending)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
    )
    .bind(&v.resource_type)
    .bind(&v.id)
    .bind(v.version_id)
    .bind(&v.patient)
    .bind(v.last_updated)
    .bind(v.content.is_none())
    .bind(sealed)
    .bind(v.version_hash.map(|h| h.to_vec()))
    .bind(v.custodian.to_vec())
    .bind(v.version_hash.is_some())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(conflict(expected_current));
    }
    // Every version with content is queued for its custodian's anchorer (`super::anchoring`).
    if let Some(hash) = v.version_hash {
        sqlx::query(
            "INSERT INTO gateway_anchor_queue
               (custodian, resource_type, id, version_id, version_hash, queued_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(v.custodian.to_vec())
        .bind(&v.resource_type)
        .bind(&v.id)
        .bind(v.version_id)
        .bind(hash.to_vec())
        .bind(v.last_updated)
        .execute(&mut *conn)
        .await?;
    }
    let (codes, categories) = (
        hasher.index_forms(&v.fields.codes),
        hasher.index_forms(&v.fields.categories),
    );
    let date = v.fields.date;
    let updated = if expected_current == 0 {
        sqlx::query(
            "INSERT INTO gateway_resources
               (resource_type, id, patient, version_id, last_updated, deleted, date_start, date_end, codes, categories, encounter)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
    } else {
        sqlx::query(
            "UPDATE gateway_resources SET patient = $3, version_id = $4, last_updated = $5, deleted = $6,
               date_start = $7, date_end = $8, codes = $9, categories = $10, encounter = $11
             WHERE resource_type = $1 AND id = $2 AND version_id = $12",
        )
    }
    .bind(&v.resource_type)
    .bind(&v.id)
    .bind(&v.patient)
    .bind(v.version_id)
    .bind(v.last_updated)
    .bind(v.content.is_none())
    .bind(date.map(|d| d.start))
    .bind(date.map(|d| d.end))
    .bind(codes)
    .bind(categories)
    .bind(&v.fields.encounter)
    .bind(expected_current)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(conflict(expected_current));
    }
    Ok(())
}

fn conflict(expected: i64) -> AppError {
    if expected == 0 {
        AppError::Conflict("a resource with this id already exists".into())
    } else {
        AppError::PreconditionFailed(
            "the resource was changed concurrently; re-read and retry".into(),
        )
    }
}

/// Destroys a patient's data key and drops their index rows. Returns false when the patient
/// has no key (nothing stored) or was already erased.
pub async fn erase_patient(pool: &PgPool, patient: &str, by: &str) -> Result<bool, AppError> {
    let mut tx = pool.begin().await?;
    let erased = sqlx::query(
        "UPDATE gateway_patient_keys SET wrapped_key = NULL, erased_at = now(), erased_by = $2
         WHERE patient = $1 AND wrapped_key IS NOT NULL",
    )
    .bind(patient)
    .bind(by)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Index rows carry no content, but their existence and dates are about the patient too.
    sqlx::query("UPDATE gateway_resources SET deleted = true, codes = '{}', categories = '{}', date_start = NULL, date_end = NULL WHERE patient = $1")
        .bind(patient)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(erased > 0)
}

/// Whether the patient's key was erased.
pub async fn is_erased(pool: &PgPool, patient: &str) -> Result<bool, AppError> {
    let erased: Option<bool> = sqlx::query_scalar(
        "SELECT wrapped_key IS NULL FROM gateway_patient_keys WHERE patient = $1",
    )
    .bind(patient)
    .fetch_optional(pool)
    .await?;
    Ok(erased.unwrap_or(false))
}
