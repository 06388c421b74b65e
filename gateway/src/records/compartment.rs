//! Patient compartment integrity: a resource written for patient P may reference P itself, P's
//! own records, and resources in no patient's compartment (the directory: Organization,
//! Practitioner, Location, Medication...; its own contained resources). A reference to another
//! patient, or into another patient's records, is refused with the location of each such
//! reference: a record must never tie one patient's data to another's.
//!
//! References are read as FHIR reads them: relative `Type/id` (optionally
//! `/_history/vid`), or absolute under this gateway's base URL. An absolute reference to another
//! server names nothing here and is left alone.

use super::{RecordRequest, store};
use crate::{error::AppError, fhir::resource};
use carechain_contracts::ResourceType;
use carechain_fhir::{Issue, IssueCode, Severity, ValidationError};
use serde_json::Value;
use std::collections::HashMap;

/// The patients of records that do not exist yet but are written in the same transaction,
/// by `(type, id)`.
pub(super) type PlannedPatients = HashMap<(ResourceType, String), String>;

/// A reference found in a resource: where it is (FHIRPath) and what it says.
struct Found {
    expression: String,
    reference: String,
}

fn collect(value: &Value, path: &mut String, out: &mut Vec<Found>) {
    match value {
        Value::Object(obj) => {
            for (key, item) in obj {
                if key == "reference"
                    && let Value::String(reference) = item
                {
                    out.push(Found {
                        expression: path.clone(),
                        reference: reference.clone(),
                    });
                    continue;
                }
                let len = path.len();
                path.push('.');
                path.push_str(key);
                collect(item, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                collect(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// `(type, id)` of a reference into this gateway's store, if it is one.
fn target(base_url: &str, reference: &str) -> Option<(ResourceType, String)> {
    let relative = match reference.strip_prefix(base_url) {
        Some(rest) => rest.trim_start_matches('/'),
        None if reference.contains("://") || reference.starts_with("urn:") => return None,
        None => reference,
    };
    let mut segments = relative.split('/');
    let (name, id) = (segments.next()?, segments.next()?);
    let rt: ResourceType = name.parse().ok()?;
    resource::storable(rt).then_some(())?;
    resource::validate_id(id).ok()?;
    Some((rt, id.to_owned()))
}

/// Refuses `body` (a `resource_type` of `patient`) when it references another patient or
/// another patient's record. `planned` holds the records a transaction is about to create.
pub(super) async fn check(
    req: &RecordRequest<'_>,
    type_name: &str,
    patient: &str,
    body: &Value,
    planned: &PlannedPatients,
) -> Result<(), AppError> {
    let mut found = Vec::new();
    let mut path = type_name.to_owned();
    collect(body, &mut path, &mut found);
    let directory = patient == super::directory::DIRECTORY_COMPARTMENT;
    let mut owners: HashMap<(ResourceType, String), Option<String>> = HashMap::new();
    let mut issues = Vec::new();
    for Found {
        expression,
        reference,
    } in found
    {
        let Some((rt, id)) = target(req.records.base_url(), &reference) else {
            continue;
        };
        let owner = if rt == ResourceType::Patient {
            resource::normalize_address(&id)
        } else if let Some(owner) = planned.get(&(rt, id.clone())) {
            Some(owner.clone())
        } else if let Some(owner) = owners.get(&(rt, id.clone())) {
            owner.clone()
        } else {
            let owner = store::locate(req.records.pool(), rt.code(), &id)
                .await?
                .map(|(owner, _, _)| owner);
            owners.insert((rt, id.clone()), owner.clone());
            owner
        };
        if owner.as_deref().is_some_and(|o| o != patient) {
            issues.push(Issue {
                severity: Severity::Error,
                code: IssueCode::BusinessRule,
                expression,
                diagnostics: if directory {
                    format!(
                        "{} is patient data: a directory resource may not reference a patient or their records",
                        reference.chars().take(120).collect::<String>()
                    )
                } else {
                    format!(
                        "{} belongs to another patient: a record may reference only its own patient's records",
                        reference.chars().take(120).collect::<String>()
                    )
                },
            });
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(AppError::NotValid(ValidationError { issues }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_references_with_their_locations() {
        let body = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/0xaa"},
            "hasMember": [{"reference": "Observation/a"}, {"reference": "Observation/b"}],
            "contained": [{"resourceType": "Practitioner", "id": "p"}],
            "performer": [{"reference": "#p"}]
        });
        let mut found = Vec::new();
        let mut path = "Observation".to_owned();
        collect(&body, &mut path, &mut found);
        let at: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.expression.as_str(), f.reference.as_str()))
            .collect();
        assert!(at.contains(&("Observation.subject", "Patient/0xaa")));
        assert!(at.contains(&("Observation.hasMember[1]", "Observation/b")));
        assert!(at.contains(&("Observation.performer[0]", "#p")));
    }

    #[test]
    fn reads_targets_in_this_store_only() {
        let base = "https://gw.example/fhir";
        assert_eq!(
            target(base, "Encounter/e1"),
            Some((ResourceType::Encounter, "e1".into()))
        );
        assert_eq!(
            target(base, "https://gw.example/fhir/Observation/x/_history/2"),
            Some((ResourceType::Observation, "x".into()))
        );
        assert_eq!(
            target(base, "https://other.example/fhir/Observation/x"),
            None
        );
        assert_eq!(target(base, "#contained"), None);
        assert_eq!(target(base, "urn:uuid:123"), None);
        assert_eq!(target(base, "Organization/o1"), None);
    }
}
