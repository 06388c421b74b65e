//! Transaction and batch Bundles (how an EHR feeds records in).

use super::{
    AuditSink, RecordRequest, Served, active_key,
    compartment::{self, PlannedPatients},
    conceal,
    directory::{self, DIRECTORY_COMPARTMENT, IdentifierQuery},
    new_id, parse_patient,
    read::read,
    search::search,
    stamp,
    store::{self, NewVersion},
    write::{delete, write},
};
use crate::{
    consent::Decision,
    crypto::SecretKey,
    error::{AppError, not_found_text},
    fhir::resource::{self, SearchFields, StoredType},
};
use alloy::primitives::Address;
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_formats::canonical::canonical_hash;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

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
    /// `POST [type]` (a record or directory type).
    Create(StoredType),
    /// `PUT [type]/[id]` (with `ifMatch`).
    Update(StoredType, String, Option<i64>),
    /// `DELETE [type]/[id]`.
    Delete(ResourceType, String),
    /// `GET [type]/[id]` or `GET [type]/[id]/_history/[vid]`.
    Read(ResourceType, String, Option<i64>),
    /// `GET [type]?..`.
    Search(ResourceType, Vec<(String, String)>),
}

/// Parses `request.method` and `request.url` (relative, or absolute under this gateway).
fn entry_request(base_url: &str, entry: &Value) -> Result<EntryRequest, AppError> {
    let method = entry
        .pointer("/request/method")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("request.method is missing".into()))?;
    let url = entry
        .pointer("/request/url")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("request.url is missing".into()))?;
    let url = url
        .strip_prefix(base_url)
        .unwrap_or(url)
        .trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let rt = |name: &str| resource::parse_type(name);
    let st = |name: &str| resource::parse_stored_type(name);
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
        ("POST", [name]) => no_query().and(Ok(EntryRequest::Create(st(name)?))),
        ("PUT", [name, i]) => no_query().and(Ok(EntryRequest::Update(st(name)?, id(i)?, if_match))),
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
fn entry_response(status: &str, name: &str, served: &Served) -> Value {
    let id = served
        .resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({
        "status": status,
        "location": format!("{name}/{id}/_history/{}", served.version_id),
        "etag": format!("W/\"{}\"", served.version_id),
        "lastModified": served.last_updated.to_rfc3339_opts(SecondsFormat::Micros, true),
    })
}

/// Runs one entry on its own (a batch entry, or a transaction's GET after its writes).
async fn run_entry(
    req: &RecordRequest<'_>,
    request: EntryRequest,
    body: Option<Value>,
) -> Result<Value, AppError> {
    let sink = EntrySink(req.audit);
    let req = &req.with_audit(&sink);
    let body = || body.ok_or_else(|| AppError::Invalid("the entry has no resource".into()));
    Ok(match request {
        EntryRequest::Create(StoredType::Directory(name)) => {
            let served = directory::create(req, name, body()?).await?;
            json!({"response": entry_response("201 Created", name, &served)})
        }
        EntryRequest::Create(StoredType::Record(rt)) => {
            let served = write(req, rt, None, body()?).await?;
            json!({"response": entry_response("201 Created", rt.code(), &served)})
        }
        EntryRequest::Update(st, id, if_match) => {
            let rt = st.record()?;
            let served = write(req, rt, Some((&id, if_match)), body()?).await?;
            json!({"response": entry_response("200 OK", rt.code(), &served)})
        }
        EntryRequest::Delete(rt, id) => {
            delete(req, rt, &id).await?;
            json!({"response": {"status": "204 No Content"}})
        }
        EntryRequest::Read(rt, id, version) => {
            let served = read(req, rt, &id, version).await?;
            json!({"resource": served.resource.clone(), "response": entry_response("200 OK", rt.code(), &served)})
        }
        EntryRequest::Search(rt, params) => {
            let bundle = search(req, rt, &params).await?;
            json!({"resource": bundle, "response": {"status": "200 OK"}})
        }
    })
}

/// A transaction entry after the first pass.
enum Planned {
    /// A GET, answered after the writes.
    Read(EntryRequest),
    /// A directory create whose `ifNoneExist` found the resource: nothing is written.
    Existing(&'static str, String),
    /// A create, update or delete of `resource_type`/`id` (a create's id is new).
    Write {
        action: Action,
        resource_type: StoredType,
        id: String,
        if_match: Option<i64>,
        body: Option<Value>,
    },
}

/// One write of a transaction, prepared.
struct Prepared {
    resource_type: StoredType,
    id: String,
    /// The patient's address, or [`DIRECTORY_COMPARTMENT`].
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
/// is stored; then the new versions are written in one database transaction and queued for
/// anchoring (see [`super::anchoring`]). GET entries are answered after the
/// writes (FHIR processes them last) and see the new state.
pub async fn transaction(req: &RecordRequest<'_>, bundle: Value) -> Result<Value, AppError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(AppError::Invalid("POST [base] takes a Bundle".into()));
    }
    if bundle.get("type").and_then(Value::as_str) == Some("transaction") {
        // All or nothing: every entry is valid FHIR R4 before anything is decided or stored
        // (a batch's entries are validated one by one, each with its own outcome).
        req.records.settings().check_valid(&bundle)?;
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
    req.audit
        .entity(format!("Bundle/{kind} ({} entries)", entries.len()));
    if kind == "batch" {
        return batch(req, entries).await;
    }
    let sink = EntrySink(req.audit);
    let entries_req = req.with_audit(&sink);
    // Pass 1: what each entry asks, new ids, and the fullUrl -> Type/id map.
    let mut planned = Vec::with_capacity(entries.len());
    let mut references: HashMap<String, String> = HashMap::new();
    let mut targets: HashSet<(StoredType, String)> = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = |err: AppError| match err {
            AppError::Invalid(msg) => AppError::Invalid(format!("entry {index}: {msg}")),
            AppError::NotSupported(msg) => AppError::NotSupported(format!("entry {index}: {msg}")),
            other => other,
        };
        let request = entry_request(req.records.base_url(), entry).map_err(at)?;
        let mut body = entry.get("resource").cloned();
        if let Some(body) = body.as_mut() {
            super::anchoring::strip_mark(body);
        }
        let (resource_type, id, action, if_match) = match &request {
            EntryRequest::Create(st) => {
                let body = body
                    .as_ref()
                    .ok_or_else(|| at(AppError::Invalid("no resource".into())))?;
                resource::check_body_type(body, *st).map_err(|_| {
                    at(AppError::Invalid(
                        "request.url must be the resource's type".into(),
                    ))
                })?;
                let id = match st {
                    StoredType::Record(ResourceType::Patient) => {
                        resource::patient_of(ResourceType::Patient, None, body)?
                    }
                    StoredType::Directory(name) => {
                        // A conditional create (`ifNoneExist: identifier=system|value`) of a
                        // directory resource that exists already writes nothing: the entry's
                        // references point at the stored one.
                        let existing = match entry
                            .pointer("/request/ifNoneExist")
                            .and_then(Value::as_str)
                        {
                            Some(condition) => {
                                let query = IdentifierQuery::parse(name, condition).map_err(at)?;
                                let found = query.find_stored(req).await?;
                                if found.len() > 1 {
                                    return Err(at(AppError::PreconditionFailed(
                                        "ifNoneExist matches several resources".into(),
                                    )));
                                }
                                found.into_iter().next()
                            }
                            None => None,
                        };
                        if let Some(existing) = existing {
                            if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
                                references
                                    .insert(full_url.to_owned(), format!("{name}/{existing}"));
                            }
                            planned.push(Planned::Existing(name, existing));
                            continue;
                        }
                        new_id()
                    }
                    StoredType::Record(_) => new_id(),
                };
                (*st, id, Action::Create, None)
            }
            EntryRequest::Update(rt, id, if_match) => {
                let body = body
                    .as_ref()
                    .ok_or_else(|| at(AppError::Invalid("no resource".into())))?;
                if resource::check_body_type(body, *rt).is_err()
                    || body.get("id").and_then(Value::as_str) != Some(id.as_str())
                {
                    return Err(at(AppError::Invalid(
                        "the resource's type and id must match request.url".into(),
                    )));
                }
                req.records
                    .settings()
                    .check_if_match(*if_match)
                    .map_err(at)?;
                (*rt, id.clone(), Action::Update, *if_match)
            }
            EntryRequest::Delete(rt, id) => {
                (StoredType::Record(*rt), id.clone(), Action::Delete, None)
            }
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
    // Conditional references (`Organization?identifier=system|value`) to directory resources:
    // each resolves to exactly one, created in this transaction or stored.
    let mut conditional = Vec::new();
    for item in &planned {
        if let Planned::Write {
            body: Some(body), ..
        } = item
        {
            let mut body = body.clone();
            let mut found: Result<(), AppError> = Ok(());
            resource::for_each_reference(&mut body, &mut |reference| {
                match IdentifierQuery::from_reference(reference) {
                    Ok(Some(query)) => conditional.push((reference.clone(), query)),
                    Ok(None) => {}
                    Err(err) => found = Err(err),
                }
            });
            found?;
        }
    }
    if !conditional.is_empty() {
        let creates: Vec<(&'static str, &str, &Value)> = planned
            .iter()
            .filter_map(|item| match item {
                Planned::Write {
                    action: Action::Create,
                    resource_type: StoredType::Directory(name),
                    id,
                    body: Some(body),
                    ..
                } => Some((*name, id.as_str(), body)),
                _ => None,
            })
            .collect();
        let queries: Vec<IdentifierQuery> = conditional.iter().map(|(_, q)| q.clone()).collect();
        let resolved = directory::resolve(req, queries, &creates).await?;
        for (reference, query) in conditional {
            if let Some(target) = resolved.get(&query) {
                references.insert(reference, target.clone());
            }
        }
    }
    // Pass 2: rewrite references, decide every entry, check the writes against the store.
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut reads = Vec::new();
    let mut decided: HashSet<(String, StoredType, Action)> = HashSet::new();
    for entry in planned {
        let (action, resource_type, id, if_match, mut body) = match entry {
            Planned::Existing(name, id) => {
                entries_req.require_member().await?;
                prepared.push(Prepared {
                    resource_type: StoredType::Directory(name),
                    id,
                    patient: DIRECTORY_COMPARTMENT.to_owned(),
                    body: None,
                    current: -1,
                    status: "200 OK",
                });
                continue;
            }
            Planned::Read(request) => {
                // A GET: decided now (nothing is written when it is refused), answered last.
                if let EntryRequest::Read(rt, id, _) = &request {
                    let mut conn = req.records.reads().acquire().await?;
                    entries_req
                        .decide_read_of_record(&mut conn, *rt, id)
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
                match resource_type {
                    StoredType::Record(rt) => resource::patient_of(rt, Some(&id), body)?,
                    StoredType::Directory(_) => DIRECTORY_COMPARTMENT.to_owned(),
                }
            }
            _ => String::new(),
        };
        let current = store::locate(req.records.pool(), name, &id).await?;
        // The decision is about the body's patient for a create or an update, the stored
        // record's for a delete; refusals of updates and deletes look like absent records.
        let subject = match (action, &current) {
            (Action::Delete, Some((owner, _, _))) => owner.clone(),
            (Action::Delete, None) => return Err(AppError::NotFound(not_found_text(name, &id))),
            _ => patient.clone(),
        };
        if decided.insert((subject.clone(), resource_type, action)) {
            match resource_type {
                // The directory: any active member writes it, for its organisation.
                StoredType::Directory(_) => {
                    entries_req.require_member().await?;
                }
                StoredType::Record(rt) => {
                    let decision = entries_req
                        .decide(parse_patient(&subject)?, rt, action)
                        .await;
                    match action {
                        Action::Create => decision?,
                        _ => decision.map_err(|err| conceal(err, rt, &id))?,
                    };
                }
            }
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
    // No entry may tie its patient to another patient's records (the planned creates count as
    // the records they will be).
    let planned: PlannedPatients = prepared
        .iter()
        .filter_map(|p| match p.resource_type {
            StoredType::Record(rt) => Some(((rt, p.id.clone()), p.patient.clone())),
            StoredType::Directory(_) => None,
        })
        .collect();
    for item in &prepared {
        if let Some(body) = &item.body {
            compartment::check(
                req,
                item.resource_type.code(),
                &item.patient,
                body,
                &planned,
            )
            .await?;
        }
    }
    // Stamp every new version; they are stored together and queued for anchoring (the
    // custodian's anchorer puts them in its next batch).
    let now = Utc::now();
    for item in &mut prepared {
        if let Some(body) = item.body.as_mut() {
            stamp(body, &item.id, item.current + 1, now);
        }
    }
    let writes = prepared.iter().any(|p| p.current >= 0);
    let org = if writes { Some(req.custodian()?) } else { None };
    let mut tx = req.records.pool().begin().await?;
    let mut keys: HashMap<String, SecretKey> = HashMap::new();
    let mut responses: Vec<Value> = Vec::with_capacity(entries.len());
    for item in &prepared {
        let name = item.resource_type.code();
        if item.current < 0 {
            responses.push(match item.resource_type {
                // An ifNoneExist that found its resource: where it is.
                StoredType::Directory(_) => {
                    json!({"response": {"status": item.status, "location": format!("{name}/{}", item.id)}})
                }
                StoredType::Record(_) => json!({"response": {"status": item.status}}),
            });
            continue;
        }
        let key = match keys.get(&item.patient) {
            Some(key) => key.clone(),
            None => {
                let create = item.current == 0;
                let key = active_key(
                    store::data_key(&mut tx, req.records.kek(), &item.patient, create).await?,
                )?;
                keys.insert(item.patient.clone(), key.clone());
                key
            }
        };
        let version_id = item.current + 1;
        let (content, version_hash, fields) = match &item.body {
            Some(body) => (
                Some(serde_json::to_vec(body).map_err(AppError::internal)?),
                Some(canonical_hash(body)),
                match item.resource_type {
                    StoredType::Record(rt) => resource::search_fields(rt, body),
                    StoredType::Directory(_) => resource::directory_fields(body),
                },
            ),
            None => (None, None, SearchFields::default()),
        };
        store::write_version(
            &mut tx,
            &key,
            req.records.hasher(),
            &NewVersion {
                resource_type: name.to_owned(),
                id: item.id.clone(),
                version_id,
                patient: item.patient.clone(),
                last_updated: now,
                content,
                version_hash,
                custodian: org.unwrap_or_default(),
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
        answered.push((position, run_entry(req, request, None).await?));
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

/// A `batch` Bundle: each entry (`POST`, `PUT`, `DELETE`, `GET`) runs on its own, with its
/// own decision, anchor and write; the answer reports each entry's outcome.
async fn batch(req: &RecordRequest<'_>, entries: &[Value]) -> Result<Value, AppError> {
    let mut responses = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let result = async {
            let request =
                entry_request(req.records.base_url(), entry).map_err(|err| match err {
                    AppError::Invalid(msg) => AppError::Invalid(format!("entry {index}: {msg}")),
                    AppError::NotSupported(msg) => {
                        AppError::NotSupported(format!("entry {index}: {msg}"))
                    }
                    other => other,
                })?;
            let body = entry.get("resource").cloned();
            if let (EntryRequest::Create(rt) | EntryRequest::Update(rt, _, _), Some(body)) =
                (&request, &body)
                && resource::check_body_type(body, *rt).is_err()
            {
                return Err(AppError::Invalid(format!(
                    "entry {index}: request.url must be the resource's type"
                )));
            }
            run_entry(req, request, body).await
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
