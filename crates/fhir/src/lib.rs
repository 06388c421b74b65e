//! Validation of FHIR R4 (4.0.1) JSON resources against the official base definitions, for the
//! gateway to call before it stores anything.
//!
//! ```
//! use serde_json::json;
//!
//! let observation = json!({
//!     "resourceType": "Observation",
//!     "status": "bogus",
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
//!     "effectiveDateTime": "yesterday",
//! });
//! let error = carechain_fhir::validate(&observation).unwrap_err();
//! let found: Vec<(&str, &str)> = error
//!     .issues
//!     .iter()
//!     .map(|i| (i.code.as_str(), i.expression.as_str()))
//!     .collect();
//! assert_eq!(
//!     found,
//!     [("value", "Observation.effectiveDateTime"), ("code-invalid", "Observation.status")]
//! );
//! let outcome = error.to_operation_outcome(); // the body of a 422 answer
//! assert_eq!(outcome["issue"][1]["expression"][0], "Observation.status");
//! ```
//!
//! The tables are also readable through [`schema`], for code that walks resources by their
//! definitions (the de-identification engine does).
//!
//! # What is checked
//!
//! Everything below comes from tables generated from the R4 StructureDefinitions and ValueSets
//! (see `crates/fhir/README.md` for where they come from), not from code written per resource:
//!
//! - `resourceType` names a concrete R4 resource type; every property is an element of the
//!   resource, datatype or backbone element it sits in (so `extension` and `modifierExtension`
//!   exactly where the spec has them), and a `_name` sibling only belongs to a primitive element;
//! - JSON types: objects for complex types, arrays exactly for repeating elements (never empty),
//!   strings, numbers or booleans for primitives as the type says; no `null` except in a
//!   repeating primitive whose `_name` sibling has content at that index; no empty object;
//! - cardinality: every element with a minimum of 1 is present (a `_name` sibling counts);
//! - primitive formats: the `regex` of each R4 primitive type (date, dateTime, instant, time,
//!   id, code, oid, uuid, uri, url, canonical, base64Binary, string, markdown), integers in their
//!   32-bit ranges (positiveInt ≥ 1, unsignedInt ≥ 0), days that exist in their month, strings
//!   of at most 1 MiB, a narrative `div` that starts as one;
//! - choice elements: at most one of `value[x]` (and every other `[x]`), each with the JSON
//!   shape of its type (`"valueQuantity": "12 mg"` is refused);
//! - required bindings: codes of `code` elements (in resources and datatypes alike:
//!   `Observation.status`, `Quantity.comparator`, `ContactPoint.system`, `HumanName.use`, ...)
//!   are in their value set; a Coding or CodeableConcept with a required binding
//!   (`Condition.clinicalStatus`) has a coding from it;
//! - contained resources are validated like any other, must be referenced from the resource
//!   (`#id`) or refer to it (`#`) (dom-3), contain nothing (dom-2) and carry no
//!   `meta.versionId`, `meta.lastUpdated` (dom-4) or security label (dom-5);
//! - a Bundle's entries (and a Parameters' resources) are validated as resources, with
//!   locations such as `Bundle.entry[0].resource.status`;
//! - an extension has a value or extensions, not both (ext-1).
//!
//! # What is not
//!
//! - The other invariants (FHIRPath `constraint`s such as obs-6, bdl-7 or per-resource rules):
//!   no FHIRPath engine runs here.
//! - Profiles (US Core, ...), the extensions' own definitions (an extension's `url` and value
//!   are checked for shape only) and reference targets (the type a `Reference` points at).
//! - Bindings that are not required (extensible, preferred, example), and the four required
//!   value sets the R4 package cannot expand (`mimetypes`, `currencies`, `ucum-units` and the
//!   LOINC answer list `LL379-9`): those codes are checked for format only.
//! - Duplicate JSON keys (the parser keeps the last), the textual form of JSON numbers (a
//!   `decimal` is any JSON number) and whether a narrative `div` is well-formed XHTML.
//!
//! # Subsetting for search: `_summary` and `_elements`
//!
//! [`summarize`] and [`select_elements`] (and their `_in_place` forms, for a resource the
//! caller owns) return the part of a resource that a search's `_summary=true|text|data|false`
//! or `_elements=a,b` asks for, tagged `SUBSETTED`, and still valid R4: mandatory elements stay.
//! [`parse_elements`] checks an `_elements` list against the searched type before any
//! resource is read.
//!
//! ```
//! use carechain_fhir::{Summary, parse_elements, select_elements, summarize};
//! use serde_json::json;
//!
//! let observation = json!({
//!     "resourceType": "Observation",
//!     "status": "final",
//!     "code": {"text": "Heart rate"},
//!     "note": [{"text": "after a run"}],
//!     "valueQuantity": {"value": 130, "unit": "/min"},
//! });
//! let summary = summarize(&observation, Summary::True); // `note` is not isSummary in R4
//! assert!(summary.get("note").is_none() && summary.get("valueQuantity").is_some());
//! assert_eq!(summary["meta"]["tag"][0]["code"], "SUBSETTED");
//!
//! let names = parse_elements("Observation", "value").expect("known names");
//! let selected = select_elements(&observation, &names).expect("known names");
//! assert!(selected.get("status").is_some()); // mandatory
//! assert!(parse_elements("Observation", "value,colour").is_err()); // a 400
//! carechain_fhir::validate(&selected).expect("still valid");
//! ```
//!
//! # Cost
//!
//! The walk allocates nothing while a resource is valid, apart from a small vector when the
//! resource references contained resources; lookups are binary searches over sorted static
//! tables. `cargo run --release -p carechain-fhir --example bench` prints the time per
//! validation of a typical Observation and of a 500-entry Bundle, and of subsetting the
//! Observation.

#[rustfmt::skip]
mod definitions;
pub mod import;
mod issue;
mod model;
mod path;
mod primitive;
pub mod schema;
mod subset;
mod validate;

pub use issue::{Issue, IssueCode, Severity, ValidationError, operation_outcome};
pub use subset::{
    ElementsError, Summary, SummaryError, parse_elements, select_elements,
    select_elements_in_place, summarize, summarize_in_place,
};

/// Validates one FHIR R4 resource in its JSON form (a Bundle with all its entries, contained
/// resources included).
///
/// # Errors
///
/// [`ValidationError`] with every issue found (at most about a thousand), in document order.
pub fn validate(resource: &serde_json::Value) -> Result<(), ValidationError> {
    validate::validate(resource)
}

/// Whether `name` is a concrete R4 resource type (`Observation`, not `DomainResource`).
pub fn is_resource_type(name: &str) -> bool {
    model::TypeDef::resource(name).is_some()
}
