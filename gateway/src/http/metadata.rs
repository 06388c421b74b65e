//! `GET /metadata`.

use super::{AuditCtx, respond};
use crate::AppState;
use axum::{extract::State, http::StatusCode, response::Response};

/// The CapabilityStatement; no sign-in needed.
pub(super) async fn capability_statement(State(state): State<AppState>, ctx: AuditCtx) -> Response {
    ctx.update(|r| {
        r.subtype = "capabilities".into();
        r.action = 'R';
    });
    let statement = super::capability::statement(state.base_url(), env!("CARGO_PKG_VERSION"));
    respond(StatusCode::OK, &statement)
}
