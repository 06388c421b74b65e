//! The patient portal's routes (see [`crate::portal`]).
//!
//! | route | who | audited |
//! |---|---|---|
//! | `GET /portal`, `GET /portal/<file>` | anyone: the page and its files | no (no data) |
//! | `GET /portal/api/context` | anyone: chain, relay, code tables | yes |
//! | `POST /portal/api/sign-in` | anyone: the EIP-4361 message to sign | yes (`login-nonce`) |
//! | `GET /portal/api/directory` | anyone: the on-chain directory (organisations, member keys) | yes |
//! | `GET /portal/api/delegates?patient=` | the patient, their delegates, compliance | yes |
//! | `GET /portal/api/custodians?patient=` | the patient and their delegates | yes |
//! | `POST /portal/api/typed-data` | anyone, within the relay's allowance per client address: typed data to sign | yes |

use super::{AuditCtx, FhirJson, Requester, auth::Peer};
use crate::{
    AppState,
    auth::siwe::SiweMessage,
    compliance::access::Viewer,
    error::AppError,
    portal::{assets, directory, prepare::Request, words},
};
use alloy::primitives::Address;
use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use carechain_contracts::{Action, Purpose, ResourceType};
use chrono::Utc;
use serde_json::{Value, json};
use std::{str::FromStr, time::Instant};

/// The page and its files: served outside the audit middleware (they carry no data), each
/// under the portal's Content-Security-Policy.
pub fn static_routes() -> Router<AppState> {
    Router::new()
        .route("/portal", get(index))
        .route("/portal/", get(index))
        .route("/portal/{*file}", get(file))
}

/// The portal's JSON endpoints (audited like every API request).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/portal/api/context", get(context))
        .route("/portal/api/sign-in", post(sign_in_message))
        .route("/portal/api/directory", get(organisations))
        .route("/portal/api/delegates", get(delegates))
        .route("/portal/api/custodians", get(custodians))
        .route("/portal/api/typed-data", post(typed_data))
}

async fn index() -> Response {
    serve(assets::find(""))
}

async fn file(Path(file): Path<String>) -> Response {
    serve(assets::find(&file))
}

fn serve(asset: Option<&'static assets::Asset>) -> Response {
    let Some(asset) = asset else {
        return (StatusCode::NOT_FOUND, "no such file in the portal").into_response();
    };
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.media_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        assets::CONTENT_SECURITY_POLICY,
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn mark(ctx: &AuditCtx, subtype: &str) {
    ctx.update(|r| {
        r.subtype = subtype.into();
        r.action = 'E';
    });
}

fn now_unix() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or_default()
}

/// What the page needs before anyone signs in: the chain the wallet must be on, whether
/// gas-free signing is available, and the code tables to choose from.
async fn context(State(state): State<AppState>, ctx: AuditCtx) -> Json<Value> {
    mark(&ctx, "portal-context");
    let chain_id = state.auth().chain_id;
    Json(json!({
        "chainId": chain_id,
        "chainIdHex": format!("{chain_id:#x}"),
        "gateway": state.base_url(),
        "relay": state.relay().is_some(),
        "signInLifetime": state.auth().token_ttl.num_seconds(),
        "resourceTypes": ResourceType::ALL.iter().map(|t| t.code()).collect::<Vec<_>>(),
        "actions": Action::ALL.iter().map(|a| a.long_name()).collect::<Vec<_>>(),
        "purposes": Purpose::ALL.iter()
            .map(|p| json!({"code": p.code(), "display": p.display()}))
            .collect::<Vec<_>>(),
    }))
}

/// The EIP-4361 message for `address` to sign with `personal_sign`, with a fresh nonce (the
/// same allowance per client address as `POST /auth/nonce`); the signed text goes to
/// `POST /auth/login`. The gateway writes the message so the page never restates its grammar.
async fn sign_in_message(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Peer(peer): Peer,
    FhirJson(body): FhirJson,
) -> Result<Json<Value>, AppError> {
    mark(&ctx, "login-nonce");
    let address = body
        .get("address")
        .and_then(Value::as_str)
        .and_then(|s| Address::from_str(s.trim()).ok())
        .ok_or_else(|| AppError::Invalid("`address` (the wallet's account) is required".into()))?;
    state
        .nonce_limiter()
        .take(peer, Instant::now())
        .map_err(AppError::TooManyRequests)?;
    let nonce = crate::auth::issue_nonce(state.pool()).await?;
    let settings = state.auth();
    let now = Utc::now();
    let (statement, resources) = crate::federation::sign_in_offer(&state).await;
    let message = SiweMessage {
        domain: settings.domain.clone(),
        address,
        statement: Some(statement),
        uri: settings.uri.clone(),
        version: "1".into(),
        chain_id: settings.chain_id,
        nonce,
        issued_at: now,
        expiration_time: Some(now + settings.token_ttl),
        not_before: None,
        resources,
    };
    Ok(Json(json!({"message": message.to_text()})))
}

async fn organisations(
    State(state): State<AppState>,
    ctx: AuditCtx,
) -> Result<Json<Value>, AppError> {
    mark(&ctx, "portal-directory");
    let chain_id = state.chain().chain_id();
    let list = directory::organisations(state.pool(), chain_id).await?;
    let keys = directory::member_keys(state.pool(), chain_id).await?;
    Ok(Json(json!({"organisations": list, "memberKeys": keys})))
}

/// The `patient` query parameter, recorded as the audit row's patient.
fn patient_param(query: Option<String>, ctx: &AuditCtx) -> Result<Address, AppError> {
    let patient = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "patient")
        .and_then(|(_, value)| crate::fhir::resource::normalize_address(&value))
        .ok_or_else(|| AppError::Invalid("`patient` (a wallet address) is required".into()))?;
    ctx.update(|r| {
        r.patient = Some(patient.clone());
        r.entity = Some(format!("Patient/{patient}"));
    });
    patient
        .parse()
        .map_err(|_| AppError::Invalid("`patient` is not an address".into()))
}

async fn delegates(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    mark(&ctx, "portal-delegates");
    let patient = patient_param(query, &ctx)?;
    state
        .access()
        .require_viewer(&claims, Some(patient))
        .await?;
    let list = directory::delegates(state.pool(), state.chain().chain_id(), patient).await?;
    Ok(Json(
        json!({"patient": format!("{patient:#x}"), "delegates": list}),
    ))
}

async fn custodians(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    mark(&ctx, "portal-custodians");
    let patient = patient_param(query, &ctx)?;
    if state
        .access()
        .require_viewer(&claims, Some(patient))
        .await?
        != Viewer::Subject
    {
        return Err(AppError::Forbidden(
            "only the patient and their delegates see where each record is kept".into(),
        ));
    }
    let list = directory::custodians(state.pool(), state.chain().chain_id(), patient).await?;
    Ok(Json(
        json!({"patient": format!("{patient:#x}"), "records": list}),
    ))
}

/// The typed data for the patient's wallet to sign (`eth_signTypedData_v4`), what it says in
/// words, and for a grant the FHIR Consent whose hash it carries. Submitting the signature is
/// `POST /relay/consent`, which checks everything again.
async fn typed_data(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Peer(peer): Peer,
    FhirJson(body): FhirJson,
) -> Result<Json<Value>, AppError> {
    mark(&ctx, "portal-typed-data");
    let relay = state.relay().ok_or_else(|| {
        AppError::NotSupported(
            "gas-free signing is not enabled on this gateway (no relay key)".into(),
        )
    })?;
    // No sign-in, and a chain read per request: the relay's allowance per client address.
    state
        .relay_limiter()
        .take(peer, Instant::now())
        .map_err(AppError::TooManyRequests)?;
    let request =
        Request::from_json(&body, now_unix()).map_err(|e| AppError::Invalid(e.to_string()))?;
    let patient = format!("{:#x}", request.patient());
    ctx.update(|r| {
        r.patient = Some(patient.clone());
        r.entity = Some(format!("Patient/{patient}"));
    });
    let nonce = relay.nonce(request.patient()).await?;
    let domain = relay.domain();
    let (message, fhir) = request.message(domain.chain_id, nonce, words::deadline(now_unix()));
    let name = directory::name_of(state.pool(), domain.chain_id, message.counterparty()).await?;
    Ok(Json(json!({
        "typedData": message.to_wallet_json(domain),
        "words": words::describe(&message, name.as_deref()),
        "fhirConsent": fhir,
    })))
}
