//! Invalid resources are refused, each with the right issue code and FHIRPath location: the
//! cases of issue 18 first, then one or more per rule.

use carechain_fhir::{IssueCode, Severity, validate};
use serde_json::{Value, json};

/// A valid Observation (the gateway's test shape) that each case breaks in one way.
fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/alice"},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {"value": 72.5, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Liddell", "given": ["Alice"]}],
        "telecom": [{"system": "phone", "value": "+44 1865 000000"}],
        "gender": "female",
        "birthDate": "1990-04-12"
    })
}

fn bundle() -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:o1", "resource": observation(), "request": {"method": "POST", "url": "Observation"}}
        ]
    })
}

/// `base` with the value at a JSON pointer replaced (`Some`) or removed (`None`).
fn with(mut base: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let target = base
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (target, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().expect("an index")] = v,
        (other, _) => panic!("cannot edit {other}"),
    }
    base
}

fn set(base: Value, pointer: &str, value: Value) -> Value {
    with(base, pointer, Some(value))
}

fn remove(base: Value, pointer: &str) -> Value {
    with(base, pointer, None)
}

struct Case {
    name: &'static str,
    resource: Value,
    /// Every issue expected, in document order: (issue code, FHIRPath expression).
    issues: Vec<(IssueCode, &'static str)>,
}

fn case(name: &'static str, resource: Value, issues: &[(IssueCode, &'static str)]) -> Case {
    Case {
        name,
        resource,
        issues: issues.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    use IssueCode::*;
    let contained_med =
        json!({"resourceType": "Medication", "id": "med", "code": {"text": "aspirin"}});
    vec![
        // The creates issue 18 saw answered 201.
        case(
            "status 123",
            set(observation(), "/status", json!(123)),
            &[(Structure, "Observation.status")],
        ),
        case(
            "status bogus",
            set(observation(), "/status", json!("bogus")),
            &[(CodeInvalid, "Observation.status")],
        ),
        case(
            "no code",
            remove(observation(), "/code"),
            &[(Required, "Observation.code")],
        ),
        case(
            "unknown element",
            set(observation(), "/foo", json!("bar")),
            &[(Structure, "Observation.foo")],
        ),
        case(
            "effectiveDateTime yesterday",
            set(observation(), "/effectiveDateTime", json!("yesterday")),
            &[(Value, "Observation.effectiveDateTime")],
        ),
        case(
            "valueQuantity as a string",
            set(observation(), "/valueQuantity", json!("12 mg")),
            &[(Structure, "Observation.valueQuantity")],
        ),
        case(
            "two value[x]",
            set(observation(), "/valueString", json!("72")),
            &[(Structure, "Observation.valueString")],
        ),
        case(
            "contained resource nothing references",
            set(observation(), "/contained", json!([contained_med])),
            &[(Invariant, "Observation.contained[0]")],
        ),
        // Resource types.
        case(
            "unknown resource type",
            set(observation(), "/resourceType", json!("Observatoin")),
            &[(Invalid, "resourceType")],
        ),
        case(
            "no resourceType",
            json!({"status": "final"}),
            &[(Required, "")],
        ),
        case(
            "resourceType not a string",
            json!({"resourceType": 1}),
            &[(Structure, "resourceType")],
        ),
        case(
            "abstract resource type",
            json!({"resourceType": "DomainResource"}),
            &[(Invalid, "resourceType")],
        ),
        case("not an object", json!([observation()]), &[(Invalid, "")]),
        // Known elements.
        case(
            "_name on a complex element",
            set(observation(), "/_subject", json!({"id": "s"})),
            &[(Structure, "Observation._subject")],
        ),
        case(
            "unknown element in a datatype",
            set(observation(), "/code/coding/0/version2", json!("1")),
            &[(Structure, "Observation.code.coding[0].version2")],
        ),
        case(
            "unknown choice type",
            set(
                remove(observation(), "/valueQuantity"),
                "/valueMoney",
                json!({"value": 1}),
            ),
            &[(Structure, "Observation.valueMoney")],
        ),
        case(
            "modifierExtension outside a backbone element",
            set(
                observation(),
                "/code/modifierExtension",
                json!([{"url": "http://example.org/x", "valueBoolean": true}]),
            ),
            &[(Structure, "Observation.code.modifierExtension")],
        ),
        case(
            "SimpleQuantity has no comparator",
            set(
                observation(),
                "/referenceRange",
                json!([{"low": {"value": 60, "comparator": ">"}}]),
            ),
            &[(Structure, "Observation.referenceRange[0].low.comparator")],
        ),
        // JSON types and cardinality.
        case(
            "array for a single element",
            set(observation(), "/code", json!([{"text": "pulse"}])),
            &[(Structure, "Observation.code")],
        ),
        case(
            "object for a repeating element",
            set(observation(), "/category", json!({"text": "vital-signs"})),
            &[(Structure, "Observation.category")],
        ),
        case(
            "empty array",
            set(observation(), "/category", json!([])),
            &[(Structure, "Observation.category")],
        ),
        case(
            "empty object",
            set(observation(), "/code", json!({})),
            &[(Structure, "Observation.code")],
        ),
        case(
            "empty string",
            set(observation(), "/issued", json!("")),
            &[(Value, "Observation.issued")],
        ),
        case(
            "null",
            set(observation(), "/subject", json!(null)),
            &[(Structure, "Observation.subject")],
        ),
        case(
            "boolean as a string",
            set(
                remove(observation(), "/valueQuantity"),
                "/valueBoolean",
                json!("true"),
            ),
            &[(Structure, "Observation.valueBoolean")],
        ),
        case(
            "decimal as a string",
            set(observation(), "/valueQuantity/value", json!("72.5")),
            &[(Structure, "Observation.valueQuantity.value")],
        ),
        case(
            "reference as a string",
            set(observation(), "/subject", json!("Patient/alice")),
            &[(Structure, "Observation.subject")],
        ),
        case(
            "_status not an object",
            set(observation(), "/_status", json!("x")),
            &[(Structure, "Observation._status")],
        ),
        case(
            "required element inside a backbone element",
            set(observation(), "/component", json!([{"valueString": "x"}])),
            &[(Required, "Observation.component[0].code")],
        ),
        case(
            "required choice",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/alice"}}),
            &[(Required, "MedicationRequest.medication[x]")],
        ),
        case(
            "extension without url",
            set(observation(), "/extension", json!([{"valueString": "x"}])),
            &[(Required, "Observation.extension[0].url")],
        ),
        case(
            "null in a primitive array without an extension",
            set(patient(), "/name/0/given", json!(["Alice", null])),
            &[(Structure, "Patient.name[0].given[1]")],
        ),
        case(
            "_given of another length",
            set(patient(), "/name/0/_given", json!([null, {"id": "g"}])),
            &[(Structure, "Patient.name[0]._given")],
        ),
        case(
            "_given null with no given",
            set(
                remove(patient(), "/name/0/given"),
                "/name/0/_given",
                json!([{"id": "g"}, null]),
            ),
            &[(Structure, "Patient.name[0]._given[1]")],
        ),
        case(
            "value and _value both null",
            set(
                set(patient(), "/name/0/given", json!(["Alice", null])),
                "/name/0/_given",
                json!([null, null]),
            ),
            &[
                (Structure, "Patient.name[0]._given[1]"),
                (Structure, "Patient.name[0].given[1]"),
            ],
        ),
        // Choices.
        case(
            "component with two values",
            set(
                observation(),
                "/component",
                json!([{"code": {"text": "a"}, "valueInteger": 1, "valueString": "1"}]),
            ),
            &[(Structure, "Observation.component[0].valueString")],
        ),
        case(
            "component valueQuantity as a string",
            set(
                observation(),
                "/component",
                json!([{"code": {"text": "a"}, "valueInteger": 1}, {"code": {"text": "b"}, "valueQuantity": "12 mg"}]),
            ),
            &[(Structure, "Observation.component[1].valueQuantity")],
        ),
        case(
            "two effective[x]",
            set(
                observation(),
                "/effectiveInstant",
                json!("2026-11-20T10:00:00Z"),
            ),
            &[(Structure, "Observation.effectiveInstant")],
        ),
        // Primitive formats.
        case(
            "instant without a zone",
            set(observation(), "/issued", json!("2026-11-20T10:00:00")),
            &[(Value, "Observation.issued")],
        ),
        case(
            "date with no such day",
            set(patient(), "/birthDate", json!("2023-02-29")),
            &[(Value, "Patient.birthDate")],
        ),
        case(
            "dateTime with a time but no zone",
            set(
                observation(),
                "/effectiveDateTime",
                json!("2026-11-20T10:00:00"),
            ),
            &[(Value, "Observation.effectiveDateTime")],
        ),
        case(
            "id with an underscore",
            set(observation(), "/id", json!("bad_id")),
            &[(Value, "Observation.id")],
        ),
        case(
            "id too long",
            set(observation(), "/id", json!("a".repeat(65))),
            &[(Value, "Observation.id")],
        ),
        case(
            "code with a leading space",
            set(observation(), "/code/coding/0/code", json!(" 8867-4")),
            &[(Value, "Observation.code.coding[0].code")],
        ),
        case(
            "uri with a space",
            set(
                observation(),
                "/meta",
                json!({"profile": ["http://example.org/a b"]}),
            ),
            &[(Value, "Observation.meta.profile[0]")],
        ),
        case(
            "integer with a fraction",
            set(
                remove(observation(), "/valueQuantity"),
                "/valueInteger",
                json!(1.5),
            ),
            &[(Value, "Observation.valueInteger")],
        ),
        case(
            "integer beyond 32 bits",
            set(
                remove(observation(), "/valueQuantity"),
                "/valueInteger",
                json!(4_294_967_296_i64),
            ),
            &[(Value, "Observation.valueInteger")],
        ),
        case(
            "positiveInt zero",
            json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "flu"},
                   "patient": {"reference": "Patient/alice"}, "occurrenceString": "last autumn",
                   "protocolApplied": [{"doseNumberPositiveInt": 0}]}),
            &[(
                Value,
                "Immunization.protocolApplied[0].doseNumberPositiveInt",
            )],
        ),
        case(
            "unsignedInt negative",
            json!({"resourceType": "Patient", "photo": [{"contentType": "image/png", "size": -1}]}),
            &[(Value, "Patient.photo[0].size")],
        ),
        case(
            "base64Binary not in groups of four",
            json!({"resourceType": "Patient", "photo": [{"contentType": "image/png", "data": "aGVsbG8"}]}),
            &[(Value, "Patient.photo[0].data")],
        ),
        case(
            "uuid with upper-case hex",
            json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [
                {"url": "http://example.org/u", "valueUuid": "urn:uuid:9169C47C-a9d6-4e34-90fc-5f3b2a939984"}]}),
            &[(Value, "Basic.extension[0].valueUuid")],
        ),
        case(
            "oid that is not one",
            json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [
                {"url": "http://example.org/o", "valueOid": "2.16.840"}]}),
            &[(Value, "Basic.extension[0].valueOid")],
        ),
        case(
            "string with a vertical tab",
            set(observation(), "/code/text", json!("heart\u{b}rate")),
            &[(Value, "Observation.code.text")],
        ),
        case(
            "narrative that is not a div",
            set(
                observation(),
                "/text",
                json!({"status": "generated", "div": "<p>pulse</p>"}),
            ),
            &[(Value, "Observation.text.div")],
        ),
        case(
            "time with hour 24",
            set(
                remove(observation(), "/valueQuantity"),
                "/valueTime",
                json!("24:00:00"),
            ),
            &[(Value, "Observation.valueTime")],
        ),
        // Required bindings, in resources and in datatypes.
        case(
            "Quantity.comparator",
            set(observation(), "/valueQuantity/comparator", json!("~")),
            &[(CodeInvalid, "Observation.valueQuantity.comparator")],
        ),
        case(
            "Patient.gender",
            set(patient(), "/gender", json!("f")),
            &[(CodeInvalid, "Patient.gender")],
        ),
        case(
            "ContactPoint.system",
            set(patient(), "/telecom/0/system", json!("mobile")),
            &[(CodeInvalid, "Patient.telecom[0].system")],
        ),
        case(
            "HumanName.use",
            set(patient(), "/name/0/use", json!("nick")),
            &[(CodeInvalid, "Patient.name[0].use")],
        ),
        case(
            "Narrative.status",
            set(
                observation(),
                "/text",
                json!({"status": "done", "div": "<div>x</div>"}),
            ),
            &[(CodeInvalid, "Observation.text.status")],
        ),
        case(
            "code array item",
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/alice"},
                   "category": ["food", "pollen"]}),
            &[(CodeInvalid, "AllergyIntolerance.category[1]")],
        ),
        case(
            "CodeableConcept with a required binding",
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/alice"},
                   "clinicalStatus": {"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}]}}),
            &[(CodeInvalid, "Condition.clinicalStatus")],
        ),
        case(
            "CodeableConcept with a required binding and text only",
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/alice"},
                   "clinicalStatus": {"text": "active"}}),
            &[(CodeInvalid, "Condition.clinicalStatus")],
        ),
        // Contained resources.
        case(
            "contained without an id",
            set(
                observation(),
                "/contained",
                json!([{"resourceType": "Medication", "code": {"text": "aspirin"}}]),
            ),
            &[(Invariant, "Observation.contained[0]")],
        ),
        case(
            "contained resource validated",
            set(
                set(
                    observation(),
                    "/contained",
                    json!([{"resourceType": "Practitioner", "id": "p", "gender": "x"}]),
                ),
                "/performer",
                json!([{"reference": "#p"}]),
            ),
            &[(CodeInvalid, "Observation.contained[0].gender")],
        ),
        case(
            "nested contained (dom-2)",
            set(
                set(
                    observation(),
                    "/contained",
                    json!([{"resourceType": "Practitioner", "id": "p",
                            "contained": [{"resourceType": "Organization", "id": "o", "name": "x"}]}]),
                ),
                "/performer",
                json!([{"reference": "#p"}]),
            ),
            &[(Invariant, "Observation.contained[0].contained")],
        ),
        case(
            "contained with a version (dom-4)",
            set(
                set(
                    observation(),
                    "/contained",
                    json!([{"resourceType": "Practitioner", "id": "p", "meta": {"versionId": "2"}}]),
                ),
                "/performer",
                json!([{"reference": "#p"}]),
            ),
            &[(Invariant, "Observation.contained[0].meta.versionId")],
        ),
        case(
            "contained with a security label (dom-5)",
            set(
                set(
                    observation(),
                    "/contained",
                    json!([{"resourceType": "Practitioner", "id": "p", "meta": {"security": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}]),
                ),
                "/performer",
                json!([{"reference": "#p"}]),
            ),
            &[(Invariant, "Observation.contained[0].meta.security")],
        ),
        case(
            "contained referenced by a reference to another id",
            set(
                set(observation(), "/contained", json!([contained_med])),
                "/performer",
                json!([{"reference": "#other"}]),
            ),
            &[(Invariant, "Observation.contained[0]")],
        ),
        // Extensions.
        case(
            "extension with a value and extensions (ext-1)",
            set(
                observation(),
                "/extension",
                json!([{"url": "http://example.org/x", "valueString": "a",
                        "extension": [{"url": "y", "valueString": "b"}]}]),
            ),
            &[(Invariant, "Observation.extension[0]")],
        ),
        case(
            "extension with neither (ext-1)",
            set(
                observation(),
                "/extension",
                json!([{"url": "http://example.org/x"}]),
            ),
            &[(Invariant, "Observation.extension[0]")],
        ),
        // Bundles: entries validated with their location.
        case(
            "Bundle entry without status",
            remove(bundle(), "/entry/1/resource/status"),
            &[(Required, "Bundle.entry[1].resource.status")],
        ),
        case(
            "Bundle entry with a bad code",
            set(bundle(), "/entry/1/resource/code", json!("8867-4")),
            &[(Structure, "Bundle.entry[1].resource.code")],
        ),
        case(
            "Bundle entry of an unknown type",
            set(
                bundle(),
                "/entry/0/resource/resourceType",
                json!("Patients"),
            ),
            &[(Invalid, "Bundle.entry[0].resource.resourceType")],
        ),
        case(
            "Bundle.type",
            set(bundle(), "/type", json!("bulk")),
            &[(CodeInvalid, "Bundle.type")],
        ),
        case(
            "Bundle request method",
            set(bundle(), "/entry/0/request/method", json!("PATCHY")),
            &[(CodeInvalid, "Bundle.entry[0].request.method")],
        ),
        case(
            "Bundle entry contained resource unreferenced",
            set(
                bundle(),
                "/entry/1/resource/contained",
                json!([contained_med]),
            ),
            &[(Invariant, "Bundle.entry[1].resource.contained[0]")],
        ),
        case(
            "several issues in document order",
            set(
                set(remove(observation(), "/code"), "/status", json!("done")),
                "/issued",
                json!("now"),
            ),
            &[
                (Value, "Observation.issued"),
                (CodeInvalid, "Observation.status"),
                (Required, "Observation.code"),
            ],
        ),
    ]
}

#[test]
fn each_invalid_resource_is_refused_with_its_issues() {
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let found: Vec<(IssueCode, String)> = match validate(&case.resource) {
            Ok(()) => Vec::new(),
            Err(error) => {
                assert!(error.issues.iter().all(|i| i.severity == Severity::Error));
                assert!(error.issues.iter().all(|i| !i.diagnostics.is_empty()));
                error
                    .issues
                    .into_iter()
                    .map(|i| (i.code, i.expression))
                    .collect()
            }
        };
        let expected: Vec<(IssueCode, String)> = case
            .issues
            .iter()
            .map(|(c, e)| (*c, (*e).to_owned()))
            .collect();
        if found != expected {
            failures.push(format!(
                "{}: expected {expected:?}, found {found:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn diagnostics_say_what_is_wrong() {
    let error = validate(&set(observation(), "/status", json!("bogus"))).expect_err("invalid");
    assert_eq!(
        error.issues[0].diagnostics,
        "'bogus' is not in the required value set http://hl7.org/fhir/ValueSet/observation-status \
         (amended | cancelled | corrected | entered-in-error | final | preliminary | registered | unknown)"
    );
    let error = validate(&set(observation(), "/valueString", json!("72"))).expect_err("invalid");
    assert_eq!(
        error.issues[0].diagnostics,
        "valueQuantity and valueString are two choices of one element: only one is allowed"
    );
    assert!(
        error.to_string().contains("Observation.valueString"),
        "{error}"
    );
}

#[test]
fn a_flood_of_issues_is_cut_short() {
    let mut resource = observation();
    for i in 0..1500 {
        resource[format!("unknown{i:04}")] = json!(1);
    }
    let error = validate(&resource).expect_err("invalid");
    assert_eq!(error.issues.len(), 1001);
    assert_eq!(error.issues[1000].code, IssueCode::TooCostly);
}
