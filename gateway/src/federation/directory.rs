//! The consortium's directory, as this gateway's own index mirrors it from `ProviderRegistry`:
//! each active organisation's published FHIR endpoint (`EndpointSet`) and the keys its gateway
//! acts with (its active `Service` members). Nothing here asks another party: every member
//! follows the chain itself.

use crate::error::AppError;
use alloy::primitives::Address;
use carechain_contracts::{MemberRole, Status};
use serde::Serialize;
use sqlx::PgPool;

/// A member organisation with a published endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Custodian {
    /// The organisation.
    pub org: Address,
    /// Its registered name.
    pub name: String,
    /// Its organisation kind (`OrgKind` code).
    pub kind: i16,
    /// The base URL of its FHIR endpoint, without a trailing slash.
    pub url: String,
}

fn chain(chain_id: u64) -> Result<i64, AppError> {
    i64::try_from(chain_id)
        .map_err(|_| AppError::internal(std::io::Error::other("chain id out of range")))
}

fn address(bytes: &[u8]) -> Result<Address, AppError> {
    Address::try_from(bytes)
        .map_err(|_| AppError::internal(std::io::Error::other("indexed address is not 20 bytes")))
}

const ACTIVE: i16 = Status::Active as i16;

/// Every active organisation with a published endpoint, in address order.
pub async fn custodians(pool: &PgPool, chain_id: u64) -> Result<Vec<Custodian>, AppError> {
    let rows: Vec<(Vec<u8>, String, i16, String)> = sqlx::query_as(
        "SELECT o.org, o.name, o.kind, e.url FROM organisations o
         JOIN organisation_endpoints e ON e.chain_id = o.chain_id AND e.org = o.org
         WHERE o.chain_id = $1 AND o.status = $2 AND e.url <> ''
         ORDER BY o.org",
    )
    .bind(chain(chain_id)?)
    .bind(ACTIVE)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(org, name, kind, url)| {
            Ok(Custodian {
                org: address(&org)?,
                name,
                kind,
                url: url.trim_end_matches('/').to_owned(),
            })
        })
        .collect()
}

/// The organisation whose active gateway key `key` is: an active `Service` member of an active
/// organisation; `None` for anything else (a practitioner key, a suspended or retired key, a
/// suspended organisation's key, a stranger).
pub async fn gateway_org(
    pool: &PgPool,
    chain_id: u64,
    key: Address,
) -> Result<Option<Address>, AppError> {
    let org: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT m.org FROM members m
         JOIN organisations o ON o.chain_id = m.chain_id AND o.org = m.org
         WHERE m.chain_id = $1 AND m.member_key = $2 AND m.status = $3 AND o.status = $3
           AND m.role = $4",
    )
    .bind(chain(chain_id)?)
    .bind(key.as_slice())
    .bind(ACTIVE)
    .bind(MemberRole::Service as i16)
    .fetch_optional(pool)
    .await?;
    org.map(|o| address(&o)).transpose()
}

/// What the index says `account` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// An active member key of an active organisation.
    Member(Address),
    /// A registered key that is not usable (its own or its organisation's status).
    Inactive,
    /// Not a member key: a patient or delegate wallet.
    NotMember,
}

/// The standing of `account` in the index.
pub async fn standing(
    pool: &PgPool,
    chain_id: u64,
    account: Address,
) -> Result<Standing, AppError> {
    let row: Option<(Vec<u8>, i16, Option<i16>)> = sqlx::query_as(
        "SELECT m.org, m.status, o.status FROM members m
         LEFT JOIN organisations o ON o.chain_id = m.chain_id AND o.org = m.org
         WHERE m.chain_id = $1 AND m.member_key = $2",
    )
    .bind(chain(chain_id)?)
    .bind(account.as_slice())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Standing::NotMember,
        Some((org, ACTIVE, Some(ACTIVE))) => Standing::Member(address(&org)?),
        Some(_) => Standing::Inactive,
    })
}

/// The published endpoint of `org` when it is an active organisation.
pub async fn endpoint_of(
    pool: &PgPool,
    chain_id: u64,
    org: Address,
) -> Result<Option<String>, AppError> {
    let url: Option<String> = sqlx::query_scalar(
        "SELECT e.url FROM organisation_endpoints e
         JOIN organisations o ON o.chain_id = e.chain_id AND o.org = e.org
         WHERE e.chain_id = $1 AND e.org = $2 AND o.status = $3 AND e.url <> ''",
    )
    .bind(chain(chain_id)?)
    .bind(org.as_slice())
    .bind(ACTIVE)
    .fetch_optional(pool)
    .await?;
    Ok(url.map(|u| u.trim_end_matches('/').to_owned()))
}
