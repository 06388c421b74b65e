//! FHIR Bulk Data Access (v2) for research organisations: thin handlers over
//! [`crate::research`].
//!
//! | route | what |
//! | --- | --- |
//! | `GET /$export`, `GET /Patient/$export`, `GET /Group/{id}/$export` | kick-off (`Prefer: respond-async`): 202 and `Content-Location` |
//! | `GET /$export-status/{job}` | 202 with `X-Progress` and `Retry-After` while running; 200 and the manifest; 500 and an OperationOutcome when it failed |
//! | `DELETE /$export-status/{job}` | cancels (running) or deletes (completed): 202 |
//! | `GET /$export-file/{job}/{Type}.ndjson` | one output file (NDJSON), to the job's requester |

use super::{AuditCtx, FhirPath, PURPOSE_HEADER, Requester, respond};
use crate::{
    AppState,
    error::{AppError, operation_outcome},
    fhir::{date::DateRange, resource},
    research::{self, ExportRequest, Level, RETRY_AFTER_SECS},
};
use axum::{
    Router,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use carechain_contracts::{Purpose, ResourceType};
use tokio::io::AsyncReadExt;

/// The Bulk Data routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/$export", get(export_system))
        .route("/Patient/$export", get(export_patients))
        .route("/Group/{id}/$export", get(export_group))
        .route("/$export-status/{job}", get(status).delete(cancel))
        .route("/$export-file/{job}/{file}", get(file))
}

fn mark(ctx: &AuditCtx, subtype: &str, entity: String) {
    ctx.update(|r| {
        r.subtype = subtype.into();
        r.action = 'E';
        r.entity = Some(entity);
        r.purpose = Some(Purpose::Research.code().to_owned());
    });
}

/// The kick-off parameters this gateway takes; the other Bulk Data parameters are refused, not
/// ignored (a client must not believe a filter it asked for was applied).
fn parse_request(
    level: Level,
    headers: &HeaderMap,
    query: Option<&str>,
    uri: &str,
) -> Result<ExportRequest, AppError> {
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !prefer
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
    {
        return Err(AppError::Invalid(
            "a Bulk Data kick-off needs the header `Prefer: respond-async`".into(),
        ));
    }
    if let Some(purpose) = headers.get(PURPOSE_HEADER)
        && purpose.to_str().map(str::trim).ok() != Some(Purpose::Research.code())
    {
        return Err(AppError::Invalid(
            "a research export is for purpose of use HRESCH only".into(),
        ));
    }
    let (mut types, mut since, mut study, mut deidentify) = (None, None, None, true);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "_type" => {
                let mut list = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let rt = resource::parse_type(name)?;
                    if !research::exportable(rt) {
                        return Err(AppError::NotSupported(format!(
                            "`{name}` is not exported to researchers"
                        )));
                    }
                    if !list.contains(&rt) {
                        list.push(rt);
                    }
                }
                types = Some(list);
            }
            "_since" => {
                let range = DateRange::parse(&value)
                    .map_err(|_| AppError::Invalid("_since is a FHIR instant".into()))?;
                since = Some(range.start);
            }
            "_outputFormat" => {
                if !matches!(
                    value.as_ref(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(AppError::NotSupported(
                        "_outputFormat: this server writes application/fhir+ndjson only".into(),
                    ));
                }
            }
            "study" => {
                research::check_study(&value)?;
                study = Some(value.into_owned());
            }
            "_deidentify" => {
                deidentify = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(AppError::Invalid("_deidentify is true or false".into())),
                }
            }
            "_format" if super::json_format(&value) => {}
            other => {
                return Err(AppError::NotSupported(format!(
                    "the Bulk Data parameter `{}` is not supported (this server takes _type, _since, _outputFormat and study)",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    let study = match (&level, study) {
        (Level::Group(group), None) => group.clone(),
        (Level::Group(group), Some(study)) if &study != group => {
            return Err(AppError::Invalid(
                "a Group export is for the study the Group names".into(),
            ));
        }
        (_, Some(study)) => study,
        (_, None) => {
            return Err(AppError::Invalid(
                "name the study the export is for: `study=<id>` (pseudonyms are per study)".into(),
            ));
        }
    };
    let types = match types {
        Some(types) if !types.is_empty() => types,
        _ => ResourceType::ALL
            .iter()
            .copied()
            .filter(|rt| research::exportable(*rt))
            .collect(),
    };
    Ok(ExportRequest {
        level,
        study,
        types,
        since,
        deidentify,
        request_url: uri.to_owned(),
    })
}

async fn kick_off(
    state: &AppState,
    ctx: &AuditCtx,
    claims: &crate::auth::Claims,
    level: Level,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, AppError> {
    let uri = match query {
        Some(q) if !q.is_empty() => format!("{}{}?{q}", state.base_url(), kick_off_path(&level)),
        _ => format!("{}{}", state.base_url(), kick_off_path(&level)),
    };
    let request = parse_request(level, headers, query, &uri)?;
    let study = request.study.clone();
    let (job, block) = research::kick_off(state, claims, request).await?;
    ctx.update(|r| {
        r.consent_block = Some(block);
        r.detail = Some(format!("study {study}, job {job}"));
    });
    let mut response = respond(
        StatusCode::ACCEPTED,
        &operation_outcome(
            "information",
            "informational",
            "the export has started: poll the Content-Location URL",
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{}/$export-status/{job}", state.base_url())) {
        response.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(response)
}

fn kick_off_path(level: &Level) -> String {
    match level {
        Level::System => "/$export".into(),
        Level::Patient => "/Patient/$export".into(),
        Level::Group(id) => format!("/Group/{id}/$export"),
    }
}

async fn export_system(
    State(state): State<AppState>,
    ctx: AuditCtx,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "export", "$export".into());
    kick_off(
        &state,
        &ctx,
        &claims,
        Level::System,
        &headers,
        query.as_deref(),
    )
    .await
}

async fn export_patients(
    State(state): State<AppState>,
    ctx: AuditCtx,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "export", "Patient/$export".into());
    kick_off(
        &state,
        &ctx,
        &claims,
        Level::Patient,
        &headers,
        query.as_deref(),
    )
    .await
}

async fn export_group(
    State(state): State<AppState>,
    ctx: AuditCtx,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
    FhirPath(id): FhirPath<String>,
) -> Result<Response, AppError> {
    mark(&ctx, "export", "Group/$export".into());
    research::check_study(&id)?;
    mark(&ctx, "export", format!("Group/{id}/$export"));
    kick_off(
        &state,
        &ctx,
        &claims,
        Level::Group(id),
        &headers,
        query.as_deref(),
    )
    .await
}

fn no_such_job() -> AppError {
    AppError::NotFound("no such export job (unknown, cancelled or expired)".into())
}

async fn status(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    FhirPath(job): FhirPath<String>,
) -> Result<Response, AppError> {
    mark(&ctx, "export-status", format!("$export-status/{job}"));
    let row = research::status(&state, &claims, &job)
        .await?
        .ok_or_else(no_such_job)?;
    ctx.update(|r| r.consent_block = u64::try_from(row.start_block).ok());
    match row.state.as_str() {
        "running" => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            let progress = if row.cohort == 0 && row.resources == 0 {
                "selecting the patients".to_owned()
            } else {
                format!(
                    "{} resources of {} consenting patients so far ({} with records of these types)",
                    row.resources, row.patients, row.cohort
                )
            };
            if let Ok(v) = HeaderValue::from_str(&progress) {
                headers.insert("x-progress", v);
            }
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            Ok(response)
        }
        "completed" => {
            let mut response = respond(StatusCode::OK, &research::manifest(state.base_url(), &row));
            if let Some(expires) = row.expires_at
                && let Ok(v) = HeaderValue::from_str(&expires.to_rfc2822().replace("+0000", "GMT"))
            {
                response.headers_mut().insert(header::EXPIRES, v);
            }
            Ok(response)
        }
        "failed" => Ok(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            &operation_outcome(
                "error",
                "exception",
                row.error.as_deref().unwrap_or("the export failed"),
            ),
        )),
        _ => Err(no_such_job()),
    }
}

async fn cancel(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    FhirPath(job): FhirPath<String>,
) -> Result<Response, AppError> {
    mark(&ctx, "export-cancel", format!("$export-status/{job}"));
    ctx.update(|r| r.action = 'D');
    if research::cancel(&state, &claims, &job).await? {
        Ok(respond(
            StatusCode::ACCEPTED,
            &operation_outcome(
                "information",
                "informational",
                "the export is cancelled and its files deleted",
            ),
        ))
    } else {
        Err(no_such_job())
    }
}

/// Bytes read from a file per body chunk.
const CHUNK: usize = 256 * 1024;

async fn file(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    FhirPath((job, name)): FhirPath<(String, String)>,
) -> Result<Response, AppError> {
    mark(&ctx, "export-file", format!("$export-file/{job}/{name}"));
    ctx.update(|r| r.action = 'R');
    let row = research::status(&state, &claims, &job)
        .await?
        .filter(|row| row.state == "completed")
        .ok_or_else(no_such_job)?;
    ctx.update(|r| r.consent_block = u64::try_from(row.start_block).ok());
    let listed = row
        .output
        .as_ref()
        .and_then(|o| o.as_array())
        .is_some_and(|files| files.iter().any(|f| f["file"] == name.as_str()));
    let path = state
        .exports()
        .file_path(&job, &name)
        .filter(|_| listed)
        .ok_or_else(|| AppError::NotFound("no such file in this export".into()))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| AppError::NotFound("the file has expired or was deleted".into()))?;
    let stream = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some(file)))
            }
            Err(err) => Some((Err(err), None)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(response)
}
