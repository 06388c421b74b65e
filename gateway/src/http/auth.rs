//! `POST /auth/nonce` and `POST /auth/login`.

use super::{AuditCtx, FhirJson};
use crate::{AppState, error::AppError};
use axum::{
    Json,
    extract::{ConnectInfo, FromRequestParts, State},
    http::request::Parts,
    response::IntoResponse,
};
use chrono::Utc;
use serde_json::{Value, json};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Instant,
};

/// The client's address, when the server was started with connection info (as
/// [`Gateway::serve`](crate::Gateway::serve) does); otherwise every client shares one bucket.
pub(super) struct Peer(pub(super) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip()),
        ))
    }
}

/// Issues a single-use sign-in nonce (rate-limited per client address: 429 beyond).
pub(super) async fn nonce(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Peer(peer): Peer,
) -> Result<impl IntoResponse, AppError> {
    ctx.update(|r| {
        r.subtype = "login-nonce".into();
        r.action = 'E';
    });
    state
        .nonce_limiter()
        .take(peer, Instant::now())
        .map_err(AppError::TooManyRequests)?;
    let nonce = crate::auth::issue_nonce(state.pool()).await?;
    let (statement, resources) = crate::federation::sign_in_offer(&state).await;
    Ok(Json(json!({
        "nonce": nonce,
        // What the message should say and carry: with a federation, an ERC-5573 capability
        // letting this gateway ask the other members' gateways for the user's requests.
        "statement": statement,
        "resources": resources,
        "domain": state.auth().domain,
        "uri": state.auth().uri,
        "chainId": state.auth().chain_id,
        // How long a token lives: a client writes this as the message's Expiration Time, so
        // the token is not cut shorter than the gateway's own lifetime.
        "expiresIn": state.auth().token_ttl.num_seconds(),
    })))
}

/// Checks a signed EIP-4361 message and returns a bearer token.
///
/// Body: `{"message": "<EIP-4361 text>", "signature": "0x.."}` (JSON or FHIR JSON).
pub(super) async fn login(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirJson(body): FhirJson,
) -> Result<impl IntoResponse, AppError> {
    ctx.update(|r| {
        r.subtype = "login".into();
        r.action = 'E';
    });
    let message = body.get("message").and_then(Value::as_str).ok_or_else(|| {
        AppError::Invalid("`message` (the signed EIP-4361 text) is required".into())
    })?;
    let signature = body
        .get("signature")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("`signature` is required".into()))?;
    let now = Utc::now();
    let result = crate::auth::sign_in(
        state.pool(),
        state.chain(),
        state.tokens(),
        state.auth(),
        message,
        signature,
        now,
    )
    .await;
    // The claimed address is recorded as the agent, whether or not sign-in succeeded.
    if let Ok(parsed) = crate::auth::siwe::SiweMessage::parse(message) {
        ctx.update(|r| r.agent = Some(format!("{:#x}", parsed.address)));
    }
    let (token, claims) = result?;
    ctx.update(|r| r.agent_org = claims.org.map(|o| format!("{o:#x}")));
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims.exp - now.timestamp(),
        "address": format!("{:#x}", claims.sub),
        "role": claims.role,
        "organisation": claims.org.map(|o| format!("{o:#x}")),
    })))
}
