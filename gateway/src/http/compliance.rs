//! Compliance routes.
//!
//! | route | who |
//! |---|---|
//! | `GET /AuditEvent` | compliance staff; a patient or delegate with `patient=<own>` |
//! | `GET /AuditEvent/{id}` | compliance staff; the event's patient and delegates |
//! | `GET /AuditEvent/{id}/$proof` | compliance staff; the event's patient and delegates |
//! | `GET /AuditEvent/$export` | compliance staff |
//! | `GET /AuditEvent/$verify` | compliance staff |
//! | `GET /AuditEvent/$break-glass-queue` | compliance staff |
//! | `POST /AuditEvent/$break-glass-review` | compliance staff |
//! | `GET /Consent?patient=` | compliance staff; the patient and delegates |

use crate::{
    AppState,
    audit::verify,
    compliance::{
        Compliance, consents, events,
        lists::{self, List, ListCursor},
    },
    error::AppError,
    fhir::{date::DateRange, resource::normalize_address},
    http::{AuditCtx, FhirJson, FhirPath, Requester, respond},
};
use alloy::primitives::Address;
use axum::{
    Router,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

/// The compliance routes (merged into the gateway's router). `records` serves what
/// `/Consent` does not: every method but GET (creating a stored Consent document).
pub fn routes(records: Router) -> Router<AppState> {
    Router::new()
        .route("/AuditEvent", get(search))
        .route("/AuditEvent/$export", get(export))
        .route("/AuditEvent/$verify", get(verify_log))
        .route("/AuditEvent/$break-glass-queue", get(break_glass_queue))
        .route("/AuditEvent/$break-glass-review", post(break_glass_review))
        .route("/AuditEvent/{id}", get(read))
        .route("/AuditEvent/{id}/$proof", get(proof))
        .route("/Consent", get(consent_search).fallback_service(records))
}

/// Break-glass review outcome codes.
pub const REVIEW_OUTCOMES: &[&str] = &["justified", "unjustified", "inconclusive"];

fn params(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn mark(ctx: &AuditCtx, subtype: &str, action: char) {
    ctx.update(|r| {
        r.subtype = subtype.into();
        r.action = action;
    });
}

fn address(text: &str) -> Option<Address> {
    crate::fhir::resource::normalize_address(text).and_then(|a| a.parse().ok())
}

fn chain_id(state: &AppState) -> i64 {
    i64::try_from(state.chain().chain_id()).unwrap_or(i64::MAX)
}

fn compliance(state: &AppState) -> Result<&Compliance, AppError> {
    state.compliance().ok_or(AppError::Unavailable(
        "compliance services are not configured",
    ))
}

async fn search(
    State(state): State<AppState>,
    ctx: AuditCtx,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "search-type", 'E');
    ctx.update(|r| r.entity = Some("AuditEvent".into()));
    let params = params(query);
    // A patient (or delegate) signed in with the federation capability sees their access log
    // at every custodian.
    if let Some(fed) = state.federation()
        && let Some(session) = crate::federation::search::applies(fed, &claims, &params)
    {
        let (bundle, report) = crate::federation::search::search(
            &state,
            fed,
            &claims,
            session,
            carechain_contracts::Purpose::PatientRequest,
            crate::federation::search::Kind::AuditLog,
            &params,
            &ctx,
        )
        .await?;
        ctx.update(|r| r.detail = Some(report.detail()));
        return Ok(respond(StatusCode::OK, &bundle));
    }
    let bundle = audit_event_search(&state, &claims, &params, &ctx).await?;
    Ok(respond(StatusCode::OK, &bundle))
}

/// `GET /AuditEvent?..` at this gateway: its own audit log and the chain's events, for
/// compliance staff, or a patient / delegate about that patient.
pub(crate) async fn audit_event_search(
    state: &AppState,
    claims: &crate::auth::Claims,
    params: &[(String, String)],
    audit: &(dyn crate::records::AuditSink + Sync),
) -> Result<Value, AppError> {
    let cursor = params
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.clone());
    let (query, after) = match &cursor {
        Some(token) => {
            if params.iter().any(|(k, _)| k != "_cursor" && k != "_format") {
                return Err(AppError::Invalid("a paging cursor is used alone".into()));
            }
            let (q, key, total) = events::resume(state.cursors(), token, claims.sub)?;
            (q, Some(events::Continue { key, total }))
        }
        None => (
            events::AuditQuery::parse(
                params,
                state.config().default_page_size,
                state.config().max_page_size,
            )?,
            None,
        ),
    };
    let patient = query.patient.as_deref().and_then(address);
    if let Some(p) = patient {
        audit.patient(p);
    }
    // Re-checked on every page: a cursor outlives neither a suspension nor a delegation.
    state.access().require_viewer(claims, patient).await?;
    let page = events::search(
        state.pool(),
        state.cursors(),
        &query,
        chain_id(state),
        after,
        claims.sub,
    )
    .await?;
    let base = state.base_url();
    let mut links = vec![json!({"relation": "self", "url": match &cursor {
        Some(token) => format!("{base}/AuditEvent?_cursor={token}"),
        None => format!("{base}/AuditEvent"),
    }})];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": format!("{base}/AuditEvent?_cursor={next}")}));
    }
    let entries: Vec<Value> = page
        .events
        .into_iter()
        .map(|event| {
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            json!({"fullUrl": format!("{base}/AuditEvent/{id}"), "resource": event, "search": {"mode": "match"}})
        })
        .collect();
    let mut bundle =
        json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries});
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    Ok(bundle)
}

async fn read_checked(
    state: &AppState,
    ctx: &AuditCtx,
    claims: &crate::auth::Claims,
    id: &str,
) -> Result<Value, AppError> {
    ctx.update(|r| {
        r.entity = Some(format!(
            "AuditEvent/{}",
            id.chars().take(80).collect::<String>()
        ))
    });
    let found = events::read(state.pool(), id).await?;
    // The same answer for "no such event" and "not yours": ids are sequence numbers.
    let refused = || AppError::NotFound("no such AuditEvent visible to you".into());
    let Some((patient, event)) = found else {
        state
            .access()
            .require_viewer(claims, None)
            .await
            .map_err(|_| refused())?;
        return Err(refused());
    };
    if let Some(p) = &patient {
        ctx.update(|r| r.patient = Some(p.clone()));
    }
    state
        .access()
        .require_viewer(claims, patient.as_deref().and_then(address))
        .await
        .map_err(|err| match err {
            AppError::Forbidden(_) => refused(),
            other => other,
        })?;
    Ok(event)
}

async fn read(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirPath(id): FhirPath<String>,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "read", 'R');
    let event = read_checked(&state, &ctx, &claims, &id).await?;
    Ok(respond(StatusCode::OK, &event))
}

async fn proof(
    State(state): State<AppState>,
    ctx: AuditCtx,
    FhirPath(id): FhirPath<String>,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "audit-proof", 'R');
    read_checked(&state, &ctx, &claims, &id).await?;
    let seq: u64 = id
        .parse()
        .map_err(|_| AppError::Invalid("only gateway audit rows (numeric ids) have Merkle proofs; chain events are proven by their transaction".into()))?;
    let c = compliance(&state)?;
    let proof = verify::inclusion_proof(state.pool(), c.anchors(), seq)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("AuditEvent {seq} is not anchored yet")))?;
    let siblings: Vec<Value> = proof
        .proof
        .iter()
        .map(|h| json!({"name": "sibling", "valueString": format!("{h:#x}")}))
        .collect();
    let mut parameter = vec![
        json!({"name": "seq", "valueString": proof.seq.to_string()}),
        json!({"name": "hash", "valueString": format!("{:#x}", proof.hash)}),
        json!({"name": "batchId", "valueString": proof.batch_id.to_string()}),
        json!({"name": "fromSeq", "valueString": proof.from_seq.to_string()}),
        json!({"name": "toSeq", "valueString": proof.to_seq.to_string()}),
        json!({"name": "root", "valueString": format!("{:#x}", proof.root)}),
        json!({"name": "txHash", "valueString": format!("{:#x}", proof.tx_hash)}),
        json!({"name": "blockNumber", "valueString": proof.block_number.to_string()}),
        json!({"name": "contract", "valueString": format!("{:#x}", c.anchors().contract())}),
        json!({"name": "verifiedOnChain", "valueBoolean": proof.verified_on_chain}),
    ];
    parameter.extend(siblings);
    Ok(respond(
        StatusCode::OK,
        &json!({"resourceType": "Parameters", "parameter": parameter}),
    ))
}

async fn export(
    State(state): State<AppState>,
    ctx: AuditCtx,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "export", 'R');
    ctx.update(|r| r.entity = Some("AuditEvent".into()));
    state.access().require_compliance(&claims).await?;
    let mut selection = events::ExportSelection {
        from: 1,
        to: u64::MAX >> 1,
        ..Default::default()
    };
    for (name, value) in params(query) {
        let n = || {
            value
                .parse::<u64>()
                .map_err(|_| AppError::Invalid(format!("`{name}` must be a sequence number")))
        };
        // The start of the date or instant: `_since` includes it, `_until` does not.
        let instant = || {
            DateRange::parse(&value)
                .map(|range| range.start)
                .map_err(|_| AppError::Invalid(format!("`{name}` must be a FHIR date or instant")))
        };
        match name.as_str() {
            "from" => selection.from = n()?.max(1),
            "to" => selection.to = n()?.min(u64::MAX >> 1),
            "_since" => selection.since = Some(instant()?),
            "_until" => selection.until = Some(instant()?),
            "patient" => {
                let bare = value.strip_prefix("Patient/").unwrap_or(&value);
                selection.patient = Some(normalize_address(bare).ok_or_else(|| {
                    AppError::Invalid("`patient` must be a wallet address (0x + 40 hex)".into())
                })?);
            }
            "_format" => {}
            _ => {
                return Err(AppError::NotSupported(
                    "$export takes `from` and `to` (sequence numbers), `_since` and `_until` \
                     (dates or instants) and `patient`"
                        .into(),
                ));
            }
        }
    }
    let mut detail = format!("export seq {}..{}", selection.from, selection.to);
    if let Some(since) = selection.since {
        detail.push_str(&format!(", since {}", since.to_rfc3339()));
    }
    if let Some(until) = selection.until {
        detail.push_str(&format!(", until {}", until.to_rfc3339()));
    }
    if let Some(patient) = &selection.patient {
        ctx.update(|r| r.patient = Some(patient.clone()));
    }
    ctx.update(|r| r.detail = Some(detail));
    let stream = events::export_ndjson(state.pool().clone(), selection);
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(response)
}

async fn verify_log(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "audit-verify", 'E');
    state.access().require_compliance(&claims).await?;
    let c = compliance(&state)?;
    let report = verify::verify_audit_log(state.pool(), c.anchors(), c.anchor_key()).await?;
    let mut parameter = vec![
        json!({"name": "result", "valueBoolean": report.ok()}),
        json!({"name": "rows", "valueString": report.rows.to_string()}),
        json!({"name": "lastSeq", "valueString": report.last_seq.to_string()}),
        json!({"name": "anchoredTo", "valueString": report.anchored_to.to_string()}),
        json!({"name": "batchesChecked", "valueString": report.batches_checked.to_string()}),
    ];
    if let Some(problem) = &report.problem {
        parameter.push(json!({"name": "firstBadSeq", "valueString": problem.seq.to_string()}));
        parameter.push(json!({"name": "problem", "valueCode": serde_json::to_value(problem.kind).unwrap_or_default()}));
        if let Some(batch) = problem.batch_id {
            parameter.push(json!({"name": "batchId", "valueString": batch.to_string()}));
        }
    }
    ctx.update(|r| {
        r.detail = Some(match &report.problem {
            None => format!("verified {} rows", report.rows),
            Some(p) => format!("verification failed at seq {}", p.seq),
        })
    });
    Ok(respond(
        StatusCode::OK,
        &json!({"resourceType": "Parameters", "parameter": parameter}),
    ))
}

/// `_count` and `_cursor` of a paged list: the page size, and the cursor opened for
/// `claims` (used alone: the cursor holds the rest).
fn list_paging(
    state: &AppState,
    claims: &crate::auth::Claims,
    params: &[(String, String)],
) -> Result<(usize, Option<ListCursor>), AppError> {
    let mut count = state.config().default_page_size;
    let mut cursor = None;
    for (name, value) in params {
        match name.as_str() {
            "_count" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| AppError::Invalid("`_count` must be a number".into()))?;
                count = n.min(state.config().max_page_size);
            }
            "_cursor" => cursor = Some(ListCursor::open(state.cursors(), value, claims.sub)?),
            _ => {}
        }
    }
    if cursor.is_some() && params.iter().any(|(k, _)| k != "_cursor" && k != "_format") {
        return Err(AppError::Invalid("a paging cursor is used alone".into()));
    }
    Ok((count, cursor))
}

/// The `self` and `next` links of a list page.
fn list_links(path: &str, first: &str, token: Option<&str>, next: Option<String>) -> Vec<Value> {
    let mut links = vec![json!({"relation": "self", "url": match token {
        Some(token) => format!("{path}?_cursor={token}"),
        None => format!("{path}{first}"),
    }})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": format!("{path}?_cursor={next}")}));
    }
    links
}

async fn break_glass_queue(
    State(state): State<AppState>,
    ctx: AuditCtx,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "break-glass-queue", 'R');
    state.access().require_compliance(&claims).await?;
    let params = params(query);
    if let Some((name, _)) = params
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "_count" | "_cursor" | "_format"))
    {
        return Err(AppError::NotSupported(format!(
            "$break-glass-queue takes `_count` and `_cursor` only, not `{}`",
            name.chars().take(40).collect::<String>()
        )));
    }
    let (count, cursor) = list_paging(&state, &claims, &params)?;
    let (count, after, total) = match cursor {
        Some(c) if c.list == List::BreakGlassQueue => (c.count, Some(c.after), c.total),
        Some(_) => {
            return Err(AppError::Invalid(
                "the paging cursor is for another list".into(),
            ));
        }
        None => (
            count,
            None,
            lists::unreviewed_sessions(state.pool(), chain_id(&state)).await?,
        ),
    };
    let mut rows =
        lists::break_glass_queue(state.pool(), chain_id(&state), count, after.as_ref()).await?;
    let more = rows.len() > count;
    rows.truncate(count);
    let next = match rows.last().filter(|_| more) {
        Some(last) => Some(
            ListCursor::new(
                List::BreakGlassQueue,
                claims.sub,
                count,
                (last.6, last.0.clone()),
                total,
            )
            .seal(state.cursors())?,
        ),
        None => None,
    };
    let hex = |b: &[u8]| format!("0x{}", alloy::hex::encode(b));
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|(id, patient, org, opener, reason, expires, block, tx, closed)| {
            let reason = carechain_contracts::BreakGlassReason::try_from(u8::try_from(reason).unwrap_or(u8::MAX))
                .map(|r| r.name().to_owned())
                .unwrap_or_else(|_| reason.to_string());
            json!({"resource": {
                "resourceType": "Parameters",
                "id": format!("break-glass-{id}"),
                "parameter": [
                    {"name": "session", "valueString": id},
                    {"name": "patient", "valueReference": {"reference": format!("Patient/{}", hex(&patient))}},
                    {"name": "organisation", "valueString": hex(&org)},
                    {"name": "opener", "valueString": hex(&opener)},
                    {"name": "reason", "valueCode": reason},
                    {"name": "expiresAt", "valueString": expires.to_string()},
                    {"name": "openedBlock", "valueString": block.to_string()},
                    {"name": "openedTx", "valueString": hex(&tx)},
                    {"name": "closed", "valueBoolean": closed.is_some()}
                ]
            }})
        })
        .collect();
    let token = params
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let links = list_links(
        &format!("{}/AuditEvent/$break-glass-queue", state.base_url()),
        "",
        token,
        next,
    );
    Ok(respond(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "collection", "total": total, "link": links, "entry": entries}),
    ))
}

async fn break_glass_review(
    State(state): State<AppState>,
    ctx: AuditCtx,
    Requester(claims): Requester,
    FhirJson(body): FhirJson,
) -> Result<Response, AppError> {
    mark(&ctx, "break-glass-review", 'U');
    let org = state.access().require_compliance(&claims).await?;
    if body["resourceType"] != "Parameters" {
        return Err(AppError::Invalid(
            "the body must be a Parameters resource".into(),
        ));
    }
    let param = |name: &str| {
        body["parameter"].as_array().and_then(|ps| {
            ps.iter().find(|p| p["name"] == name).and_then(|p| {
                p["valueString"]
                    .as_str()
                    .or_else(|| p["valueCode"].as_str())
                    .map(str::to_owned)
                    .or_else(|| {
                        p["valueUnsignedInt"]
                            .as_u64()
                            .or_else(|| p["valueInteger"].as_u64())
                            .map(|n| n.to_string())
                    })
            })
        })
    };
    let session = param("session")
        .filter(|s| !s.is_empty() && s.len() <= 20 && s.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            AppError::Invalid("`session` must be a break-glass session number".into())
        })?;
    let outcome = param("outcome")
        .filter(|o| REVIEW_OUTCOMES.contains(&o.as_str()))
        .ok_or_else(|| {
            AppError::Invalid(format!(
                "`outcome` must be one of {}",
                REVIEW_OUTCOMES.join(", ")
            ))
        })?;
    ctx.update(|r| {
        r.entity = Some(format!("BreakGlass/{session}"));
        r.detail = Some(format!("review {outcome}"));
    });
    let chain_id = i64::try_from(state.chain().chain_id()).unwrap_or(i64::MAX);
    let patient: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT patient FROM break_glass_sessions WHERE chain_id = $1 AND session_id = $2::numeric",
    )
    .bind(chain_id)
    .bind(&session)
    .fetch_optional(state.pool())
    .await?;
    let patient =
        patient.ok_or_else(|| AppError::NotFound("no such break-glass session".into()))?;
    ctx.update(|r| r.patient = Some(format!("0x{}", alloy::hex::encode(&patient))));
    let inserted = sqlx::query(
        "INSERT INTO gateway_break_glass_reviews (chain_id, session_id, reviewer, reviewer_org, outcome)
         VALUES ($1, $2::numeric, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(chain_id)
    .bind(&session)
    .bind(format!("{:#x}", claims.sub))
    .bind(format!("{org:#x}"))
    .bind(&outcome)
    .execute(state.pool())
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AppError::Conflict(
            "this break-glass session is already reviewed".into(),
        ));
    }
    Ok(respond(
        StatusCode::OK,
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "session", "valueString": session},
            {"name": "outcome", "valueCode": outcome},
            {"name": "reviewer", "valueString": format!("{:#x}", claims.sub)}
        ]}),
    ))
}

async fn consent_search(
    State(state): State<AppState>,
    ctx: AuditCtx,
    RawQuery(query): RawQuery,
    Requester(claims): Requester,
) -> Result<Response, AppError> {
    mark(&ctx, "search-type", 'E');
    ctx.update(|r| r.entity = Some("Consent".into()));
    let params = params(query);
    let mut patient = None;
    for (name, value) in &params {
        match name.as_str() {
            "patient" => {
                let bare = value.strip_prefix("Patient/").unwrap_or(value);
                patient = Some(address(bare).ok_or_else(|| {
                    AppError::Invalid("`patient` must be a wallet address (0x + 40 hex)".into())
                })?);
            }
            "_count" | "_cursor" | "_format" => {}
            _ => {
                return Err(AppError::NotSupported(
                    "Consent is searched by `patient` only (paged with `_count`)".into(),
                ));
            }
        }
    }
    let (count, cursor) = list_paging(&state, &claims, &params)?;
    let (patient, count, before, total) = match (cursor, patient) {
        (Some(c), _) => match c.list {
            List::Consents(patient) => {
                let before = c
                    .after
                    .1
                    .parse::<i32>()
                    .map(|log| (c.after.0, log))
                    .map_err(|_| AppError::Invalid("the paging cursor is invalid".into()))?;
                (patient, c.count, Some(before), Some(c.total))
            }
            List::BreakGlassQueue => {
                return Err(AppError::Invalid(
                    "the paging cursor is for another list".into(),
                ));
            }
        },
        (None, Some(patient)) => (patient, count, None, None),
        (None, None) => return Err(AppError::Invalid("`patient` is required".into())),
    };
    ctx.update(|r| r.patient = Some(format!("{patient:#x}")));
    // Re-checked on every page: a cursor outlives neither a suspension nor a delegation.
    state
        .access()
        .require_viewer(&claims, Some(patient))
        .await?;
    let chain_id = state.chain().chain_id();
    let total = match total {
        Some(total) => total,
        None => consents::count_consents(state.pool(), chain_id, patient).await?,
    };
    let (consents, last) =
        consents::consents_of(state.pool(), chain_id, patient, count, before).await?;
    let next = match last {
        Some((block, log)) => Some(
            ListCursor::new(
                List::Consents(patient),
                claims.sub,
                count,
                (block, log.to_string()),
                total,
            )
            .seal(state.cursors())?,
        ),
        None => None,
    };
    let base = state.base_url();
    let entries: Vec<Value> = consents
        .into_iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap_or_default().to_owned();
            json!({"fullUrl": format!("{base}/Consent/{id}"), "resource": c, "search": {"mode": "match"}})
        })
        .collect();
    let token = params
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let links = list_links(
        &format!("{base}/Consent"),
        &format!("?patient={patient:#x}"),
        token,
        next,
    );
    Ok(respond(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "searchset", "total": total,
                "link": links, "entry": entries}),
    ))
}

/// Adds the compliance routes to the CapabilityStatement's resources: an AuditEvent entry,
/// and on the Consent entry the search that the chain's index answers.
pub fn amend_capability(resources: &mut Vec<Value>) {
    let consent_doc = "Search (GET Consent?patient=) returns current and past consents from the index of ConsentRegistry events, newest first and paged (_count, then the Bundle's next link), each with its chain proof (transaction hash, block, log index); the patient, an active delegate and compliance staff may search. Stored Consent documents are read by id.";
    match resources.iter_mut().find(|r| r["type"] == "Consent") {
        Some(consent) => {
            consent["documentation"] = json!(consent_doc);
            consent["searchParam"] = json!([{"name": "patient", "type": "reference"}, {"name": "_count", "type": "number"}]);
            if let Some(entry) = consent.as_object_mut() {
                entry.remove("searchInclude");
                entry.remove("searchRevInclude");
            }
        }
        None => resources.push(json!({
            "type": "Consent",
            "documentation": consent_doc,
            "interaction": [{"code": "search-type"}],
            "searchParam": [{"name": "patient", "type": "reference"}, {"name": "_count", "type": "number"}]
        })),
    }
    let op = |name: &str, doc: &str| json!({"name": name, "definition": format!("urn:carechain:operation:{name}"), "documentation": doc});
    resources.push(json!({
        "type": "AuditEvent",
        "documentation": "The gateway's hash-chained audit log (ids are sequence numbers) and the chain's consent, delegate, break-glass and membership events (ids chain-<chain>-<block>-<log>). Compliance staff (active keys of an active Compliance organisation) search everything; a patient or an active delegate searches with patient=<own wallet> only.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": "patient", "type": "reference"},
            {"name": "agent", "type": "reference"},
            {"name": "date", "type": "date"},
            {"name": "outcome", "type": "token"},
            {"name": "subtype", "type": "token"},
            {"name": "action", "type": "token"},
            {"name": "entity", "type": "reference"},
            {"name": "purpose", "type": "token"},
            {"name": "_count", "type": "number"},
            {"name": "_total", "type": "token", "documentation": "none skips the count; accurate (the default) and estimate count every match"},
            {"name": "_sort", "type": "string", "documentation": "date or -date"}
        ],
        "operation": [
            op("export", "GET AuditEvent/$export: the audit log as streamed NDJSON, selected by sequence numbers (from, to; in sequence order), and by date (_since inclusive, _until exclusive: FHIR dates or instants) and patient (then in recorded order). Compliance staff only."),
            op("verify", "GET AuditEvent/$verify: recomputes the hash chain and every root anchored in AuditAnchor; reports the first missing or tampered row. Compliance staff only."),
            op("proof", "GET AuditEvent/[seq]/$proof: the Merkle inclusion proof of an anchored row, its batch and anchoring transaction, checked on chain."),
            op("break-glass-queue", "GET AuditEvent/$break-glass-queue: break-glass sessions not reviewed yet, oldest first, paged (_count, then the Bundle's next link). Compliance staff only."),
            op("break-glass-review", "POST AuditEvent/$break-glass-review with Parameters session + outcome (justified | unjustified | inconclusive). Compliance staff only; audited.")
        ]
    }));
}

#[cfg(test)]
mod tests {

    #[test]
    fn capability_names_the_compliance_routes() {
        let cs = crate::http::capability::statement("http://127.0.0.1:8080", "0.1.0", false);
        let resources = cs["rest"][0]["resource"].as_array().expect("resources");
        let audit = resources
            .iter()
            .find(|r| r["type"] == "AuditEvent")
            .expect("AuditEvent entry");
        let ops: Vec<&str> = audit["operation"]
            .as_array()
            .expect("operations")
            .iter()
            .filter_map(|o| o["name"].as_str())
            .collect();
        assert_eq!(
            ops,
            [
                "export",
                "verify",
                "proof",
                "break-glass-queue",
                "break-glass-review"
            ]
        );
        let consents: Vec<_> = resources
            .iter()
            .filter(|r| r["type"] == "Consent")
            .collect();
        assert_eq!(consents.len(), 1, "one entry per type");
        assert_eq!(consents[0]["searchParam"][0]["name"], "patient");
    }
}
