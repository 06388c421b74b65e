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
    directory::Custodian,
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

/// What a federated search is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A type of records, each version checked against its custodian's anchor.
    Records(ResourceType),
    /// The custodians' audit logs for a patient (`AuditEvent?patient=`): the patient's access
    /// log at every custodian. The chain's own events (ids `chain-…`) every member's index
    /// holds alike are served once, from this gateway.
    AuditLog,
}

impl Kind {
    /// The FHIR type searched.
    pub fn code(self) -> &'static str {
        match self {
            Self::Records(rt) => rt.code(),
            Self::AuditLog => "AuditEvent",
        }
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
    fn key(self, kind: Kind, resource: &Value) -> i64 {
        let instant = |value: &Value| {
            value
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(i64::MIN, |t| t.timestamp_micros())
        };
        match (self, kind) {
            (_, Kind::AuditLog) => instant(&resource["recorded"]),
            (Self::LastUpdated | Self::LastUpdatedDesc, _) => {
                instant(&resource["meta"]["lastUpdated"])
            }
            (Self::Date | Self::DateDesc, Kind::Records(rt)) => {
                resource::search_fields(rt, resource)
                    .date
                    .map_or(i64::MIN, |d| d.start.timestamp_micros())
            }
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
    /// What every source is asked (its `_count` is the per-source page size).
    params: Vec<(String, String)>,
    /// `_summary` and `_elements`, applied here.
    applied: Vec<(String, String)>,
    /// The merged page size.
    count: usize,
    order: Order,
    positions: Vec<Position>,
    exp: i64,
}

/// An entry as one custodian served it: a verified match (sort key, full URL, resource), or
/// left out.
enum Slot {
    Match(i64, String, Value),
    /// Its anchor did not verify (or it is not what was asked for).
    Altered,
    /// Not anchored yet.
    Pending,
    /// Served by this gateway already (a chain event in every member's audit index).
    Duplicate,
}

impl Slot {
    fn matched(&self) -> Option<(&i64, &String, &Value)> {
        match self {
            Self::Match(key, url, resource) => Some((key, url, resource)),
            _ => None,
        }
    }
}

/// One page of one custodian.
struct SourcePage {
    slots: Vec<Slot>,
    next: Option<String>,
    total: Option<u64>,
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
    kind: Kind,
    params: &[(String, String)],
    audit: &(dyn records::AuditSink + Sync),
) -> Result<(Value, Report), AppError> {
    let chain_id = state.chain().chain_id();
    state.consent().ensure_fresh()?;
    let directory = fed
        .directory()
        .custodians(state.pool(), chain_id, state.consent().change_generation())
        .await?;
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
                if st.resource_type != kind.code() || st.purpose != purpose.code() {
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
                // Each source is asked for its share of a page and a half (its next page when
                // the merge needs more), not for a whole page each.
                let sources = 1 + directory.iter().filter(|c| c.org != fed.org()).count();
                let share = (count.div_ceil(sources) + count.div_ceil(2 * sources)).clamp(1, count);
                forwarded.push(("_count".into(), share.to_string()));
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
                    resource_type: kind.code().to_owned(),
                    purpose: purpose.code().to_owned(),
                    params: forwarded,
                    applied: params
                        .iter()
                        .filter(|(k, _)| APPLIED_HERE.contains(&k.as_str()))
                        .cloned()
                        .collect(),
                    count,
                    order: Order::of(params)?,
                    positions,
                    exp: Utc::now().timestamp() + CURSOR_LIFETIME,
                }
            }
        };
    let me = this_gateway(state, fed, &directory);
    let mut report = Report::default();

    // Every source: this gateway first, then the other custodians of the search.
    let mut sources: Vec<Source> = sst
        .positions
        .iter()
        .enumerate()
        .map(|(i, position)| {
            let custodian = if i == 0 {
                Some(me.clone())
            } else {
                directory.iter().find(|c| c.org == position.org).cloned()
            };
            Source {
                custodian: custodian.clone().unwrap_or_else(|| Custodian {
                    org: position.org,
                    name: "a former member".into(),
                    kind: 0,
                    url: String::new(),
                }),
                active: custodian.is_some(),
                pages: Vec::new(),
                failed: None,
            }
        })
        .collect();
    let ctx = Fetch {
        state,
        fed,
        claims,
        session,
        purpose,
        audit,
        kind,
        order: sst.order,
        params: &sst.params,
    };
    // This gateway first: a denial here is the chain's answer for every custodian.
    if !sst.positions[0].done {
        let start = sst.positions[0].start.clone();
        let page = ctx.local(start.as_deref()).await?;
        sources[0].pages.push((start, page));
    }
    let first: Vec<(usize, Option<String>)> = sst
        .positions
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, p)| !p.done)
        .map(|(i, p)| (i, p.start.clone()))
        .collect();
    report.asked = 1 + first.len();
    ctx.fetch_remote(&mut sources, first).await;

    // Merge the verified matches in the search's order. A source whose fetched pages are used
    // up while it has more is asked for its next page (a few rounds at most).
    let mut heads: Vec<usize> = sst.positions.iter().map(|p| p.skip).collect();
    let mut picked: Vec<(usize, usize)> = Vec::with_capacity(sst.count);
    for round in 0..=MORE_ROUNDS {
        let mut blocked = Vec::new();
        while picked.len() < sst.count {
            let mut best: Option<usize> = None;
            blocked.clear();
            for (i, source) in sources.iter().enumerate() {
                if source.failed.is_some() {
                    continue;
                }
                // Entries left out are passed over.
                while heads[i] < source.len() && source.slot(heads[i]).matched().is_none() {
                    heads[i] += 1;
                }
                if heads[i] >= source.len() {
                    if source.more().is_some() {
                        blocked.push(i);
                    }
                    continue;
                }
                let better = |b: usize| -> bool {
                    let (Some((ka, ua, _)), Some((kb, ub, _))) = (
                        source.slot(heads[i]).matched(),
                        sources[b].slot(heads[b]).matched(),
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
            // A source with more pages may hold the next entry: fetch them first.
            let Some(i) = best.filter(|_| blocked.is_empty()) else {
                break;
            };
            picked.push((i, heads[i]));
            heads[i] += 1;
        }
        if picked.len() >= sst.count || blocked.is_empty() || round == MORE_ROUNDS {
            break;
        }
        let more: Vec<(usize, Option<String>)> = blocked
            .iter()
            .map(|&i| (i, sources[i].more().map(str::to_owned)))
            .collect();
        if more.iter().any(|(i, _)| *i == 0) {
            let start = sources[0].more().map(str::to_owned);
            let page = ctx.local(start.as_deref()).await?;
            sources[0].pages.push((start, page));
        }
        ctx.fetch_remote(
            &mut sources,
            more.into_iter().filter(|(i, _)| *i != 0).collect(),
        )
        .await;
    }
    let mut entries = Vec::with_capacity(picked.len());
    for (i, h) in picked {
        if let Some((_, full_url, resource)) = sources[i].slot(h).matched() {
            let mut resource = resource.clone();
            set_source(&mut resource, &sources[i].custodian.url);
            apply_here(&mut resource, &sst.applied)?;
            entries.push(json!({
                "fullUrl": full_url,
                "resource": resource,
                "search": {"mode": "match"},
            }));
        }
    }

    // Where each source stands now, and what it left out on the way.
    let mut outcomes = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        if let Some(err) = &source.failed {
            report.failed += 1;
            outcomes.push(err.entry(&source.custodian));
            continue;
        }
        if source.pages.is_empty() {
            continue;
        }
        let (mut altered, mut pending) = (0, 0);
        for h in sst.positions[i].skip..heads[i].min(source.len()) {
            match source.slot(h) {
                Slot::Altered => altered += 1,
                Slot::Pending => pending += 1,
                Slot::Match(..) | Slot::Duplicate => {}
            }
        }
        report.altered += altered;
        report.pending += pending;
        if altered > 0 {
            outcomes.push(super::outcome_entry(
                &source.custodian,
                "error",
                "integrity",
                &format!(
                    "{altered} record version(s) did not match the custodian's anchor on chain and were left out"
                ),
            ));
        }
        if pending > 0 {
            outcomes.push(super::outcome_entry(
                &source.custodian,
                "information",
                "incomplete",
                &format!(
                    "{pending} record version(s) are not anchored on chain yet and were left out; ask again shortly"
                ),
            ));
        }
        sst.positions[i] = source.position_after(heads[i]);
    }
    if report.altered > 0 || report.pending > 0 {
        tracing::warn!(
            altered = report.altered,
            pending = report.pending,
            "versions from other custodians were left out of a federated search"
        );
    }
    let base = state.base_url();
    let name = kind.code();
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
    if first_page && report.failed == 0 && kind != Kind::AuditLog {
        let totals: Option<u64> = sources
            .iter()
            .map(|s| s.pages.first().and_then(|(_, p)| p.total))
            .sum();
        if let Some(total) = totals {
            bundle["total"] = json!(total);
        }
    }
    entries.extend(outcomes);
    bundle["entry"] = Value::Array(entries);
    Ok((bundle, report))
}

/// Rounds of asking sources for their next page within one federated page.
const MORE_ROUNDS: usize = 4;

/// One source of a federated page: what it answered in this request.
struct Source {
    custodian: Custodian,
    /// Still an active member with an endpoint (this gateway always is).
    active: bool,
    /// The pages fetched in this request, each with the cursor it started at.
    pages: Vec<(Option<String>, SourcePage)>,
    failed: Option<SourceError>,
}

impl Source {
    fn len(&self) -> usize {
        self.pages.iter().map(|(_, p)| p.slots.len()).sum()
    }

    fn slot(&self, mut h: usize) -> &Slot {
        for (_, page) in &self.pages {
            if h < page.slots.len() {
                return &page.slots[h];
            }
            h -= page.slots.len();
        }
        &Slot::Pending
    }

    /// The cursor of the page after the last one fetched, when there is one.
    fn more(&self) -> Option<&str> {
        self.pages.last().and_then(|(_, p)| p.next.as_deref())
    }

    /// The position after `head` entries of the fetched pages.
    fn position_after(&self, head: usize) -> Position {
        let org = self.custodian.org;
        let mut offset = 0;
        for (start, page) in &self.pages {
            if head < offset + page.slots.len() {
                return Position {
                    org,
                    start: start.clone(),
                    skip: head - offset,
                    done: false,
                };
            }
            offset += page.slots.len();
        }
        match self.more() {
            Some(next) => Position {
                org,
                start: Some(next.to_owned()),
                skip: 0,
                done: false,
            },
            None => Position {
                org,
                start: None,
                skip: 0,
                done: true,
            },
        }
    }
}

/// What fetching a source's page needs.
struct Fetch<'a> {
    state: &'a AppState,
    fed: &'a Federation,
    claims: &'a Claims,
    session: &'a SignedSession,
    purpose: Purpose,
    audit: &'a (dyn records::AuditSink + Sync),
    kind: Kind,
    order: Order,
    params: &'a [(String, String)],
}

impl Fetch<'_> {
    /// The query of a page: the search's parameters, or a source's own cursor.
    fn query(&self, start: Option<&str>) -> Vec<(String, String)> {
        match start {
            None => self.params.to_vec(),
            Some(token) => vec![("_cursor".to_owned(), token.to_owned())],
        }
    }

    /// A page of this gateway's own records (already verified by the record service).
    async fn local(&self, start: Option<&str>) -> Result<SourcePage, AppError> {
        let answer = match self.kind {
            Kind::Records(rt) => {
                let request = self
                    .state
                    .records()
                    .request(self.claims, self.purpose, self.audit);
                records::search(&request, rt, &self.query(start)).await
            }
            Kind::AuditLog => {
                crate::http::compliance::audit_event_search(
                    self.state,
                    self.claims,
                    &self.query(start),
                    self.audit,
                )
                .await
            }
        };
        match answer {
            Ok(bundle) => Ok(read_page(&bundle, self.kind, self.order)),
            // The patient's records were erased here: none of this custodian's.
            Err(AppError::Gone(_)) => Ok(SourcePage {
                slots: Vec::new(),
                next: None,
                total: Some(0),
            }),
            Err(err) => Err(err),
        }
    }

    /// Pages of other custodians, in parallel; a failure marks the source.
    async fn fetch_remote(&self, sources: &mut [Source], wanted: Vec<(usize, Option<String>)>) {
        let asks: Vec<(usize, Option<String>, Option<Custodian>)> = wanted
            .into_iter()
            .map(|(i, start)| {
                let custodian = sources[i].active.then(|| sources[i].custodian.clone());
                (i, start, custodian)
            })
            .collect();
        let answers: Vec<(usize, Option<String>, Result<SourcePage, SourceError>)> =
            futures::stream::iter(asks.into_iter().map(|(i, start, custodian)| async move {
                let page = match &custodian {
                    None => Err(SourceError::Unavailable(
                        "no longer an active member with a published endpoint".into(),
                    )),
                    Some(c) => {
                        let query = url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(self.query(start.as_deref()))
                            .finish();
                        let target = format!("/{}?{query}", self.kind.code());
                        ask_search(
                            self.state,
                            self.fed,
                            self.claims,
                            self.session,
                            self.purpose,
                            c,
                            &target,
                            self.kind,
                            self.order,
                        )
                        .await
                    }
                };
                (i, start, page)
            }))
            .buffer_unordered(self.fed.settings().concurrency.max(1))
            .collect()
            .await;
        for (i, start, page) in answers {
            match page {
                Ok(page) => sources[i].pages.push((start, page)),
                Err(err) => sources[i].failed = Some(err),
            }
        }
    }
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
fn read_page(bundle: &Value, kind: Kind, order: Order) -> SourcePage {
    let mut slots = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        if entry["search"]["mode"] != "match" {
            continue;
        }
        let resource = entry["resource"].clone();
        let full_url = entry["fullUrl"].as_str().unwrap_or_default().to_owned();
        slots.push(Slot::Match(order.key(kind, &resource), full_url, resource));
    }
    SourcePage {
        slots,
        next: next_cursor(bundle),
        total: bundle["total"].as_u64(),
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
    kind: Kind,
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
    };
    let mut roots: HashMap<B256, bool> = HashMap::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        if entry["search"]["mode"] != "match" {
            continue;
        }
        let resource = entry["resource"].clone();
        if resource["resourceType"] != kind.code() {
            page.slots.push(Slot::Altered);
            continue;
        }
        if kind == Kind::AuditLog {
            // An audit event is the custodian's own record of a request (its log is hash-
            // chained and anchored under its own sequence); the chain's events are here too.
            let chain_event = resource["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("chain-"));
            page.slots.push(if chain_event {
                Slot::Duplicate
            } else {
                let full_url = entry["fullUrl"].as_str().unwrap_or_default().to_owned();
                Slot::Match(order.key(kind, &resource), full_url, resource)
            });
            continue;
        }
        if crate::records::anchoring::AnchorState::of(&resource).is_pending() {
            page.slots.push(Slot::Pending);
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
                    .push(Slot::Match(order.key(kind, &resource), full_url, resource));
            }
            Ok(false) => {
                tracing::error!(custodian = %custodian.org, "a version from another custodian failed its anchor check; left out");
                page.slots.push(Slot::Altered);
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
    let directory = fed
        .directory()
        .custodians(
            state.pool(),
            state.chain().chain_id(),
            state.consent().change_generation(),
        )
        .await?;
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
