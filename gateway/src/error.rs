//! The gateway's error type and its FHIR `OperationOutcome` rendering.
//!
//! Every failure leaves the gateway as an `OperationOutcome` with the issue severity and code
//! that FHIR R4 assigns to it. Server-side failures (5xx) carry a fixed text; their causes go
//! to the log only.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// The FHIR JSON media type every response uses.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (body, id, parameter value, date).
    #[error("{0}")]
    Invalid(String),
    /// The request uses something the gateway does not support (parameter, interaction).
    #[error("{0}")]
    NotSupported(String),
    /// The request needs a valid bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but refused (consent, membership).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource or version.
    #[error("{0}")]
    NotFound(String),
    /// Consent denies access to a record named by id: answered exactly like a record that
    /// does not exist (404, same text), so a requester without consent cannot learn whether
    /// the id exists; the audit row records the denial.
    #[error("{0}")]
    ConcealedDenial(String),
    /// The resource was deleted or erased.
    #[error("{0}")]
    Gone(String),
    /// The HTTP method is not allowed on this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A write conflicts with the current state (e.g. an id that already exists).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` names a version that is not current.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body exceeds the configured limit.
    #[error("the request body exceeds the configured size limit")]
    PayloadTooLarge,
    /// The body is not FHIR JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The content is well-formed but breaks a business rule.
    #[error("{0}")]
    Unprocessable(String),
    /// The resource is not valid FHIR R4: every issue, each with its FHIRPath location.
    #[error(transparent)]
    NotValid(#[from] carechain_fhir::ValidationError),
    /// An update without `If-Match`, where the gateway requires one.
    #[error("{0}")]
    PreconditionRequired(String),
    /// The search would touch more than the gateway allows.
    #[error("{0}")]
    TooCostly(String),
    /// The client asked too often; retry after this many seconds.
    #[error("too many requests; retry in {0} s")]
    TooManyRequests(u64),
    /// A transaction the gateway sent on someone's behalf failed or could not be sent.
    #[error("{0}")]
    BadGateway(String),
    /// A dependency (chain, index, database) is unavailable: fail closed.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A stored version does not match its hash or on-chain anchor.
    #[error("the stored record failed integrity verification")]
    Integrity,
    /// Anything else; the cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    /// Wraps an internal failure.
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::NotSupported(_) | Self::TooCostly(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::ConcealedDenial(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) | Self::NotValid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Integrity | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The FHIR `IssueType` code.
    pub fn issue_code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotSupported(_) | Self::MethodNotAllowed | Self::UnsupportedMediaType(_) => {
                "not-supported"
            }
            Self::Unauthenticated(_) => "login",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) | Self::ConcealedDenial(_) => "not-found",
            Self::Gone(_) => "deleted",
            Self::Conflict(_) | Self::PreconditionFailed(_) => "conflict",
            Self::PreconditionRequired(_) => "required",
            Self::NotValid(_) => "invalid",
            Self::PayloadTooLarge | Self::TooCostly(_) => "too-costly",
            Self::Unprocessable(_) => "processing",
            Self::TooManyRequests(_) => "throttled",
            Self::Unavailable(_) | Self::BadGateway(_) => "transient",
            Self::Integrity => "processing",
            Self::Internal(_) => "exception",
        }
    }

    /// The FHIR `IssueSeverity`.
    pub fn severity(&self) -> &'static str {
        if self.status().is_server_error() {
            "fatal"
        } else {
            "error"
        }
    }

    /// What the audit row records as the outcome's detail: the issue code, except that a
    /// concealed denial is recorded as the denial it is.
    pub fn audit_code(&self) -> &'static str {
        match self {
            Self::ConcealedDenial(_) => "consent-denied",
            other => other.issue_code(),
        }
    }

    /// The `OperationOutcome` for this error (for a resource that is not valid, one issue per
    /// problem found, each with its location).
    pub fn outcome(&self) -> Value {
        match self {
            Self::NotValid(err) => err.to_operation_outcome(),
            other => operation_outcome(other.severity(), other.issue_code(), &other.to_string()),
        }
    }
}

/// The text of a 404 for a record named by id: the same whether the record does not exist or
/// consent denies it ([`AppError::ConcealedDenial`]).
pub fn not_found_text(resource_type: &str, id: &str) -> String {
    format!("{resource_type}/{id} is not known (or not accessible under consent)")
}

/// Builds an `OperationOutcome` with one issue.
pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]
    })
}

/// A JSON body with the FHIR media type.
pub fn fhir_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let mut response = fhir_response(self.status(), &self.outcome());
        response
            .extensions_mut()
            .insert(ErrorMark(self.audit_code()));
        if let Self::TooManyRequests(seconds) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unauthenticated(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Marks a response as produced by an [`AppError`] (the audit layer records its
/// [`AppError::audit_code`]).
#[derive(Debug, Clone, Copy)]
pub struct ErrorMark(pub &'static str);

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_their_cause() {
        let err = AppError::internal(std::io::Error::other("password=hunter2"));
        let outcome = err.outcome();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(outcome["issue"][0]["severity"], "fatal");
        assert!(!outcome.to_string().contains("hunter2"));
    }

    #[test]
    fn a_concealed_denial_looks_like_not_found() {
        let denied = AppError::ConcealedDenial(not_found_text("Observation", "ab"));
        let missing = AppError::NotFound(not_found_text("Observation", "ab"));
        assert_eq!(denied.status(), missing.status());
        assert_eq!(denied.outcome(), missing.outcome());
        assert_eq!(denied.audit_code(), "consent-denied");
        assert_eq!(missing.audit_code(), "not-found");
    }

    #[test]
    fn client_errors_are_errors_with_codes() {
        let err = AppError::Gone("Observation/1 was deleted".into());
        assert_eq!(err.status(), StatusCode::GONE);
        assert_eq!(err.outcome()["issue"][0]["code"], "deleted");
        assert_eq!(err.outcome()["issue"][0]["severity"], "error");
        assert_eq!(
            AppError::PreconditionFailed("x".into()).status(),
            StatusCode::PRECONDITION_FAILED
        );
    }
}
