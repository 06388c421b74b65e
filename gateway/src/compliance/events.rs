//! The AuditEvent index: the gateway's audit rows and the chain's own history (consent and
//! delegate changes, break-glass openings, organisation and member status changes) in one
//! searchable stream (`gateway_audit_events`), and the NDJSON export of the audit log.

use crate::{
    error::AppError,
    fhir::date::{DateFilter, Prefix},
    fhir::resource::normalize_address,
    paging::CursorCodec,
};
use alloy::primitives::Address;
use axum::body::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder};

/// Additional data of the sealed AuditEvent paging cursors.
const CURSOR_AAD: &[u8] = b"carechain/audit-event-cursor";

/// A parsed AuditEvent search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Patient (lower-case address).
    pub patient: Option<String>,
    /// Agent (lower-case address).
    pub agent: Option<String>,
    /// `date` filters as (prefix, start µs, end µs).
    pub dates: Vec<(String, i64, i64)>,
    /// Outcome codes (any of).
    pub outcome: Vec<String>,
    /// Subtype codes (any of).
    pub subtype: Vec<String>,
    /// Action codes (any of).
    pub action: Vec<String>,
    /// Entity references (any of).
    pub entity: Vec<String>,
    /// Purpose codes (any of).
    pub purpose: Vec<String>,
    /// Newest first.
    pub descending: bool,
    /// Page size.
    pub count: usize,
}

fn list(value: &str) -> Result<Vec<String>, AppError> {
    let values: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            // Token parameters may carry a system: only the code is matched.
            v.rsplit('|').next().unwrap_or(v).to_owned()
        })
        .collect();
    if values.is_empty() || values.len() > 50 {
        return Err(AppError::Invalid("a parameter needs 1 to 50 values".into()));
    }
    Ok(values)
}

fn address_param(name: &str, value: &str) -> Result<String, AppError> {
    let bare = value
        .strip_prefix("Patient/")
        .or_else(|| value.strip_prefix("Practitioner/"))
        .unwrap_or(value);
    normalize_address(bare).ok_or_else(|| {
        AppError::Invalid(format!("`{name}` must be a wallet address (0x + 40 hex)"))
    })
}

fn prefix_code(prefix: Prefix) -> &'static str {
    match prefix {
        Prefix::Eq => "eq",
        Prefix::Ne => "ne",
        Prefix::Gt => "gt",
        Prefix::Lt => "lt",
        Prefix::Ge => "ge",
        Prefix::Le => "le",
        Prefix::Sa => "sa",
        Prefix::Eb => "eb",
    }
}

impl AuditQuery {
    /// Parses the search parameters (without `_cursor`); unknown parameters are refused.
    pub fn parse(
        params: &[(String, String)],
        default_count: usize,
        max_count: usize,
    ) -> Result<Self, AppError> {
        let mut q = Self {
            count: default_count,
            ..Self::default()
        };
        for (name, value) in params {
            match name.as_str() {
                "patient" => q.patient = Some(address_param("patient", value)?),
                "agent" => q.agent = Some(address_param("agent", value)?),
                "date" => {
                    let f = DateFilter::parse(value)?;
                    q.dates.push((
                        prefix_code(f.prefix).to_owned(),
                        f.range.start.timestamp_micros(),
                        f.range.end.timestamp_micros(),
                    ));
                }
                "outcome" => q.outcome = list(value)?,
                "subtype" => q.subtype = list(value)?,
                "action" => q.action = list(value)?,
                "entity" => q.entity = list(value)?,
                "purpose" => q.purpose = list(value)?,
                "_count" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| AppError::Invalid("`_count` must be a number".into()))?;
                    q.count = n.min(max_count);
                }
                "_sort" => match value.as_str() {
                    "date" => q.descending = false,
                    "-date" => q.descending = true,
                    _ => {
                        return Err(AppError::NotSupported(
                            "AuditEvent sorts by `date` or `-date` only".into(),
                        ));
                    }
                },
                "_format" => {}
                other => {
                    return Err(AppError::NotSupported(format!(
                        "unknown AuditEvent search parameter `{}`",
                        other.chars().take(40).collect::<String>()
                    )));
                }
            }
        }
        Ok(q)
    }

    fn filters(&self, sql: &mut QueryBuilder<Postgres>) {
        sql.push(" FROM gateway_audit_events WHERE recorded IS NOT NULL");
        if let Some(p) = &self.patient {
            sql.push(" AND patient = ").push_bind(p.clone());
        }
        if let Some(a) = &self.agent {
            sql.push(" AND agent = ").push_bind(a.clone());
        }
        for (column, values) in [
            ("outcome", &self.outcome),
            ("subtype", &self.subtype),
            ("action", &self.action),
            ("purpose", &self.purpose),
        ] {
            if !values.is_empty() {
                sql.push(format!(" AND {column} = ANY("))
                    .push_bind(values.clone())
                    .push(")");
            }
        }
        if !self.entity.is_empty() {
            sql.push(" AND entities && ").push_bind(self.entity.clone());
        }
        for (prefix, start, end) in &self.dates {
            let start = DateTime::<Utc>::from_timestamp_micros(*start).unwrap_or_default();
            let end = DateTime::<Utc>::from_timestamp_micros(*end).unwrap_or_default();
            // `recorded` is an instant: the parameter's range either contains it or not.
            match prefix.as_str() {
                "ne" => {
                    sql.push(" AND NOT (recorded >= ").push_bind(start);
                    sql.push(" AND recorded < ").push_bind(end).push(")");
                }
                "gt" | "sa" => {
                    sql.push(" AND recorded >= ").push_bind(end);
                }
                "lt" | "eb" => {
                    sql.push(" AND recorded < ").push_bind(start);
                }
                "ge" => {
                    sql.push(" AND recorded >= ").push_bind(start);
                }
                "le" => {
                    sql.push(" AND recorded < ").push_bind(end);
                }
                _ => {
                    sql.push(" AND recorded >= ").push_bind(start);
                    sql.push(" AND recorded < ").push_bind(end);
                }
            }
        }
    }
}

/// One page of AuditEvents.
#[derive(Debug)]
pub struct AuditPage {
    /// Every match.
    pub total: i64,
    /// The page's AuditEvents.
    pub events: Vec<Value>,
    /// Cursor of the next page.
    pub next: Option<String>,
}

type EventRow = (
    String,
    DateTime<Utc>,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
    Option<Value>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
    Option<Vec<u8>>,
    Option<String>,
);

const EVENT_COLUMNS: &str = "SELECT id, recorded, subtype, action, outcome, agent, patient, purpose, \
     entities, event, chain_id, block_number, log_index, tx_hash, detail";

/// Resumes a search from its cursor (issued to `requester` only).
pub fn resume(
    codec: &CursorCodec,
    token: &str,
    requester: Address,
) -> Result<(AuditQuery, (i64, String)), AppError> {
    codec.open_cursor(token, CURSOR_AAD, requester)
}

/// Runs one page of `query` after the keyset position `after`.
pub async fn search(
    pool: &PgPool,
    codec: &CursorCodec,
    query: &AuditQuery,
    after: Option<&(i64, String)>,
    requester: Address,
) -> Result<AuditPage, AppError> {
    let mut count_sql = QueryBuilder::<Postgres>::new("SELECT count(*)");
    query.filters(&mut count_sql);
    let total: i64 = count_sql.build_query_scalar().fetch_one(pool).await?;
    let mut sql = QueryBuilder::<Postgres>::new(EVENT_COLUMNS);
    query.filters(&mut sql);
    let (cmp, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((micros, id)) = after {
        let at = DateTime::<Utc>::from_timestamp_micros(*micros)
            .ok_or_else(|| AppError::Invalid("the paging cursor is invalid".into()))?;
        sql.push(format!(" AND (recorded, id) {cmp} ("))
            .push_bind(at)
            .push(", ")
            .push_bind(id.clone())
            .push(")");
    }
    sql.push(format!(" ORDER BY recorded {dir}, id {dir} LIMIT "))
        .push_bind(i64::try_from(query.count + 1).unwrap_or(i64::MAX));
    let mut rows: Vec<EventRow> = if query.count == 0 {
        Vec::new()
    } else {
        sql.build_query_as().fetch_all(pool).await?
    };
    let more = rows.len() > query.count;
    rows.truncate(query.count);
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some(codec.seal_cursor(
            query,
            requester,
            (last.1.timestamp_micros(), last.0.clone()),
            CURSOR_AAD,
        )?),
        _ => None,
    };
    Ok(AuditPage {
        total,
        events: rows.into_iter().map(render).collect(),
        next,
    })
}

/// One AuditEvent by id, with its patient (for the access check).
pub async fn read(pool: &PgPool, id: &str) -> Result<Option<(Option<String>, Value)>, AppError> {
    let mut sql = QueryBuilder::<Postgres>::new(EVENT_COLUMNS);
    sql.push(" FROM gateway_audit_events WHERE id = ")
        .push_bind(id.to_owned());
    let row: Option<EventRow> = sql.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(|row| (row.6.clone(), render(row))))
}

fn wallet(value: &str) -> Value {
    json!({"identifier": {"system": "urn:carechain:wallet", "value": value}})
}

/// A row as a FHIR AuditEvent: the stored BALP event for gateway rows, an event built from the
/// chain log (with its transaction as proof) for chain rows.
fn render(row: EventRow) -> Value {
    let (
        id,
        recorded,
        subtype,
        action,
        outcome,
        agent,
        patient,
        purpose,
        entities,
        event,
        chain,
        block,
        log,
        tx,
        detail,
    ) = row;
    if let Some(event) = event {
        return event;
    }
    let mut agents = vec![json!({
        "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
        "who": {"display": "carechain contracts"},
        "requestor": false
    })];
    if let Some(agent) = &agent {
        agents.push(json!({"who": wallet(agent), "requestor": true}));
    }
    let mut entity_list: Vec<Value> = entities
        .iter()
        .filter(|e| !e.starts_with("Patient/"))
        .map(|e| json!({"what": {"reference": e}}))
        .collect();
    if let Some(patient) = &patient {
        entity_list.insert(
            0,
            json!({
                "what": {"reference": format!("Patient/{patient}")},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
            }),
        );
    }
    let mut proof = vec![
        json!({"type": "chain-id", "valueString": chain.unwrap_or_default().to_string()}),
        json!({"type": "block-number", "valueString": block.unwrap_or_default().to_string()}),
        json!({"type": "log-index", "valueString": log.unwrap_or_default().to_string()}),
        json!({"type": "tx-hash", "valueString": format!("0x{}", alloy::hex::encode(tx.unwrap_or_default()))}),
    ];
    if let Some(detail) = detail {
        proof.push(json!({"type": "detail", "valueString": detail}));
    }
    entity_list.push(json!({
        "what": {"display": "chain log entry"},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        "detail": proof
    }));
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": {"system": "urn:carechain:audit-source", "code": "chain", "display": "On-chain event"},
        "subtype": [{"system": "urn:carechain:audit-subtype", "code": subtype}],
        "action": action.unwrap_or_else(|| "E".into()),
        "recorded": recorded.to_rfc3339_opts(SecondsFormat::Secs, true),
        "outcome": outcome,
        "agent": agents,
        "source": {"observer": {"display": "carechain chain index"}},
        "entity": entity_list,
    });
    if let Some(purpose) = purpose {
        event["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}]);
    }
    event
}

/// Rows exported per database round trip, and per body chunk (about 1 MB): pages of 2000
/// rows (4 MB chunks) streamed ten times slower in the release profile.
const EXPORT_PAGE: i64 = 500;

/// The audit log rows `from..=to` as NDJSON (one stored AuditEvent per line), fetched page by
/// page as the client reads: memory stays bounded by one page whatever the range.
pub fn export_ndjson(
    pool: PgPool,
    from: u64,
    to: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let start = i64::try_from(from).unwrap_or(i64::MAX);
    let end = i64::try_from(to).unwrap_or(i64::MAX);
    futures::stream::unfold(Some(start), move |next| {
        let pool = pool.clone();
        async move {
            let next = next?;
            if next > end {
                return None;
            }
            let rows: Result<Vec<(i64, String)>, sqlx::Error> = sqlx::query_as(
                "SELECT seq, event::text FROM gateway_audit_log
                 WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            )
            .bind(next)
            .bind(end)
            .bind(EXPORT_PAGE)
            .fetch_all(&pool)
            .await;
            match rows {
                Err(err) => {
                    tracing::error!(%err, "audit export failed mid-stream");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let last = rows.last().map(|r| r.0).unwrap_or(end);
                    let mut buf = Vec::with_capacity(rows.iter().map(|r| r.1.len() + 1).sum());
                    for (_, event) in rows {
                        buf.extend_from_slice(event.as_bytes());
                        buf.push(b'\n');
                    }
                    Some((Ok(Bytes::from(buf)), Some(last + 1)))
                }
            }
        }
    })
}
