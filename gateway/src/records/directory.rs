//! The consortium's directory resources: Organization, Practitioner, PractitionerRole, Location
//! and Medication (`carechain_contracts::codes::DIRECTORY_RESOURCE_TYPES`).
//!
//! They hold no patient data and have no consent bit: any active member reads them, and a
//! member writes them for its organisation (an EHR's export brings its hospitals and
//! clinicians along with the patient's records). They are stored like records, in the same
//! tables, under the compartment [`DIRECTORY_COMPARTMENT`] instead of a patient's address:
//! encrypted under that compartment's data key, hashed, anchored by the custodian in groups
//! and verified on every read, so nothing about integrity differs. Their identifiers are
//! indexed (as keyed hashes, like every token) so that conditional references such as
//! `Organization?identifier=https://github.com/synthetichealth/synthea|<uuid>` and
//! `ifNoneExist` find them.

use super::{
    RecordRequest, Served, active_key, compartment, new_id, stamp,
    store::{self, NewVersion},
};
use crate::{chain::Membership, error::AppError, fhir::resource};
use alloy::primitives::Address;
use carechain_formats::canonical::canonical_hash;
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;

/// The `patient` column of directory resources: not an address, so it never names a patient.
pub const DIRECTORY_COMPARTMENT: &str = "directory";

impl RecordRequest<'_> {
    /// The requester's organisation, when the requester is a member key that is active on
    /// chain now (a suspension takes effect at once, as for every decision); else 403.
    pub(super) async fn require_member(&self) -> Result<Address, AppError> {
        if self.claims.role != crate::auth::Role::Member {
            return Err(AppError::Forbidden(
                "the directory (Organization, Practitioner, Location, ...) is for consortium members"
                    .into(),
            ));
        }
        let membership = self
            .records
            .chain()
            .membership(self.claims.sub)
            .await
            .map_err(|err| {
                tracing::warn!(%err, "membership check unavailable");
                AppError::Unavailable("the chain is unreachable")
            })?;
        match membership {
            Membership::Active { org } => Ok(org),
            _ => Err(AppError::Forbidden(
                "the key or its organisation is not active".into(),
            )),
        }
    }
}

/// `GET [type]/[id]` (and `/_history/[vid]`) of a directory resource, for members.
pub async fn read(
    req: &RecordRequest<'_>,
    name: &'static str,
    id: &str,
    version: Option<i64>,
) -> Result<Served, AppError> {
    req.audit.entity(match version {
        Some(v) => format!("{name}/{id}/_history/{v}"),
        None => format!("{name}/{id}"),
    });
    req.require_member().await?;
    let mut conn = req.records.reads().acquire().await?;
    let found =
        store::version_with_key(&mut conn, req.records.kek(), name, id, version, None).await?;
    conn.release();
    let (stored, key) = found
        .filter(|(stored, _)| stored.patient == DIRECTORY_COMPARTMENT)
        .ok_or_else(|| AppError::NotFound(format!("{name}/{id} has no such version")))?;
    if stored.deleted {
        return Err(AppError::Gone(format!("{name}/{id} was deleted")));
    }
    req.records
        .open_verified_with(&stored, &active_key(key)?)
        .await
}

/// `POST [type]` of a directory resource, by a member for its organisation.
pub async fn create(
    req: &RecordRequest<'_>,
    name: &'static str,
    mut body: Value,
) -> Result<Served, AppError> {
    let stored_type = resource::StoredType::Directory(name);
    resource::check_body_type(&body, stored_type)?;
    super::anchoring::strip_mark(&mut body);
    req.records.settings().check_valid(&body)?;
    req.require_member().await?;
    let id = new_id();
    req.audit.entity(format!("{name}/{id}"));
    compartment::check(
        req,
        name,
        DIRECTORY_COMPARTMENT,
        &body,
        &compartment::PlannedPatients::new(),
    )
    .await?;
    let now = Utc::now();
    stamp(&mut body, &id, 1, now);
    let org = req.custodian()?;
    let mut tx = req.records.pool().begin().await?;
    let key = active_key(
        store::data_key(&mut tx, req.records.kek(), DIRECTORY_COMPARTMENT, true).await?,
    )?;
    store::write_version(
        &mut tx,
        &key,
        req.records.hasher(),
        &NewVersion {
            resource_type: name.to_owned(),
            id,
            version_id: 1,
            patient: DIRECTORY_COMPARTMENT.to_owned(),
            last_updated: now,
            content: Some(serde_json::to_vec(&body).map_err(AppError::internal)?),
            version_hash: Some(canonical_hash(&body)),
            custodian: org,
            fields: resource::directory_fields(&body),
        },
        0,
    )
    .await?;
    tx.commit().await?;
    let anchor = super::anchoring::AnchorState::Pending;
    anchor.mark(&mut body);
    Ok(Served {
        resource: body,
        version_id: 1,
        last_updated: now,
        anchor,
        proof: None,
    })
}

/// A search for a directory resource by identifier: `identifier=system|value` (or
/// `identifier=value`), as in a conditional reference or an `ifNoneExist`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct IdentifierQuery {
    /// The directory type.
    pub(super) name: &'static str,
    /// The identifier's system, when given.
    pub(super) system: Option<String>,
    /// The identifier's value.
    pub(super) value: String,
}

impl IdentifierQuery {
    /// Parses the query part (`identifier=...`) for the directory type `name`.
    pub(super) fn parse(name: &'static str, query: &str) -> Result<Self, AppError> {
        let mut params = url::form_urlencoded::parse(query.as_bytes());
        let (Some((key, token)), None) = (params.next(), params.next()) else {
            return Err(AppError::NotSupported(
                "a conditional reference or ifNoneExist takes exactly one parameter, identifier=system|value".into(),
            ));
        };
        if key != "identifier" || token.is_empty() {
            return Err(AppError::NotSupported(
                "conditional references and ifNoneExist are resolved by identifier=system|value only".into(),
            ));
        }
        let (system, value) = match token.split_once('|') {
            Some((system, value)) => (Some(system.to_owned()), value.to_owned()),
            None => (None, token.into_owned()),
        };
        Ok(Self {
            name,
            system,
            value,
        })
    }

    /// Parses a conditional reference `Type?identifier=...` to a directory type; `None` when
    /// the reference is not conditional. A conditional reference to patient data is refused:
    /// it would be a search across patients made without a decision.
    pub(super) fn from_reference(reference: &str) -> Result<Option<Self>, AppError> {
        let Some((type_name, query)) = reference.split_once('?') else {
            return Ok(None);
        };
        if type_name.contains('/') || type_name.contains(':') {
            return Ok(None);
        }
        match resource::directory_type(type_name) {
            Some(name) => Self::parse(name, query).map(Some),
            None => Err(AppError::Unprocessable(format!(
                "conditional references are resolved for the directory types only ({}), not `{}`",
                carechain_contracts::codes::DIRECTORY_RESOURCE_TYPES.join(", "),
                type_name.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// Whether `body` (a resource of this query's type) carries the identifier.
    pub(super) fn matches(&self, body: &Value) -> bool {
        resource::directory_fields(body)
            .codes
            .iter()
            .any(|(system, value)| {
                *value == self.value
                    && (self.system.is_none() || system.as_deref() == self.system.as_deref())
            })
    }

    /// The ids of the stored (not deleted) directory resources carrying the identifier.
    pub(super) async fn find_stored(
        &self,
        req: &RecordRequest<'_>,
    ) -> Result<Vec<String>, AppError> {
        let form = match &self.system {
            Some(system) => format!("{system}|{}", self.value),
            None => self.value.clone(),
        };
        let hash = req.records.hasher().query_form(&form);
        Ok(sqlx::query_scalar(
            "SELECT id FROM gateway_resources
             WHERE resource_type = $1 AND patient = $2 AND NOT deleted AND codes @> ARRAY[$3]
             ORDER BY id LIMIT 2",
        )
        .bind(self.name)
        .bind(DIRECTORY_COMPARTMENT)
        .bind(hash)
        .fetch_all(req.records.pool())
        .await?)
    }
}

/// Resolves the identifier queries of a transaction: first among the directory resources the
/// transaction creates (`planned`: type, id, body), then in the store. Exactly one match is
/// required (FHIR: no match or several is an error); returns `Type/id` for each query.
pub(super) async fn resolve(
    req: &RecordRequest<'_>,
    queries: Vec<IdentifierQuery>,
    planned: &[(&'static str, &str, &Value)],
) -> Result<HashMap<IdentifierQuery, String>, AppError> {
    let mut resolved = HashMap::new();
    for query in queries {
        if resolved.contains_key(&query) {
            continue;
        }
        let mut ids: Vec<String> = planned
            .iter()
            .filter(|(name, _, body)| *name == query.name && query.matches(body))
            .map(|(_, id, _)| (*id).to_owned())
            .collect();
        if ids.is_empty() {
            ids = query.find_stored(req).await?;
        }
        let what = format!(
            "{}?identifier={}{}",
            query.name,
            query
                .system
                .as_deref()
                .map(|s| format!("{s}|"))
                .unwrap_or_default(),
            query.value
        );
        match ids.as_slice() {
            [id] => {
                let target = format!("{}/{id}", query.name);
                resolved.insert(query, target);
            }
            [] => {
                return Err(AppError::Unprocessable(format!(
                    "the conditional reference {} matches no resource",
                    what.chars().take(160).collect::<String>()
                )));
            }
            _ => {
                return Err(AppError::Unprocessable(format!(
                    "the conditional reference {} matches several resources",
                    what.chars().take(160).collect::<String>()
                )));
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_conditional_references() {
        let q = IdentifierQuery::from_reference(
            "Organization?identifier=https://github.com/synthetichealth/synthea|abc",
        )
        .expect("parsed")
        .expect("conditional");
        assert_eq!(q.name, "Organization");
        assert_eq!(
            q.system.as_deref(),
            Some("https://github.com/synthetichealth/synthea")
        );
        assert_eq!(q.value, "abc");
        assert!(q.matches(&json!({"identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "abc"}]})));
        assert!(!q.matches(&json!({"identifier": [{"system": "other", "value": "abc"}]})));
        assert_eq!(
            IdentifierQuery::from_reference("Organization/1").expect("plain"),
            None
        );
        assert_eq!(
            IdentifierQuery::from_reference("urn:uuid:1").expect("plain"),
            None
        );
        assert!(IdentifierQuery::from_reference("Observation?identifier=x").is_err());
        assert!(IdentifierQuery::from_reference("Practitioner?name=x").is_err());
        assert!(IdentifierQuery::from_reference("Practitioner?identifier=a&identifier=b").is_err());
    }
}
