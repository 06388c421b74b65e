//! What the gateway knows about the FHIR resources it stores: ids, the patient a resource
//! belongs to, and the few searchable fields it indexes.
//!
//! Patient identity: a patient *is* a wallet. `Patient.id` is the wallet address in lower-case
//! hex (`0x` + 40 digits). A Patient created without that id must carry an `identifier` with
//! system [`WALLET_SYSTEM`] whose value is the address, and gets the address as its id. Every
//! other resource names its patient by a `subject` or `patient` reference `Patient/<address>`.

use crate::{error::AppError, fhir::date::DateRange};
use carechain_contracts::ResourceType;
use serde_json::Value;

/// Identifier system carrying a patient's wallet address.
pub use carechain_fhir::import::WALLET_SYSTEM;

/// What the gateway stores under a type name: a patient's record (a type of the consent table)
/// or a resource of the consortium's directory (`DIRECTORY_RESOURCE_TYPES`: Organization,
/// Practitioner, ...), which belongs to no patient and which members read without consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredType {
    /// A type with patient data, covered by consent.
    Record(ResourceType),
    /// A directory type (its name, from `DIRECTORY_RESOURCE_TYPES`).
    Directory(&'static str),
}

impl StoredType {
    /// The FHIR type name.
    pub fn code(self) -> &'static str {
        match self {
            Self::Record(rt) => rt.code(),
            Self::Directory(name) => name,
        }
    }

    /// The consent type, for a record; a directory type is refused as not supported here.
    pub fn record(self) -> Result<ResourceType, AppError> {
        match self {
            Self::Record(rt) => Ok(rt),
            Self::Directory(name) => Err(AppError::NotSupported(format!(
                "this interaction is not supported on the directory type `{name}`"
            ))),
        }
    }
}

/// The directory type called `name`, if it is one.
pub fn directory_type(name: &str) -> Option<&'static str> {
    carechain_contracts::codes::DIRECTORY_RESOURCE_TYPES
        .iter()
        .copied()
        .find(|t| *t == name)
}

/// Parses a type name the gateway stores: a record type or a directory type.
pub fn parse_stored_type(name: &str) -> Result<StoredType, AppError> {
    match directory_type(name) {
        Some(directory) => Ok(StoredType::Directory(directory)),
        None => parse_type(name).map(StoredType::Record),
    }
}

/// The `resourceType` of a parsed body, checked to be `expected`.
pub fn check_body_type(body: &Value, expected: StoredType) -> Result<(), AppError> {
    let name = body
        .as_object()
        .ok_or_else(|| AppError::Invalid("the body must be a JSON object".into()))?
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("the body has no resourceType".into()))?;
    if name == expected.code() {
        Ok(())
    } else {
        Err(AppError::Invalid(format!(
            "the resource's type is not {}",
            expected.code()
        )))
    }
}

/// A directory resource's searchable fields: its identifiers as tokens (`system|value`), so
/// conditional references (`Organization?identifier=system|value`) find it.
pub fn directory_fields(body: &Value) -> SearchFields {
    let mut fields = SearchFields::default();
    for ident in body
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(value) = ident.get("value").and_then(Value::as_str) {
            let system = ident
                .get("system")
                .and_then(Value::as_str)
                .map(str::to_owned);
            fields.codes.push((system, value.to_owned()));
        }
    }
    fields
}

/// The resource types the gateway stores (the consent table, less AuditEvent which the
/// gateway writes itself).
pub fn storable(resource_type: ResourceType) -> bool {
    resource_type != ResourceType::AuditEvent
}

/// Parses a resource type name from a URL segment or a body.
pub fn parse_type(name: &str) -> Result<ResourceType, AppError> {
    let rt: ResourceType = name
        .parse()
        .map_err(|_| AppError::NotSupported(format!("resource type `{name}` is not supported")))?;
    if storable(rt) {
        Ok(rt)
    } else {
        Err(AppError::NotSupported(format!(
            "resource type `{name}` is not supported"
        )))
    }
}

/// A version id: a positive integer.
pub fn version_id(text: &str) -> Result<i64, AppError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::Invalid("a version id is a positive integer".into()))
}

/// The version an ETag names: `W/"3"` or `"3"` (weak and strong forms alike: versions are
/// exact), as sent in `If-Match` or a Bundle entry's `request.ifMatch`.
pub fn etag_version(text: &str) -> Result<i64, AppError> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| AppError::Invalid("If-Match must be an ETag such as W/\"1\"".into()))?;
    version_id(text)
}

/// Checks a FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn validate_id(id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid(format!(
            "`{}` is not a valid FHIR id",
            truncate(id)
        )))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(70).collect()
}

/// Normalises a wallet address (`0x` + 40 hex digits) to lower case.
pub fn normalize_address(text: &str) -> Option<String> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    (hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("0x{}", hex.to_ascii_lowercase()))
}

/// The `resourceType` of a parsed body, checked to be an object of a supported type.
pub fn body_type(body: &Value) -> Result<ResourceType, AppError> {
    let obj = body
        .as_object()
        .ok_or_else(|| AppError::Invalid("the body must be a JSON object".into()))?;
    let name = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::Invalid("the body has no resourceType".into()))?;
    parse_type(name)
}

/// The wallet address in a Patient's `urn:carechain:wallet` identifier.
pub fn wallet_identifier(patient: &Value) -> Option<String> {
    patient
        .get("identifier")?
        .as_array()?
        .iter()
        .find_map(|ident| {
            (ident.get("system")?.as_str()? == WALLET_SYSTEM)
                .then(|| normalize_address(ident.get("value")?.as_str()?))
                .flatten()
        })
}

/// The element naming the patient, per type (R4's `patient` compartment definitions).
fn patient_element(rt: ResourceType) -> &'static str {
    match rt {
        ResourceType::AllergyIntolerance
        | ResourceType::Immunization
        | ResourceType::Consent
        | ResourceType::Claim
        | ResourceType::ExplanationOfBenefit
        | ResourceType::Device
        | ResourceType::SupplyDelivery => "patient",
        ResourceType::Coverage => "beneficiary",
        _ => "subject",
    }
}

/// The patient (lower-case address) a resource belongs to. For a Patient, `id` is the id the
/// resource has or will get.
pub fn patient_of(rt: ResourceType, id: Option<&str>, body: &Value) -> Result<String, AppError> {
    if rt == ResourceType::Patient {
        let from_id = id.and_then(normalize_address);
        let from_ident = wallet_identifier(body);
        return match (from_id, from_ident) {
            (Some(a), Some(b)) if a != b => Err(AppError::Unprocessable(
                "the Patient's id and wallet identifier differ".into(),
            )),
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => Err(AppError::Unprocessable(format!(
                "a Patient's id must be its wallet address, or it must carry an identifier with system {WALLET_SYSTEM}"
            ))),
        };
    }
    if rt == ResourceType::Provenance {
        // A Provenance names what it is about in `target`: its patient is the Patient there.
        return body
            .get("target")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("reference").and_then(Value::as_str))
            .find_map(patient_reference)
            .ok_or_else(|| {
                AppError::Unprocessable(
                    "Provenance.target must include `Patient/<wallet address>`".into(),
                )
            });
    }
    let element = patient_element(rt);
    let reference = body
        .get(element)
        .and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            AppError::Unprocessable(format!("{rt}.{element} must reference the patient"))
        })?;
    patient_reference(reference).ok_or_else(|| {
        AppError::Unprocessable(format!("{rt}.{element} must be `Patient/<wallet address>`"))
    })
}

/// Parses `Patient/<address>` (relative or ending an absolute URL).
pub fn patient_reference(reference: &str) -> Option<String> {
    let idx = reference.rfind("Patient/")?;
    if idx > 0 && !reference[..idx].ends_with('/') {
        return None;
    }
    normalize_address(&reference[idx + "Patient/".len()..])
}

/// The searchable fields of one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFields {
    /// Token values of `code` as `(system, code)` pairs.
    pub codes: Vec<(Option<String>, String)>,
    /// Token values of `category`.
    pub categories: Vec<(Option<String>, String)>,
    /// The clinically relevant date, when the type has one.
    pub date: Option<DateRange>,
    /// Id of the referenced Encounter, when any.
    pub encounter: Option<String>,
}

/// Which search parameters a type supports besides the common ones.
pub fn has_clinical_params(rt: ResourceType) -> bool {
    !matches!(rt, ResourceType::Patient)
}

fn codeable_tokens(value: Option<&Value>, out: &mut Vec<(Option<String>, String)>) {
    let Some(value) = value else { return };
    match value {
        Value::Array(items) => items.iter().for_each(|i| codeable_tokens(Some(i), out)),
        Value::String(code) => out.push((None, code.clone())),
        Value::Object(obj) => {
            if let Some(codings) = obj.get("coding").and_then(Value::as_array) {
                for coding in codings {
                    if let Some(code) = coding.get("code").and_then(Value::as_str) {
                        let system = coding
                            .get("system")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        out.push((system, code.to_owned()));
                    }
                }
            } else if let Some(code) = obj.get("code").and_then(Value::as_str) {
                // A bare Coding (Encounter.class).
                let system = obj.get("system").and_then(Value::as_str).map(str::to_owned);
                out.push((system, code.to_owned()));
            }
        }
        _ => {}
    }
}

fn first_date(body: &Value, paths: &[&[&str]]) -> Option<DateRange> {
    paths.iter().find_map(|path| {
        let mut v = body;
        for key in *path {
            v = v.get(key)?;
        }
        DateRange::parse(v.as_str()?).ok()
    })
}

/// Extracts the searchable fields.
pub fn search_fields(rt: ResourceType, body: &Value) -> SearchFields {
    let mut fields = SearchFields::default();
    let code_element = match rt {
        ResourceType::MedicationRequest | ResourceType::MedicationStatement => {
            Some("medicationCodeableConcept")
        }
        ResourceType::Immunization => Some("vaccineCode"),
        ResourceType::Encounter | ResourceType::DocumentReference => Some("type"),
        ResourceType::Patient => None,
        _ => Some("code"),
    };
    if let Some(element) = code_element {
        codeable_tokens(body.get(element), &mut fields.codes);
    }
    let category_element = match rt {
        ResourceType::Encounter => Some("class"),
        ResourceType::Patient | ResourceType::Immunization | ResourceType::Procedure => None,
        _ => Some("category"),
    };
    if let Some(element) = category_element {
        codeable_tokens(body.get(element), &mut fields.categories);
    }
    let date_paths: &[&[&str]] = match rt {
        ResourceType::Observation | ResourceType::DiagnosticReport => &[
            &["effectiveDateTime"],
            &["effectivePeriod", "start"],
            &["effectiveInstant"],
            &["issued"],
        ],
        ResourceType::Condition => &[
            &["onsetDateTime"],
            &["recordedDate"],
            &["onsetPeriod", "start"],
        ],
        ResourceType::AllergyIntolerance => &[&["recordedDate"], &["onsetDateTime"]],
        ResourceType::Procedure => &[&["performedDateTime"], &["performedPeriod", "start"]],
        ResourceType::Immunization => &[&["occurrenceDateTime"], &["recorded"]],
        ResourceType::Encounter => &[&["period", "start"]],
        ResourceType::DocumentReference => &[&["date"]],
        ResourceType::MedicationRequest => &[&["authoredOn"]],
        ResourceType::MedicationStatement => &[&["effectiveDateTime"], &["dateAsserted"]],
        ResourceType::CarePlan => &[&["period", "start"], &["created"]],
        ResourceType::Consent => &[&["dateTime"]],
        ResourceType::MedicationAdministration => {
            &[&["effectiveDateTime"], &["effectivePeriod", "start"]]
        }
        ResourceType::CareTeam | ResourceType::Coverage => &[&["period", "start"]],
        ResourceType::Goal => &[&["startDate"], &["statusDate"]],
        ResourceType::ImagingStudy => &[&["started"]],
        ResourceType::SupplyDelivery => &[&["occurrenceDateTime"], &["occurrencePeriod", "start"]],
        ResourceType::Claim | ResourceType::ExplanationOfBenefit => {
            &[&["created"], &["billablePeriod", "start"]]
        }
        ResourceType::Provenance => &[&["recorded"]],
        ResourceType::Patient | ResourceType::AuditEvent | ResourceType::Device => &[],
    };
    fields.date = first_date(body, date_paths);
    let encounter_ref = body
        .get("encounter")
        .or_else(|| {
            body.get("context")
                .and_then(|c| c.get("encounter"))
                .and_then(|e| e.get(0))
        })
        .and_then(|e| e.get("reference"))
        .and_then(Value::as_str);
    fields.encounter = encounter_ref
        .and_then(|r| r.rsplit_once("Encounter/").map(|(_, id)| id.to_owned()))
        .filter(|id| validate_id(id).is_ok());
    fields
}

/// Visits every `reference` string in a resource (for rewriting `urn:uuid` references).
pub fn for_each_reference(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::Object(obj) => {
            for (key, item) in obj.iter_mut() {
                if key == "reference"
                    && let Value::String(s) = item
                {
                    f(s);
                } else {
                    for_each_reference(item, f);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| for_each_reference(i, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ADDR: &str = "0x00000000000000000000000000000000000000aa";

    #[test]
    fn ids_and_addresses() {
        assert!(validate_id("abc-1.2").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id(&"a".repeat(65)).is_err());
        assert_eq!(
            normalize_address(&ADDR.to_uppercase().replace("0X", "0x")).as_deref(),
            Some(ADDR)
        );
        assert_eq!(normalize_address("0x12"), None);
    }

    #[test]
    fn finds_the_patient() {
        let obs = json!({"resourceType": "Observation", "subject": {"reference": format!("Patient/{ADDR}")}});
        assert_eq!(
            patient_of(ResourceType::Observation, None, &obs).expect("patient"),
            ADDR
        );
        let bad = json!({"resourceType": "Observation", "subject": {"reference": "Patient/123"}});
        assert!(patient_of(ResourceType::Observation, None, &bad).is_err());
        let allergy = json!({"patient": {"reference": format!("https://x/fhir/Patient/{ADDR}")}});
        assert_eq!(
            patient_of(ResourceType::AllergyIntolerance, None, &allergy).expect("patient"),
            ADDR
        );
        let patient = json!({"identifier": [{"system": WALLET_SYSTEM, "value": ADDR}]});
        assert_eq!(
            patient_of(ResourceType::Patient, None, &patient).expect("patient"),
            ADDR
        );
        assert!(
            patient_of(
                ResourceType::Patient,
                Some("0x00000000000000000000000000000000000000bb"),
                &patient
            )
            .is_err()
        );
        assert!(patient_of(ResourceType::Patient, None, &json!({})).is_err());
    }

    #[test]
    fn extracts_search_fields() {
        let obs = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "effectiveDateTime": "2020-05-01T10:00:00Z",
            "encounter": {"reference": "Encounter/e1"}
        });
        let f = search_fields(ResourceType::Observation, &obs);
        assert_eq!(
            f.codes,
            vec![(Some("http://loinc.org".into()), "8867-4".into())]
        );
        assert_eq!(f.categories.len(), 1);
        assert!(f.date.is_some());
        assert_eq!(f.encounter.as_deref(), Some("e1"));
    }

    #[test]
    fn rewrites_references() {
        let mut v =
            json!({"subject": {"reference": "urn:uuid:1"}, "x": [{"reference": "urn:uuid:2"}]});
        for_each_reference(&mut v, &mut |r| *r = r.replace("urn:uuid:", "X/"));
        assert_eq!(
            v,
            json!({"subject": {"reference": "X/1"}, "x": [{"reference": "X/2"}]})
        );
    }
}
