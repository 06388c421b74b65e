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
    let request = state.records().request(&claims, purpose, &ctx);
    let result = match rt {
        StoredType::Directory(name) => records::directory::read(&request, name, &id, None).await?,
        StoredType::Record(rt) => records::read(&request, rt, &id, None).await?,
    };
    Ok(served(&state, StatusCode::OK, rt.code(), &result, false))
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
    let rt = resource_type(&rtype)?;
    let purpose = purpose(&headers, query.as_deref(), crate::records::query::PARAMS)?;
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let bundle = records::search(
        &state.records().request(&claims, purpose, &ctx),
        rt,
        &params,
    )
    .await?;
    Ok(respond(StatusCode::OK, &bundle))
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
