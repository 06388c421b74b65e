//! What the portal reads from the chain's index: the consortium's directory of organisations
//! (names for people to recognise), a patient's delegates, and which custodian keeps each of a
//! patient's records. Read-only queries over tables the indexer and the record store own.

use crate::error::AppError;
use alloy::primitives::Address;
use carechain_contracts::{DelegateKind, OrgKind, Status};
use serde_json::{Value, json};
use sqlx::PgPool;

fn db_chain_id(chain_id: u64) -> Result<i64, AppError> {
    i64::try_from(chain_id)
        .map_err(|_| AppError::internal(std::io::Error::other("chain id out of range")))
}

fn hex(bytes: &[u8]) -> String {
    format!("0x{}", alloy::hex::encode(bytes))
}

fn kind_name(kind: i16) -> &'static str {
    u8::try_from(kind)
        .ok()
        .and_then(|k| OrgKind::try_from(k).ok())
        .map_or("Unknown", OrgKind::name)
}

/// Every organisation ever admitted, with its status (`active` or not) and its published
/// FHIR endpoint (where its records come from in a search across custodians), by name.
pub async fn organisations(pool: &PgPool, chain_id: u64) -> Result<Vec<Value>, AppError> {
    type Row = (Vec<u8>, i16, String, i16, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.org, o.kind, o.name, o.status, e.url FROM organisations o
         LEFT JOIN organisation_endpoints e ON e.chain_id = o.chain_id AND e.org = o.org
         WHERE o.chain_id = $1 ORDER BY o.name, o.org",
    )
    .bind(db_chain_id(chain_id)?)
    .fetch_all(pool)
    .await?;
    let active = i16::from(u8::from(Status::Active));
    Ok(rows
        .into_iter()
        .map(|(org, kind, name, status, endpoint)| {
            json!({
                "address": hex(&org),
                "name": name,
                "kind": kind_name(kind),
                "active": status == active,
                "endpoint": endpoint.filter(|u| !u.is_empty()).map(|u| u.trim_end_matches('/').to_owned()),
            })
        })
        .collect())
}

/// The active member keys of active organisations (`key`, `org`), so a page can name the
/// organisation behind a key seen in an access log. Public on chain (ProviderRegistry).
pub async fn member_keys(pool: &PgPool, chain_id: u64) -> Result<Vec<Value>, AppError> {
    let active = i16::from(u8::from(Status::Active));
    let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT m.member_key, m.org FROM members m
         JOIN organisations o ON o.chain_id = m.chain_id AND o.org = m.org
         WHERE m.chain_id = $1 AND m.status = $2 AND o.status = $2
         ORDER BY m.org, m.member_key",
    )
    .bind(db_chain_id(chain_id)?)
    .bind(active)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, org)| json!({"key": hex(&key), "organisation": hex(&org)}))
        .collect())
}

/// How the directory names `who`: an organisation by its name, a member key as a key of its
/// organisation; `None` for anyone else (a patient or delegate wallet).
pub async fn name_of(
    pool: &PgPool,
    chain_id: u64,
    who: Address,
) -> Result<Option<String>, AppError> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT o.name, o.org = $2 FROM organisations o
         WHERE o.chain_id = $1 AND (o.org = $2 OR o.org =
             (SELECT m.org FROM members m WHERE m.chain_id = $1 AND m.member_key = $2))
         LIMIT 1",
    )
    .bind(db_chain_id(chain_id)?)
    .bind(who.as_slice())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(name, is_org)| {
        if is_org {
            name
        } else {
            format!("a staff key of {name}")
        }
    }))
}

/// The patient's delegates as the index holds them (a removed one has no row), each with
/// whether it is in force now.
pub async fn delegates(
    pool: &PgPool,
    chain_id: u64,
    patient: Address,
) -> Result<Vec<Value>, AppError> {
    let rows: Vec<(Vec<u8>, i16, i64, bool)> = sqlx::query_as(
        "SELECT delegate, kind, valid_until, valid_until > extract(epoch FROM now())::bigint
         FROM delegates WHERE chain_id = $1 AND patient = $2 ORDER BY set_block DESC, delegate",
    )
    .bind(db_chain_id(chain_id)?)
    .bind(patient.as_slice())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(delegate, kind, until, active)| {
            let kind = u8::try_from(kind)
                .ok()
                .and_then(|k| DelegateKind::try_from(k).ok())
                .map_or("Unknown", DelegateKind::name);
            json!({
                "address": hex(&delegate),
                "kind": kind.to_ascii_lowercase(),
                "validUntil": crate::portal::words::instant(until),
                "active": active,
            })
        })
        .collect())
}

/// For each of the patient's current records (`Type/id`): the custodian organisation whose key
/// anchored the version served, and its name in the directory.
pub async fn custodians(
    pool: &PgPool,
    chain_id: u64,
    patient: Address,
) -> Result<Vec<Value>, AppError> {
    let rows: Vec<(String, String, Vec<u8>, Option<String>)> = sqlx::query_as(
        "SELECT r.resource_type, r.id, v.custodian, o.name
         FROM gateway_resources r
         JOIN gateway_resource_versions v
           ON v.resource_type = r.resource_type AND v.id = r.id AND v.version_id = r.version_id
         LEFT JOIN organisations o ON o.chain_id = $2 AND o.org = v.custodian
         WHERE r.patient = $1 AND NOT r.deleted
         ORDER BY r.resource_type, r.id",
    )
    .bind(format!("{patient:#x}"))
    .bind(db_chain_id(chain_id)?)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(rtype, id, custodian, name)| {
            json!({
                "reference": format!("{rtype}/{id}"),
                "custodian": hex(&custodian),
                "custodianName": name,
            })
        })
        .collect())
}
