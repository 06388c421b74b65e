//! The axum router: thin handlers over the domain modules.
//!
//! One middleware wraps every route, the fallback included: it gives the request an
//! [`AuditCtx`] the handlers fill in, bounds the request's time, and after the handler has
//! answered appends exactly one AuditEvent and waits until it is committed before the response
//! leaves. When the audit row cannot be written the response is replaced by a 500: nothing is
//! answered unaudited.

mod auth;
pub mod capability;
pub mod compliance;
mod fhir;
mod metadata;
pub mod portal;
mod relay;
mod research;

use crate::{
    AppState,
    audit::AuditRecord,
    auth::Claims,
    error::{AppError, ErrorMark, fhir_response},
};
use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use serde_json::Value;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// Header carrying the block at which the consent decision was made.
pub const CONSENT_BLOCK_HEADER: HeaderName = HeaderName::from_static("x-consent-block");
/// Header carrying the purpose of use (HL7 v3 PurposeOfUse code).
pub const PURPOSE_HEADER: HeaderName = HeaderName::from_static("x-purpose-of-use");
/// Header carrying the sequence number of the request's audit row.
pub const AUDIT_SEQ_HEADER: HeaderName = HeaderName::from_static("x-audit-seq");

/// The gateway's router.
pub fn router(state: AppState) -> Router {
    let max_body = state.config().max_body_bytes;
    Router::new()
        .route("/metadata", get(metadata::capability_statement))
        .route("/auth/nonce", post(auth::nonce))
        .route("/auth/login", post(auth::login))
        .route("/relay/consent", post(relay::submit))
        // `GET /Consent` is served from the chain's index; its other methods reach the records.
        .merge(compliance::routes(
            fhir::routes()
                .method_not_allowed_fallback(method_not_allowed)
                .with_state(state.clone()),
        ))
        .merge(portal::api_routes())
        .merge(research::routes())
        .merge(fhir::routes())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit_every_request,
        ))
        // The portal's page and files carry no data: not audited, but security headers too.
        .merge(portal::static_routes())
        // Outermost: the headers are on every response, the audit middleware's own 500 too.
        .layer(middleware::from_fn_with_state(
            SecurityHeaders::for_state(&state),
            security_headers,
        ))
        .with_state(state)
}

/// Security headers every response carries: `X-Content-Type-Options: nosniff`; HSTS when the
/// gateway is reached over HTTPS (it serves TLS itself, or its base URL is `https://`); and
/// `Cache-Control: no-store` on everything but `GET /metadata`, the CapabilityStatement,
/// which is the only answer that never holds PHI (records, searches, audit events, consent,
/// sign-in tokens and errors naming patients all do).
#[derive(Debug, Clone, Copy)]
struct SecurityHeaders {
    hsts: bool,
}

impl SecurityHeaders {
    fn for_state(state: &AppState) -> Self {
        Self {
            hsts: state.config().serves_tls() || state.base_url().starts_with("https://"),
        }
    }
}

/// One year; no `includeSubDomains`: the gateway cannot speak for its domain's other hosts.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

async fn security_headers(
    State(settings): State<SecurityHeaders>,
    request: Request,
    next: Next,
) -> Response {
    let cacheable = request.method() == axum::http::Method::GET
        && request.uri().path().trim_end_matches('/') == "/metadata";
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if settings.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    response
}

/// The audit record of the request being served, shared between the middleware and handlers.
#[derive(Debug, Clone)]
pub struct AuditCtx(Arc<Mutex<AuditRecord>>);

impl AuditCtx {
    /// Changes the record.
    pub fn update(&self, f: impl FnOnce(&mut AuditRecord)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn snapshot(&self) -> AuditRecord {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditCtx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts.extensions.get::<AuditCtx>().cloned().ok_or_else(|| {
            AppError::internal(std::io::Error::other("request without audit context"))
        })
    }
}

async fn audit_every_request(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Classified from the request line, so that requests refused before their handler runs
    // (no token, malformed path) are audited with the interaction they attempted.
    let (subtype, action) = classify(request.method(), request.uri().path());
    let ctx = AuditCtx(Arc::new(Mutex::new(AuditRecord {
        subtype: subtype.into(),
        action,
        method: request.method().as_str().to_owned(),
        recorded: Utc::now(),
        ..AuditRecord::default()
    })));
    request.extensions_mut().insert(ctx.clone());
    let limit = Duration::from_secs(state.config().request_timeout_secs);
    let mut response = if accepts_json(request.headers()) {
        match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => AppError::Unavailable("the request took too long").into_response(),
        }
    } else {
        AppError::NotAcceptable(JSON_ONLY.into()).into_response()
    };
    let mark = response.extensions().get::<ErrorMark>().copied();
    ctx.update(|r| {
        r.status = response.status().as_u16();
        if let Some(ErrorMark(code)) = mark
            && r.detail.is_none()
        {
            r.detail = Some(code.to_owned());
        }
    });
    let record = ctx.snapshot();
    match state.audit().append(record.clone()).await {
        Ok(seq) => {
            let headers = response.headers_mut();
            headers.insert(AUDIT_SEQ_HEADER, HeaderValue::from(seq));
            // A concealed denial must look like an absent record, which has no decision.
            if let Some(block) = record.consent_block
                && !matches!(mark, Some(ErrorMark("consent-denied")))
            {
                headers.insert(CONSENT_BLOCK_HEADER, HeaderValue::from(block));
            }
            response
        }
        Err(err) => {
            tracing::error!(%err, "audit row not written; the response is withheld");
            AppError::internal(err).into_response()
        }
    }
}

/// Why a client asking for another format is refused.
pub(crate) const JSON_ONLY: &str =
    "this server speaks FHIR JSON only: accept application/fhir+json (or use _format=json)";

/// Whether a `_format` value or media type names FHIR JSON.
pub(crate) fn json_format(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "json" | "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// Whether the client's `Accept` header lets the gateway answer in JSON (no header: yes). A
/// client that asks only for XML (`application/fhir+xml`) or anything else gets 406, never a
/// JSON body under a 200.
fn accepts_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return true;
    };
    let Ok(accept) = accept.to_str() else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused
            && (media.is_empty()
                || media == "*/*"
                || media == "application/*"
                || json_format(media)
                // NDJSON: the Bulk Data output files and the audit log's export.
                || media == "application/fhir+ndjson"
                || media == "application/ndjson")
    })
}

/// The BALP subtype and AuditEvent action of a request line.
fn classify(method: &axum::http::Method, path: &str) -> (&'static str, char) {
    use axum::http::Method;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["metadata"]) => ("capabilities", 'R'),
        (&Method::POST, ["auth", "nonce"]) => ("login-nonce", 'E'),
        (&Method::POST, ["auth", "login"]) => ("login", 'E'),
        (&Method::POST, ["Patient", _, "$erase"]) => ("erase", 'D'),
        (&Method::POST, [""]) => ("transaction", 'E'),
        (&Method::GET, [_]) => ("search-type", 'E'),
        (&Method::POST, [_]) => ("create", 'C'),
        (&Method::GET, [_, _]) => ("read", 'R'),
        (&Method::PUT, [_, _]) => ("update", 'U'),
        (&Method::DELETE, [_, _]) => ("delete", 'D'),
        (&Method::GET, [_, _, "_history"]) => ("history-instance", 'R'),
        (&Method::GET, [_, _, "_history", _]) => ("vread", 'R'),
        _ => ("unknown", 'E'),
    }
}

async fn fallback(ctx: AuditCtx) -> AppError {
    ctx.update(|r| r.subtype = "unknown".into());
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed(ctx: AuditCtx) -> AppError {
    ctx.update(|r| r.subtype = "unknown".into());
    AppError::MethodNotAllowed
}

/// A FHIR JSON request body: the media type is checked, the size bounded by the configured
/// limit, and the JSON parsed; every failure is a 4xx `OperationOutcome`.
#[derive(Debug)]
pub struct FhirJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for FhirJson {
    type Rejection = AppError;

    async fn from_request(request: Request<Body>, state: &S) -> Result<Self, AppError> {
        let media = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        match media.as_deref() {
            Some("application/fhir+json" | "application/json") => {}
            _ => {
                return Err(AppError::UnsupportedMediaType(
                    "the body must be application/fhir+json".into(),
                ));
            }
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::Invalid("the request body could not be read".into())
                }
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| {
            // The position helps the client; the message never echoes the content.
            AppError::Invalid(format!(
                "the body is not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            ))
        })?;
        Ok(Self(value))
    }
}

/// Path parameters; a segment that cannot be decoded is a 400 `OperationOutcome`.
#[derive(Debug)]
pub struct FhirPath<T>(pub T);

impl<S, T> FromRequestParts<S> for FhirPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|_| AppError::Invalid("the request path is malformed".into()))
    }
}

/// The signed-in requester (from the bearer token), recorded as the audit agent.
#[derive(Debug, Clone)]
pub struct Requester(pub Claims);

impl FromRequestParts<AppState> for Requester {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let federated = header.and_then(|h| {
            h.strip_prefix(crate::federation::request::SCHEME)
                .and_then(|rest| rest.strip_prefix(' '))
        });
        let claims = match federated {
            Some(credentials) => {
                let fed = state.federation().ok_or_else(|| {
                    AppError::Unauthenticated(
                        "this gateway serves no organisation: it answers no federated requests"
                            .into(),
                    )
                })?;
                // Fail closed while the directory (the index) is stale.
                state.consent().ensure_fresh()?;
                let target = parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
                let check = crate::federation::request::Check {
                    pool: state.pool(),
                    chain: state.chain(),
                    fed,
                    generation: state.consent().change_generation(),
                    method: parts.method.as_str(),
                    target: &target,
                    now: Utc::now(),
                };
                let result = check.verify(credentials).await;
                if let Err(err) = &result
                    && let Some(ctx) = parts.extensions.get::<AuditCtx>()
                {
                    ctx.update(|r| r.detail = Some(err.to_string()));
                }
                result?
            }
            None => crate::auth::authenticate(
                state.tokens(),
                state.auth().chain_id,
                header,
                Utc::now(),
            )?,
        };
        if let Some(ctx) = parts.extensions.get::<AuditCtx>() {
            ctx.update(|r| {
                r.agent = Some(format!("{:#x}", claims.sub));
                r.agent_org = claims.org.map(|o| format!("{o:#x}"));
                r.via_org = claims.via.map(|o| format!("{o:#x}"));
            });
        }
        // Counted once signed in, so the refusal is audited with the user who was refused.
        let kind = crate::auth::RequestKind::of(&parts.method, parts.uri.path());
        state
            .user_limiter()
            .take(kind, claims.sub, std::time::Instant::now())
            .map_err(AppError::TooManyRequests)?;
        Ok(Self(claims))
    }
}

/// Renders a FHIR resource with a status.
pub(crate) fn respond(status: StatusCode, body: &Value) -> Response {
    fhir_response(status, body)
}

#[cfg(test)]
mod tests {
    use super::classify;
    use axum::http::Method;

    #[test]
    fn negotiates_json_only() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_str(accept).expect("header"),
            );
            super::accepts_json(&headers)
        };
        assert!(super::accepts_json(&HeaderMap::new()));
        assert!(with("application/fhir+json"));
        assert!(with("application/fhir+xml;q=0.9, application/fhir+json"));
        assert!(with("*/*"));
        assert!(with("text/html, application/json;q=0.5"));
        assert!(!with("application/fhir+xml"));
        assert!(!with("application/xml, text/xml"));
        assert!(!with("application/fhir+json;q=0, application/fhir+xml"));
    }

    #[test]
    fn classifies_request_lines() {
        assert_eq!(classify(&Method::GET, "/Observation/1"), ("read", 'R'));
        assert_eq!(classify(&Method::GET, "/Observation"), ("search-type", 'E'));
        assert_eq!(classify(&Method::PUT, "/Observation/1"), ("update", 'U'));
        assert_eq!(
            classify(&Method::GET, "/Observation/1/_history/2"),
            ("vread", 'R')
        );
        assert_eq!(
            classify(&Method::POST, "/Patient/0xab/$erase"),
            ("erase", 'D')
        );
        assert_eq!(classify(&Method::PATCH, "/Observation/1"), ("unknown", 'E'));
    }
}
