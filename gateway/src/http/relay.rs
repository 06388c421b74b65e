//! `POST /relay/consent`: gas-free consent (see [`crate::relay`]).

use super::{AuditCtx, FhirJson, auth::Peer};
use crate::{AppState, error::AppError, relay::RelayError};
use axum::{Json, extract::State, response::IntoResponse};
use chrono::Utc;
use std::time::Instant;

impl From<RelayError> for AppError {
    fn from(err: RelayError) -> Self {
        match err {
            RelayError::Invalid(_) | RelayError::WrongDomain(_) | RelayError::Expired(_) => {
                AppError::Invalid(err.to_string())
            }
            RelayError::StaleNonce { .. } => AppError::Conflict(err.to_string()),
            RelayError::BadSignature(_) => AppError::Forbidden(err.to_string()),
            RelayError::WouldRevert(_) => AppError::Unprocessable(err.to_string()),
            RelayError::RateLimited(seconds) => AppError::TooManyRequests(seconds),
            RelayError::Chain(_) => AppError::BadGateway(err.to_string()),
            RelayError::Database(e) => AppError::internal(e),
        }
    }
}

/// Checks a signed grant or revocation and submits it with the gateway's key.
///
/// Body: `{"typedData": <the eth_signTypedData_v4 object>, "signature": "0x..", "signer"?}`
/// (`carechain consent grant --sign-only` prints exactly this). No sign-in is needed: the
/// signature is the authority; so every submission, valid or not, counts against its client
/// address's allowance (429 beyond) before any check reaches the chain. Answers the
/// transaction hash and block.
pub(super) async fn submit(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Peer(peer): Peer,
    FhirJson(body): FhirJson,
) -> Result<impl IntoResponse, AppError> {
    ctx.update(|r| {
        r.subtype = "consent-relay".into();
        r.action = 'E';
    });
    let relay = state.relay().ok_or_else(|| {
        AppError::NotSupported(
            "gas-free consent is not enabled on this gateway (no relay key)".into(),
        )
    })?;
    state
        .relay_limiter()
        .take(peer, Instant::now())
        .map_err(AppError::TooManyRequests)?;
    let submission = crate::relay::Submission::from_json(&body)?;
    let patient = format!("{:#x}", submission.consent.patient());
    ctx.update(|r| {
        r.patient = Some(patient.clone());
        r.entity = Some(format!("Patient/{patient}"));
    });
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
    let submitted = relay.submit(&submission, now).await;
    if let Ok(s) = &submitted {
        ctx.update(|r| r.agent = Some(format!("{:#x}", s.signer)));
    }
    Ok(Json(crate::relay::submitted_json(&submitted?)))
}
