//! Valid R4 content passes: an example of every common clinical type, the gateway's own traffic,
//! and a whole Synthea transaction Bundle.

use std::collections::BTreeSet;
use std::path::Path;

use carechain_fhir::{IssueCode, operation_outcome, validate};
use serde_json::{Value, json};

fn load(relative: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn assert_valid(resource: &Value) {
    if let Err(error) = validate(resource) {
        panic!("{error}\n{:#}", error.to_operation_outcome());
    }
}

#[test]
fn an_example_of_every_common_clinical_type_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid");
    let mut types = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("tests/data/valid") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_str().expect("a UTF-8 file name");
        let resource = load(&format!("valid/{name}"));
        if let Err(error) = validate(&resource) {
            panic!("{name}: {error}");
        }
        types.insert(
            resource["resourceType"]
                .as_str()
                .expect("resourceType")
                .to_owned(),
        );
    }
    for expected in [
        "AllergyIntolerance",
        "AuditEvent",
        "Bundle",
        "CarePlan",
        "Condition",
        "Consent",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "Immunization",
        "MedicationRequest",
        "Observation",
        "Patient",
        "Procedure",
    ] {
        assert!(types.contains(expected), "no valid example of {expected}");
    }
}

/// Synthea v2.4 output, as the research import will send it: 319 entries of 17 resource types.
#[test]
fn a_whole_synthea_transaction_bundle_validates() {
    let bundle = load("synthea-r4-transaction.json");
    assert_valid(&bundle);
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 319);
    let types: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    for expected in [
        "CarePlan",
        "CareTeam",
        "Claim",
        "Condition",
        "Device",
        "DiagnosticReport",
        "Encounter",
        "ExplanationOfBenefit",
        "Goal",
        "ImagingStudy",
        "Immunization",
        "MedicationRequest",
        "Observation",
        "Organization",
        "Patient",
        "Practitioner",
        "Procedure",
    ] {
        assert!(types.contains(expected), "{expected}");
    }
    // Each entry is valid on its own too (a batch, or one create at a time).
    for entry in entries {
        assert_valid(&entry["resource"]);
    }
}

/// The same generator's STU3 output is not R4, and says where.
#[test]
fn an_stu3_resource_is_refused() {
    let stu3 = load("synthea-stu3-allergyintolerance.json");
    let error = validate(&stu3).expect_err("STU3 is not R4");
    let found: Vec<(IssueCode, &str)> = error
        .issues
        .iter()
        .map(|i| (i.code, i.expression.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (IssueCode::Structure, "AllergyIntolerance.assertedDate"),
            (IssueCode::Structure, "AllergyIntolerance.clinicalStatus"),
            (
                IssueCode::Structure,
                "AllergyIntolerance.verificationStatus"
            ),
        ]
    );
}

/// What the gateway's tests, demo data and benchmark send today stays valid.
#[test]
fn the_gateway_traffic_validates() {
    let me = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
    // gateway/tests/records.rs
    assert_valid(&json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{me}")},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {"value": 72.5, "unit": "beats/minute"}
    }));
    assert_valid(&json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "request": {"method": "POST", "url": "Patient"},
             "resource": {"resourceType": "Patient",
                          "identifier": [{"system": "urn:carechain:wallet", "value": me}]}},
            {"fullUrl": "urn:uuid:e1", "request": {"method": "POST", "url": "Encounter"},
             "resource": {"resourceType": "Encounter", "status": "finished",
                          "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:p1"}}},
            {"fullUrl": "urn:uuid:o1", "request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                          "subject": {"reference": "urn:uuid:p1"},
                          "encounter": {"reference": "urn:uuid:e1"}}}
        ]
    }));
    // gateway/examples/gateway_bench.rs: the 500-entry import.
    assert_valid(&bench_bundle(500, me));
}

fn bench_bundle(n: usize, me: &str) -> Value {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"fullUrl": format!("urn:uuid:{i}"),
                   "request": {"method": "POST", "url": "Observation"},
                   "resource": {"resourceType": "Observation", "status": "final",
                                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                                "subject": {"reference": format!("Patient/{me}")},
                                "effectiveDateTime": format!("2026-01-{:02}T08:00:00Z", 1 + i % 28),
                                "valueQuantity": {"value": 60 + i, "unit": "/min"}}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[test]
fn contained_resources_may_be_referenced_from_anywhere_or_refer_to_their_container() {
    // Referenced from a nested element and from another contained resource.
    assert_valid(&json!({
        "resourceType": "Observation",
        "contained": [
            {"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Who"}]},
            {"resourceType": "Organization", "id": "o1", "name": "Lab"},
            {"resourceType": "PractitionerRole", "id": "r1",
             "practitioner": {"reference": "#p1"}, "organization": {"reference": "#o1"}},
            {"resourceType": "Provenance", "target": [{"reference": "#"}],
             "recorded": "2026-10-02T09:00:00Z", "agent": [{"who": {"display": "lab"}}]}
        ],
        "status": "final",
        "code": {"text": "pulse"},
        "performer": [{"reference": "#r1"}]
    }));
}

#[test]
fn a_primitive_may_carry_only_extensions() {
    // `_status` with a data-absent-reason satisfies the required status.
    assert_valid(&json!({
        "resourceType": "Observation",
        "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                   "valueCode": "unknown"}]},
        "code": {"text": "pulse"},
        "valueInteger": 64,
        "_valueInteger": {"id": "v1"}
    }));
    // A repeating primitive with extensions only.
    assert_valid(&json!({
        "resourceType": "Patient",
        "name": [{"family": "Liddell",
                  "_given": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                             "valueCode": "masked"}]}]}]
    }));
}

#[test]
fn the_operation_outcome_it_renders_is_valid_r4() {
    let error =
        validate(&json!({"resourceType": "Observation", "status": 123})).expect_err("invalid");
    let outcome = error.to_operation_outcome();
    assert_eq!(outcome, operation_outcome(&error.issues));
    assert_valid(&outcome);
    assert_eq!(
        outcome["issue"][0]["expression"],
        json!(["Observation.status"])
    );
    assert_eq!(outcome["issue"][0]["code"], "structure");
    assert_eq!(outcome["issue"][0]["severity"], "error");
    assert_eq!(
        outcome["issue"][1]["expression"],
        json!(["Observation.code"])
    );
    assert_eq!(outcome["issue"][1]["code"], "required");
}
