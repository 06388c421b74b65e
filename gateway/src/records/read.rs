//! Reads: a record by id (`read`), one of its versions (`vread`) and its history.
//!
//! A read by id whose record's patient is known (a record never changes patient) and whose
//! allowing decision is cached at indexer cursor C is answered with one query that returns
//! the version only if the record is that patient's and the cursor is still C, in the same
//! snapshot: the decision still stands for exactly the state the data is read in. Anything
//! else takes the full path (patient and cursor, decision, then the version).

use super::{
    RecordRequest, Served, active_key, parse_patient,
    store::{self, KeyState, StoredVersion},
    verdict,
};
use crate::error::AppError;
use carechain_contracts::{Action, ResourceType};
use chrono::SecondsFormat;
use serde_json::{Value, json};

/// `GET [type]/[id]` and `GET [type]/[id]/_history/[vid]`.
pub async fn read(
    req: &RecordRequest<'_>,
    resource_type: ResourceType,
    id: &str,
    version: Option<i64>,
) -> Result<Served, AppError> {
    let name = resource_type.code();
    req.audit.entity(match version {
        Some(v) => format!("{name}/{id}/_history/{v}"),
        None => format!("{name}/{id}"),
    });
    // One connection for every query of the read, returned when they all succeeded.
    let mut conn = req.records.reads().acquire().await?;
    let found = match read_under_cached_decision(req, &mut conn, (resource_type, id, version))
        .await?
    {
        Some(found) => Some(found),
        None => {
            req.decide_read_of_record(&mut conn, resource_type, id)
                .await?;
            store::version_with_key(&mut conn, req.records.kek(), name, id, version, None).await?
        }
    };
    conn.release();
    let (stored, key) =
        found.ok_or_else(|| AppError::NotFound(format!("{name}/{id} has no such version")))?;
    if stored.deleted {
        return Err(AppError::Gone(format!("{name}/{id} was deleted")));
    }
    let key = active_key(key)?;
    req.records.open_verified_with(&stored, &key).await
}

/// The version a read asks for, in one query, when the record's patient is known and an
/// allowing decision for it is cached: returned only if the indexer's cursor is inside the
/// span that decision holds for (see `consent`'s module documentation). `None`: take the full
/// path.
async fn read_under_cached_decision(
    req: &RecordRequest<'_>,
    conn: &mut sqlx::PgConnection,
    (resource_type, id, version): (ResourceType, &str, Option<i64>),
) -> Result<Option<(StoredVersion, KeyState)>, AppError> {
    let Some(patient_text) = req.records.patients().get(resource_type, id) else {
        return Ok(None);
    };
    let key = req.key(parse_patient(&patient_text)?, resource_type, Action::Read);
    let Some((decision, cursor)) = req.records.consent().cached_allow(&key) else {
        return Ok(None);
    };
    let guard = store::DecisionGuard {
        patient: &patient_text,
        chain_id: req.records.chain().chain_id(),
        cursor,
    };
    let found = store::version_with_key(
        conn,
        req.records.kek(),
        resource_type.code(),
        id,
        version,
        Some(guard),
    )
    .await?;
    if found.is_some() {
        req.audit.patient(key.patient);
        verdict(decision, key, req.audit)?;
    }
    Ok(found)
}

/// `GET [type]/[id]/_history`: a history Bundle, newest first.
pub async fn history(
    req: &RecordRequest<'_>,
    resource_type: ResourceType,
    id: &str,
) -> Result<Value, AppError> {
    let name = resource_type.code();
    req.audit.entity(format!("{name}/{id}/_history"));
    let mut conn = req.records.reads().acquire().await?;
    req.decide_read_of_record(&mut conn, resource_type, id)
        .await?;
    conn.release();
    let limit = i64::try_from(req.records.settings().max_page_size).unwrap_or(100);
    let versions = store::history(req.records.pool(), name, id, limit).await?;
    let base = req.records.base_url();
    let mut entries = Vec::with_capacity(versions.len());
    for stored in &versions {
        let full_url = format!("{base}/{name}/{id}");
        let method = if stored.deleted {
            "DELETE"
        } else if stored.version_id == 1 {
            "POST"
        } else {
            "PUT"
        };
        let mut entry = json!({
            "fullUrl": full_url,
            "request": {"method": method, "url": format!("{name}/{id}")},
            "response": {
                "status": if stored.deleted { "204" } else if stored.version_id == 1 { "201" } else { "200" },
                "etag": format!("W/\"{}\"", stored.version_id),
                "lastModified": stored.last_updated.to_rfc3339_opts(SecondsFormat::Micros, true),
            }
        });
        if !stored.deleted {
            let served = req.records.open_verified(stored).await?;
            entry["resource"] = served.resource;
        }
        entries.push(entry);
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "entry": entries,
    }))
}
