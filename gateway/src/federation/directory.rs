//! The consortium's directory, as this gateway's own index mirrors it from `ProviderRegistry`:
//! each active organisation's published FHIR endpoint (`EndpointSet`) and the keys its gateway
//! acts with (its active `Service` members). Nothing here asks another party: every member
//! follows the chain itself.

use crate::error::AppError;
use alloy::primitives::Address;
use carechain_contracts::{MemberRole, Status};
use serde::Serialize;
use sqlx::PgPool;
use std::{collections::HashMap, sync::Mutex};

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

/// The directory lookups of federated requests, remembered while the index announces no
/// membership or consent change (the consent service's change generation): a suspension,
/// a new key or a new endpoint drops them all, and nothing is remembered while the index's
/// notification stream is down.
#[derive(Debug, Default)]
pub struct DirectoryCache {
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    generation: u64,
    custodians: Option<Vec<Custodian>>,
    gateway_orgs: HashMap<Address, Option<Address>>,
    standings: HashMap<Address, Standing>,
    endpoints: HashMap<Address, Option<String>>,
}

/// Entries of one kind remembered at most (beyond, the cache starts over).
const CACHE_LIMIT: usize = 10_000;

impl DirectoryCache {
    fn get<T: Clone>(
        &self,
        generation: Option<u64>,
        read: impl FnOnce(&CacheState) -> Option<T>,
    ) -> Option<T> {
        let generation = generation?;
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.generation == generation)
            .then(|| read(&state))
            .flatten()
    }

    fn put(&self, generation: Option<u64>, write: impl FnOnce(&mut CacheState)) {
        let Some(generation) = generation else { return };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.generation != generation {
            *state = CacheState {
                generation,
                ..CacheState::default()
            };
        }
        if state.gateway_orgs.len() + state.standings.len() + state.endpoints.len() > CACHE_LIMIT {
            *state = CacheState {
                generation,
                ..CacheState::default()
            };
        }
        write(&mut state);
    }

    /// [`custodians`], remembered.
    pub async fn custodians(
        &self,
        pool: &PgPool,
        chain_id: u64,
        generation: Option<u64>,
    ) -> Result<Vec<Custodian>, AppError> {
        if let Some(hit) = self.get(generation, |s| s.custodians.clone()) {
            return Ok(hit);
        }
        let list = custodians(pool, chain_id).await?;
        self.put(generation, |s| s.custodians = Some(list.clone()));
        Ok(list)
    }

    /// [`gateway_org`], remembered.
    pub async fn gateway_org(
        &self,
        pool: &PgPool,
        chain_id: u64,
        generation: Option<u64>,
        key: Address,
    ) -> Result<Option<Address>, AppError> {
        if let Some(hit) = self.get(generation, |s| s.gateway_orgs.get(&key).copied()) {
            return Ok(hit);
        }
        let org = gateway_org(pool, chain_id, key).await?;
        self.put(generation, |s| {
            s.gateway_orgs.insert(key, org);
        });
        Ok(org)
    }

    /// [`standing`], remembered.
    pub async fn standing(
        &self,
        pool: &PgPool,
        chain_id: u64,
        generation: Option<u64>,
        account: Address,
    ) -> Result<Standing, AppError> {
        if let Some(hit) = self.get(generation, |s| s.standings.get(&account).copied()) {
            return Ok(hit);
        }
        let standing = standing(pool, chain_id, account).await?;
        self.put(generation, |s| {
            s.standings.insert(account, standing);
        });
        Ok(standing)
    }

    /// [`endpoint_of`], remembered.
    pub async fn endpoint_of(
        &self,
        pool: &PgPool,
        chain_id: u64,
        generation: Option<u64>,
        org: Address,
    ) -> Result<Option<String>, AppError> {
        if let Some(hit) = self.get(generation, |s| s.endpoints.get(&org).cloned()) {
            return Ok(hit);
        }
        let url = endpoint_of(pool, chain_id, org).await?;
        self.put(generation, |s| {
            s.endpoints.insert(org, url.clone());
        });
        Ok(url)
    }
}

/// A member organisation as the directory shows it (FHIR `Organization` and `Endpoint`).
#[derive(Debug, Clone)]
pub struct Listing {
    /// The organisation.
    pub org: Address,
    /// Its registered name.
    pub name: String,
    /// `OrgKind` code.
    pub kind: i16,
    /// `Status` code.
    pub status: i16,
    /// Its published endpoint (empty: none).
    pub url: String,
    /// Its active gateway (`Service`) keys.
    pub gateway_keys: Vec<Address>,
}

/// Every organisation ever admitted, with its endpoint and gateway keys, in address order.
pub async fn listings(pool: &PgPool, chain_id: u64) -> Result<Vec<Listing>, AppError> {
    type Row = (Vec<u8>, String, i16, i16, Option<String>, Vec<Vec<u8>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.org, o.name, o.kind, o.status, e.url,
                COALESCE(array_agg(m.member_key ORDER BY m.member_key)
                         FILTER (WHERE m.member_key IS NOT NULL), '{}')
         FROM organisations o
         LEFT JOIN organisation_endpoints e ON e.chain_id = o.chain_id AND e.org = o.org
         LEFT JOIN members m ON m.chain_id = o.chain_id AND m.org = o.org
              AND m.role = $2 AND m.status = $3
         WHERE o.chain_id = $1
         GROUP BY o.org, o.name, o.kind, o.status, e.url
         ORDER BY o.org",
    )
    .bind(chain(chain_id)?)
    .bind(MemberRole::Service as i16)
    .bind(ACTIVE)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(org, name, kind, status, url, keys)| {
            Ok(Listing {
                org: address(&org)?,
                name,
                kind,
                status,
                url: url.unwrap_or_default().trim_end_matches('/').to_owned(),
                gateway_keys: keys.iter().map(|k| address(k)).collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// The FHIR id of an organisation (and of its endpoint): its address, `0x` and lower-case hex.
pub fn fhir_id(org: Address) -> String {
    format!("{org:#x}")
}

impl Listing {
    fn active(&self) -> bool {
        self.status == ACTIVE
    }

    /// The FHIR R4 `Organization`.
    pub fn organization(&self) -> serde_json::Value {
        let kind = u8::try_from(self.kind)
            .ok()
            .and_then(|k| carechain_contracts::OrgKind::try_from(k).ok());
        // HL7 organization-type codes where one fits.
        let code = match kind {
            Some(carechain_contracts::OrgKind::Hospital | carechain_contracts::OrgKind::Clinic) => {
                ("prov", "Healthcare Provider")
            }
            Some(carechain_contracts::OrgKind::Insurer) => ("ins", "Insurance Company"),
            Some(carechain_contracts::OrgKind::Research) => ("edu", "Educational Institute"),
            Some(carechain_contracts::OrgKind::Compliance) => ("govt", "Government"),
            _ => ("other", "Other"),
        };
        let mut organization = serde_json::json!({
            "resourceType": "Organization",
            "id": fhir_id(self.org),
            "identifier": [{"system": "urn:carechain:wallet", "value": fhir_id(self.org)}],
            "active": self.active(),
            "type": [{
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": code.0, "display": code.1}],
                "text": kind.map_or("Unknown", carechain_contracts::OrgKind::name),
            }],
            "name": self.name,
        });
        if !self.url.is_empty() {
            organization["endpoint"] =
                serde_json::json!([{"reference": format!("Endpoint/{}", fhir_id(self.org))}]);
        }
        organization
    }

    /// The FHIR R4 `Endpoint` of its gateway, when it published one.
    pub fn endpoint(&self) -> Option<serde_json::Value> {
        if self.url.is_empty() {
            return None;
        }
        let keys: Vec<serde_json::Value> = self
            .gateway_keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "url": "urn:carechain:gateway-key",
                    "valueIdentifier": {"system": "urn:carechain:wallet", "value": fhir_id(*k)}
                })
            })
            .collect();
        let mut endpoint = serde_json::json!({
            "resourceType": "Endpoint",
            "id": fhir_id(self.org),
            "status": if self.active() { "active" } else { "suspended" },
            "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "hl7-fhir-rest"},
            "name": format!("{} FHIR R4 gateway", self.name),
            "managingOrganization": {"reference": format!("Organization/{}", fhir_id(self.org))},
            "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "any"}]}],
            "payloadMimeType": ["application/fhir+json"],
            "address": self.url,
        });
        if !keys.is_empty() {
            endpoint["extension"] = serde_json::Value::Array(keys);
        }
        Some(endpoint)
    }
}
