//! Preparing an EHR's transaction Bundles (Synthea's, for one) for a carechain gateway.
//!
//! In carechain a patient *is* a wallet: a Patient is stored under its wallet address, which a
//! Patient carries as an identifier with system [`WALLET_SYSTEM`]. An EHR's export knows
//! nothing of wallets, so the importer says which wallet each exported Patient belongs to
//! ([`WalletLinks`]: one wallet for a Bundle of one patient, or a mapping from the source's
//! Patient ids) and [`link_patients`] writes that identifier into each Patient of the Bundle.
//! Everything else in the Bundle is left as the source wrote it: the gateway rewrites the
//! `urn:uuid` references itself.

use serde_json::{Value, json};
use std::collections::HashMap;

/// Identifier system carrying a patient's wallet address.
pub const WALLET_SYSTEM: &str = "urn:carechain:wallet";

/// Why a Bundle cannot be linked to wallets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The document is not a Bundle with entries.
    #[error("not a FHIR Bundle with entries")]
    NotABundle,
    /// A wallet given is not an address (`0x` and 40 hexadecimal digits).
    #[error("`{0}` is not a wallet address (0x and 40 hexadecimal digits)")]
    NotAnAddress(String),
    /// A Patient of the Bundle has no wallet in the mapping.
    #[error("no wallet is given for the Patient `{0}` (add it to the mapping)")]
    Unmapped(String),
    /// One wallet was given for a Bundle with several Patients.
    #[error("the Bundle holds {0} Patients: give a mapping from their ids to wallets")]
    SeveralPatients(usize),
    /// The Bundle holds no Patient.
    #[error("the Bundle holds no Patient")]
    NoPatient,
}

/// Which wallet each Patient of a Bundle belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletLinks {
    /// The Bundle's only Patient is this wallet's.
    One(String),
    /// By the source's Patient id (or the entry's `fullUrl`, e.g. `urn:uuid:...`).
    ByPatientId(HashMap<String, String>),
}

impl WalletLinks {
    /// A mapping read from JSON: `{"<source Patient id>": "0x..."}`.
    pub fn from_mapping(mapping: &Value) -> Result<Self, LinkError> {
        let object = mapping.as_object().ok_or(LinkError::NotABundle)?;
        let mut links = HashMap::with_capacity(object.len());
        for (id, wallet) in object {
            let wallet = wallet.as_str().unwrap_or_default();
            links.insert(id.clone(), checked_address(wallet)?);
        }
        Ok(Self::ByPatientId(links))
    }
}

fn checked_address(text: &str) -> Result<String, LinkError> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    match hex {
        Some(hex) if hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(format!("0x{}", hex.to_ascii_lowercase()))
        }
        _ => Err(LinkError::NotAnAddress(text.chars().take(60).collect())),
    }
}

/// Writes each Patient's wallet identifier into the Bundle (replacing a wallet identifier the
/// source may carry); returns the wallets, in entry order.
pub fn link_patients(bundle: &mut Value, links: &WalletLinks) -> Result<Vec<String>, LinkError> {
    let entries = bundle
        .get_mut("entry")
        .and_then(Value::as_array_mut)
        .ok_or(LinkError::NotABundle)?;
    let patients: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient")
        })
        .map(|(i, _)| i)
        .collect();
    if patients.is_empty() {
        return Err(LinkError::NoPatient);
    }
    let mut wallets = Vec::with_capacity(patients.len());
    for index in patients {
        let entry = &mut entries[index];
        let wallet = match links {
            WalletLinks::One(wallet) if wallets.is_empty() => checked_address(wallet)?,
            WalletLinks::One(_) => return Err(LinkError::SeveralPatients(wallets.len() + 1)),
            WalletLinks::ByPatientId(map) => {
                let id = entry.pointer("/resource/id").and_then(Value::as_str);
                let full_url = entry.get("fullUrl").and_then(Value::as_str);
                let found = id
                    .and_then(|id| map.get(id))
                    .or_else(|| full_url.and_then(|u| map.get(u)));
                match found {
                    Some(wallet) => checked_address(wallet)?,
                    None => {
                        return Err(LinkError::Unmapped(
                            id.or(full_url)
                                .unwrap_or("(no id)")
                                .chars()
                                .take(80)
                                .collect(),
                        ));
                    }
                }
            }
        };
        if let Some(resource) = entry.get_mut("resource").and_then(Value::as_object_mut) {
            let identifiers = resource
                .entry("identifier")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !identifiers.is_array() {
                *identifiers = Value::Array(Vec::new());
            }
            if let Some(list) = identifiers.as_array_mut() {
                list.retain(|i| i.get("system").and_then(Value::as_str) != Some(WALLET_SYSTEM));
                list.push(json!({"system": WALLET_SYSTEM, "value": wallet}));
            }
        }
        wallets.push(wallet);
    }
    Ok(wallets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: &str = "0x00000000000000000000000000000000000000AA";

    fn bundle() -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1",
              "identifier": [{"system": WALLET_SYSTEM, "value": "0x1"}, {"system": "x", "value": "y"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:o1", "resource": {"resourceType": "Observation"},
             "request": {"method": "POST", "url": "Observation"}}
        ]})
    }

    #[test]
    fn one_wallet_for_a_bundle_of_one_patient() {
        let mut b = bundle();
        let wallets = link_patients(&mut b, &WalletLinks::One(WALLET.into())).expect("linked");
        assert_eq!(wallets, [WALLET.to_ascii_lowercase()]);
        let idents = b["entry"][0]["resource"]["identifier"]
            .as_array()
            .expect("array");
        assert_eq!(idents.len(), 2);
        assert_eq!(idents[1]["value"], WALLET.to_ascii_lowercase());
        assert_eq!(
            b["entry"][1]["resource"],
            json!({"resourceType": "Observation"})
        );
    }

    #[test]
    fn a_mapping_by_source_id_or_full_url() {
        let mut b = bundle();
        let by_url = WalletLinks::from_mapping(&json!({"urn:uuid:p1": WALLET})).expect("map");
        assert!(link_patients(&mut b, &by_url).is_ok());
        let missing = WalletLinks::from_mapping(&json!({"p2": WALLET})).expect("map");
        assert_eq!(
            link_patients(&mut bundle(), &missing),
            Err(LinkError::Unmapped("p1".into()))
        );
        assert!(matches!(
            WalletLinks::from_mapping(&json!({"p1": "0x12"})),
            Err(LinkError::NotAnAddress(_))
        ));
    }
}
