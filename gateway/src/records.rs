//! The record service: consent first, then the store, then integrity.
//!
//! Every operation resolves the request to (patient, requester, resource type, action,
//! purpose), asks [`ConsentService::decide`](crate::consent::ConsentService::decide), and only
//! when allowed opens the patient's data key. The only store access before the decision is
//! the lookup of which patient a record id belongs to (index metadata, no content): the
//! decision needs the patient.

use crate::{
    AppState,
    auth::{Claims, Role},
    consent::{Decision, DecisionKey},
    crypto::{CryptoError, record_aad},
    error::{AppError, not_found_text},
    fhir::resource::{self, SearchFields},
    jcs,
    store::{self, KeyState, NewVersion, StoredVersion},
};
use alloy::primitives::Address;
use carechain_contracts::{Action, Purpose, ResourceType};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

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
    claims: &Claims,
    resource_type: ResourceType,
    id: &str,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Decision, AppError> {
    let name = resource_type.code();
    // The record's patient and the indexer's cursor in one query (index metadata only).
    let (patient, cursor) =
        store::patient_of_record_and_cursor(state.pool(), name, id, state.chain().chain_id())
            .await?;
    let patient =
        parse_patient(&patient.ok_or_else(|| AppError::NotFound(not_found_text(name, id)))?)?;
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
    decide_read_of_record(state, claims, resource_type, id, purpose, audit).await?;
    let (stored, key) = store::version_with_key(state.pool(), state.kek(), name, id, version)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("{name}/{id} has no such version")))?;
    if stored.deleted {
        return Err(AppError::Gone(format!("{name}/{id} was deleted")));
    }
    let key = active_key(key)?;
    open_verified_with(state, &stored, &key).await
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
    let hash = jcs::version_hash(&resource);
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
    let hash = jcs::version_hash(&body);
    let org = custodian(state, claims)?;
    let fields: SearchFields = resource::search_fields(resource_type, &body);
    let content = serde_json::to_vec(&body).map_err(AppError::internal)?;
    // Anchor first: a version in the store is always anchored; an anchor without a stored
    // version (the write below failed) names nothing and is harmless.
    state
        .chain()
        .anchor(org, hash)
        .await
        .map_err(|err| match err {
            crate::chain::ChainError::NoServiceKey(_) => AppError::Unprocessable(
                "the gateway holds no service key for the custodian organisation".into(),
            ),
            err => {
                tracing::warn!(%err, "anchoring failed");
                AppError::Unavailable("anchoring is unavailable: the chain is unreachable")
            }
        })?;
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
    decide_read_of_record(state, claims, resource_type, id, purpose, audit).await?;
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

/// Most patients a search without `patient` may span (each needs a consent decision).
const MAX_SEARCH_PATIENTS: usize = 1000;

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
/// any decision). At most [`MAX_SEARCH_PATIENTS`] candidates are decided.
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
    let candidates = crate::search::candidate_patients(
        state.pool(),
        state.hasher(),
        query,
        MAX_SEARCH_PATIENTS + 1,
    )
    .await?;
    if candidates.len() > MAX_SEARCH_PATIENTS {
        return Err(AppError::TooCostly(format!(
            "a search without `patient` may span at most {MAX_SEARCH_PATIENTS} patients; name the patient or narrow the search"
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

/// One entry of a transaction, prepared.
struct Prepared {
    resource_type: ResourceType,
    id: String,
    patient: String,
    body: Value,
}

/// `POST [base]` with a `transaction` Bundle of `POST` entries (how an EHR feeds records in):
/// all or nothing. `urn:uuid` full URLs become `Type/id` and every reference to them is
/// rewritten; consent (create) is decided for every (patient, type) before anything is
/// stored; the versions are anchored as one Merkle batch and written in one database
/// transaction, each with its inclusion proof.
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
    match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => {}
        Some("batch") => return batch(state, claims, &bundle, purpose, audit).await,
        _ => {
            return Err(AppError::Invalid(
                "the Bundle type must be transaction".into(),
            ));
        }
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| AppError::Invalid("the Bundle has no entries".into()))?;
    if entries.is_empty() || entries.len() > MAX_TRANSACTION_ENTRIES {
        return Err(AppError::TooCostly(format!(
            "a transaction carries 1 to {MAX_TRANSACTION_ENTRIES} entries"
        )));
    }
    audit.entity(format!("Bundle/transaction ({} entries)", entries.len()));
    // Pass 1: types, ids, and the fullUrl -> Type/id map.
    let mut prepared = Vec::with_capacity(entries.len());
    let mut references: HashMap<String, String> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = |msg: &str| AppError::Invalid(format!("entry {index}: {msg}"));
        let method = entry.pointer("/request/method").and_then(Value::as_str);
        if method != Some("POST") {
            return Err(AppError::NotSupported(format!(
                "entry {index}: only POST entries are supported in a transaction"
            )));
        }
        let body = entry
            .get("resource")
            .cloned()
            .ok_or_else(|| at("no resource"))?;
        let resource_type =
            resource::body_type(&body).map_err(|_| at("unsupported or missing resourceType"))?;
        let url = entry
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if url.trim_end_matches('/') != resource_type.code() {
            return Err(at("request.url must be the resource type"));
        }
        let id = if resource_type == ResourceType::Patient {
            resource::patient_of(resource_type, None, &body)?
        } else {
            new_id()
        };
        if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
            references.insert(
                full_url.to_owned(),
                format!("{}/{id}", resource_type.code()),
            );
        }
        prepared.push(Prepared {
            resource_type,
            id,
            patient: String::new(),
            body,
        });
    }
    // Pass 2: rewrite references, find each entry's patient, decide consent per (patient, type).
    let mut decided: HashSet<(String, ResourceType)> = HashSet::new();
    for item in &mut prepared {
        resource::for_each_reference(&mut item.body, &mut |reference| {
            if let Some(target) = references.get(reference.as_str()) {
                reference.clone_from(target);
            }
        });
        item.patient = resource::patient_of(item.resource_type, Some(&item.id), &item.body)?;
        if store::locate(state.pool(), item.resource_type.code(), &item.id)
            .await?
            .is_some()
        {
            return Err(AppError::Conflict(format!(
                "{}/{} already exists",
                item.resource_type, item.id
            )));
        }
        if decided.insert((item.patient.clone(), item.resource_type)) {
            let patient = parse_patient(&item.patient)?;
            decide(
                state,
                claims,
                patient,
                item.resource_type,
                Action::Create,
                purpose,
                audit,
            )
            .await?;
        }
    }
    // Hash every version, anchor one Merkle root for the custodian.
    let org = custodian(state, claims)?;
    let now = Utc::now();
    let mut hashes = Vec::with_capacity(prepared.len());
    for item in &mut prepared {
        stamp(&mut item.body, &item.id, 1, now);
        hashes.push(jcs::version_hash(&item.body));
    }
    let tree = carechain_contracts::merkle::MerkleTree::new(&hashes)
        .ok_or_else(|| AppError::Invalid("the Bundle has no entries".into()))?;
    let root = tree.root();
    let count = u32::try_from(hashes.len()).map_err(AppError::internal)?;
    state
        .chain()
        .anchor_batch(org, root, count)
        .await
        .map_err(|err| match err {
            crate::chain::ChainError::NoServiceKey(_) => AppError::Unprocessable(
                "the gateway holds no service key for the custodian organisation".into(),
            ),
            err => {
                tracing::warn!(%err, "batch anchoring failed");
                AppError::Unavailable("anchoring is unavailable: the chain is unreachable")
            }
        })?;
    let mut tx = state.pool().begin().await?;
    let mut keys: HashMap<String, crate::crypto::SecretKey> = HashMap::new();
    let mut response_entries = Vec::with_capacity(prepared.len());
    for (index, item) in prepared.into_iter().enumerate() {
        let key = match keys.get(&item.patient) {
            Some(key) => key.clone(),
            None => {
                let key = match store::data_key(&mut tx, state.kek(), &item.patient, true).await? {
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
        let proof = tree
            .proof(index)
            .ok_or_else(|| AppError::internal(std::io::Error::other("no Merkle proof")))?;
        let name = item.resource_type.code();
        store::write_version(
            &mut tx,
            &key,
            state.hasher(),
            &NewVersion {
                resource_type: name.to_owned(),
                id: item.id.clone(),
                version_id: 1,
                patient: item.patient,
                last_updated: now,
                content: Some(serde_json::to_vec(&item.body).map_err(AppError::internal)?),
                version_hash: Some(hashes[index]),
                custodian: org,
                batch: Some((root, proof)),
                fields: resource::search_fields(item.resource_type, &item.body),
            },
            0,
        )
        .await?;
        response_entries.push(json!({
            "response": {
                "status": "201 Created",
                "location": format!("{name}/{}/_history/1", item.id),
                "etag": "W/\"1\"",
                "lastModified": now.to_rfc3339_opts(SecondsFormat::Micros, true),
            }
        }));
    }
    tx.commit().await?;
    Ok(json!({
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": response_entries,
    }))
}

/// `POST [base]` with a `batch` Bundle of `POST` entries: each entry is an independent create
/// (its own decision, anchor and write); the answer reports each entry's outcome.
async fn batch(
    state: &AppState,
    claims: &Claims,
    bundle: &Value,
    purpose: Purpose,
    audit: &(dyn AuditSink + Sync),
) -> Result<Value, AppError> {
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| AppError::Invalid("the Bundle has no entries".into()))?;
    if entries.is_empty() || entries.len() > MAX_TRANSACTION_ENTRIES {
        return Err(AppError::TooCostly(format!(
            "a batch carries 1 to {MAX_TRANSACTION_ENTRIES} entries"
        )));
    }
    audit.entity(format!("Bundle/batch ({} entries)", entries.len()));
    let mut responses = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let result = async {
            if entry.pointer("/request/method").and_then(Value::as_str) != Some("POST") {
                return Err(AppError::NotSupported(format!(
                    "entry {index}: only POST entries are supported in a batch"
                )));
            }
            let body = entry
                .get("resource")
                .cloned()
                .ok_or_else(|| AppError::Invalid(format!("entry {index}: no resource")))?;
            let resource_type = resource::body_type(&body)?;
            let url = entry
                .pointer("/request/url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if url.trim_end_matches('/') != resource_type.code() {
                return Err(AppError::Invalid(format!(
                    "entry {index}: request.url must be the resource type"
                )));
            }
            let served = write(state, claims, resource_type, None, body, purpose, audit).await?;
            Ok((resource_type, served))
        }
        .await;
        responses.push(match result {
            Ok((resource_type, served)) => json!({"response": {
                "status": "201 Created",
                "location": format!(
                    "{}/{}/_history/{}",
                    resource_type.code(),
                    served.resource.get("id").and_then(Value::as_str).unwrap_or_default(),
                    served.version_id
                ),
                "etag": format!("W/\"{}\"", served.version_id),
            }}),
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
