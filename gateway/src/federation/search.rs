//! The initiating side: a search (or a read by id) asked of every custodian holding records.
//!
//! A search naming its patient, by a user whose sign-in carries a capability for the other
//! custodians, is run here and sent to every other active member's endpoint in parallel (at
//! most `concurrency` at once, each within the time limit). Every version a custodian returns
//! is checked against that custodian's anchor on chain (its inclusion proof, or its single
//! anchor): an altered version, or one not anchored yet, is left out and reported. The matches
//! are merged in the search's sort order and paged with one sealed cursor holding each
//! custodian's position (its own cursor and how many of that page were served). A custodian
//! that is down, slow or refusing is an `OperationOutcome` entry (search mode `outcome`)
//! naming it: a partial result is never silent.

use super::{
    ANCHOR_PROOF_HEADER, ANCHOR_PROOF_URL, AnchorProof, Federation, SourceError,
    directory::{self, Custodian},
    request::{self, SignedSession},
};
use crate::{AppState, auth::Claims, error::AppError, fhir::resource, records};
use alloy::primitives::{Address, B256};
use carechain_contracts::{Purpose, ResourceType};
use carechain_formats::canonical::canonical_hash;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Prefix of a federated search's cursor (the `_cursor` of its next-page link).
pub const CURSOR_PREFIX: &str = "fed.";
const CURSOR_AAD: &[u8] = b"carechain/federated-search";
/// How long a federated cursor may be used (seconds).
const CURSOR_LIFETIME: i64 = 3600;

/// Parameters a custodian applies itself (they change what is hashed, so they are applied here
/// after verification).
const APPLIED_HERE: &[&str] = &["_summary", "_elements"];

/// The user's forwarded sign-in when `params` are a search this gateway asks the other
/// custodians: the user signed in with a capability for them, is a patient, a delegate or a
/// member of this gateway's own organisation (the others refuse a practitioner asking through
/// another organisation's gateway), the request is not itself a federated one, and it names
/// its patient (or continues a federated search). Searches with `_include` or `_revinclude`
/// stay local.
pub fn applies<'a>(
    fed: &Federation,
    claims: &'a Claims,
    params: &[(String, String)],
) -> Option<&'a SignedSession> {
    if !eligible(fed, claims) {
        return None;
    }
    let session = claims.session.as_ref()?;
    let continues = params
        .iter()
        .any(|(k, v)| k == "_cursor" && v.starts_with(CURSOR_PREFIX));
    let names_patient = params.iter().any(|(k, _)| k == "patient" || k == "subject");
    let includes = params
        .iter()
        .any(|(k, _)| k == "_include" || k == "_revinclude");
    (continues || (names_patient && !includes)).then_some(session)
}

/// Whether this gateway asks the other custodians for `claims`' user: not for a federated
/// request itself, and for a member only at their own organisation's gateway.
pub fn eligible(fed: &Federation, claims: &Claims) -> bool {
    claims.via.is_none()
        && claims.session.is_some()
        && match claims.role {
            crate::auth::Role::Patient => true,
            crate::auth::Role::Member => claims.org == Some(fed.org()),
        }
}

/// The sort a federated merge follows (the query's `_sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Order {
    LastUpdated,
    LastUpdatedDesc,
    Date,
    DateDesc,
}

impl Order {
    fn of(params: &[(String, String)]) -> Result<Self, AppError> {
        match params
            .iter()
            .find(|(k, _)| k == "_sort")
            .map(|(_, v)| v.as_str())
        {
            None | Some("_lastUpdated") => Ok(Self::LastUpdated),
            Some("-_lastUpdated") => Ok(Self::LastUpdatedDesc),
            Some("date") => Ok(Self::Date),
            Some("-date") => Ok(Self::DateDesc),
            Some(_) => Err(AppError::NotSupported(
                "_sort supports _lastUpdated, -_lastUpdated, date and -date".into(),
            )),
        }
    }

    fn descending(self) -> bool {
        matches!(self, Self::LastUpdatedDesc | Self::DateDesc)
    }

    /// The sort value of a resource (microseconds).
    fn key(self, rt: ResourceType, resource: &Value) -> i64 {
        match self {
            Self::LastUpdated | Self::LastUpdatedDesc => resource["meta"]["lastUpdated"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(i64::MIN, |t| t.timestamp_micros()),
            Self::Date | Self::DateDesc => resource::search_fields(rt, resource)
                .date
                .map_or(i64::MIN, |d| d.start.timestamp_micros()),
        }
    }
}

/// One custodian's position in a federated search.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Position {
    org: Address,
    /// The custodian's own cursor of the page being served; `None`: the first page.
    start: Option<String>,
    /// Entries of that page already served (or left out).
    skip: usize,
    done: bool,
}

/// A federated search's sealed state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    user: Address,
    resource_type: String,
    purpose: String,
    params: Vec<(String, String)>,
    count: usize,
    order: Order,
    positions: Vec<Position>,
    exp: i64,
}

/// A match as one custodian served it: `None` when it was left out (not verified).
type Slot = Option<(i64, String, Value)>;

/// One page of one custodian.
struct SourcePage {
    slots: Vec<Slot>,
    next: Option<String>,
    total: Option<u64>,
    pending: usize,
    altered: usize,
}

/// What a federated search did, for the request's audit record (no PHI).
#[derive(Debug, Default)]
pub struct Report {
    /// Custodians asked (this gateway included).
    pub asked: usize,
    /// Custodians that did not answer or refused.
    pub failed: usize,
    /// Versions left out because their anchor did not verify.
    pub altered: usize,
    /// Versions left out because they are not anchored yet.
    pub pending: usize,
}

impl Report {
    /// The audit record's description.
    pub fn detail(&self) -> String {
        format!(
            "federated: {} custodians asked, {} failed, {} versions failed verification, {} not yet anchored",
            self.asked, self.failed, self.altered, self.pending
        )
    }
}

/// The custodian entry of this gateway itself.
fn this_gateway(state: &AppState, fed: &Federation, all: &[Custodian]) -> Custodian {
    all.iter()
        .find(|c| c.org == fed.org())
        .cloned()
        .map(|mut c| {
            c.url = state.base_url().to_owned();
            c
        })
        .unwrap_or_else(|| Custodian {
            org: fed.org(),
            name: "this gateway".into(),
            kind: 0,
            url: state.base_url().to_owned(),
        })
}

/// Runs a federated search (see the module documentation).
#[allow(clippy::too_many_arguments)] // each is a signed or decided field
pub async fn search(
    state: &AppState,
    fed: &Federation,
    claims: &Claims,
    session: &SignedSession,
    purpose: Purpose,
    resource_type: ResourceType,
    params: &[(String, String)],
    audit: &(dyn records::AuditSink + Sync),
) -> Result<(Value, Report), AppError> {
    let chain_id = state.chain().chain_id();
    state.consent().ensure_fresh()?;
    let directory = directory::custodians(state.pool(), chain_id).await?;
    let mut sst =
        match params
            .iter()
            .find(|(k, _)| k == "_cursor")
            .map(|(_, v)| v.as_str())
        {
            Some(token) => {
                if params
                    .iter()
                    .any(|(k, _)| !matches!(k.as_str(), "_cursor" | "_purpose" | "_format"))
                {
                    return Err(AppError::Invalid("a paging cursor is used alone".into()));
                }
                let sealed = token.strip_prefix(CURSOR_PREFIX).unwrap_or(token);
                let st: State = state
                    .cursors()
                    .open_state(sealed, CURSOR_AAD)
                    .filter(|s: &State| s.user == claims.sub && s.exp > Utc::now().timestamp())
                    .ok_or_else(|| {
                        AppError::Invalid("the paging cursor is invalid or has expired".into())
                    })?;
                if st.resource_type != resource_type.code() || st.purpose != purpose.code() {
                    return Err(AppError::Invalid(
                        "the paging cursor is for another search".into(),
                    ));
                }
                st
            }
            None => {
                let settings = state.records().settings();
                let count = match params.iter().find(|(k, _)| k == "_count") {
                    None => settings.default_page_size,
                    Some((_, v)) => v
                        .parse::<usize>()
                        .map_err(|_| AppError::Invalid("_count must be a number".into()))?
                        .clamp(1, settings.max_page_size),
                };
                let mut forwarded: Vec<(String, String)> = params
                    .iter()
                    .filter(|(k, _)| {
                        !APPLIED_HERE.contains(&k.as_str()) && k != "_count" && k != "_purpose"
                    })
                    .cloned()
                    .collect();
                forwarded.push(("_count".into(), count.to_string()));
                let mut positions = vec![Position {
                    org: fed.org(),
                    start: None,
                    skip: 0,
                    done: false,
                }];
                positions.extend(directory.iter().filter(|c| c.org != fed.org()).map(|c| {
                    Position {
                        org: c.org,
                        start: None,
                        skip: 0,
                        done: false,
                    }
                }));
                State {
                    user: claims.sub,
                    resource_type: resource_type.code().to_owned(),
                    purpose: purpose.code().to_owned(),
                    params: forwarded,
                    count,
                    order: Order::of(params)?,
                    positions,
                    exp: Utc::now().timestamp() + CURSOR_LIFETIME,
                }
            }
        };
    let applied_here: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| APPLIED_HERE.contains(&k.as_str()))
        .cloned()
        .collect();
    let me = this_gateway(state, fed, &directory);
    let mut report = Report::default();

    // This gateway first: a denial here is the chain's answer for every custodian.
    let local = match &sst.positions[0] {
        Position { done: true, .. } => None,
        position => {
            let local_params = match &position.start {
                None => sst.params.clone(),
                Some(token) => vec![("_cursor".to_owned(), token.clone())],
            };
            let request = state.records().request(claims, purpose, audit);
            match records::search(&request, resource_type, &local_params).await {
                Ok(bundle) => Some(read_page(&bundle, resource_type, sst.order)),
                Err(AppError::Gone(_)) => Some(SourcePage {
                    slots: Vec::new(),
                    next: None,
                    total: Some(0),
                    pending: 0,
                    altered: 0,
                }),
                Err(err) => return Err(err),
            }
        }
    };
    report.asked = 1;

    // The other custodians, in parallel.
    let query = |position: &Position| -> String {
        let pairs: Vec<(String, String)> = match &position.start {
            None => sst.params.clone(),
            Some(token) => vec![("_cursor".to_owned(), token.clone())],
        };
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    let mut asks = Vec::new();
    for (i, position) in sst.positions.iter().enumerate().skip(1) {
        if position.done {
            continue;
        }
        let Some(custodian) = directory.iter().find(|c| c.org == position.org).cloned() else {
            // No longer an active member with an endpoint: its records are not asked for.
            asks.push((
                i,
                None,
                Err(SourceError::Unavailable(
                    "no longer an active member with a published endpoint".into(),
                )),
            ));
            continue;
        };
        let target = format!("/{}?{}", resource_type.code(), query(position));
        asks.push((i, Some(custodian), Ok(target)));
    }
    report.asked += asks.len();
    let answers: Vec<(usize, Option<Custodian>, Result<SourcePage, SourceError>)> =
        futures::stream::iter(asks.into_iter().map(|(i, custodian, target)| async move {
            let page = match (&custodian, target) {
                (Some(c), Ok(target)) => {
                    ask_search(
                        state,
                        fed,
                        claims,
                        session,
                        purpose,
                        c,
                        &target,
                        resource_type,
                        sst.order,
                    )
                    .await
                }
                (_, Err(err)) => Err(err),
                (None, Ok(_)) => Err(SourceError::Unavailable("unknown custodian".into())),
            };
            (i, custodian, page)
        }))
        .buffer_unordered(fed.settings().concurrency.max(1))
        .collect()
        .await;

    // Every source's page, by position index; failures become outcome entries.
    let mut pages: Vec<Option<SourcePage>> = (0..sst.positions.len()).map(|_| None).collect();
    let mut sources: Vec<Option<Custodian>> = (0..sst.positions.len()).map(|_| None).collect();
    let mut outcomes = Vec::new();
    pages[0] = local;
    sources[0] = Some(me.clone());
    let mut answers = answers;
    answers.sort_by_key(|(i, _, _)| *i);
    for (i, custodian, page) in answers {
        let named = custodian.clone().unwrap_or_else(|| Custodian {
            org: sst.positions[i].org,
            name: "a former member".into(),
            kind: 0,
            url: String::new(),
        });
        match page {
            Ok(page) => pages[i] = Some(page),
            Err(err) => {
                report.failed += 1;
                outcomes.push(err.entry(&named));
            }
        }
        sources[i] = Some(named);
    }

    // Merge the verified matches in the search's order.
    let mut heads: Vec<usize> = sst.positions.iter().map(|p| p.skip).collect();
    let mut entries = Vec::with_capacity(sst.count);
    while entries.len() < sst.count {
        let mut best: Option<usize> = None;
        let mut blocked = false;
        for (i, page) in pages.iter().enumerate() {
            let Some(page) = page else { continue };
            // Entries left out are passed over.
            while heads[i] < page.slots.len() && page.slots[heads[i]].is_none() {
                heads[i] += 1;
            }
            if heads[i] >= page.slots.len() {
                // A custodian with more pages may hold the next entry: stop here.
                blocked |= page.next.is_some();
                continue;
            }
            let better = |b: usize| -> bool {
                let (Some((ka, ua, _)), Some((kb, ub, _))) = (
                    &page.slots[heads[i]],
                    pages[b].as_ref().and_then(|p| p.slots[heads[b]].as_ref()),
                ) else {
                    return false;
                };
                if sst.order.descending() {
                    (ka, ua) > (kb, ub)
                } else {
                    (ka, ua) < (kb, ub)
                }
            };
            if best.is_none_or(better) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        if blocked {
            break;
        }
        if let Some(Some((_, full_url, mut resource))) =
            pages[i].as_ref().map(|p| p.slots[heads[i]].clone())
        {
            if let Some(source) = &sources[i] {
                set_source(&mut resource, &source.url);
            }
            apply_here(&mut resource, &applied_here)?;
            entries.push(json!({
                "fullUrl": full_url,
                "resource": resource,
                "search": {"mode": "match"},
            }));
        }
        heads[i] += 1;
    }
    // Entries left out that this page passed over are reported once.
    for (i, page) in pages.iter().enumerate() {
        let Some(page) = page else { continue };
        let consumed_all = heads[i] >= page.slots.len();
        if consumed_all {
            report.altered += page.altered;
            report.pending += page.pending;
        }
        let position = &mut sst.positions[i];
        if consumed_all {
            match &page.next {
                Some(next) => {
                    position.start = Some(next.clone());
                    position.skip = 0;
                }
                None => position.done = true,
            }
        } else {
            position.skip = heads[i];
        }
    }
    if report.altered > 0 || report.pending > 0 {
        tracing::warn!(
            altered = report.altered,
            pending = report.pending,
            "versions from other custodians were left out of a federated search"
        );
    }
    for (i, page) in pages.iter().enumerate() {
        let (Some(page), Some(source)) = (page, &sources[i]) else {
            continue;
        };
        if page.altered > 0 {
            outcomes.push(super::outcome_entry(
                source,
                "error",
                "integrity",
                &format!(
                    "{} record version(s) did not match the custodian's anchor on chain and were left out",
                    page.altered
                ),
            ));
        }
        if page.pending > 0 {
            outcomes.push(super::outcome_entry(
                source,
                "information",
                "incomplete",
                &format!(
                    "{} record version(s) are not anchored on chain yet and were left out; ask again shortly",
                    page.pending
                ),
            ));
        }
    }
    let base = state.base_url();
    let name = resource_type.code();
    let mut links = vec![
        json!({"relation": "self", "url": format!("{base}/{name}?{}",
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish())}),
    ];
    if sst.positions.iter().any(|p| !p.done) {
        sst.exp = Utc::now().timestamp() + CURSOR_LIFETIME;
        let sealed = state.cursors().seal_state(&sst, CURSOR_AAD)?;
        links.push(json!({"relation": "next", "url": format!("{base}/{name}?_cursor={CURSOR_PREFIX}{sealed}")}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
    });
    // The total is known when every custodian answered the first page with one.
    let first_page = !params.iter().any(|(k, _)| k == "_cursor");
    if first_page && report.failed == 0 {
        let totals: Option<u64> = pages
            .iter()
            .map(|p| {
                p.as_ref().and_then(|p| {
                    p.total
                        .map(|t| t.saturating_sub((p.altered + p.pending) as u64))
                })
            })
            .sum();
        if let Some(total) = totals {
            bundle["total"] = json!(total);
        }
    }
    entries.extend(outcomes);
    bundle["entry"] = Value::Array(entries);
    Ok((bundle, report))
}

/// Sets `meta.source` (where the record came from).
fn set_source(resource: &mut Value, url: &str) {
    if let Some(obj) = resource.as_object_mut() {
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("source".into(), Value::String(url.to_owned()));
        }
    }
}

/// Applies `_summary` and `_elements` to a verified match.
fn apply_here(resource: &mut Value, params: &[(String, String)]) -> Result<(), AppError> {
    for (k, v) in params {
        match k.as_str() {
            "_summary" => {
                if let Ok(mode) = v.parse::<carechain_fhir::Summary>() {
                    carechain_fhir::summarize_in_place(resource, mode);
                }
            }
            "_elements" => {
                let elements: Vec<String> = v.split(',').map(|e| e.trim().to_owned()).collect();
                carechain_fhir::select_elements_in_place(resource, &elements)
                    .map_err(|err| AppError::Invalid(err.to_string()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The matches (this gateway's own, already verified) and the next cursor of a local page.
fn read_page(bundle: &Value, rt: ResourceType, order: Order) -> SourcePage {
    let mut slots = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        if entry["search"]["mode"] != "match" {
            continue;
        }
        let resource = entry["resource"].clone();
        let full_url = entry["fullUrl"].as_str().unwrap_or_default().to_owned();
        slots.push(Some((order.key(rt, &resource), full_url, resource)));
    }
    SourcePage {
        slots,
        next: next_cursor(bundle),
        total: bundle["total"].as_u64(),
        pending: 0,
        altered: 0,
    }
}

/// The `_cursor` of a Bundle's next link.
fn next_cursor(bundle: &Value) -> Option<String> {
    let link = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?;
    let url = url::Url::parse(link["url"].as_str()?).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.into_owned())
}

/// Sends one federated request; the response when it is a success.
async fn ask(
    state: &AppState,
    fed: &Federation,
    claims: &Claims,
    session: &SignedSession,
    purpose: Purpose,
    custodian: &Custodian,
    target: &str,
) -> Result<reqwest::Response, SourceError> {
    let url: carechain_tls::RedactedUrl = format!("{}{target}", custodian.url)
        .parse()
        .map_err(|_| SourceError::Unavailable("its endpoint URL is invalid".into()))?;
    let path = url.expose().path().to_owned();
    let signed_target = match url.expose().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let authorization = request::authorization(
        &fed.key,
        &fed.domain,
        custodian.org,
        claims.sub,
        session,
        "GET",
        &signed_target,
        Utc::now(),
    )?;
    let _ = state;
    let send = fed
        .peers
        .get(&url)
        .map_err(|e| SourceError::Unavailable(e.to_string()))?
        .header(reqwest::header::AUTHORIZATION, authorization)
        .header(reqwest::header::ACCEPT, "application/fhir+json")
        .header(crate::http::PURPOSE_HEADER.as_str(), purpose.code())
        .send();
    let response = tokio::time::timeout(fed.settings().timeout, send)
        .await
        .map_err(|_| {
            SourceError::Unavailable(format!(
                "no answer within {} ms",
                fed.settings().timeout.as_millis()
            ))
        })?
        .map_err(|err| {
            SourceError::Unavailable(if err.is_timeout() {
                format!("no answer within {} ms", fed.settings().timeout.as_millis())
            } else if err.is_connect() {
                "its gateway could not be reached".into()
            } else {
                "the connection failed".into()
            })
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: Value = tokio::time::timeout(fed.settings().timeout, response.json())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(Value::Null);
    let why = body["issue"][0]["diagnostics"]
        .as_str()
        .map(|d| d.chars().take(300).collect::<String>())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(SourceError::Refused(status.as_u16(), why))
}

/// Asks one custodian for a search page and verifies every match it returns.
#[allow(clippy::too_many_arguments)]
async fn ask_search(
    state: &AppState,
    fed: &Federation,
    claims: &Claims,
    session: &SignedSession,
    purpose: Purpose,
    custodian: &Custodian,
    target: &str,
    rt: ResourceType,
    order: Order,
) -> Result<SourcePage, SourceError> {
    let response = ask(state, fed, claims, session, purpose, custodian, target).await?;
    let bundle: Value = tokio::time::timeout(fed.settings().timeout, response.json())
        .await
        .map_err(|_| {
            SourceError::Unavailable("its answer was not complete within the time limit".into())
        })?
        .map_err(|_| SourceError::Refused(502, "its answer is not JSON".into()))?;
    if bundle["resourceType"] != "Bundle" || bundle["type"] != "searchset" {
        return Err(SourceError::Refused(
            502,
            "its answer is not a searchset Bundle".into(),
        ));
    }
    let mut page = SourcePage {
        slots: Vec::new(),
        next: next_cursor(&bundle),
        total: bundle["total"].as_u64(),
        pending: 0,
        altered: 0,
    };
    let mut roots: HashMap<B256, bool> = HashMap::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        if entry["search"]["mode"] != "match" {
            continue;
        }
        let resource = entry["resource"].clone();
        if resource["resourceType"] != rt.code() {
            page.altered += 1;
            page.slots.push(None);
            continue;
        }
        if crate::records::anchoring::AnchorState::of(&resource).is_pending() {
            page.pending += 1;
            page.slots.push(None);
            continue;
        }
        let proof = entry["extension"]
            .as_array()
            .and_then(|exts| exts.iter().find(|e| e["url"] == ANCHOR_PROOF_URL))
            .and_then(|e| e["valueString"].as_str())
            .and_then(AnchorProof::parse);
        match verify(state, custodian.org, &resource, proof.as_ref(), &mut roots).await {
            Ok(true) => {
                let full_url = entry["fullUrl"].as_str().unwrap_or_default().to_owned();
                page.slots
                    .push(Some((order.key(rt, &resource), full_url, resource)));
            }
            Ok(false) => {
                tracing::error!(custodian = %custodian.org, "a version from another custodian failed its anchor check; left out");
                page.altered += 1;
                page.slots.push(None);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(page)
}

/// Whether `resource` is anchored for `custodian` as `proof` says (roots already checked in
/// this page are not asked again).
async fn verify(
    state: &AppState,
    custodian: Address,
    resource: &Value,
    proof: Option<&AnchorProof>,
    roots: &mut HashMap<B256, bool>,
) -> Result<bool, SourceError> {
    let hash = canonical_hash(resource);
    let chain = state.chain();
    let unavailable = |_| {
        SourceError::Unavailable(
            "its records could not be verified: the chain is unreachable".into(),
        )
    };
    match proof {
        None => Ok(false),
        Some(AnchorProof::Single) => chain
            .verify_anchor(hash, custodian)
            .await
            .map_err(unavailable),
        Some(AnchorProof::Batch { root, proof }) => {
            if !carechain_contracts::merkle::verify(hash, proof, *root) {
                return Ok(false);
            }
            if let Some(known) = roots.get(root) {
                return Ok(*known);
            }
            let anchored = chain
                .verify_inclusion(hash, *root, proof.clone(), custodian)
                .await
                .map_err(unavailable)?;
            roots.insert(*root, anchored);
            Ok(anchored)
        }
    }
}

/// A read by id of a record this gateway does not hold: the other custodians are asked; the
/// first verified answer is served with `meta.source`. `Ok(None)`: nobody holds it (or would
/// show it); the list names the custodians that could not answer.
pub async fn read_elsewhere(
    state: &AppState,
    fed: &Federation,
    claims: &Claims,
    session: &SignedSession,
    purpose: Purpose,
    rt: ResourceType,
    id: &str,
) -> Result<(Option<(Value, Custodian)>, Vec<String>), AppError> {
    state.consent().ensure_fresh()?;
    let directory = directory::custodians(state.pool(), state.chain().chain_id()).await?;
    let target = format!("/{}/{id}", rt.code());
    let others: Vec<Custodian> = directory
        .into_iter()
        .filter(|c| c.org != fed.org())
        .collect();
    let mut answers = futures::stream::iter(others.into_iter().map(|custodian| {
        let target = target.clone();
        async move {
            let result = async {
                let response = ask(state, fed, claims, session, purpose, &custodian, &target).await?;
                let proof = response
                    .headers()
                    .get(ANCHOR_PROOF_HEADER.as_str())
                    .and_then(|v| v.to_str().ok())
                    .and_then(AnchorProof::parse);
                let resource: Value = tokio::time::timeout(fed.settings().timeout, response.json())
                    .await
                    .map_err(|_| SourceError::Unavailable("no complete answer in time".into()))?
                    .map_err(|_| SourceError::Refused(502, "its answer is not JSON".into()))?;
                if resource["resourceType"] != rt.code() || resource["id"] != id {
                    return Ok(None);
                }
                let mut roots = HashMap::new();
                if verify(state, custodian.org, &resource, proof.as_ref(), &mut roots).await? {
                    Ok(Some(resource))
                } else {
                    tracing::error!(custodian = %custodian.org, "a version from another custodian failed its anchor check; not served");
                    Ok(None)
                }
            }
            .await;
            (custodian, result)
        }
    }))
    .buffer_unordered(fed.settings().concurrency.max(1));
    let mut unavailable = Vec::new();
    while let Some((custodian, result)) = answers.next().await {
        match result {
            Ok(Some(mut resource)) => {
                set_source(&mut resource, &custodian.url);
                return Ok((Some((resource, custodian)), unavailable));
            }
            Ok(None) | Err(SourceError::Refused(404 | 403 | 410, _)) => {}
            Err(_) => unavailable.push(format!("{} ({})", custodian.name, custodian.url)),
        }
    }
    Ok((None, unavailable))
}
