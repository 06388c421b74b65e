//! The CapabilityStatement served at `GET /metadata`.
//!
//! It is generated from [`SUPPORTED`], the one list of what the router actually implements, so
//! it cannot claim more than the gateway does.

use carechain_contracts::ResourceType;
use serde_json::{Value, json};

/// Resource-level interactions the router implements, for every type in [`TYPES`].
pub const SUPPORTED: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "create",
    "search-type",
];

/// The resource types served (the consent table, less `AuditEvent`, which only the gateway
/// writes, and which a separate compliance API serves).
pub const TYPES: &[ResourceType] = &[
    ResourceType::Patient,
    ResourceType::Observation,
    ResourceType::Condition,
    ResourceType::MedicationRequest,
    ResourceType::AllergyIntolerance,
    ResourceType::Procedure,
    ResourceType::Immunization,
    ResourceType::Encounter,
    ResourceType::DiagnosticReport,
    ResourceType::DocumentReference,
    ResourceType::CarePlan,
    ResourceType::MedicationStatement,
    ResourceType::Consent,
];

/// The search parameters of a type (without `patient`, a search spans the patients whose
/// consent allows it).
fn search_params(rt: ResourceType) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "patient", "type": "reference", "documentation": "The patient's wallet address or Patient/<address>. Without it the search spans only the patients whose consent allows the requester to search this type for the purpose (at most a configured number of patients with matches, 1000 by default; total, pages and _include cover nothing else)."}),
        json!({"name": "_lastUpdated", "type": "date"}),
        json!({"name": "_id", "type": "token", "documentation": "Logical ids, comma-separated (a Patient's id is its wallet address)."}),
        json!({"name": "_summary", "type": "token", "documentation": "true (summary elements of the R4 definition, and the mandatory ones), text, data, count (the total only) or false; subsetted resources are tagged SUBSETTED."}),
        json!({"name": "_elements", "type": "token", "documentation": "Top-level elements to return (with id, meta and the mandatory elements); tagged SUBSETTED."}),
        json!({"name": "_total", "type": "token", "documentation": "none (no count: faster) or accurate (the default; estimate is answered accurately)."}),
        json!({"name": "_sort", "type": "token", "documentation": "_lastUpdated, -_lastUpdated, date or -date."}),
        json!({"name": "_count", "type": "number"}),
    ];
    if crate::fhir::resource::has_clinical_params(rt) {
        params.push(json!({"name": "code", "type": "token"}));
        params.push(json!({"name": "category", "type": "token"}));
        params.push(json!({"name": "date", "type": "date"}));
    }
    params
}

/// The `_revinclude` values of a type: records that reference a matched Patient (by its
/// patient) or a matched Encounter.
fn search_rev_includes(rt: ResourceType) -> Vec<String> {
    match rt {
        ResourceType::Patient => TYPES
            .iter()
            .filter(|t| **t != ResourceType::Patient)
            .map(|t| format!("{t}:patient"))
            .collect(),
        ResourceType::Encounter => TYPES
            .iter()
            .filter(|t| !matches!(t, ResourceType::Patient | ResourceType::Encounter))
            .map(|t| format!("{t}:encounter"))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `_include` values of a type (patient-centric references only).
fn search_includes(rt: ResourceType) -> Vec<String> {
    match rt {
        ResourceType::Patient => Vec::new(),
        ResourceType::Encounter => vec![format!("{rt}:patient")],
        _ => vec![format!("{rt}:patient"), format!("{rt}:encounter")],
    }
}

/// Builds the CapabilityStatement for a gateway at `base_url`.
/// `require_if_match`: updates must name the version they replace.
pub fn statement(base_url: &str, software_version: &str, require_if_match: bool) -> Value {
    let mut resources: Vec<Value> = if SUPPORTED.is_empty() {
        Vec::new()
    } else {
        TYPES
            .iter()
            .map(|rt| {
                let mut entry = json!({
                    "type": rt.code(),
                    "interaction": SUPPORTED.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                    "versioning": "versioned-update",
                    "readHistory": SUPPORTED.contains(&"vread"),
                    "updateCreate": false,
                    "conditionalCreate": false,
                    "conditionalUpdate": false,
                    "conditionalDelete": "not-supported",
                    "searchParam": search_params(*rt),
                });
                // R4 allows no empty arrays: a list with nothing in it is left out.
                for (name, values) in [
                    ("searchInclude", search_includes(*rt)),
                    ("searchRevInclude", search_rev_includes(*rt)),
                ] {
                    if !values.is_empty() {
                        entry[name] = json!(values);
                    }
                }
                entry
            })
            .collect()
    };
    super::compliance::amend_capability(&mut resources);
    // The directory: members read and create it, without consent (no patient data).
    for name in carechain_contracts::codes::DIRECTORY_RESOURCE_TYPES {
        resources.push(json!({
            "type": name,
            "documentation": "Directory resource (no patient data): read by any active member key, created by members for their organisation; referenced from transactions by id, urn:uuid or identifier (Type?identifier=system|value), conditional create with ifNoneExist=identifier=system|value.",
            "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "create"}],
            "versioning": "versioned",
            "readHistory": true,
            "updateCreate": false,
            "conditionalCreate": true,
            "conditionalUpdate": false,
            "conditionalDelete": "not-supported",
        }));
    }
    // The consortium's directory (read-only, from the chain's index).
    resources.push(json!({
        "type": "Endpoint",
        "documentation": "The members' published FHIR endpoints (ProviderRegistry.setEndpoint): id = the organisation's address; extension urn:carechain:gateway-key names its gateway keys. Other gateways are asked for a patient's records at these addresses.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "status", "type": "token"}],
        "searchInclude": ["Endpoint:organization"],
    }));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "carechain-gateway", "version": software_version},
        "implementation": {
            "description": "carechain consent-checked FHIR gateway",
            "url": base_url
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Sign in with Ethereum (EIP-4361): POST /auth/nonce, then POST /auth/login \
                with the signed message; send the returned token as `Authorization: Bearer`. \
                Every request is decided on chain (ConsentRegistry.decide) for the purpose of use \
                given in the `X-Purpose-Of-Use` header or the `_purpose` parameter (default TREAT); \
                the decision's block is returned in `X-Consent-Block`. An interaction with a \
                record named by id (read, vread, history, update, delete) that consent does not \
                allow is answered 404 exactly like an id that does not exist (no \
                `X-Consent-Block`), so a refusal does not reveal whether the id exists; it is \
                audited as a denial. Every write is validated as FHIR R4 (422 with an \
                OperationOutcome naming each issue's location) and may reference only its own \
                patient's records. Responses are FHIR JSON only (an Accept naming only XML is \
                answered 406).",
            "security": {
                "cors": false,
                "description": "Bearer tokens from EIP-4361 wallet sign-in; consent decided on chain per request."
            },
            "resource": resources,
            "extension": [{
                "url": "urn:carechain:if-match-required",
                "valueBoolean": require_if_match
            }],
            "interaction": [
                {"code": "transaction", "documentation": "POST, PUT (ifMatch), DELETE and GET (read, vread, search) entries, all or nothing: every entry is decided before anything is written; urn:uuid references rewritten; new versions anchored as one Merkle batch; GET entries (of records that exist before the transaction) are answered last, against the new state."},
                {"code": "batch", "documentation": "POST, PUT (ifMatch), DELETE and GET entries, each run on its own; each entry reports its outcome."}
            ],
            "operation": [{
                "name": "erase",
                "definition": "urn:carechain:operation:erase",
                "documentation": "POST Patient/[wallet address]/$erase: the patient or an active delegate destroys the patient's data key; every record becomes unreadable (410)."
            }, {
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                "documentation": "GET [base]/$export?study=<id> (Prefer: respond-async): FHIR Bulk Data v2 for research organisations' member keys; only the patients whose consent allows HRESCH for a type, decided at the job's start block; de-identified (Safe Harbor, pseudonyms per study). _type, _since, _outputFormat=application/fhir+ndjson; status at the Content-Location URL; DELETE cancels."
            }, {
                "name": "patient-export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
                "documentation": "GET [base]/Patient/$export?study=<id>: as $export."
            }, {
                "name": "group-export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
                "documentation": "GET [base]/Group/<study>/$export: as $export, for the study the Group names."
            }],
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_what_is_supported() {
        let cs = statement("http://127.0.0.1:8080", "0.1.0", false);
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["fhirVersion"], "4.0.1");
        let resources = cs["rest"][0]["resource"].as_array().expect("resources");
        // AuditEvent is the compliance routes' own entry.
        let directory = carechain_contracts::codes::DIRECTORY_RESOURCE_TYPES;
        for resource in resources.iter().filter(|r| {
            r["type"] != "AuditEvent"
                && r["type"] != "Endpoint"
                && !directory.contains(&r["type"].as_str().unwrap_or(""))
        }) {
            let interactions = resource["interaction"].as_array().expect("interactions");
            assert_eq!(interactions.len(), SUPPORTED.len());
        }
        assert!(!TYPES.contains(&ResourceType::AuditEvent));
    }

    #[test]
    fn is_valid_r4() {
        for require_if_match in [false, true] {
            let cs = statement("http://127.0.0.1:8080", "0.1.0", require_if_match);
            if let Err(err) = carechain_fhir::validate(&cs) {
                panic!("{err}");
            }
        }
    }
}
