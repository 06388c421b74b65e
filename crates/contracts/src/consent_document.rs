//! The FHIR R4 Consent a grant mirrors: one definition for every client that prepares a
//! `Grant` (the CLI and the gateway's portal endpoint). Its canonical (RFC 8785) JSON's
//! keccak-256 is the `consentHash` the grant carries and the `ConsentGranted` event records.

use crate::codes::{Action, Purpose, ResourceType};
use alloy::primitives::Address;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The scope of a grant as the chain stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantScope {
    /// Bitmap over [`ResourceType`].
    pub resource_types: u64,
    /// Mask over [`Action`].
    pub actions: u8,
    /// Bitmap over [`Purpose`].
    pub purposes: u16,
    /// Unix seconds (0: from the moment it is granted).
    pub valid_from: u64,
    /// Unix seconds.
    pub valid_until: u64,
}

/// Unix seconds as an RFC 3339 instant (UTC, whole seconds).
pub fn rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| seconds.to_string())
}

/// The FHIR R4 Consent that a grant by `patient` to `grantee` on `chain_id` mirrors.
pub fn fhir_consent(
    chain_id: u64,
    patient: Address,
    grantee: Address,
    scope: &GrantScope,
) -> Value {
    let actions: Vec<Value> = Action::from_bits(scope.actions)
        .into_iter()
        .map(|a| {
            json!({"coding": [{
                "system": "http://hl7.org/fhir/smart-app-launch/ValueSet/scopes",
                "code": a.code(),
                "display": a.long_name(),
            }]})
        })
        .collect();
    let purposes: Vec<Value> = Purpose::from_bits(scope.purposes)
        .into_iter()
        .map(|p| {
            json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "code": p.code(),
                "display": p.display(),
            })
        })
        .collect();
    let classes: Vec<Value> = ResourceType::from_bits(scope.resource_types)
        .into_iter()
        .map(|t| json!({"system": "http://hl7.org/fhir/resource-types", "code": t.code()}))
        .collect();
    let mut period = json!({"end": rfc3339(scope.valid_until)});
    if scope.valid_from > 0 {
        period["start"] = Value::String(rfc3339(scope.valid_from));
    }
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient:#x}")},
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN",
        }]},
        "provision": {
            "type": "permit",
            "period": period,
            "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                }]},
                "reference": {"identifier": {
                    "system": "urn:ietf:rfc:3986",
                    "value": format!("did:pkh:eip155:{chain_id}:{grantee:#x}"),
                }},
            }],
            "action": actions,
            "purpose": purposes,
            "class": classes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    #[test]
    fn names_the_scope_and_the_parties() {
        let scope = GrantScope {
            resource_types: ResourceType::Observation.bit(),
            actions: Action::Read.bit(),
            purposes: Purpose::Treat.bit() | Purpose::Research.bit(),
            valid_from: 0,
            valid_until: 2_000_000_000,
        };
        let patient = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let grantee = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
        let c = fhir_consent(31337, patient, grantee, &scope);
        assert_eq!(c["provision"]["class"][0]["code"], "Observation");
        assert_eq!(c["provision"]["purpose"][1]["code"], "HRESCH");
        assert_eq!(c["provision"]["period"]["end"], "2033-05-18T03:33:20Z");
        assert!(c["provision"]["period"].get("start").is_none());
        assert_eq!(
            c["patient"]["reference"],
            "Patient/0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        );
    }
}
