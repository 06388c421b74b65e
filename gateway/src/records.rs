//! The record service: consent first, then the store, then integrity.
//!
//! Every operation resolves the request to (patient, requester, resource type, action,
//! purpose), asks [`ConsentService::decide`](crate::consent::ConsentService::decide), and only
//! when allowed opens the patient's data key. The only store access before the decision is
//! the lookup of which patient a record id belongs to (index metadata, no content): the
//! decision needs the patient.
//!
//! A read by id whose record's patient is known (a record never changes patient) and whose
//! allowing decision is cached at indexer cursor C is answered with one query that returns
//! the version only if the record is that patient's and the cursor is still C, in the same
//! snapshot: the decision still stands for exactly the state the data is read in. Anything
//! else takes the full path (patient and cursor, decision, then the version).

use crate::{
    AppState,
    auth::{Claims, Role},
    consent::{Decision, DecisionKey},
    crypto::{CryptoError, record_aad},
    error::{AppError, not_found_text},
    fhir::resource::{self, SearchFields},
    store::{self, KeyState, NewVersion, StoredVersion},
};
use alloy::primitives::Address;
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_formats::canonical::canonical_hash;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::{collections::HashMap, sync::Mutex};

/// Entries kept by [`RecordPatients`] before it starts afresh.
const RECORD_PATIENTS_CAPACITY: usize = 200_000;

/// The patient of each record read recently (a record's patient never changes: updates of
/// another patient's record are refused).
#[derive(Debug, Default)]
pub struct RecordPatients {
    map: Mutex<HashMap<(ResourceType, String), String>>,
}

impl RecordPatients {
    fn get(&self, resource_type: ResourceType, id: &str) -> Option<String> {
        self.lock().get(&(resource_type, id.to_owned())).cloned()
    }

    fn remember(&self, resource_type: ResourceType, id: &str, patient: &str) {
        let mut map = self.lock();
        if map.len() >= RECORD_PATIENTS_CAPACITY {
            map.clear();
        }
        map.insert((resource_type, id.to_owned()), patient.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ResourceType, String), String>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the audit layer learns from an operation.
pub trait AuditSink {
    /// The patient concerned.
    fn patient(&self, patient: Address);
    /// The consent decision.
    fn decision(&self, decision: &Decision, purpose: Purpose);
    /// The resource touched.
    fn entity(&self, entity: String);
    /// A search across patients: the highest decision block and how many patients it spans.
    fn scope(&self, block: u64, purpose: Purpose, patients: usize);
}

/// A stored resource returned to the client.
#[derive(Debug, Clone)]
pub struct Served {
    /// The resource JSON (with `id` and `meta`).
    pub resource: Value,
    /// Its version.
    pub version_id: i64,
    /// When it was written.
    pub last_updated: DateTime<Utc>,
}

fn parse_patient(text: &str) -> Result<Address, AppError> {
    text.parse()
        .map_err(|_| AppError::internal(std::io::Error::other("stored patient is not an address")))
}

async fn decide(
    state: &AppState,
    claims: &Claims,
    patient: Address,
    resource_type: ResourceType,
    action: Action,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Decision, AppError> {
    let key = DecisionKey {
        patient,
        requester: claims.sub,
        resource_type,
        action,
        purpose,
    };
    audit.patient(patient);
    let decision = state.consent().decide(key).await?;
    verdict(decision, key, audit)
}

/// Records a decision and turns a denial into 403 (callers conceal it where the request names
/// a record).
fn verdict(
    decision: Decision,
    DecisionKey {
        resource_type,
        action,
        purpose,
        ..
    }: DecisionKey,
    audit: &(dyn AuditSink + Sync),
) -> Result<Decision, AppError> {
    audit.decision(&decision, purpose);
    if decision.allowed {
        Ok(decision)
    } else {
        Err(AppError::Forbidden(format!(
            "consent denies {} of {resource_type} for purpose {purpose}: {}",
            action.long_name(),
            decision.basis
        )))
    }
}

/// A denial of an interaction with a record named by id, answered as the record's absence
/// (see [`AppError::ConcealedDenial`]); other errors pass unchanged.
fn conceal(err: AppError, resource_type: ResourceType, id: &str) -> AppError {
    match err {
        AppError::Forbidden(_) => {
            AppError::ConcealedDenial(not_found_text(resource_type.code(), id))
        }
        other => other,
    }
}

/// Resolve an existing record to its patient and decide the read on chain. A record that
/// does not exist and a record consent does not cover are answered alike (404).
async fn decide_read_of_record(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    claims: &Claims,
    resource_type: ResourceType,
    id: &str,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Decision, AppError> {
    let name = resource_type.code();
    // The record's patient and the indexer's cursor in one query (index metadata only).
    let (patient, cursor) =
        store::patient_of_record_and_cursor(conn, name, id, state.chain().chain_id()).await?;
    let patient_text = patient.ok_or_else(|| AppError::NotFound(not_found_text(name, id)))?;
    let patient = parse_patient(&patient_text)?;
    state
        .record_patients()
        .remember(resource_type, id, &patient_text);
    let key = DecisionKey {
        patient,
        requester: claims.sub,
        resource_type,
        action: Action::Read,
        purpose,
    };
    audit.patient(patient);
    let decision = state.consent().decide_at_cursor(key, cursor).await?;
    verdict(decision, key, audit).map_err(|err| conceal(err, resource_type, id))
}

/// `GET [type]/[id]` and `GET [type]/[id]/_history/[vid]`.
pub async fn read(
    state: &AppState,
    claims: &Claims,
    resource_type: ResourceType,
    id: &str,
    version: Option<i64>,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Served, AppError> {
    let name = resource_type.code();
    audit.entity(match version {
        Some(v) => format!("{name}/{id}/_history/{v}"),
        None => format!("{name}/{id}"),
    });
    // One connection for every query of the read, returned when they all succeeded.
    let mut conn = state.reads().acquire().await?;
    let found = match read_under_cached_decision(
        state,
        &mut conn,
        claims,
        (resource_type, id, version),
        purpose,
        audit,
    )
    .await?
    {
        Some(found) => Some(found),
        None => {
            decide_read_of_record(state, &mut conn, claims, resource_type, id, purpose, audit)
                .await?;
            store::version_with_key(&mut conn, state.kek(), name, id, version, None).await?
        }
    };
    conn.release();
    let (stored, key) =
        found.ok_or_else(|| AppError::NotFound(format!("{name}/{id} has no such version")))?;
    if stored.deleted {
        return Err(AppError::Gone(format!("{name}/{id} was deleted")));
    }
    let key = active_key(key)?;
    open_verified_with(state, &stored, &key).await
}

/// The version a read asks for, in one query, when the record's patient is known and an
/// allowing decision for it is cached: returned only if the indexer's cursor is still the
/// one that decision was made at (see the module documentation). `None`: take the full path.
async fn read_under_cached_decision(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    claims: &Claims,
    (resource_type, id, version): (ResourceType, &str, Option<i64>),
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Option<(StoredVersion, KeyState)>, AppError> {
    let Some(patient_text) = state.record_patients().get(resource_type, id) else {
        return Ok(None);
    };
    let key = DecisionKey {
        patient: parse_patient(&patient_text)?,
        requester: claims.sub,
        resource_type,
        action: Action::Read,
        purpose,
    };
    let Some((decision, cursor)) = state.consent().cached_allow(&key) else {
        return Ok(None);
    };
    let guard = store::DecisionGuard {
        patient: &patient_text,
        chain_id: state.chain().chain_id(),
        cursor,
    };
    let found = store::version_with_key(
        conn,
        state.kek(),
        resource_type.code(),
        id,
        version,
        Some(guard),
    )
    .await?;
    if found.is_some() {
        audit.patient(key.patient);
        verdict(decision, key, audit)?;
    }
    Ok(found)
}

/// The data key of a patient whose records exist (erased: gone).
fn active_key(key: KeyState) -> Result<crate::crypto::SecretKey, AppError> {
    match key {
        KeyState::Active(key) => Ok(key),
        KeyState::Erased => Err(AppError::Gone("the patient's records were erased".into())),
        KeyState::Missing => Err(AppError::internal(std::io::Error::other(
            "record without a data key",
        ))),
    }
}

/// Decrypts a stored version, checks its hash and its on-chain anchor.
async fn open_verified(state: &AppState, stored: &StoredVersion) -> Result<Served, AppError> {
    let key = patient_key(state, &stored.patient).await?;
    open_verified_with(state, stored, &key).await
}

/// The data key of a patient whose records exist (erased: gone).
async fn patient_key(
    state: &AppState,
    patient: &str,
) -> Result<crate::crypto::SecretKey, AppError> {
    let mut conn = state.pool().acquire().await?;
    active_key(store::data_key(&mut conn, state.kek(), patient, false).await?)
}

/// Decrypts a stored version with its patient's key, checks its hash and its on-chain anchor.
async fn open_verified_with(
    state: &AppState,
    stored: &StoredVersion,
    key: &crate::crypto::SecretKey,
) -> Result<Served, AppError> {
    let sealed = stored.sealed.as_deref().ok_or(AppError::Integrity)?;
    let aad = record_aad(&stored.resource_type, &stored.id, stored.version_id);
    let plain = key.open(sealed, aad.as_bytes()).map_err(|err| match err {
        CryptoError::Tampered => {
            tracing::error!(resource_type = %stored.resource_type, "stored ciphertext failed authentication");
            AppError::Integrity
        }
        other => AppError::internal(other),
    })?;
    let resource: Value = serde_json::from_slice(&plain).map_err(|_| AppError::Integrity)?;
    let hash = canonical_hash(&resource);
    if Some(hash) != stored.version_hash {
        tracing::error!(resource_type = %stored.resource_type, "stored version does not match its hash");
        return Err(AppError::Integrity);
    }
    let anchored = match &stored.batch_root {
        None => state.chain().verify_anchor(hash, stored.custodian).await,
        Some(root) => {
            state
                .chain()
                .verify_inclusion(hash, *root, stored.batch_proof.clone(), stored.custodian)
                .await
        }
    }
    .map_err(|err| {
        tracing::warn!(%err, "anchor check failed");
        AppError::Unavailable("record verification is unavailable: the chain is unreachable")
    })?;
    if !anchored {
        tracing::error!(resource_type = %stored.resource_type, "stored version is not anchored on chain");
        return Err(AppError::Integrity);
    }
    Ok(Served {
        resource,
        version_id: stored.version_id,
        last_updated: stored.last_updated,
    })
}

/// A server-assigned logical id: 128 random bits in hex (no PHI, not guessable).
fn new_id() -> String {
    use aes_gcm::aead::{OsRng, rand_core::RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    alloy::hex::encode(bytes)
}

fn custodian(state: &AppState, claims: &Claims) -> Result<Address, AppError> {
    match (claims.role, claims.org, state.config().default_custodian) {
        (Role::Member, Some(org), _) => Ok(org),
        (_, _, Some(org)) => Ok(org),
        _ => Err(AppError::Unprocessable(
            "no custodian organisation is configured for records written by patients".into(),
        )),
    }
}

/// Stamps `id` and `meta` on a resource about to be stored.
fn stamp(body: &mut Value, id: &str, version_id: i64, now: DateTime<Utc>) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("id".into(), Value::String(id.to_owned()));
        let mut meta = obj
            .remove("meta")
            .and_then(|m| match m {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        meta.insert("versionId".into(), Value::String(version_id.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(now.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        obj.insert("meta".into(), Value::Object(meta));
    }
}

/// `POST [type]` and `PUT [type]/[id]`: checks, decides, anchors, encrypts and stores.
/// `update` carries the id and the `If-Match` version when given.
pub async fn write(
    state: &AppState,
    claims: &Claims,
    resource_type: ResourceType,
    update: Option<(&str, Option<i64>)>,
    mut body: Value,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Served, AppError> {
    let name = resource_type.code();
    if resource::body_type(&body)? != resource_type {
        return Err(AppError::Invalid(format!(
            "the body's resourceType is not {name}"
        )));
    }
    let (id, _) = match update {
        Some((id, if_match)) => {
            if body.get("id").and_then(Value::as_str) != Some(id) {
                return Err(AppError::Invalid(
                    "the body's id must equal the id in the URL".into(),
                ));
            }
            (id.to_owned(), if_match)
        }
        None if resource_type == ResourceType::Patient => {
            let patient =
                resource::patient_of(resource_type, body.get("id").and_then(Value::as_str), &body)?;
            (patient, None)
        }
        None => (new_id(), None),
    };
    resource::validate_id(&id)?;
    audit.entity(format!("{name}/{id}"));
    let patient_text = resource::patient_of(resource_type, Some(&id), &body)?;
    let patient = parse_patient(&patient_text)?;
    let current = match update {
        // An update is decided for the body's patient before the record is looked up, and a
        // record of another patient is answered as absent: a requester without consent learns
        // nothing about which ids exist.
        Some(_) => {
            decide(
                state,
                claims,
                patient,
                resource_type,
                Action::Update,
                purpose,
                audit,
            )
            .await
            .map_err(|err| conceal(err, resource_type, &id))?;
            match store::locate(state.pool(), name, &id).await? {
                Some(current) if current.0 == patient_text => Some(current),
                _ => return Err(AppError::NotFound(not_found_text(name, &id))),
            }
        }
        None => {
            decide(
                state,
                claims,
                patient,
                resource_type,
                Action::Create,
                purpose,
                audit,
            )
            .await?;
            if store::locate(state.pool(), name, &id).await?.is_some() {
                return Err(AppError::Conflict(format!("{name}/{id} already exists")));
            }
            None
        }
    };
    let current_version = current.as_ref().map_or(0, |(_, v, _)| *v);
    if let Some(Some(wanted)) = update.map(|(_, m)| m)
        && wanted != current_version
    {
        return Err(AppError::PreconditionFailed(format!(
            "If-Match names version {wanted}, the current version is {current_version}"
        )));
    }
    let version_id = current_version + 1;
    let now = Utc::now();
    stamp(&mut body, &id, version_id, now);
    let hash = canonical_hash(&body);
    let org = custodian(state, claims)?;
    let fields: SearchFields = resource::search_fields(resource_type, &body);
    let content = serde_json::to_vec(&body).map_err(AppError::internal)?;
    // Anchor first: a version in the store is always anchored; an anchor without a stored
    // version (the write below failed) names nothing and is harmless.
    state
        .chain()
        .anchor(org, hash)
        .await
        .map_err(anchoring_failed)?;
    let mut tx = state.pool().begin().await?;
    let key = match store::data_key(&mut tx, state.kek(), &patient_text, true).await? {
        KeyState::Active(key) => key,
        KeyState::Erased => {
            return Err(AppError::Gone("the patient's records were erased".into()));
        }
        KeyState::Missing => {
            return Err(AppError::internal(std::io::Error::other(
                "data key not created",
            )));
        }
    };
    store::write_version(
        &mut tx,
        &key,
        state.hasher(),
        &NewVersion {
            resource_type: name.to_owned(),
            id: id.clone(),
            version_id,
            patient: patient_text,
            last_updated: now,
            content: Some(content),
            version_hash: Some(hash),
            custodian: org,
            batch: None,
            fields,
        },
        current_version,
    )
    .await?;
    tx.commit().await?;
    Ok(Served {
        resource: body,
        version_id,
        last_updated: now,
    })
}

/// `DELETE [type]/[id]`: a new version without content.
pub async fn delete(
    state: &AppState,
    claims: &Claims,
    resource_type: ResourceType,
    id: &str,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<(), AppError> {
    let name = resource_type.code();
    audit.entity(format!("{name}/{id}"));
    let (patient_text, current, deleted) = store::locate(state.pool(), name, id)
        .await?
        .ok_or_else(|| AppError::NotFound(not_found_text(name, id)))?;
    let patient = parse_patient(&patient_text)?;
    decide(
        state,
        claims,
        patient,
        resource_type,
        Action::Delete,
        purpose,
        audit,
    )
    .await
    .map_err(|err| conceal(err, resource_type, id))?;
    if deleted {
        // Deleting a deleted resource succeeds (FHIR: idempotent).
        return Ok(());
    }
    let org = custodian(state, claims)?;
    let mut tx = state.pool().begin().await?;
    let key = match store::data_key(&mut tx, state.kek(), &patient_text, false).await? {
        KeyState::Active(key) => key,
        KeyState::Erased => return Ok(()),
        KeyState::Missing => {
            return Err(AppError::internal(std::io::Error::other(
                "record without a data key",
            )));
        }
    };
    store::write_version(
        &mut tx,
        &key,
        state.hasher(),
        &NewVersion {
            resource_type: name.to_owned(),
            id: id.to_owned(),
            version_id: current + 1,
            patient: patient_text,
            last_updated: Utc::now(),
            content: None,
            version_hash: None,
            custodian: org,
            batch: None,
            fields: SearchFields::default(),
        },
        current,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `GET [type]/[id]/_history`: a history Bundle, newest first.
pub async fn history(
    state: &AppState,
    claims: &Claims,
    resource_type: ResourceType,
    id: &str,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Value, AppError> {
    let name = resource_type.code();
    audit.entity(format!("{name}/{id}/_history"));
    let mut conn = state.reads().acquire().await?;
    decide_read_of_record(state, &mut conn, claims, resource_type, id, purpose, audit).await?;
    conn.release();
    let limit = i64::try_from(state.config().max_page_size).unwrap_or(100);
    let versions = store::history(state.pool(), name, id, limit).await?;
    let base = state.base_url();
    let mut entries = Vec::with_capacity(versions.len());
    for stored in &versions {
        let full_url = format!("{base}/{name}/{id}");
        let method = if stored.deleted {
            "DELETE"
        } else if stored.version_id == 1 {
            "POST"
        } else {
            "PUT"
        };
        let mut entry = json!({
            "fullUrl": full_url,
            "request": {"method": method, "url": format!("{name}/{id}")},
            "response": {
                "status": if stored.deleted { "204" } else if stored.version_id == 1 { "201" } else { "200" },
                "etag": format!("W/\"{}\"", stored.version_id),
                "lastModified": stored.last_updated.to_rfc3339_opts(SecondsFormat::Micros, true),
            }
        });
        if !stored.deleted {
            let served = open_verified(state, stored).await?;
            entry["resource"] = served.resource;
        }
        entries.push(entry);
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "entry": entries,
    }))
}

/// `GET [type]?..` (or the next page of one, from its cursor): a searchset Bundle.
///
/// Consent is decided before the index is paged: a search naming its patient needs that
/// patient's decision (403 otherwise); a search without `patient` spans exactly the patients
/// whose decision allows the requester to search, so `total`, the pages and `_include` count
/// and show nothing else. Every page (cursor) is decided again.
pub async fn search(
    state: &AppState,
    claims: &Claims,
    resource_type: ResourceType,
    params: &[(String, String)],
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Value, AppError> {
    use std::collections::{HashMap, HashSet};
    let name = resource_type.code();
    audit.entity(name.to_owned());
    let cursor = params
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let (query, after) = match cursor {
        Some(token) => {
            if params
                .iter()
                .any(|(k, _)| !matches!(k.as_str(), "_cursor" | "_purpose" | "_format"))
            {
                return Err(AppError::Invalid("a paging cursor is used alone".into()));
            }
            let (query, after) = state.cursors().resume(token, claims.sub)?;
            if query.resource_type != name {
                return Err(AppError::Invalid(
                    "the paging cursor is for another type".into(),
                ));
            }
            (query, Some(after))
        }
        None => (
            crate::search::SearchQuery::parse(
                resource_type,
                params,
                state.config().default_page_size,
                state.config().max_page_size,
            )?,
            None,
        ),
    };
    let across = query.patient.is_empty();
    let patients = if across {
        searchable_patients(state, claims, &query, purpose, audit).await?
    } else {
        // One decision covers the compartment; it is made again for every page.
        decide(
            state,
            claims,
            query.patient_address()?,
            resource_type,
            Action::Search,
            purpose,
            audit,
        )
        .await?;
        if store::is_erased(state.pool(), &query.patient).await? {
            return Err(AppError::Gone("the patient's records were erased".into()));
        }
        vec![query.patient.clone()]
    };
    let page = crate::search::run(
        state.pool(),
        state.hasher(),
        state.cursors(),
        &query,
        &patients,
        after.as_ref(),
        claims.sub,
    )
    .await?;
    let versions = store::current_versions(state.pool(), &page.keys).await?;
    let allowed: HashSet<&str> = patients.iter().map(String::as_str).collect();
    if versions
        .iter()
        .any(|v| !allowed.contains(v.patient.as_str()))
    {
        return Err(AppError::internal(std::io::Error::other(
            "a search page holds a record outside its decided patients",
        )));
    }
    let base = state.base_url();
    // One key per patient on the page; the page's anchors are verified a few at a time.
    let mut keys: HashMap<&str, crate::crypto::SecretKey> = HashMap::new();
    for stored in &versions {
        if !keys.contains_key(stored.patient.as_str()) {
            let key = patient_key(state, &stored.patient).await?;
            keys.insert(stored.patient.as_str(), key);
        }
    }
    let mut entries = Vec::with_capacity(versions.len());
    // Each match's patient and encounter reference (for `_include`).
    let mut matched: Vec<(&str, Option<String>)> = Vec::with_capacity(versions.len());
    if !versions.is_empty() {
        use futures::{StreamExt, TryStreamExt};
        let mut pending = Vec::with_capacity(versions.len());
        for stored in &versions {
            let key = keys.get(stored.patient.as_str()).ok_or_else(|| {
                AppError::internal(std::io::Error::other("no key for a page's patient"))
            })?;
            pending.push(open_verified_with(state, stored, key));
        }
        let served: Vec<Served> = futures::stream::iter(pending)
            .buffered(8)
            .try_collect()
            .await?;
        for (stored, served) in versions.iter().zip(served) {
            let encounter = if query.include.is_empty() {
                None
            } else {
                resource::search_fields(resource_type, &served.resource).encounter
            };
            matched.push((stored.patient.as_str(), encounter));
            entries.push(json!({
                "fullUrl": format!("{base}/{}/{}", stored.resource_type, stored.id),
                "resource": served.resource,
                "search": {"mode": "match"},
            }));
        }
    }
    // _include: only targets of the same patient, only where consent covers reading them; a
    // denied target is left out silently (the matches themselves were allowed).
    let include_patients: Vec<&str> = if across {
        let mut seen = Vec::new();
        for (patient, _) in &matched {
            if !seen.contains(patient) {
                seen.push(*patient);
            }
        }
        seen
    } else {
        vec![query.patient.as_str()]
    };
    for target in &query.include {
        let target: ResourceType = target
            .parse()
            .map_err(|_| AppError::Invalid("the paging cursor is invalid".into()))?;
        for patient in &include_patients {
            let allowed = state
                .consent()
                .decide(DecisionKey {
                    patient: parse_patient(patient)?,
                    requester: claims.sub,
                    resource_type: target,
                    action: Action::Read,
                    purpose,
                })
                .await?
                .allowed;
            if !allowed {
                continue;
            }
            let mut ids: Vec<String> = Vec::new();
            if target == ResourceType::Patient {
                ids.push((*patient).to_owned());
            } else {
                for (_, encounter) in matched.iter().filter(|(p, _)| p == patient) {
                    if let Some(id) = encounter
                        && !ids.contains(id)
                    {
                        ids.push(id.clone());
                    }
                }
            }
            for id in ids {
                let Some(stored) = store::version(state.pool(), target.code(), &id, None).await?
                else {
                    continue;
                };
                if stored.deleted || stored.patient != *patient {
                    continue;
                }
                let served = open_verified(state, &stored).await?;
                entries.push(json!({
                    "fullUrl": format!("{base}/{}/{id}", target.code()),
                    "resource": served.resource,
                    "search": {"mode": "include"},
                }));
            }
        }
    }
    let mut links = vec![json!({
        "relation": "self",
        "url": match cursor {
            Some(token) => format!("{base}/{name}?_cursor={token}"),
            None if across => format!(
                "{base}/{name}?_count={}&_sort={}",
                query.count,
                crate::search::sort_code(&query)
            ),
            None => format!(
                "{base}/{name}?patient={}&_count={}&_sort={}",
                query.patient,
                query.count,
                crate::search::sort_code(&query)
            ),
        },
    })];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": format!("{base}/{name}?_cursor={next}")}));
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": entries,
    }))
}

/// The patients a search without `patient` may return: those with a match whose consent
/// decision allows the requester to search this type for this purpose (failing closed like
/// any decision). At most `--max-search-patients` candidates are decided.
async fn searchable_patients(
    state: &AppState,
    claims: &Claims,
    query: &crate::search::SearchQuery,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Vec<String>, AppError> {
    let resource_type: ResourceType = query
        .resource_type
        .parse()
        .map_err(|_| AppError::Invalid("the paging cursor is invalid".into()))?;
    let max = state.config().max_search_patients;
    let candidates = crate::search::candidate_patients(
        state.pool(),
        state.hasher(),
        query,
        max.saturating_add(1),
    )
    .await?;
    if candidates.len() > max {
        return Err(AppError::TooCostly(format!(
            "a search without `patient` may span at most {max} patients; name the patient or narrow the search"
        )));
    }
    let mut allowed = Vec::new();
    let mut block = 0;
    for patient in candidates {
        let decision = state
            .consent()
            .decide(DecisionKey {
                patient: parse_patient(&patient)?,
                requester: claims.sub,
                resource_type,
                action: Action::Search,
                purpose,
            })
            .await?;
        block = block.max(decision.block);
        if decision.allowed {
            allowed.push(patient);
        }
    }
    audit.scope(block, purpose, allowed.len());
    Ok(allowed)
}

/// `POST Patient/[address]/$erase`: destroys the patient's data key, so every version of every
/// record of theirs becomes unreadable (reported gone). Only the patient or an active delegate.
pub async fn erase(
    state: &AppState,
    claims: &Claims,
    patient_id: &str,
    audit: &(dyn AuditSink + Sync),
) -> Result<(), AppError> {
    let patient_text = resource::normalize_address(patient_id)
        .ok_or_else(|| AppError::Invalid("a Patient id is a wallet address".into()))?;
    audit.entity(format!("Patient/{patient_text}"));
    let patient = parse_patient(&patient_text)?;
    let decision = decide(
        state,
        claims,
        patient,
        ResourceType::Patient,
        Action::Delete,
        Purpose::PatientRequest,
        audit,
    )
    .await?;
    if !matches!(
        decision.basis,
        carechain_contracts::Basis::OwnData | carechain_contracts::Basis::Delegate
    ) {
        return Err(AppError::Forbidden(
            "only the patient or an active delegate may erase the patient's records".into(),
        ));
    }
    let by = format!("{:#x}", claims.sub);
    if store::erase_patient(state.pool(), &patient_text, &by).await? {
        Ok(())
    } else if store::is_erased(state.pool(), &patient_text).await? {
        Err(AppError::Gone(
            "the patient's records were already erased".into(),
        ))
    } else {
        Err(AppError::NotFound(
            "no records are stored for this patient".into(),
        ))
    }
}

/// Most entries a transaction Bundle may carry.
const MAX_TRANSACTION_ENTRIES: usize = 5000;

/// An audit sink for the entries of a Bundle: decisions and patients are recorded, while the
/// entity stays the Bundle.
struct EntrySink<'a>(&'a (dyn AuditSink + Sync));

impl AuditSink for EntrySink<'_> {
    fn patient(&self, patient: Address) {
        self.0.patient(patient);
    }
    fn decision(&self, decision: &Decision, purpose: Purpose) {
        self.0.decision(decision, purpose);
    }
    fn entity(&self, _: String) {}
    fn scope(&self, block: u64, purpose: Purpose, patients: usize) {
        self.0.scope(block, purpose, patients);
    }
}

/// What a Bundle entry's `request` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryRequest {
    /// `POST [type]`.
    Create(ResourceType),
    /// `PUT [type]/[id]` (with `ifMatch`).
    Update(ResourceType, String, Option<i64>),
    /// `DELETE [type]/[id]`.
    Delete(ResourceType, String),
    /// `GET [type]/[id]` or `GET [type]/[id]/_history/[vid]`.
    Read(ResourceType, String, Option<i64>),
    /// `GET [type]?..`.
    Search(ResourceType, Vec<(String, String)>),
}

/// Parses `request.method` and `request.url` (relative, or absolute under this gateway).
fn entry_request(state: &AppState, entry: &Value) -> Result<EntryRequest, AppError> {
    let method = entry
        .pointer("/request/method")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("request.method is missing".into()))?;
    let url = entry
        .pointer("/request/url")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("request.url is missing".into()))?;
    let url = url
        .strip_prefix(state.base_url())
        .unwrap_or(url)
        .trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let rt = |name: &str| resource::parse_type(name);
    let id = |id: &str| resource::validate_id(id).map(|()| id.to_owned());
    let no_query = || match query {
        Some(q) if !q.is_empty() => Err(AppError::NotSupported(
            "request.url takes parameters only for a search".into(),
        )),
        _ => Ok(()),
    };
    let if_match = entry
        .pointer("/request/ifMatch")
        .and_then(Value::as_str)
        .map(resource::etag_version)
        .transpose()?;
    match (method, segments.as_slice()) {
        ("POST", [name]) => no_query().and(Ok(EntryRequest::Create(rt(name)?))),
        ("PUT", [name, i]) => no_query().and(Ok(EntryRequest::Update(rt(name)?, id(i)?, if_match))),
        ("DELETE", [name, i]) => no_query().and(Ok(EntryRequest::Delete(rt(name)?, id(i)?))),
        ("GET", [name, i]) => no_query().and(Ok(EntryRequest::Read(rt(name)?, id(i)?, None))),
        ("GET", [name, i, "_history", v]) => no_query().and(Ok(EntryRequest::Read(
            rt(name)?,
            id(i)?,
            Some(resource::version_id(v)?),
        ))),
        ("GET", [name]) => Ok(EntryRequest::Search(
            rt(name)?,
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )),
        _ => Err(AppError::NotSupported(
            "entries are POST [type], PUT or DELETE [type]/[id], or GET [type]/[id][/_history/[vid]] or [type]?..".into(),
        )),
    }
}

/// The `response` of an entry that wrote or read a version.
fn entry_response(status: &str, resource_type: ResourceType, served: &Served) -> Value {
    let id = served
        .resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({
        "status": status,
        "location": format!("{}/{id}/_history/{}", resource_type.code(), served.version_id),
        "etag": format!("W/\"{}\"", served.version_id),
        "lastModified": served.last_updated.to_rfc3339_opts(SecondsFormat::Micros, true),
    })
}

/// Runs one entry on its own (a batch entry, or a transaction's GET after its writes).
async fn run_entry(
    state: &AppState,
    claims: &Claims,
    request: EntryRequest,
    body: Option<Value>,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Value, AppError> {
    let sink = EntrySink(audit);
    let body = || body.ok_or_else(|| AppError::Invalid("the entry has no resource".into()));
    Ok(match request {
        EntryRequest::Create(rt) => {
            let served = write(state, claims, rt, None, body()?, purpose, &sink).await?;
            json!({"response": entry_response("201 Created", rt, &served)})
        }
        EntryRequest::Update(rt, id, if_match) => {
            let served = write(
                state,
                claims,
                rt,
                Some((&id, if_match)),
                body()?,
                purpose,
                &sink,
            )
            .await?;
            json!({"response": entry_response("200 OK", rt, &served)})
        }
        EntryRequest::Delete(rt, id) => {
            delete(state, claims, rt, &id, purpose, &sink).await?;
            json!({"response": {"status": "204 No Content"}})
        }
        EntryRequest::Read(rt, id, version) => {
            let served = read(state, claims, rt, &id, version, purpose, &sink).await?;
            json!({"resource": served.resource.clone(), "response": entry_response("200 OK", rt, &served)})
        }
        EntryRequest::Search(rt, params) => {
            let bundle = search(state, claims, rt, &params, purpose, &sink).await?;
            json!({"resource": bundle, "response": {"status": "200 OK"}})
        }
    })
}

/// A transaction entry after the first pass.
enum Planned {
    /// A GET, answered after the writes.
    Read(EntryRequest),
    /// A create, update or delete of `resource_type`/`id` (a create's id is new).
    Write {
        action: Action,
        resource_type: ResourceType,
        id: String,
        if_match: Option<i64>,
        body: Option<Value>,
    },
}

/// One write of a transaction, prepared.
struct Prepared {
    resource_type: ResourceType,
    id: String,
    patient: String,
    /// The new version's content (`None`: a delete).
    body: Option<Value>,
    /// The version it replaces (0 for a create).
    current: i64,
    /// The response status.
    status: &'static str,
}

/// `POST [base]` with a `transaction` Bundle (how an EHR feeds records in): all or nothing.
///
/// Entries may be `POST` (create), `PUT` (update, with `ifMatch`), `DELETE` and `GET` (read,
/// vread, search; of records that exist before the transaction). `urn:uuid` full URLs of
/// created resources become `Type/id` and every reference to them is rewritten. Every write is checked and decided (create, update, delete;
/// denials of id-addressed entries concealed as 404) and every GET is decided before anything
/// is stored; then the new versions are anchored as one Merkle batch and written in one
/// database transaction, each with its inclusion proof. GET entries are answered after the
/// writes (FHIR processes them last) and see the new state.
pub async fn transaction(
    state: &AppState,
    claims: &Claims,
    bundle: Value,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Value, AppError> {
    use std::collections::{HashMap, HashSet};
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(AppError::Invalid("POST [base] takes a Bundle".into()));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => "transaction",
        Some("batch") => "batch",
        _ => {
            return Err(AppError::Invalid(
                "the Bundle type must be transaction or batch".into(),
            ));
        }
    };
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| AppError::Invalid("the Bundle has no entries".into()))?;
    if entries.is_empty() || entries.len() > MAX_TRANSACTION_ENTRIES {
        return Err(AppError::TooCostly(format!(
            "a {kind} carries 1 to {MAX_TRANSACTION_ENTRIES} entries"
        )));
    }
    audit.entity(format!("Bundle/{kind} ({} entries)", entries.len()));
    if kind == "batch" {
        return batch(state, claims, entries, purpose, audit).await;
    }
    let sink = EntrySink(audit);
    // Pass 1: what each entry asks, new ids, and the fullUrl -> Type/id map.
    let mut planned = Vec::with_capacity(entries.len());
    let mut references: HashMap<String, String> = HashMap::new();
    let mut targets: HashSet<(ResourceType, String)> = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = |err: AppError| match err {
            AppError::Invalid(msg) => AppError::Invalid(format!("entry {index}: {msg}")),
            AppError::NotSupported(msg) => AppError::NotSupported(format!("entry {index}: {msg}")),
            other => other,
        };
        let request = entry_request(state, entry).map_err(at)?;
        let body = entry.get("resource").cloned();
        let (resource_type, id, action, if_match) = match &request {
            EntryRequest::Create(rt) => {
                let body = body
                    .as_ref()
                    .ok_or_else(|| at(AppError::Invalid("no resource".into())))?;
                if resource::body_type(body).map_err(at)? != *rt {
                    return Err(at(AppError::Invalid(
                        "request.url must be the resource's type".into(),
                    )));
                }
                let id = if *rt == ResourceType::Patient {
                    resource::patient_of(*rt, None, body)?
                } else {
                    new_id()
                };
                (*rt, id, Action::Create, None)
            }
            EntryRequest::Update(rt, id, if_match) => {
                let body = body
                    .as_ref()
                    .ok_or_else(|| at(AppError::Invalid("no resource".into())))?;
                if resource::body_type(body).map_err(at)? != *rt
                    || body.get("id").and_then(Value::as_str) != Some(id.as_str())
                {
                    return Err(at(AppError::Invalid(
                        "the resource's type and id must match request.url".into(),
                    )));
                }
                (*rt, id.clone(), Action::Update, *if_match)
            }
            EntryRequest::Delete(rt, id) => (*rt, id.clone(), Action::Delete, None),
            EntryRequest::Read(..) | EntryRequest::Search(..) => {
                planned.push(Planned::Read(request));
                continue;
            }
        };
        if !targets.insert((resource_type, id.clone())) {
            return Err(at(AppError::Invalid(
                "a resource is written by more than one entry".into(),
            )));
        }
        if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
            references.insert(
                full_url.to_owned(),
                format!("{}/{id}", resource_type.code()),
            );
        }
        planned.push(Planned::Write {
            action,
            resource_type,
            id,
            if_match,
            body,
        });
    }
    // Pass 2: rewrite references, decide every entry, check the writes against the store.
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut reads = Vec::new();
    let mut decided: HashSet<(String, ResourceType, Action)> = HashSet::new();
    for entry in planned {
        let (action, resource_type, id, if_match, mut body) = match entry {
            Planned::Read(request) => {
                // A GET: decided now (nothing is written when it is refused), answered last.
                if let EntryRequest::Read(rt, id, _) = &request {
                    let mut conn = state.reads().acquire().await?;
                    decide_read_of_record(state, &mut conn, claims, *rt, id, purpose, &sink)
                        .await?;
                    conn.release();
                }
                reads.push((prepared.len(), request));
                continue;
            }
            Planned::Write {
                action,
                resource_type,
                id,
                if_match,
                body,
            } => (action, resource_type, id, if_match, body),
        };
        let name = resource_type.code();
        let patient = match body.as_mut() {
            Some(body) if action != Action::Delete => {
                resource::for_each_reference(body, &mut |reference| {
                    if let Some(target) = references.get(reference.as_str()) {
                        reference.clone_from(target);
                    }
                });
                resource::patient_of(resource_type, Some(&id), body)?
            }
            _ => String::new(),
        };
        let current = store::locate(state.pool(), name, &id).await?;
        // The decision is about the body's patient for a create or an update, the stored
        // record's for a delete; refusals of updates and deletes look like absent records.
        let subject = match (action, &current) {
            (Action::Delete, Some((owner, _, _))) => owner.clone(),
            (Action::Delete, None) => return Err(AppError::NotFound(not_found_text(name, &id))),
            _ => patient.clone(),
        };
        if decided.insert((subject.clone(), resource_type, action)) {
            let decision = decide(
                state,
                claims,
                parse_patient(&subject)?,
                resource_type,
                action,
                purpose,
                &sink,
            )
            .await;
            match action {
                Action::Create => decision?,
                _ => decision.map_err(|err| conceal(err, resource_type, &id))?,
            };
        }
        let (patient, current, status) = match (action, current) {
            (Action::Create, None) => (patient, 0, "201 Created"),
            (Action::Create, Some(_)) => {
                return Err(AppError::Conflict(format!("{name}/{id} already exists")));
            }
            // A record of another patient is answered as absent (see `write`).
            (Action::Update, Some((owner, version, _))) if owner == patient => {
                if let Some(wanted) = if_match
                    && wanted != version
                {
                    return Err(AppError::PreconditionFailed(format!(
                        "{name}/{id}: ifMatch names version {wanted}, the current version is {version}"
                    )));
                }
                (patient, version, "200 OK")
            }
            (Action::Update, _) => return Err(AppError::NotFound(not_found_text(name, &id))),
            (_, Some((owner, _, true))) => {
                // Deleting a deleted resource succeeds and writes nothing.
                prepared.push(Prepared {
                    resource_type,
                    id,
                    patient: owner,
                    body: None,
                    current: -1,
                    status: "204 No Content",
                });
                continue;
            }
            (_, Some((owner, version, false))) => (owner, version, "204 No Content"),
            (_, None) => return Err(AppError::NotFound(not_found_text(name, &id))),
        };
        prepared.push(Prepared {
            resource_type,
            id,
            patient,
            body: if action == Action::Delete { None } else { body },
            current,
            status,
        });
    }
    // Hash every new version; anchor one Merkle root for the custodian.
    let now = Utc::now();
    let mut hashes = Vec::new();
    for item in &mut prepared {
        if let Some(body) = item.body.as_mut() {
            stamp(body, &item.id, item.current + 1, now);
            hashes.push(canonical_hash(body));
        }
    }
    let writes = prepared.iter().any(|p| p.current >= 0);
    let org = if writes {
        Some(custodian(state, claims)?)
    } else {
        None
    };
    let tree = carechain_contracts::merkle::MerkleTree::new(&hashes);
    if let (Some(tree), Some(org)) = (&tree, org) {
        let count = u32::try_from(hashes.len()).map_err(AppError::internal)?;
        state
            .chain()
            .anchor_batch(org, tree.root(), count)
            .await
            .map_err(anchoring_failed)?;
    }
    let mut tx = state.pool().begin().await?;
    let mut keys: HashMap<String, crate::crypto::SecretKey> = HashMap::new();
    let mut responses: Vec<Value> = Vec::with_capacity(entries.len());
    let mut leaf = 0;
    for item in &prepared {
        let name = item.resource_type.code();
        if item.current < 0 {
            responses.push(json!({"response": {"status": item.status}}));
            continue;
        }
        let key = match keys.get(&item.patient) {
            Some(key) => key.clone(),
            None => {
                let create = item.current == 0;
                let key = match store::data_key(&mut tx, state.kek(), &item.patient, create).await?
                {
                    KeyState::Active(key) => key,
                    KeyState::Erased => {
                        return Err(AppError::Gone("a patient's records were erased".into()));
                    }
                    KeyState::Missing => {
                        return Err(AppError::internal(std::io::Error::other(
                            "data key not created",
                        )));
                    }
                };
                keys.insert(item.patient.clone(), key.clone());
                key
            }
        };
        let version_id = item.current + 1;
        let (content, version_hash, batch, fields) = match &item.body {
            Some(body) => {
                let tree = tree
                    .as_ref()
                    .ok_or_else(|| AppError::internal(std::io::Error::other("no Merkle tree")))?;
                let proof = tree
                    .proof(leaf)
                    .ok_or_else(|| AppError::internal(std::io::Error::other("no Merkle proof")))?;
                let hash = hashes[leaf];
                leaf += 1;
                (
                    Some(serde_json::to_vec(body).map_err(AppError::internal)?),
                    Some(hash),
                    Some((tree.root(), proof)),
                    resource::search_fields(item.resource_type, body),
                )
            }
            None => (None, None, None, SearchFields::default()),
        };
        store::write_version(
            &mut tx,
            &key,
            state.hasher(),
            &NewVersion {
                resource_type: name.to_owned(),
                id: item.id.clone(),
                version_id,
                patient: item.patient.clone(),
                last_updated: now,
                content,
                version_hash,
                custodian: org.unwrap_or_default(),
                batch,
                fields,
            },
            item.current,
        )
        .await?;
        responses.push(if item.body.is_some() {
            json!({"response": {
                "status": item.status,
                "location": format!("{name}/{}/_history/{version_id}", item.id),
                "etag": format!("W/\"{version_id}\""),
                "lastModified": now.to_rfc3339_opts(SecondsFormat::Micros, true),
            }})
        } else {
            json!({"response": {"status": item.status}})
        });
    }
    tx.commit().await?;
    // GET entries, last, against the committed state; placed back at their positions.
    let mut answered = Vec::with_capacity(reads.len());
    for (position, request) in reads {
        answered.push((
            position,
            run_entry(state, claims, request, None, purpose, audit).await?,
        ));
    }
    for (offset, (position, answer)) in answered.into_iter().enumerate() {
        responses.insert(position + offset, answer);
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": responses,
    }))
}

/// Maps an anchoring failure to the client's answer.
fn anchoring_failed(err: crate::chain::ChainError) -> AppError {
    match err {
        crate::chain::ChainError::NoServiceKey(_) => AppError::Unprocessable(
            "the gateway holds no service key for the custodian organisation".into(),
        ),
        err => {
            tracing::warn!(%err, "anchoring failed");
            AppError::Unavailable("anchoring is unavailable: the chain is unreachable")
        }
    }
}

/// A `batch` Bundle: each entry (`POST`, `PUT`, `DELETE`, `GET`) runs on its own, with its
/// own decision, anchor and write; the answer reports each entry's outcome.
async fn batch(
    state: &AppState,
    claims: &Claims,
    entries: &[Value],
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Value, AppError> {
    let mut responses = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let result = async {
            let request = entry_request(state, entry).map_err(|err| match err {
                AppError::Invalid(msg) => AppError::Invalid(format!("entry {index}: {msg}")),
                AppError::NotSupported(msg) => {
                    AppError::NotSupported(format!("entry {index}: {msg}"))
                }
                other => other,
            })?;
            let body = entry.get("resource").cloned();
            if let (EntryRequest::Create(rt) | EntryRequest::Update(rt, _, _), Some(body)) =
                (&request, &body)
                && resource::body_type(body)? != *rt
            {
                return Err(AppError::Invalid(format!(
                    "entry {index}: request.url must be the resource's type"
                )));
            }
            run_entry(state, claims, request, body, purpose, audit).await
        }
        .await;
        responses.push(match result {
            Ok(answer) => answer,
            // A dependency failure stops the batch: the remaining entries would fail alike,
            // and a 5xx must not be reported as an entry outcome with internals.
            Err(err) if err.status().is_server_error() => return Err(err),
            Err(err) => json!({"response": {
                "status": err.status().as_u16().to_string(),
                "outcome": err.outcome(),
            }}),
        });
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": responses,
    }))
}
