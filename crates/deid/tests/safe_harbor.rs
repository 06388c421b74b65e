//! The built-in Safe Harbor rules over every vendored Synthea patient.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use carechain_deid::scan::PhiScanner;
use carechain_deid::{Date, DateMode, DeidSecret, Deidentifier, Rules};
use common::{StoredPatient, patients, references, safe_harbor, secret, unlinked};
use serde_json::{Value, json};

/// One custodian's de-identified export of some patients: NDJSON lines.
fn export(deid: &Deidentifier, patients: &[StoredPatient]) -> Vec<String> {
    let mut lines = Vec::new();
    for p in patients {
        let scope = deid.patient(&p.wallet).expect("wallet");
        for resource in &p.resources {
            let out = if unlinked(resource) {
                deid.deidentify_unlinked(resource)
            } else {
                scope.deidentify(resource)
            };
            if let Some(out) = out.expect("a resource") {
                lines.push(serde_json::to_string(&out).expect("JSON"));
            }
        }
    }
    lines
}

#[test]
fn the_vendored_inputs_are_valid_r4_as_stored() {
    let patients = patients();
    assert_eq!(patients.len(), 27);
    let mut total = 0;
    for p in &patients {
        for r in &p.resources {
            if let Err(e) = carechain_fhir::validate(r) {
                panic!("{} {}: {e:?}", p.source, r["resourceType"]);
            }
            total += 1;
        }
    }
    assert_eq!(total, 319 + 556 + 25);
}

#[test]
fn safe_harbor_output_has_no_phi_and_validates() {
    let patients = patients();
    let deid =
        safe_harbor("study-1", "org-a").with_reference_date(Date::new(2026, 1, 1).expect("date"));
    let lines = export(&deid, &patients);
    let scanner = PhiScanner::new(patients.iter().flat_map(|p| &p.resources), true);
    assert!(scanner.needles() > 300, "{}", scanner.needles());
    let findings = scanner.scan_ndjson(&lines.join("\n"));
    assert!(
        findings.is_empty(),
        "{} findings, first: {:?}\nin line: {}",
        findings.len(),
        findings.first(),
        findings.first().map_or("", |f| lines[f.line - 1].as_str())
    );
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        let value: Value = serde_json::from_str(line).expect("JSON");
        if let Err(e) = carechain_fhir::validate(&value) {
            panic!("{e:?}\n{line}");
        }
        *types
            .entry(value["resourceType"].as_str().unwrap_or("").into())
            .or_default() += 1;
        assert_eq!(value["meta"]["security"][0]["code"], "PSEUDED", "{line}");
    }
    // The Synthea population has a patient born in 1931: 94 on the reference date.
    let old = patients
        .iter()
        .find(|p| p.resources[0]["birthDate"] == "1931-04-18")
        .expect("the 1931 patient");
    let pseudonym = deid.pseudonym(&old.wallet).expect("wallet");
    let exported = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|v| v["id"] == json!(pseudonym))
        .expect("exported");
    assert_eq!(
        exported["birthDate"], "1935",
        "2026 - 91: the one year of everyone 90 or over"
    );
    // Nothing in these types is dropped by Safe Harbor: every input resource is exported.
    assert_eq!(lines.len(), 319 + 556 + 25, "{types:?}");
}

fn parse_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

/// `Type/id` of every resource.
fn ids(resources: &[Value]) -> HashSet<String> {
    resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn pseudonyms_are_stable_across_custodians_and_differ_across_studies() {
    let patients = patients();
    let p = &patients[0];
    let (a, b) = (
        safe_harbor("study-1", "org-a"),
        safe_harbor("study-1", "org-b"),
    );
    // Each custodian holds part of the patient's records: the Patient and every other
    // resource at A, the rest at B.
    let split = |keep: usize| StoredPatient {
        source: p.source.clone(),
        wallet: p.wallet.clone(),
        resources: p
            .resources
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == keep)
            .map(|(_, r)| r.clone())
            .collect(),
    };
    let out_a = parse_lines(&export(&a, &[split(0)]));
    let out_b = parse_lines(&export(&b, &[split(1)]));
    let pseudonym = a.pseudonym(&p.wallet).expect("wallet");
    assert_eq!(b.pseudonym(&p.wallet).expect("wallet"), pseudonym);
    assert_eq!(out_a[0]["resourceType"], "Patient");
    assert_eq!(out_a[0]["id"], json!(pseudonym));
    assert!(!pseudonym.contains(&p.wallet[2..]));
    // Both custodians' resources name the patient by the same pseudonym.
    let mut patient_refs = 0;
    for r in out_a.iter().chain(&out_b) {
        let mut refs = Vec::new();
        references(r, &mut refs);
        for reference in refs.iter().filter(|r| r.starts_with("Patient/")) {
            assert_eq!(reference, &format!("Patient/{pseudonym}"));
            patient_refs += 1;
        }
    }
    assert!(patient_refs > 300, "{patient_refs}");
    // And B's references into A's half join (Synthea's ids are UUIDs: custodian-independent).
    let exported = ids(&out_a)
        .union(&ids(&out_b))
        .cloned()
        .collect::<HashSet<_>>();
    let mut refs = Vec::new();
    out_b.iter().for_each(|r| references(r, &mut refs));
    let into_a = refs.iter().filter(|r| ids(&out_a).contains(*r)).count();
    assert!(into_a > 50, "{into_a}");
    assert!(
        refs.iter()
            .all(|r| r.starts_with('#') || exported.contains(r)),
        "{refs:?}"
    );
    // Another study, or another secret, gives another pseudonym.
    let other_study = safe_harbor("study-2", "org-a")
        .pseudonym(&p.wallet)
        .expect("wallet");
    assert_ne!(other_study, pseudonym);
    let other_secret = DeidSecret::from_bytes(&[9u8; 32]).expect("secret");
    let other =
        Deidentifier::new(Rules::safe_harbor(), &other_secret, "study-1", "org-a").expect("deid");
    assert_ne!(other.pseudonym(&p.wallet).expect("wallet"), pseudonym);
    // Ids that are not UUIDs are only unique per server: hashed with the custodian.
    let obs = json!({"resourceType": "Observation", "id": "42", "status": "final",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]}});
    let id_at =
        |d: &Deidentifier| d.deidentify(&obs, &p.wallet).expect("ok").expect("kept")["id"].clone();
    assert_ne!(id_at(&a), id_at(&b));
    assert_eq!(id_at(&a), id_at(&safe_harbor("study-1", "org-a")));
}

/// Every `YYYY-MM-DD...` string in a value, by its JSON path.
fn dates(value: &Value, path: &mut String, out: &mut HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                dates(v, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                dates(v, path, out);
                path.truncate(len);
            }
        }
        Value::String(s) if s.len() >= 10 && Date::parse(&s[..10]).is_some() => {
            out.insert(path.clone(), s.clone());
        }
        _ => {}
    }
}

#[test]
fn date_shifts_are_consistent_within_a_patient_and_between_custodians() {
    let patients = patients();
    let shift = |custodian: &str| {
        Deidentifier::new(
            Rules::safe_harbor().with_date_mode(DateMode::Shift),
            &secret(),
            "study-1",
            custodian,
        )
        .expect("deid")
        .with_reference_date(Date::new(2026, 1, 1).expect("date"))
    };
    let (a, b) = (shift("org-a"), shift("org-b"));
    let mut offsets = HashSet::new();
    for p in patients.iter().take(4) {
        let scope_a = a.patient(&p.wallet).expect("wallet");
        let scope_b = b.patient(&p.wallet).expect("wallet");
        let offset = scope_a.date_offset_days();
        assert_eq!(offset, scope_b.date_offset_days());
        assert!(offset != 0 && offset.abs() <= 365, "{offset}");
        offsets.insert(offset);
        let mut compared = 0;
        for r in p.resources.iter().filter(|r| !unlinked(r)) {
            let out_a = scope_a.deidentify(r).expect("ok").expect("kept");
            let out_b = scope_b.deidentify(r).expect("ok").expect("kept");
            let (mut before, mut after, mut at_b) =
                (HashMap::new(), HashMap::new(), HashMap::new());
            dates(r, &mut String::new(), &mut before);
            dates(&out_a, &mut String::new(), &mut after);
            dates(&out_b, &mut String::new(), &mut at_b);
            assert_eq!(after, at_b, "custodians shift alike");
            for (path, was) in &before {
                let Some(now) = after.get(path) else { continue };
                let (was_day, now_day) = (Date::parse(&was[..10]), Date::parse(&now[..10]));
                let moved = was_day.zip(now_day).map(|(w, n)| w.days_until(n));
                assert_eq!(moved, Some(i64::from(offset)), "{path}: {was} -> {now}");
                assert_eq!(&was[10..], &now[10..], "time of day and zone kept");
                compared += 1;
            }
        }
        assert!(compared >= 1, "{}", p.source);
    }
    assert!(
        offsets.len() > 1,
        "patients get different offsets: {offsets:?}"
    );
}

#[test]
fn references_still_join_inside_the_export() {
    let patients = patients();
    let deid = safe_harbor("study-1", "org-a");
    let inputs: Vec<Value> = patients.iter().flat_map(|p| p.resources.clone()).collect();
    let outputs = parse_lines(&export(&deid, &patients));
    let unresolved = |resources: &[Value]| {
        let known = ids(resources);
        let mut refs = Vec::new();
        resources.iter().for_each(|r| references(r, &mut refs));
        let total = refs.iter().filter(|r| !r.starts_with('#')).count();
        (
            total,
            refs.iter()
                .filter(|r| !r.starts_with('#') && !known.contains(*r))
                .count(),
        )
    };
    let (total_in, missing_in) = unresolved(&inputs);
    let (total_out, missing_out) = unresolved(&outputs);
    assert!(total_out > 2000, "{total_out}");
    // References only go where there was nothing to point to (Reference.display alone) ...
    assert!(total_out <= total_in);
    // ... and every one that pointed at an exported resource still does.
    assert_eq!(missing_out, missing_in, "{total_in} {total_out}");
}

#[test]
fn ages_over_89_are_grouped() {
    let at = Date::new(2025, 6, 1).expect("date");
    let wallet = "0x00000000000000000000000000000000000000aa";
    let birth = |deid: &Deidentifier, date: &str| {
        let patient = json!({"resourceType": "Patient", "id": wallet, "birthDate": date});
        let out = deid
            .deidentify(&patient, wallet)
            .expect("ok")
            .expect("kept");
        assert!(carechain_fhir::validate(&out).is_ok());
        out["birthDate"].as_str().unwrap_or_default().to_owned()
    };
    let year = safe_harbor("s", "c").with_reference_date(at);
    assert_eq!(birth(&year, "1930-05-01"), "1934", "95: the one 90+ year");
    assert_eq!(birth(&year, "1935-06-01"), "1934", "90 today");
    assert_eq!(birth(&year, "1935-06-02"), "1935", "89 until tomorrow");
    assert_eq!(
        birth(&year, "1935"),
        "1934",
        "a bare year counts from its first day"
    );
    assert_eq!(birth(&year, "1980-02-03"), "1980");
    let shift = Deidentifier::new(
        Rules::safe_harbor().with_date_mode(DateMode::Shift),
        &secret(),
        "s",
        "c",
    )
    .expect("deid")
    .with_reference_date(at);
    assert_eq!(birth(&shift, "1920-01-01"), "1934");
    let shifted = birth(&shift, "1980-02-03");
    assert_eq!(shifted.len(), 10);
    assert_ne!(shifted, "1980-02-03");
    let onset = |age: Value| {
        let condition = json!({"resourceType": "Condition",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "subject": {"reference": format!("Patient/{wallet}")}, "onsetAge": age});
        let out = year
            .deidentify(&condition, wallet)
            .expect("ok")
            .expect("kept");
        assert!(carechain_fhir::validate(&out).is_ok(), "{out}");
        out["onsetAge"].clone()
    };
    let ucum = "http://unitsofmeasure.org";
    let ninety_plus =
        json!({"value": 90, "comparator": ">=", "unit": "years", "system": ucum, "code": "a"});
    assert_eq!(
        onset(json!({"value": 95, "unit": "years", "system": ucum, "code": "a"})),
        ninety_plus
    );
    assert_eq!(
        onset(json!({"value": 1100, "unit": "months", "system": ucum, "code": "mo"})),
        ninety_plus
    );
    let young = json!({"value": 40, "unit": "years", "system": ucum, "code": "a"});
    assert_eq!(onset(young.clone()), young);
}

#[test]
fn a_custom_rule_file_changes_the_output_as_configured() {
    let safe_harbor_rules = &carechain_deid::rules::SAFE_HARBOR
        [carechain_deid::rules::SAFE_HARBOR
            .find("[[rule]]")
            .expect("rules")..];
    let custom = format!(
        r#"
name = "Safe Harbor, keeping observation codes"

[dates]
mode = "shift"
max_shift_days = 30

[drop]
types = ["Claim", "ExplanationOfBenefit"]

[[rule]]
path = "Observation.code"
method = "keep"

[[rule]]
type = "Extension"
url = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
method = "redact"

[[rule]]
path = "Patient.gender"
method = "substitute"
value = "unknown"

{safe_harbor_rules}"#
    );
    let rules = Rules::from_toml(&custom).expect("valid rules");
    assert_eq!(rules.date_mode(), DateMode::Shift);
    let custom = Deidentifier::new(rules, &secret(), "study-1", "org-a").expect("deid");
    let standard = safe_harbor("study-1", "org-a");
    let p = &patients()[0];
    let of_type = |deid: &Deidentifier, ty: &str| -> Option<Value> {
        let r = p
            .resources
            .iter()
            .find(|r| r["resourceType"] == ty)
            .expect("present");
        deid.deidentify(r, &p.wallet).expect("ok")
    };
    let observation = of_type(&custom, "Observation").expect("kept");
    assert_eq!(observation["code"]["text"], "Body Height");
    assert!(
        of_type(&standard, "Observation").expect("kept")["code"]
            .get("text")
            .is_none()
    );
    assert_eq!(
        observation["effectiveDateTime"].as_str().map(str::len),
        Some(25),
        "shifted, not a year"
    );
    let patient = of_type(&custom, "Patient").expect("kept");
    assert_eq!(patient["gender"], "unknown");
    let urls = |p: &Value| -> Vec<String> {
        p["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["url"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(!urls(&patient).iter().any(|u| u.ends_with("us-core-race")));
    assert!(
        urls(&of_type(&standard, "Patient").expect("kept"))
            .iter()
            .any(|u| u.ends_with("us-core-race"))
    );
    assert_eq!(of_type(&custom, "Claim"), None);
    assert!(of_type(&standard, "Claim").is_some());
    for out in [observation, patient] {
        assert!(carechain_fhir::validate(&out).is_ok(), "{out}");
    }
}

#[test]
fn required_elements_removed_by_the_rules_become_data_absent() {
    let deid = safe_harbor("s", "c");
    let wallet = "0x00000000000000000000000000000000000000aa";
    let inputs = [
        json!({"resourceType": "DocumentReference", "status": "current",
               "subject": {"reference": format!("Patient/{wallet}")},
               "content": [{"attachment": {"contentType": "text/plain", "data": "QWFyb24gQnJla2tl"}}]}),
        json!({"resourceType": "Coverage", "status": "active",
               "beneficiary": {"reference": format!("Patient/{wallet}")},
               "payor": [{"display": "Humana"}],
               "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group"}]},
                          "value": "GRP-12345", "name": "Acme Corp staff"}]}),
        json!({"resourceType": "Provenance", "recorded": "2020-01-01T10:00:00Z",
               "target": [{"reference": "Observation/1"}],
               "agent": [{"who": {"display": "Dr. Mason910 Quitzon246"}}]}),
        json!({"resourceType": "Goal", "lifecycleStatus": "accepted",
               "description": {"text": "Walk to Aaron's house"},
               "subject": {"reference": format!("Patient/{wallet}")}}),
    ];
    for input in &inputs {
        assert!(carechain_fhir::validate(input).is_ok(), "{input}");
        let out = deid.deidentify(input, wallet).expect("ok").expect("kept");
        if let Err(e) = carechain_fhir::validate(&out) {
            panic!("{e:?}\n{out}");
        }
        let text = out.to_string();
        for phi in [
            "QWFyb24",
            "GRP-12345",
            "Acme",
            "Humana",
            "Mason910",
            "Aaron",
            "2020-01-01",
        ] {
            assert!(!text.contains(phi), "{phi} in {text}");
        }
        assert!(text.contains("data-absent-reason"), "{text}");
    }
}

#[test]
fn a_whole_bundle_is_deidentified_with_its_links_intact() {
    let bundle: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_dir().join("bundle-afhir.json")).expect("data"),
    )
    .expect("JSON");
    let wallet = "0x00000000000000000000000000000000000000aa";
    let deid = safe_harbor("s", "c");
    // The raw bundle names its patient by a UUID, not by the wallet.
    let patient_id = bundle["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the Patient first");
    let scope = deid
        .patient(wallet)
        .expect("wallet")
        .with_source_id(patient_id);
    let out = scope.deidentify(&bundle).expect("ok").expect("kept");
    if let Err(e) = carechain_fhir::validate(&out) {
        panic!("{e:?}");
    }
    let entries = out["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 319);
    let full_urls: HashSet<&str> = entries
        .iter()
        .filter_map(|e| e["fullUrl"].as_str())
        .collect();
    for e in entries {
        let id = e["resource"]["id"].as_str().expect("id");
        assert!(
            full_urls.contains(format!("urn:uuid:{id}").as_str()),
            "{id}"
        );
        assert!(e.get("request").is_none());
    }
    let mut refs = Vec::new();
    references(&out, &mut refs);
    let joined = refs
        .iter()
        .filter(|r| full_urls.contains(r.as_str()))
        .count();
    let source_urls: HashSet<&str> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["fullUrl"].as_str())
        .collect();
    let mut source_refs = Vec::new();
    references(&bundle, &mut source_refs);
    let joined_before = source_refs
        .iter()
        .filter(|r| source_urls.contains(r.as_str()))
        .count();
    assert_eq!(
        joined, joined_before,
        "every link inside the bundle still joins"
    );
    let to_patient = format!("urn:uuid:{}", scope.pseudonym());
    assert!(refs.iter().filter(|r| **r == to_patient).count() > 300);
    let scanner = PhiScanner::new([&bundle], true);
    assert_eq!(scanner.scan_line(&out.to_string()), []);
}

#[test]
fn the_fhir_crates_valid_examples_stay_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fhir/tests/data/valid");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    assert!(names.len() >= 14);
    let wallet = "0x00000000000000000000000000000000000000aa";
    for deid in [
        safe_harbor("s", "c"),
        Deidentifier::new(
            Rules::safe_harbor().with_date_mode(DateMode::Shift),
            &secret(),
            "s",
            "c",
        )
        .expect("deid"),
    ] {
        for path in &names {
            let input: Value =
                serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
            let Some(out) = deid.deidentify(&input, wallet).expect("a resource") else {
                assert_eq!(
                    input["resourceType"], "AuditEvent",
                    "only AuditEvent is dropped"
                );
                continue;
            };
            if let Err(e) = carechain_fhir::validate(&out) {
                panic!("{}: {e:?}\n{out}", path.display());
            }
            let scanner = PhiScanner::new([&input], deid.rules().date_mode() == DateMode::Year);
            let text = out.to_string();
            assert_eq!(scanner.scan_line(&text), [], "{}: {text}", path.display());
        }
    }
}
