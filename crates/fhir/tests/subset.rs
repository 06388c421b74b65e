//! `_summary` and `_elements`: what each mode keeps, and that every output is still valid R4.

mod common;

use std::path::Path;

use carechain_fhir::{
    ElementsError, Summary, SummaryError, parse_elements, select_elements,
    select_elements_in_place, summarize, summarize_in_place, validate,
};
use common::load;
use serde_json::{Value, json};

const SUBSETTED: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// Every valid example: `tests/data/valid`, the Synthea Bundle and each of its entries.
fn examples() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid");
    let mut examples: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("tests/data/valid")
        .map(|entry| {
            let name = entry.expect("a directory entry").file_name();
            let name = name.to_str().expect("a UTF-8 file name").to_owned();
            let resource = load(&format!("valid/{name}"));
            (name, resource)
        })
        .collect();
    examples.sort_by(|a, b| a.0.cmp(&b.0));
    let synthea = load("synthea-r4-transaction.json");
    for (i, entry) in synthea["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .enumerate()
    {
        examples.push((format!("synthea entry {i}"), entry["resource"].clone()));
    }
    examples.push(("synthea bundle".into(), synthea));
    examples
}

#[track_caller]
fn assert_valid(what: &str, resource: &Value) {
    if let Err(error) = validate(resource) {
        panic!("{what}: {error}\n{resource:#}");
    }
}

/// The tags with the SUBSETTED code.
fn subsetted_tags(resource: &Value) -> usize {
    resource["meta"]["tag"].as_array().map_or(0, |tags| {
        tags.iter()
            .filter(|t| t["system"] == SUBSETTED && t["code"] == "SUBSETTED")
            .count()
    })
}

fn keys(resource: &Value) -> Vec<&str> {
    resource
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn every_mode_keeps_every_valid_example_valid() {
    let mut outputs = 0;
    for (what, resource) in examples() {
        assert_valid(&what, &resource);
        for mode in [Summary::True, Summary::Text, Summary::Data, Summary::False] {
            let output = summarize(&resource, mode);
            assert_valid(&format!("{what}, _summary={mode}"), &output);
            let tags = if mode == Summary::False { 0 } else { 1 };
            assert_eq!(subsetted_tags(&output), tags, "{what}, _summary={mode}");
            // Summarising again changes nothing: in particular, no second tag.
            assert_eq!(summarize(&output, mode), output, "{what}, _summary={mode}");
            let mut owned = resource.clone();
            summarize_in_place(&mut owned, mode);
            assert_eq!(owned, output, "{what}, _summary={mode} in place");
            outputs += 1;
        }
        assert_eq!(summarize(&resource, Summary::False), resource);
        // _elements with each top-level element on its own, with none, and with all.
        let resource_type = resource["resourceType"].as_str().expect("resourceType");
        let mut names: Vec<&str> = keys(&resource)
            .into_iter()
            .filter(|k| *k != "resourceType" && !k.starts_with('_'))
            .collect();
        for name in &mut names {
            // A choice is named by its base: `effectiveDateTime` is `effective`.
            let bases = name
                .char_indices()
                .rev()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .map(|(i, _)| &name[..i]);
            if parse_elements(resource_type, name).is_err()
                && let Some(base) = bases
                    .into_iter()
                    .find(|b| parse_elements(resource_type, b).is_ok())
            {
                *name = base;
            }
            let list =
                parse_elements(resource_type, name).unwrap_or_else(|e| panic!("{what}: {e}"));
            let output = select_elements(&resource, &list).expect("known names");
            assert_valid(&format!("{what}, _elements={name}"), &output);
            assert_eq!(subsetted_tags(&output), 1);
            let mut owned = resource.clone();
            select_elements_in_place(&mut owned, &list).expect("known names");
            assert_eq!(owned, output, "{what}, _elements={name} in place");
            outputs += 1;
        }
        for list in [Vec::new(), names] {
            let output = select_elements(&resource, &list).expect("known names");
            assert_valid(&format!("{what}, _elements={}", list.join(",")), &output);
            outputs += 1;
        }
    }
    assert!(outputs > 3000, "{outputs}");
}

fn observation() -> Value {
    load("valid/Observation.json")
}

#[test]
fn summary_true_of_an_observation() {
    let output = summarize(&observation(), Summary::True);
    // No text, category, interpretation, note, bodySite, method, device; in each component
    // no interpretation nor referenceRange (R4: not isSummary). Everything else in the example
    // is in the summary, each datatype in full (all its elements present here are isSummary).
    let loinc = "http://loinc.org";
    let ucum = "http://unitsofmeasure.org";
    let component = |code: &str, display: &str, value: u32| {
        json!({
            "code": {"coding": [{"system": loinc, "code": code, "display": display}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": ucum, "code": "mm[Hg]"}
        })
    };
    let expected = json!({
        "resourceType": "Observation",
        "id": "bp-1",
        "meta": {
            "profile": [
                "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                "http://hl7.org/fhir/StructureDefinition/bp"
            ],
            "tag": [{"system": SUBSETTED, "code": "SUBSETTED"}]
        },
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281"}],
        "basedOn": [{"reference": "ServiceRequest/vitals-order-1"}],
        "status": "final",
        "code": {
            "coding": [{"system": loinc, "code": "85354-9", "display": "Blood pressure panel with all children optional"}],
            "text": "Blood pressure"
        },
        "subject": {"reference": "Patient/alice", "display": "Alice Liddell"},
        "encounter": {"reference": "Encounter/enc-1"},
        "effectiveDateTime": "2026-10-02T09:10:00+01:00",
        "issued": "2026-10-02T09:11:02.123+01:00",
        "performer": [{"reference": "Practitioner/dr-a", "display": "Dr A"}],
        "component": [
            component("8480-6", "Systolic blood pressure", 120),
            component("8462-4", "Diastolic blood pressure", 80),
            {
                "code": {"coding": [{"system": loinc, "code": "8357-6", "display": "Blood pressure method"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "33586001", "display": "Sitting position"}]}
            }
        ]
    });
    assert_eq!(output, expected);
}

#[test]
fn text_data_and_false_of_an_observation() {
    let observation = observation();
    let tag = json!([{"system": SUBSETTED, "code": "SUBSETTED"}]);
    let mut meta = observation["meta"].clone();
    meta["tag"] = tag;

    let text = summarize(&observation, Summary::Text);
    assert_eq!(
        text,
        json!({
            "resourceType": "Observation",
            "id": "bp-1",
            "meta": meta,
            "text": observation["text"],
            "status": "final",
            "code": observation["code"],
        })
    );

    let data = summarize(&observation, Summary::Data);
    let mut expected = observation.clone();
    let obj = expected.as_object_mut().expect("an object");
    obj.remove("text");
    obj.insert("meta".into(), meta);
    assert_eq!(data, expected);

    assert_eq!(summarize(&observation, Summary::False), observation);
}

#[test]
fn summary_true_of_a_patient() {
    let patient = load("valid/Patient.json");
    let output = summarize(&patient, Summary::True);
    // Dropped: text, extension (birth sex), maritalStatus, contact, communication,
    // generalPractitioner. Kept whole: a primitive's `_name` sibling (`_birthDate`, `_given`).
    let mut expected = patient.clone();
    let obj = expected.as_object_mut().expect("an object");
    for name in [
        "text",
        "extension",
        "maritalStatus",
        "contact",
        "communication",
        "generalPractitioner",
    ] {
        assert!(obj.remove(name).is_some(), "{name}");
    }
    obj["meta"]["tag"] = json!([{"system": SUBSETTED, "code": "SUBSETTED"}]);
    assert_eq!(output, expected);
    assert_eq!(
        keys(&output),
        [
            "_birthDate",
            "active",
            "address",
            "birthDate",
            "deceasedBoolean",
            "gender",
            "id",
            "identifier",
            "managingOrganization",
            "meta",
            "name",
            "resourceType",
            "telecom"
        ]
    );

    // _elements: a primitive comes with its `_name` sibling.
    let output = select_elements(&patient, &["birthDate"]).expect("known names");
    assert_eq!(
        keys(&output),
        ["_birthDate", "birthDate", "id", "meta", "resourceType"]
    );
    assert_eq!(output["_birthDate"], patient["_birthDate"]);

    // _summary=text: Patient has no mandatory element.
    let text = summarize(&patient, Summary::Text);
    assert_eq!(keys(&text), ["id", "meta", "resourceType", "text"]);
}

#[test]
fn summary_true_of_an_encounter() {
    let encounter = load("valid/Encounter.json");
    let output = summarize(&encounter, Summary::True);
    // R4 leaves statusHistory, period, length, hospitalization, location and serviceProvider
    // out of the summary; inside participant the period, inside diagnosis the use and rank.
    assert_eq!(
        output,
        json!({
            "resourceType": "Encounter",
            "id": "enc-1",
            "meta": {"tag": [{"system": SUBSETTED, "code": "SUBSETTED"}]},
            "status": "finished",
            "class": encounter["class"],
            "type": encounter["type"],
            "subject": {"reference": "Patient/alice"},
            "participant": [{
                "type": encounter["participant"][0]["type"],
                "individual": {"reference": "Practitioner/dr-a"}
            }],
            "reasonCode": [{"text": "Sore throat"}],
            "diagnosis": [{"condition": {"reference": "Condition/cond-1"}}]
        })
    );
    // _summary=text keeps the mandatory status and class.
    let text = summarize(&encounter, Summary::Text);
    assert_eq!(
        keys(&text),
        ["class", "id", "meta", "resourceType", "status"]
    );
}

#[test]
fn summary_true_recurses_but_keeps_extensions_and_mandatory_elements() {
    let observation = json!({
        "resourceType": "Observation",
        "extension": [{"url": "http://example.org/a", "valueString": "not in the summary"}],
        "modifierExtension": [{"url": "http://example.org/not", "valueBoolean": true}],
        "status": "final",
        "code": {"extension": [{"url": "http://example.org/c", "valueString": "only this"}]},
        "subject": {"extension": [{"url": "http://example.org/c", "valueString": "only this"}]},
        "valueString": "x",
        "component": [{
            "modifierExtension": [{"url": "http://example.org/m", "extension": [{"url": "a", "valueCode": "b"}]}],
            "code": {"text": "c"},
            "interpretation": [{"text": "N"}]
        }],
    });
    assert_valid("input", &observation);
    let output = summarize(&observation, Summary::True);
    assert_valid("output", &output);
    assert_eq!(
        output,
        json!({
            "resourceType": "Observation",
            "meta": {"tag": [{"system": SUBSETTED, "code": "SUBSETTED"}]},
            // isModifier: kept (R4 marks the resource's own modifierExtension not isSummary).
            "modifierExtension": [{"url": "http://example.org/not", "valueBoolean": true}],
            "status": "final",
            // Mandatory, with nothing of the summary in it: kept whole.
            "code": {"extension": [{"url": "http://example.org/c", "valueString": "only this"}]},
            // Optional, with nothing of the summary in it: left out (`subject` is gone).
            "valueString": "x",
            // An extension is kept whole (ext-1), the backbone's modifierExtension is isSummary.
            "component": [{
                "modifierExtension": [{"url": "http://example.org/m", "extension": [{"url": "a", "valueCode": "b"}]}],
                "code": {"text": "c"}
            }]
        })
    );
    // Attachment.data, the bulk the summary exists to spare, is not in it.
    let document = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "image/png", "data": "iVBORw0KGgo=", "title": "x"}}]
    });
    assert_valid("input", &document);
    let output = summarize(&document, Summary::True);
    assert_valid("output", &output);
    assert_eq!(
        output["content"],
        json!([{"attachment": {"contentType": "image/png", "title": "x"}}])
    );
}

#[test]
fn elements_with_a_choice_base() {
    let observation = observation();
    let list = parse_elements("Observation", "value, subject").expect("known names");
    assert_eq!(list, ["value", "subject"]);
    let output = select_elements(&observation, &list).expect("known names");
    assert_eq!(
        keys(&output),
        ["code", "id", "meta", "resourceType", "status", "subject"],
        "no value[x] at the top of this panel"
    );
    let heart_rate = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Heart rate"},
        "note": [{"text": "rested"}],
        "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": 60, "unit": "/min"}
    });
    let output = select_elements(&heart_rate, &["value"]).expect("known names");
    assert_eq!(
        output,
        json!({
            "resourceType": "Observation",
            "meta": {"tag": [{"system": SUBSETTED, "code": "SUBSETTED"}]},
            "status": "final",
            "code": {"text": "Heart rate"},
            "valueQuantity": {"value": 60, "unit": "/min"}
        })
    );
    let mut string = heart_rate.clone();
    let obj = string.as_object_mut().expect("an object");
    obj.remove("valueQuantity");
    obj.insert("valueString".into(), json!("sixty"));
    let output = select_elements(&string, &["value", "effective"]).expect("known names");
    assert_eq!(output["valueString"], "sixty");
    assert_eq!(output["effectiveDateTime"], "2026-01-01");
    assert!(output.get("note").is_none());
}

#[test]
fn unknown_elements_are_an_error_listing_them() {
    // A typed choice name is not an element name: the element is `value`.
    let error = parse_elements("Observation", "status,foo,valueQuantity,foo,component.code")
        .expect_err("unknown names");
    assert_eq!(
        error,
        ElementsError::UnknownElements {
            resource_type: "Observation".into(),
            names: vec![
                "foo".into(),
                "valueQuantity".into(),
                "component.code".into()
            ],
        }
    );
    assert_eq!(
        error.to_string(),
        "Observation has no element 'foo', 'valueQuantity', 'component.code'"
    );
    let outcome = error.to_operation_outcome();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "invalid");
    assert_eq!(
        select_elements(&observation(), &["note", "bogus"]),
        Err(ElementsError::UnknownElements {
            resource_type: "Observation".into(),
            names: vec!["bogus".into()],
        })
    );
    let mut owned = observation();
    assert!(select_elements_in_place(&mut owned, &["note", "bogus"]).is_err());
    assert_eq!(owned, observation(), "left untouched");
    assert_eq!(
        parse_elements("Citation", "status"),
        Err(ElementsError::UnknownType("Citation".into()))
    );
    assert_eq!(
        select_elements(&json!({"status": "final"}), &["status"]),
        Err(ElementsError::UnknownType(String::new()))
    );
}

#[test]
fn an_empty_element_list_keeps_id_meta_and_the_mandatory_elements() {
    for list in ["", " , ,"] {
        assert_eq!(
            parse_elements("Observation", list),
            Ok(Vec::<String>::new())
        );
    }
    let output = select_elements(&observation(), &[] as &[&str]).expect("no names");
    assert_eq!(
        keys(&output),
        ["code", "id", "meta", "resourceType", "status"]
    );
    assert_eq!(subsetted_tags(&output), 1);
    assert_valid("empty _elements", &output);
}

#[test]
fn the_subsetted_tag_is_added_once() {
    let mut observation = observation();
    observation["meta"]["tag"] = json!([
        {"system": "http://example.org/tags", "code": "imported"},
        {"system": SUBSETTED, "code": "SUBSETTED", "display": "subsetted"}
    ]);
    for mode in [Summary::True, Summary::Text, Summary::Data] {
        let output = summarize(&observation, mode);
        assert_eq!(output["meta"]["tag"], observation["meta"]["tag"], "{mode}");
    }
    let output = select_elements(&observation, &["note"]).expect("known names");
    assert_eq!(output["meta"]["tag"], observation["meta"]["tag"]);
    // Another tag: SUBSETTED goes after it.
    observation["meta"]["tag"] = json!([{"system": "http://example.org/tags", "code": "imported"}]);
    let output = summarize(&observation, Summary::Data);
    assert_eq!(
        output["meta"]["tag"],
        json!([
            {"system": "http://example.org/tags", "code": "imported"},
            {"system": SUBSETTED, "code": "SUBSETTED"}
        ])
    );
}

#[test]
fn contained_resources_follow_the_references_that_are_kept() {
    let observation = json!({
        "resourceType": "Observation",
        "contained": [
            {"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "#o1"}},
            {"resourceType": "Organization", "id": "o1", "name": "Hospital A"},
            {"resourceType": "Provenance", "id": "v1", "target": [{"reference": "#"}],
             "recorded": "2026-01-01T00:00:00Z", "agent": [{"who": {"display": "lab"}}]},
            {"resourceType": "Device", "id": "d1"}
        ],
        "status": "final",
        "code": {"text": "Heart rate"},
        "subject": {"reference": "#p1"},
        "device": {"reference": "#d1"},
    });
    assert_valid("input", &observation);
    let ids = |output: &Value| -> Vec<String> {
        output["contained"].as_array().map_or(Vec::new(), |c| {
            c.iter()
                .map(|r| r["id"].as_str().expect("id").to_owned())
                .collect()
        })
    };
    // subject keeps p1, which keeps o1; v1 refers to its container; d1 is no longer referenced.
    let output = select_elements(&observation, &["contained", "subject"]).expect("known");
    assert_valid("contained,subject", &output);
    assert_eq!(ids(&output), ["p1", "o1", "v1"]);
    let output = select_elements(&observation, &["contained"]).expect("known");
    assert_valid("contained", &output);
    assert_eq!(ids(&output), ["v1"]);
    let output = select_elements(&observation, &["contained", "device", "subject"]).expect("known");
    assert_eq!(ids(&output), ["p1", "o1", "v1", "d1"]);
    // contained is not in the summary, nor in text.
    for mode in [Summary::True, Summary::Text] {
        let output = summarize(&observation, mode);
        assert_valid("summary", &output);
        assert!(output.get("contained").is_none(), "{mode}");
    }
    // A lone unreferenced one goes, and `contained` with it.
    let mut lone = observation.clone();
    lone["contained"] = json!([{"resourceType": "Device", "id": "d1"}]);
    let output = select_elements(&lone, &["contained"]).expect("known");
    assert!(output.get("contained").is_none());
    assert_valid("lone", &output);
    select_elements_in_place(&mut lone, &["contained"]).expect("known");
    assert_eq!(lone, output);
}

#[test]
fn summary_values_parse() {
    assert_eq!("true".parse(), Ok(Summary::True));
    assert_eq!("text".parse(), Ok(Summary::Text));
    assert_eq!("data".parse(), Ok(Summary::Data));
    assert_eq!("false".parse(), Ok(Summary::False));
    assert_eq!("count".parse::<Summary>(), Err(SummaryError::Count));
    assert_eq!(
        "TRUE".parse::<Summary>(),
        Err(SummaryError::Unknown("TRUE".into()))
    );
    for mode in [Summary::True, Summary::Text, Summary::Data, Summary::False] {
        assert_eq!(mode.to_string().parse(), Ok(mode));
    }
}

#[test]
fn a_value_that_is_not_a_resource_is_returned_as_it_is() {
    for value in [
        json!({"status": "final"}),
        json!({"resourceType": "Citation"}),
        json!([1, 2]),
    ] {
        assert_eq!(summarize(&value, Summary::True), value);
        let mut owned = value.clone();
        summarize_in_place(&mut owned, Summary::Data);
        assert_eq!(owned, value);
    }
}
