//! FHIR interactions: read, vread, create, update, delete and instance history.

use super::{AuditCtx, FhirJson, FhirPath, PURPOSE_HEADER, Requester, respond};
use crate::{
    AppState,
    consent::Decision,
    error::AppError,
    fhir::resource::{self, StoredType},
    records::{self, AuditSink, Served},
};
use alloy::primitives::Address;
use axum::{
    Router,
    extract::{FromRequestParts, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use carechain_contracts::{Purpose, ResourceType};
use std::collections::HashMap;

/// The FHIR resource routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", axum::routing::post(transaction))
        // The consortium's directory (from the chain's index); other Organizations are records.
        .route("/Endpoint", get(endpoints))
        .route("/Endpoint/{id}", get(endpoint))
        .route("/{rtype}", get(search).post(create))
        .route("/{rtype}/{id}", get(read).put(update).delete(delete))
        .route("/{rtype}/{id}/_history", get(history))
        .route("/{rtype}/{id}/_history/{vid}", get(vread))
        .route("/Patient/{id}/$erase", axum::routing::post(erase))
}

impl AuditSink for AuditCtx {
    fn patient(&self, patient: Address) {
        self.update(|r| r.patient = Some(format!("{patient:#x}")));
    }
    fn decision(&self, decision: &Decision, purpose: Purpose) {
        self.update(|r| {
            r.consent_block = Some(decision.block);
            r.basis = Some(decision.basis.to_string());
            r.purpose = Some(purpose.code().to_owned());
        });
    }
    fn entity(&self, entity: String) {
        self.update(|r| r.entity = Some(entity));
    }
    fn scope(&self, block: u64, purpose: Purpose, patients: usize) {
        self.update(|r| {
            r.consent_block = Some(block);
            r.basis = Some(format!("per-patient ({patients} allowed)"));
            r.purpose = Some(purpose.code().to_owned());
        });
    }
}

/// Query parameters the instance interactions accept.
const INSTANCE_PARAMS: &[&str] = &["_purpose", "_format", "_pretty"];

/// The purpose of use: the `X-Purpose-Of-Use` header or the `_purpose` parameter (they must
/// agree when both are given), TREAT by default. Unknown parameters are refused.
fn purpose(
    headers: &HeaderMap,
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Purpose, AppError> {
    let mut from_param = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(AppError::NotSupported(format!(
                "unknown or unsupported parameter `{}`",
                name.chars().take(40).collect::<String>()
            )));
        }
        if name == "_format" && !super::json_format(&value) {
            return Err(AppError::NotAcceptable(super::JSON_ONLY.into()));
        }
        if name == "_purpose" {
            from_param = Some(value.into_owned());
        }
    }
    let from_header = headers
        .get(PURPOSE_HEADER)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| AppError::Invalid("X-Purpose-Of-Use is not text".into()))
        })
        .transpose()?;
    let code = match (from_header, from_param) {
        (Some(h), Some(p)) if !h.eq_ignore_ascii_case(&p) => {
            return Err(AppError::Invalid(
                "the X-Purpose-Of-Use header and the _purpose parameter differ".into(),
            ));
        }
        (Some(code), _) | (None, Some(code)) => code,
        (None, None) => return Ok(Purpose::Treat),
    };
    code.trim().parse().map_err(|_| {
        AppError::Invalid("unknown purpose of use (HL7 v3 PurposeOfUse code expected)".into())
    })
}

/// What an instance interaction names: `[type]/[id]` (and `/_history/[vid]` for vread), with
/// the purpose of use from the header or `_purpose` (only instance parameters accepted).
struct Instance {
    rt: StoredType,
    id: String,
    version: Option<i64>,
    purpose: Purpose,
}

impl FromRequestParts<AppState> for Instance {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let FhirPath(path) =
            FhirPath::<HashMap<String, String>>::from_request_parts(parts, state).await?;
        let segment = |name: &str| {
            path.get(name)
                .map(String::as_str)
                .ok_or_else(|| AppError::Invalid("the request path is malformed".into()))
        };
        let rt = resource::parse_stored_type(segment("rtype")?)?;
        let id = checked_id(segment("id")?)?.to_owned();
        let version = path.get("vid").map(|v| version_id(v)).transpose()?;
        let purpose = purpose(&parts.headers, parts.uri.query(), INSTANCE_PARAMS)?;
        Ok(Self {
            rt,
            id,
            version,
            purpose,
        })
    }
}

fn resource_type(name: &str) -> Result<ResourceType, AppError> {
    resource::parse_type(name)
}

fn checked_id(id: &str) -> Result<&str, AppError> {
    resource::validate_id(id)?;
    Ok(id)
}

fn version_id(text: &str) -> Result<i64, AppError> {
    resource::version_id(text)
}

/// `If-Match: W/"3"` or `"3"` (weak and strong forms are treated alike: versions are exact).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, AppError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| AppError::Invalid("If-Match is not text".into()))?;
    resource::etag_version(text).map(Some)
}

fn served(
    state: &AppState,
    status: StatusCode,
    name: &str,
    served: &Served,
    location: bool,
) -> Response {
    let mut response = respond(status, &served.resource);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", served.version_id)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&served.last_updated.to_rfc2822().replace("+0000", "GMT"))
    {
        headers.insert(header::LAST_MODIFIED, v);
    }
    headers.insert(
        records::anchoring::ANCHOR_STATUS_HEADER,
        HeaderValue::from_static(served.anchor.header_value()),
    );
    if location {
        let id = served
            .resource
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let url = format!(
            "{}/{name}/{id}/_history/{}",
            state.base_url(),
            served.version_id
        );
        if let Ok(v) = HeaderValue::from_str(&url) {
            headers.insert(header::LOCATION, v);
        }
    }
    response
}

fn audit_kind(ctx: &AuditCtx, subtype: &str, action: char) {
    ctx.update(|r| {
        r.subtype = subtype.into();
        r.action = action;
    });
}

// The requester is extracted first, so that a malformed path of a signed-in request is
// audited with its agent (and an unauthenticated one is a 401 whatever its path).

async fn read(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    Instance {
        rt, id, purpose, ..
    }: Instance,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "read", 'R');
    // The consortium's member organisations (ids are their addresses) come from the chain.
    if rt == StoredType::Directory("Organization")
        && let Some(listing) = member_organization(&state, &id).await?
    {
        ctx.update(|r| r.entity = Some(format!("Organization/{id}")));
        return Ok(respond(StatusCode::OK, &listing.organization()));
    }
    let request = state.records().request(&claims, purpose, &ctx);
    let result = match rt {
        StoredType::Directory(name) => records::directory::read(&request, name, &id, None).await,
        StoredType::Record(rt) => records::read(&request, rt, &id, None).await,
    };
    match result {
        Ok(result) => {
            let mut response = served(&state, StatusCode::OK, rt.code(), &result, false);
            with_proof(&mut response, &claims, &result);
            Ok(response)
        }
        // A record not held here: the other custodians may hold it.
        Err(AppError::NotFound(text)) => {
            let StoredType::Record(rt) = rt else {
                return Err(AppError::NotFound(text));
            };
            let Some((fed, session)) = state.federation().and_then(|fed| {
                crate::federation::search::eligible(fed, &claims)
                    .then_some(fed)
                    .zip(claims.session.as_ref())
            }) else {
                return Err(AppError::NotFound(text));
            };
            let (found, unavailable) = crate::federation::search::read_elsewhere(
                &state, fed, &claims, session, purpose, rt, &id,
            )
            .await?;
            match found {
                Some((resource, custodian)) => {
                    ctx.update(|r| {
                        r.detail = Some(format!("served from custodian {:#x}", custodian.org));
                    });
                    Ok(respond(StatusCode::OK, &resource))
                }
                None if unavailable.is_empty() => Err(AppError::NotFound(text)),
                None => Err(AppError::NotFound(format!(
                    "{text}; these custodians could not be asked: {}",
                    unavailable.join(", ")
                ))),
            }
        }
        Err(err) => Err(err),
    }
}

/// A federated read's answer says how the version is anchored (the requesting gateway checks
/// it against the chain).
fn with_proof(response: &mut Response, claims: &crate::auth::Claims, result: &Served) {
    if claims.via.is_none() {
        return;
    }
    if let Some(proof) = &result.proof
        && let Ok(value) = HeaderValue::from_str(&proof.to_text())
    {
        response
            .headers_mut()
            .insert(crate::federation::ANCHOR_PROOF_HEADER, value);
    }
}

async fn vread(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    Instance {
        rt,
        id,
        version,
        purpose,
    }: Instance,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "vread", 'R');
    let request = state.records().request(&claims, purpose, &ctx);
    let result = match rt {
        StoredType::Directory(name) => {
            records::directory::read(&request, name, &id, version).await?
        }
        StoredType::Record(rt) => records::read(&request, rt, &id, version).await?,
    };
    Ok(served(&state, StatusCode::OK, rt.code(), &result, false))
}

async fn create(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirPath(rtype): FhirPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Requester(claims): Requester,
    FhirJson(body): FhirJson,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "create", 'C');
    let rt = resource::parse_stored_type(&rtype)?;
    let purpose = purpose(&headers, query.as_deref(), INSTANCE_PARAMS)?;
    let request = state.records().request(&claims, purpose, &ctx);
    let result = match rt {
        StoredType::Directory(name) => records::directory::create(&request, name, body).await?,
        StoredType::Record(rt) => records::write(&request, rt, None, body).await?,
    };
    Ok(served(
        &state,
        StatusCode::CREATED,
        rt.code(),
        &result,
        true,
    ))
}

async fn update(
    State(state): State<AppState>,
    ctx: AuditCtx,
    headers: HeaderMap,
    Requester(claims): Requester,
    Instance {
        rt, id, purpose, ..
    }: Instance,
    FhirJson(body): FhirJson,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "update", 'U');
    let rt = rt.record()?;
    let expected = if_match(&headers)?;
    let request = state.records().request(&claims, purpose, &ctx);
    let result = records::write(&request, rt, Some((&id, expected)), body).await?;
    Ok(served(&state, StatusCode::OK, rt.code(), &result, true))
}

async fn delete(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    Instance {
        rt, id, purpose, ..
    }: Instance,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "delete", 'D');
    let rt = rt.record()?;
    records::delete(&state.records().request(&claims, purpose, &ctx), rt, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn history(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    Instance {
        rt, id, purpose, ..
    }: Instance,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "history-instance", 'R');
    let rt = rt.record()?;
    let bundle =
        records::history(&state.records().request(&claims, purpose, &ctx), rt, &id).await?;
    Ok(respond(StatusCode::OK, &bundle))
}

async fn transaction(
    State(state): State<AppState>,
    ctx: AuditCtx,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Requester(claims): Requester,
    FhirJson(body): FhirJson,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "transaction", 'E');
    let purpose = purpose(&headers, query.as_deref(), INSTANCE_PARAMS)?;
    let bundle =
        records::transaction(&state.records().request(&claims, purpose, &ctx), body).await?;
    Ok(respond(StatusCode::OK, &bundle))
}

async fn erase(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirPath(id): FhirPath<String>,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "erase", 'D');
    if query.is_some_and(|q| !q.is_empty()) {
        return Err(AppError::NotSupported("$erase takes no parameters".into()));
    }
    // Erasure is always at the patient's request (the decision is asked for PATRQT).
    let request =
        state
            .records()
            .request(&claims, carechain_contracts::Purpose::PatientRequest, &ctx);
    records::erase(&request, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn search(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirPath(rtype): FhirPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "search-type", 'E');
    if is_directory_search(&rtype, query.as_deref()) {
        return organizations(&state, &ctx, query.as_deref()).await;
    }
    let rt = resource_type(&rtype)?;
    let purpose = purpose(&headers, query.as_deref(), crate::records::query::PARAMS)?;
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if let Some(fed) = state.federation()
        && let Some(session) = crate::federation::search::applies(fed, &claims, &params)
    {
        let (bundle, report) = crate::federation::search::search(
            &state,
            fed,
            &claims,
            session,
            purpose,
            crate::federation::search::Kind::Records(rt),
            &params,
            &ctx,
        )
        .await?;
        ctx.update(|r| r.detail = Some(report.detail()));
        return Ok(respond(StatusCode::OK, &bundle));
    }
    let bundle = records::search(
        &state.records().request(&claims, purpose, &ctx),
        rt,
        &params,
    )
    .await?;
    Ok(respond(StatusCode::OK, &bundle))
}

/// The directory's listings (fail closed while the index is stale).
async fn listings(
    state: &AppState,
) -> Result<Vec<crate::federation::directory::Listing>, AppError> {
    state.consent().ensure_fresh()?;
    crate::federation::directory::listings(state.pool(), state.chain().chain_id()).await
}

/// Parameters the directory searches take.
const DIRECTORY_PARAMS: &[&str] = &["_format", "_include", "status", "active"];

fn directory_params(query: Option<&str>) -> Result<Vec<(String, String)>, AppError> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    for (name, value) in &params {
        if !DIRECTORY_PARAMS.contains(&name.as_str()) {
            return Err(AppError::NotSupported(format!(
                "unknown or unsupported parameter `{}`",
                name.chars().take(40).collect::<String>()
            )));
        }
        if name == "_format" && !super::json_format(value) {
            return Err(AppError::NotAcceptable(super::JSON_ONLY.into()));
        }
    }
    Ok(params)
}

fn searchset(state: &AppState, path: &str, entries: Vec<serde_json::Value>) -> Response {
    let total = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .count();
    respond(
        StatusCode::OK,
        &serde_json::json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": [{"relation": "self", "url": format!("{}/{path}", state.base_url())}],
            "entry": entries,
        }),
    )
}

fn entry(state: &AppState, resource: serde_json::Value, mode: &str) -> serde_json::Value {
    let url = format!(
        "{}/{}/{}",
        state.base_url(),
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    );
    serde_json::json!({"fullUrl": url, "resource": resource, "search": {"mode": mode}})
}

/// `GET /Endpoint`: every member's published FHIR endpoint (`status=active` for the ones in
/// use; `_include=Endpoint:organization` adds the organisations).
async fn endpoints(
    State(state): State<AppState>,
    ctx: AuditCtx,
    RawQuery(query): RawQuery,
    Requester(_claims): Requester,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "search-type", 'E');
    ctx.update(|r| r.entity = Some("Endpoint".into()));
    let params = directory_params(query.as_deref())?;
    let status = params
        .iter()
        .find(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str());
    let include = params
        .iter()
        .any(|(k, v)| k == "_include" && v == "Endpoint:organization");
    let mut entries = Vec::new();
    let mut included = Vec::new();
    for listing in listings(&state).await? {
        let Some(endpoint) = listing.endpoint() else {
            continue;
        };
        if status.is_some_and(|s| endpoint["status"] != s) {
            continue;
        }
        entries.push(entry(&state, endpoint, "match"));
        if include {
            included.push(entry(&state, listing.organization(), "include"));
        }
    }
    entries.extend(included);
    Ok(searchset(&state, "Endpoint", entries))
}

/// `GET /Endpoint/{id}`: an organisation's endpoint (its id is the organisation's address).
async fn endpoint(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirPath(id): FhirPath<String>,
    Requester(_claims): Requester,
) -> Result<Response, AppError> {
    audit_kind(&ctx, "read", 'R');
    ctx.update(|r| {
        r.entity = Some(format!(
            "Endpoint/{}",
            id.chars().take(64).collect::<String>()
        ))
    });
    listings(&state)
        .await?
        .into_iter()
        .find(|l| crate::federation::directory::fhir_id(l.org) == id.to_ascii_lowercase())
        .and_then(|l| l.endpoint())
        .map(|e| respond(StatusCode::OK, &e))
        .ok_or_else(|| AppError::NotFound(format!("Endpoint/{id} is not in the directory")))
}

/// `GET /Organization` with no parameter but `active` (and `_format`): the consortium's member
/// organisations.
fn is_directory_search(rtype: &str, query: Option<&str>) -> bool {
    rtype == "Organization"
        && url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .all(|(k, _)| matches!(k.as_ref(), "_format" | "active"))
}

async fn organizations(
    state: &AppState,
    ctx: &AuditCtx,
    query: Option<&str>,
) -> Result<Response, AppError> {
    ctx.update(|r| r.entity = Some("Organization".into()));
    let params = directory_params(query)?;
    let active = params
        .iter()
        .find(|(k, _)| k == "active")
        .map(|(_, v)| v == "true");
    let mut entries = Vec::new();
    for listing in listings(state).await? {
        let organization = listing.organization();
        if active.is_some_and(|a| organization["active"] != a) {
            continue;
        }
        entries.push(entry(state, organization, "match"));
    }
    Ok(searchset(state, "Organization", entries))
}

/// The member organisation whose address is `id`, if any.
async fn member_organization(
    state: &AppState,
    id: &str,
) -> Result<Option<crate::federation::directory::Listing>, AppError> {
    let Ok(org) = id.parse::<Address>() else {
        return Ok(None);
    };
    Ok(listings(state).await?.into_iter().find(|l| l.org == org))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_from_header_or_parameter() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            purpose(&headers, None, INSTANCE_PARAMS).expect("default"),
            Purpose::Treat
        );
        assert_eq!(
            purpose(&headers, Some("_purpose=ETREAT"), INSTANCE_PARAMS).expect("param"),
            Purpose::EmergencyTreat
        );
        headers.insert(PURPOSE_HEADER, HeaderValue::from_static("HPAYMT"));
        assert_eq!(
            purpose(&headers, None, INSTANCE_PARAMS).expect("header"),
            Purpose::Payment
        );
        assert!(purpose(&headers, Some("_purpose=TREAT"), INSTANCE_PARAMS).is_err());
        assert!(purpose(&HeaderMap::new(), Some("_purpose=NOPE"), INSTANCE_PARAMS).is_err());
        assert!(purpose(&HeaderMap::new(), Some("foo=bar"), INSTANCE_PARAMS).is_err());
    }

    #[test]
    fn if_match_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers).expect("none"), None);
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert_eq!(if_match(&headers).expect("weak"), Some(3));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"4\""));
        assert_eq!(if_match(&headers).expect("strong"), Some(4));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("4"));
        assert!(if_match(&headers).is_err());
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"-1\""));
        assert!(if_match(&headers).is_err());
    }
}
