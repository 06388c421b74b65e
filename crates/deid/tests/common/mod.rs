//! The vendored Synthea data (`tests/data/synthea`), brought into the form the gateway stores:
//! each Patient's id is its wallet address (with the `urn:carechain:wallet` identifier), and the
//! bundles' `urn:uuid:` references are resolved to `Type/id`, as the importer does.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::PathBuf;

use carechain_deid::{DeidSecret, Deidentifier, Rules};
use serde_json::{Value, json};

/// One patient's records as a custodian stores them.
pub struct StoredPatient {
    /// Where they come from (a file name).
    pub source: String,
    /// The wallet address, lower case.
    pub wallet: String,
    /// The Patient first, then the rest in bundle order; directory resources (Organization,
    /// Practitioner) included.
    pub resources: Vec<Value>,
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/synthea")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(data_dir().join(name)).expect("vendored Synthea data")
}

/// A wallet made from a Synthea patient id (its 32 hex digits, padded to 40).
pub fn wallet_for(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("0x{:0>40}", hex.to_ascii_lowercase())
}

/// Every vendored patient: the two transaction bundles and the 25 Patient NDJSON lines.
pub fn patients() -> Vec<StoredPatient> {
    let mut out = Vec::new();
    for name in ["bundle-afhir.json", "bundle-cfhir.json"] {
        let bundle: Value = serde_json::from_str(&read(name)).expect("JSON");
        out.push(from_bundle(name, &bundle));
    }
    for (i, line) in read("Patient.ndjson").lines().enumerate() {
        let mut patient: Value = serde_json::from_str(line).expect("JSON");
        let id = patient["id"].as_str().expect("id").to_owned();
        let wallet = wallet_for(&id);
        link_wallet(&mut patient, &wallet);
        out.push(StoredPatient {
            source: format!("Patient.ndjson:{}", i + 1),
            wallet,
            resources: vec![patient],
        });
    }
    out
}

fn link_wallet(patient: &mut Value, wallet: &str) {
    patient["id"] = json!(wallet);
    let ident = json!({"system": "urn:carechain:wallet", "value": wallet});
    match patient.get_mut("identifier").and_then(Value::as_array_mut) {
        Some(list) => list.push(ident),
        None => patient["identifier"] = json!([ident]),
    }
}

fn from_bundle(name: &str, bundle: &Value) -> StoredPatient {
    let entries = bundle["entry"].as_array().expect("entries");
    let mut targets: HashMap<String, String> = HashMap::new();
    let mut wallet = String::new();
    for entry in entries {
        let resource = &entry["resource"];
        let ty = resource["resourceType"].as_str().expect("type");
        let id = resource["id"].as_str().expect("id");
        let full_url = entry["fullUrl"].as_str().expect("fullUrl").to_owned();
        if ty == "Patient" {
            wallet = wallet_for(id);
            targets.insert(full_url, format!("Patient/{wallet}"));
        } else {
            targets.insert(full_url, format!("{ty}/{id}"));
        }
    }
    let mut resources: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut r = e["resource"].clone();
            resolve(&mut r, &targets);
            r
        })
        .collect();
    if let Some(at) = resources
        .iter()
        .position(|r| r["resourceType"] == "Patient")
    {
        let mut patient = resources.remove(at);
        link_wallet(&mut patient, &wallet);
        resources.insert(0, patient);
    }
    StoredPatient {
        source: name.to_owned(),
        wallet,
        resources,
    }
}

fn resolve(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                if key == "reference"
                    && let Some(target) = v.as_str().and_then(|r| targets.get(r))
                {
                    *v = json!(target);
                } else {
                    resolve(v, targets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve(v, targets)),
        _ => {}
    }
}

pub fn secret() -> DeidSecret {
    DeidSecret::from_bytes(b"consortium de-identification secret, test only").expect("long enough")
}

pub fn safe_harbor(study: &str, custodian: &str) -> Deidentifier {
    Deidentifier::new(Rules::safe_harbor(), &secret(), study, custodian).expect("deidentifier")
}

/// Whether a resource is about no patient (the directory types).
pub fn unlinked(resource: &Value) -> bool {
    matches!(
        resource["resourceType"].as_str(),
        Some("Organization" | "Practitioner" | "PractitionerRole" | "Location")
    )
}

/// Every `reference` string in a value.
pub fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj {
                match (key.as_str(), v) {
                    ("reference", Value::String(r)) => out.push(r.clone()),
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}
