//! The typed data a patient's wallet signs, prepared by the gateway from what the patient chose:
//! the message is `carechain_contracts::typed_data`'s (the one definition the CLI and the relay
//! use), the FHIR Consent a grant mirrors is `carechain_contracts::consent_document`'s, and the
//! nonce is the patient's current one on chain. The page never builds typed data itself.

use alloy::primitives::{Address, U256, aliases::U40};
use carechain_contracts::{
    bindings::IConsentRegistry::Grant,
    codes::{parse_actions, parse_purposes, parse_resource_types},
    consent_document::{GrantScope, fhir_consent},
    typed_data::{ConsentMessage, RemoveDelegate, Revoke, SetDelegate, SetProxy},
};
use serde_json::Value;
use std::str::FromStr;

/// Why a request for typed data was refused (a 400 in words for the page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// A field is missing or malformed.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(text: impl Into<String>) -> PrepareError {
    PrepareError::Invalid(text.into())
}

/// What the patient asked to sign, before the nonce and deadline are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Give `grantee` access within `scope`.
    Grant {
        /// The patient.
        patient: Address,
        /// An organisation or member key.
        grantee: Address,
        /// What is allowed, and when.
        scope: GrantScope,
    },
    /// Withdraw `grantee`'s access.
    Revoke {
        /// The patient.
        patient: Address,
        /// Whose access ends.
        grantee: Address,
    },
    /// Appoint a guardian or caregiver.
    SetDelegate {
        /// The patient.
        patient: Address,
        /// The delegate.
        delegate: Address,
        /// `guardian` or `caregiver`.
        relationship: String,
        /// Unix seconds.
        valid_until: u64,
    },
    /// Appoint a proxy, who acts for the patient within `scope` (its period is unused:
    /// `valid_until` ends the delegation).
    SetProxy {
        /// The patient.
        patient: Address,
        /// The proxy.
        proxy: Address,
        /// The record types, actions and purposes it may grant within.
        scope: GrantScope,
        /// Unix seconds.
        valid_until: u64,
    },
    /// Remove a delegate.
    RemoveDelegate {
        /// The patient.
        patient: Address,
        /// The delegate.
        delegate: Address,
    },
}

fn address(body: &Value, field: &str) -> Result<Address, PrepareError> {
    body.get(field)
        .and_then(Value::as_str)
        .and_then(|s| Address::from_str(s.trim()).ok())
        .ok_or_else(|| {
            invalid(format!(
                "`{field}` must be a wallet address (0x and 40 hex digits)"
            ))
        })
}

/// A list of names, as an array of strings or one comma-separated string.
fn names(body: &Value, field: &str) -> Result<String, PrepareError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(","))
            .ok_or_else(|| invalid(format!("`{field}` must list names"))),
        _ => Err(invalid(format!("`{field}` is required"))),
    }
}

fn seconds(body: &Value, field: &str) -> Result<u64, PrepareError> {
    body.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("`{field}` must be a time in unix seconds")))
}

/// `resourceTypes`, `actions`, `purposes` and the period of a grant or a proxy's scope, each
/// naming something.
fn scope(body: &Value) -> Result<GrantScope, PrepareError> {
    let scope = GrantScope {
        resource_types: parse_resource_types(&names(body, "resourceTypes")?)
            .map_err(|e| invalid(e.to_string()))?,
        actions: parse_actions(&names(body, "actions")?).map_err(|e| invalid(e.to_string()))?,
        purposes: parse_purposes(&names(body, "purposes")?).map_err(|e| invalid(e.to_string()))?,
        valid_from: body.get("validFrom").and_then(Value::as_u64).unwrap_or(0),
        valid_until: seconds(body, "validUntil")?,
    };
    if scope.resource_types == 0 {
        return Err(invalid("choose at least one kind of record"));
    }
    if scope.actions == 0 {
        return Err(invalid("choose what they may do (for example read)"));
    }
    if scope.purposes == 0 {
        return Err(invalid("choose at least one purpose"));
    }
    Ok(scope)
}

impl Request {
    /// Reads `{"kind": "grant" | "revoke" | "set-delegate" | "set-proxy" | "remove-delegate",
    /// ...}` (a proxy is named `delegate`, its scope as a grant's) and checks
    /// it against `now` (unix seconds).
    pub fn from_json(body: &Value, now: u64) -> Result<Self, PrepareError> {
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        let patient = address(body, "patient")?;
        match kind {
            "grant" => {
                let grantee = address(body, "grantee")?;
                if grantee == patient {
                    return Err(invalid(
                        "you always have access to your own records: choose an organisation",
                    ));
                }
                let scope = scope(body)?;
                if scope.valid_until <= now.max(scope.valid_from) {
                    return Err(invalid("the end date must lie in the future"));
                }
                Ok(Self::Grant {
                    patient,
                    grantee,
                    scope,
                })
            }
            "revoke" => Ok(Self::Revoke {
                patient,
                grantee: address(body, "grantee")?,
            }),
            "set-delegate" => {
                let relationship = body
                    .get("relationship")
                    .and_then(Value::as_str)
                    .filter(|r| matches!(*r, "guardian" | "caregiver"))
                    .ok_or_else(|| invalid("`relationship` must be guardian or caregiver"))?
                    .to_owned();
                let valid_until = seconds(body, "validUntil")?;
                if valid_until <= now {
                    return Err(invalid("the end date must lie in the future"));
                }
                let delegate = address(body, "delegate")?;
                if delegate == patient {
                    return Err(invalid("you cannot appoint yourself"));
                }
                Ok(Self::SetDelegate {
                    patient,
                    delegate,
                    relationship,
                    valid_until,
                })
            }
            "set-proxy" => {
                let scope = scope(body)?;
                if scope.valid_until <= now {
                    return Err(invalid("the end date must lie in the future"));
                }
                let proxy = address(body, "delegate")?;
                if proxy == patient {
                    return Err(invalid("you cannot appoint yourself"));
                }
                Ok(Self::SetProxy {
                    patient,
                    proxy,
                    valid_until: scope.valid_until,
                    scope,
                })
            }
            "remove-delegate" => Ok(Self::RemoveDelegate {
                patient,
                delegate: address(body, "delegate")?,
            }),
            _ => Err(invalid(
                "`kind` must be grant, revoke, set-delegate, set-proxy or remove-delegate",
            )),
        }
    }

    /// The patient who signs.
    pub fn patient(&self) -> Address {
        match self {
            Self::Grant { patient, .. }
            | Self::Revoke { patient, .. }
            | Self::SetDelegate { patient, .. }
            | Self::SetProxy { patient, .. }
            | Self::RemoveDelegate { patient, .. } => *patient,
        }
    }

    /// The message to sign with `nonce` and `deadline`, and for a grant the FHIR Consent it
    /// mirrors (its hash is in the message).
    pub fn message(
        &self,
        chain_id: u64,
        nonce: U256,
        deadline: U256,
    ) -> (ConsentMessage, Option<Value>) {
        match self {
            Self::Grant {
                patient,
                grantee,
                scope,
            } => {
                let fhir = fhir_consent(chain_id, *patient, *grantee, scope);
                let message = ConsentMessage::Grant(Grant {
                    patient: *patient,
                    grantee: *grantee,
                    resourceTypes: scope.resource_types,
                    actions: scope.actions,
                    purposes: scope.purposes,
                    validFrom: U40::saturating_from(scope.valid_from),
                    validUntil: U40::saturating_from(scope.valid_until),
                    consentHash: carechain_formats::canonical::canonical_hash(&fhir),
                    nonce,
                    deadline,
                });
                (message, Some(fhir))
            }
            Self::Revoke { patient, grantee } => (
                ConsentMessage::Revoke(Revoke {
                    patient: *patient,
                    grantee: *grantee,
                    nonce,
                    deadline,
                }),
                None,
            ),
            Self::SetDelegate {
                patient,
                delegate,
                relationship,
                valid_until,
            } => (
                ConsentMessage::SetDelegate(SetDelegate {
                    patient: *patient,
                    delegate: *delegate,
                    relationship: relationship.clone(),
                    validUntil: U40::saturating_from(*valid_until),
                    nonce,
                    deadline,
                }),
                None,
            ),
            Self::SetProxy {
                patient,
                proxy,
                scope,
                valid_until,
            } => (
                ConsentMessage::SetProxy(SetProxy {
                    patient: *patient,
                    proxy: *proxy,
                    validUntil: U40::saturating_from(*valid_until),
                    resourceTypes: scope.resource_types,
                    actions: scope.actions,
                    purposes: scope.purposes,
                    nonce,
                    deadline,
                }),
                None,
            ),
            Self::RemoveDelegate { patient, delegate } => (
                ConsentMessage::RemoveDelegate(RemoveDelegate {
                    patient: *patient,
                    delegate: *delegate,
                    nonce,
                    deadline,
                }),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: &str = "0xbcd4042de499d14e55001ccbb24a551f3b954096";
    const HOSPITAL_B: &str = "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65";

    #[test]
    fn a_grant_is_the_one_typed_data_with_the_consent_documents_hash() {
        let body = json!({"kind": "grant", "patient": ALICE, "grantee": HOSPITAL_B,
            "resourceTypes": ["Observation", "Condition"], "actions": ["read", "search"],
            "purposes": ["TREAT"], "validUntil": 2_000_000_000u64});
        let request = Request::from_json(&body, 1_800_000_000).expect("a grant");
        let (message, fhir) = request.message(31337, U256::from(2), U256::from(1_900_000_000u64));
        let ConsentMessage::Grant(g) = &message else {
            panic!("not a grant")
        };
        assert_eq!(g.resourceTypes, 0b110);
        assert_eq!(g.actions, 0b10010);
        let fhir = fhir.expect("the FHIR Consent");
        assert_eq!(
            g.consentHash,
            carechain_formats::canonical::canonical_hash(&fhir)
        );
        assert_eq!(fhir["provision"]["class"][1]["code"], "Condition");
    }

    #[test]
    fn refuses_what_cannot_be_signed() {
        let base = json!({"kind": "grant", "patient": ALICE, "grantee": HOSPITAL_B,
            "resourceTypes": ["Observation"], "actions": "r", "purposes": ["TREAT"],
            "validUntil": 2_000_000_000u64});
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            Request::from_json(&body, 1_800_000_000)
        };
        assert!(with("grantee", json!(ALICE)).is_err());
        assert!(with("resourceTypes", json!([])).is_err());
        assert!(with("resourceTypes", json!(["Spaceship"])).is_err());
        assert!(with("validUntil", json!(1_700_000_000u64)).is_err());
        assert!(with("patient", json!("alice")).is_err());
        assert!(with("kind", json!("transfer")).is_err());
        let delegate = json!({"kind": "set-delegate", "patient": ALICE, "delegate": HOSPITAL_B,
            "relationship": "owner", "validUntil": 2_000_000_000u64});
        assert!(Request::from_json(&delegate, 1_800_000_000).is_err());
    }
}
