//! Rule files: reading one (TOML), checking every selector against the R4 definitions, and
//! compiling the selectors into tables the walk consults per node.
//!
//! A rule file:
//!
//! ```toml
//! name = "keep observation codes"
//!
//! [dates]
//! mode = "shift"          # or "year"
//! max_shift_days = 180
//!
//! [drop]
//! types = ["Person"]      # resource types left out of the export
//!
//! [[rule]]
//! path = "Observation.code"                 # or a list of paths
//! method = "keep"
//!
//! [[rule]]
//! type = "Extension"                        # a datatype, a primitive type or a resource type
//! url = "http://example.org/secret-ext"     # only extensions with this url
//! method = "redact"
//! ```
//!
//! Each value takes the method of the first rule (in file order) that covers it and can act on
//! its type; a rule covers the nodes its selector matches and everything below them.

use std::collections::BTreeSet;

use carechain_fhir::schema::{Element, Kind, Primitive, Type};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;

/// The built-in HIPAA Safe Harbor rule file (`crates/deid/rules/safe-harbor.toml`).
pub const SAFE_HARBOR: &str = include_str!("../rules/safe-harbor.toml");

/// At most this many rules in one file (the walk keeps the rules covering a node in a `u128`).
pub const MAX_RULES: usize = 128;

/// The code system of the security labels added to de-identified resources.
pub const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The security labels a rule file may ask for: the v3-ObservationValue codes that say how
/// the information was altered, with their displays.
const LABELS: [(&str, &str); 6] = [
    ("ABSTRED", "abstracted"),
    ("AGGRED", "aggregated"),
    ("ANONYED", "anonymized"),
    ("MASKED", "masked"),
    ("PSEUDED", "pseudonymized"),
    ("REDACTED", "redacted"),
];

/// A set of rules, by their position in the file.
pub(crate) type Bits = u128;

/// What a `dateShift` rule (and a birth date under 90) does to a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateMode {
    /// Only the year is kept (Safe Harbor). An `instant`, which must be complete, is removed.
    Year,
    /// Moved by the patient's offset (±`max_shift_days`, the same for every custodian in a
    /// study), at full precision. Years may change; intervals stay exact.
    Shift,
}

/// How `generalize` coarsens a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Generalization {
    /// A date to its year.
    Year,
    /// A US ZIP code to its first three digits (`000` for the restricted prefixes); any other
    /// postal code is removed.
    Zip3,
    /// A birth date: by the date mode, or the one "90 or older" year for anyone aged 90+.
    BirthDate,
    /// An `Age` of 90 years or more: `>= 90` years.
    Age,
}

/// What a rule does to the values it covers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Method {
    Keep,
    Redact,
    CryptoHash,
    DateShift,
    Generalize(Generalization),
    Substitute(Value),
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) method: Method,
    /// Only extensions with one of these urls (empty: no condition).
    pub(crate) urls: Vec<String>,
    /// Its paths of two or more steps: for each, the elements each step may go through
    /// (sorted), for checking a node's ancestors.
    pub(crate) deep_paths: Vec<Vec<Vec<u32>>>,
}

/// A compiled rule file: what [`crate::Deidentifier`] applies.
#[derive(Debug)]
pub struct Rules {
    name: String,
    pub(crate) rules: Vec<Rule>,
    /// Per [`Type::index`]: rules matching nodes of that type.
    pub(crate) by_type: Vec<Bits>,
    /// Per primitive type: rules matching its values.
    pub(crate) by_primitive: [Bits; 20],
    /// Per [`Element::index`]: one-step paths ending at that element.
    pub(crate) by_element: Vec<Bits>,
    /// Per [`Element::index`]: longer paths ending at that element (ancestors to check).
    pub(crate) by_element_deep: Vec<Bits>,
    /// Rules with a url condition.
    pub(crate) with_url: Bits,
    /// Per [`Type::index`]: whether resources of that type are dropped.
    pub(crate) drop: Vec<bool>,
    pub(crate) date_mode: DateMode,
    pub(crate) max_shift_days: u32,
    /// The security label codings to add.
    pub(crate) labels: Vec<Value>,
    safe_harbor: BTreeSet<char>,
}

impl Rules {
    /// The built-in HIPAA Safe Harbor rules ([`SAFE_HARBOR`]).
    pub fn safe_harbor() -> Self {
        // The file is part of the crate and a test reads it: it cannot fail at run time.
        Self::from_toml(SAFE_HARBOR).expect("the built-in Safe Harbor rules compile")
    }

    /// Reads and checks a rule file.
    ///
    /// # Errors
    ///
    /// [`Error::RuleFile`] for TOML or shape errors (with the line), [`Error::Rule`] for a
    /// rule whose selector or method is wrong, [`Error::Setting`] for the other settings.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::RuleFile(e.to_string()))?;
        compile(raw)
    }

    /// The rule file's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The date mode (`[dates] mode`).
    pub fn date_mode(&self) -> DateMode {
        self.date_mode
    }

    /// The same rules with another date mode: a study that needs intervals shifts, where the
    /// rule file said year.
    pub fn with_date_mode(mut self, mode: DateMode) -> Self {
        self.date_mode = mode;
        self
    }

    /// The largest date shift in days (`[dates] max_shift_days`).
    pub fn max_shift_days(&self) -> u32 {
        self.max_shift_days
    }

    /// The Safe Harbor identifiers (`'A'` to `'R'`, 45 CFR 164.514(b)(2)(i)) that the rules and
    /// the dropped types say they cover.
    pub fn safe_harbor_coverage(&self) -> &BTreeSet<char> {
        &self.safe_harbor
    }

    /// How many rules the file has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the file has no rules (everything is kept but ids, references and labels).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

// ---- the file's shape ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    drop: RawDrop,
    #[serde(default)]
    dates: RawDates,
    #[serde(default)]
    security: RawSecurity,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrop {
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    safe_harbor: Vec<String>,
    #[allow(dead_code)]
    why: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDates {
    mode: Option<DateMode>,
    max_shift_days: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    labels: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: Option<OneOrMany>,
    #[serde(rename = "type")]
    ty: Option<OneOrMany>,
    url: Option<OneOrMany>,
    method: MethodName,
    to: Option<String>,
    value: Option<toml::Value>,
    safe_harbor: Option<Vec<String>>,
    #[allow(dead_code)]
    why: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            Self::One(s) => std::slice::from_ref(s),
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum MethodName {
    Keep,
    Redact,
    CryptoHash,
    DateShift,
    Generalize,
    Substitute,
}

// ---- compiling ----------------------------------------------------------------------------

/// What one selector resolves to.
enum Target {
    /// Nodes of these types (complex types or resources).
    Types(Vec<Type>),
    /// Values of a primitive type.
    Primitive(Primitive),
    /// A path: the elements of each step.
    Path(Vec<Vec<Element>>),
}

impl Target {
    /// The primitive types the selector can land on directly, or `None` when it lands on
    /// complex nodes (whose descendants may be of any type).
    fn primitives(&self) -> Option<Vec<Primitive>> {
        match self {
            Self::Types(_) => None,
            Self::Primitive(p) => Some(vec![*p]),
            Self::Path(steps) => {
                let last = steps.last()?;
                last.iter()
                    .map(|el| match el.kind() {
                        Kind::Primitive(p) => Some(p),
                        _ => None,
                    })
                    .collect()
            }
        }
    }

    /// Whether the selector can land on an Age.
    fn reaches_ages(&self) -> bool {
        self.reaches_type("Age")
    }

    /// Whether the selector can land on an Extension.
    fn reaches_extensions(&self) -> bool {
        self.reaches_type("Extension")
    }

    fn reaches_type(&self, name: &str) -> bool {
        let named = |t: Type| t.name() == name;
        match self {
            Self::Types(types) => types.iter().any(|t| named(*t)),
            Self::Primitive(_) => false,
            Self::Path(steps) => steps.last().is_some_and(|last| {
                last.iter()
                    .any(|el| matches!(el.kind(), Kind::Complex(t) if named(t)))
            }),
        }
    }
}

fn compile(raw: RawFile) -> Result<Rules, Error> {
    if raw.rule.len() > MAX_RULES {
        return Err(Error::Setting {
            setting: "rule",
            reason: format!("{} rules, at most {MAX_RULES}", raw.rule.len()),
        });
    }
    let mut rules = Rules {
        name: raw.name.unwrap_or_else(|| "unnamed rules".into()),
        rules: Vec::with_capacity(raw.rule.len()),
        by_type: vec![0; Type::COUNT],
        by_primitive: [0; 20],
        by_element: vec![0; Element::count()],
        by_element_deep: vec![0; Element::count()],
        with_url: 0,
        drop: vec![false; Type::COUNT],
        date_mode: raw.dates.mode.unwrap_or(DateMode::Year),
        max_shift_days: 365,
        labels: Vec::new(),
        safe_harbor: BTreeSet::new(),
    };
    if let Some(days) = raw.dates.max_shift_days {
        rules.max_shift_days = u32::try_from(days)
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| Error::Setting {
                setting: "dates.max_shift_days",
                reason: format!("{days} is not between 1 and 3650"),
            })?;
    }
    for name in &raw.drop.types {
        let ty = Type::resource(name).ok_or_else(|| Error::Setting {
            setting: "drop.types",
            reason: format!("`{name}` is not an R4 resource type"),
        })?;
        rules.drop[ty.index()] = true;
    }
    for letter in &raw.drop.safe_harbor {
        let letter = safe_harbor_letter(letter).ok_or_else(|| Error::Setting {
            setting: "drop.safe_harbor",
            reason: format!("`{letter}` is not a Safe Harbor identifier letter (A to R)"),
        })?;
        rules.safe_harbor.insert(letter);
    }
    let default_labels = ["PSEUDED".to_string(), "REDACTED".to_string()];
    for code in raw.security.labels.as_deref().unwrap_or(&default_labels) {
        let (code, display) =
            LABELS
                .iter()
                .find(|(c, _)| c == code)
                .ok_or_else(|| Error::Setting {
                    setting: "security.labels",
                    reason: format!(
                        "`{code}` is not one of {}",
                        LABELS.map(|(c, _)| c).join(", ")
                    ),
                })?;
        rules
            .labels
            .push(json!({"system": OBSERVATION_VALUE, "code": code, "display": display}));
    }
    for (i, raw_rule) in raw.rule.into_iter().enumerate() {
        let bit: Bits = 1 << i;
        let selector = describe(&raw_rule);
        let fail = |reason: String| Error::Rule {
            index: i + 1,
            selector: selector.clone(),
            reason,
        };
        let targets = match (&raw_rule.path, &raw_rule.ty) {
            (Some(paths), None) => paths
                .items()
                .iter()
                .map(|p| resolve_path(p))
                .collect::<Result<Vec<_>, String>>(),
            (None, Some(types)) => types
                .items()
                .iter()
                .map(|t| resolve_type(t))
                .collect::<Result<Vec<_>, String>>(),
            (Some(_), Some(_)) => Err("give `path` or `type`, not both".into()),
            (None, None) => Err("a rule needs a selector: `path` or `type`".into()),
        }
        .map_err(&fail)?;
        if targets.is_empty() {
            return Err(fail("the selector lists nothing".into()));
        }
        let method = method(&raw_rule).map_err(&fail)?;
        if method == Method::Generalize(Generalization::Age) {
            if !targets.iter().all(Target::reaches_ages) {
                return Err(fail(
                    "generalize to age acts on Age values: the selector must reach an Age".into(),
                ));
            }
        } else if let Some(accepted) = accepted_primitives(&method) {
            for target in &targets {
                if let Some(prims) = target.primitives()
                    && !prims.iter().any(|p| accepted.contains(p))
                {
                    return Err(fail(format!(
                        "{} applies to {} values, and this selector only reaches {}",
                        method_name(raw_rule.method),
                        accepted
                            .iter()
                            .map(|p| p.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                        prims
                            .iter()
                            .map(|p| p.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )));
                }
            }
        }
        let urls: Vec<String> = raw_rule
            .url
            .as_ref()
            .map(|u| u.items().to_vec())
            .unwrap_or_default();
        if raw_rule.url.is_some() {
            if urls.is_empty() || urls.iter().any(String::is_empty) {
                return Err(fail("`url` must name at least one extension url".into()));
            }
            if !targets.iter().all(Target::reaches_extensions) {
                return Err(fail(
                    "`url` selects extensions: the selector must reach an Extension".into(),
                ));
            }
            rules.with_url |= bit;
        }
        for letter in raw_rule.safe_harbor.iter().flatten() {
            let letter = safe_harbor_letter(letter).ok_or_else(|| {
                fail(format!(
                    "`{letter}` is not a Safe Harbor identifier letter (A to R)"
                ))
            })?;
            rules.safe_harbor.insert(letter);
        }
        let mut deep_paths: Vec<Vec<Vec<u32>>> = Vec::new();
        for target in targets {
            match target {
                Target::Types(types) => types.iter().for_each(|t| rules.by_type[t.index()] |= bit),
                Target::Primitive(p) => rules.by_primitive[p as usize] |= bit,
                Target::Path(path) => {
                    let Some(last) = path.last() else { continue };
                    let table = if path.len() == 1 {
                        &mut rules.by_element
                    } else {
                        &mut rules.by_element_deep
                    };
                    for el in last {
                        table[el.index()] |= bit;
                    }
                    if path.len() > 1 {
                        deep_paths.push(
                            path.iter()
                                .map(|els| {
                                    let mut step: Vec<u32> =
                                        els.iter().map(|e| element_number(*e)).collect();
                                    step.sort_unstable();
                                    step.dedup();
                                    step
                                })
                                .collect(),
                        );
                    }
                }
            }
        }
        rules.rules.push(Rule {
            method,
            urls,
            deep_paths,
        });
    }
    Ok(rules)
}

/// [`Element::index`] as stored in the tables (there are about 8,200 elements).
pub(crate) fn element_number(el: Element) -> u32 {
    u32::try_from(el.index()).unwrap_or(u32::MAX)
}

fn describe(rule: &RawRule) -> String {
    let list = |v: &OneOrMany| match v {
        OneOrMany::One(s) => format!("{s:?}"),
        OneOrMany::Many(v) => format!("{v:?}"),
    };
    match (&rule.path, &rule.ty) {
        (Some(p), _) => format!("path = {}", list(p)),
        (None, Some(t)) => format!("type = {}", list(t)),
        (None, None) => "no selector".into(),
    }
}

fn method_name(m: MethodName) -> &'static str {
    match m {
        MethodName::Keep => "keep",
        MethodName::Redact => "redact",
        MethodName::CryptoHash => "cryptoHash",
        MethodName::DateShift => "dateShift",
        MethodName::Generalize => "generalize",
        MethodName::Substitute => "substitute",
    }
}

const GENERALIZATIONS: &str = r#""year", "zip3", "birthDate" or "age""#;

fn method(rule: &RawRule) -> Result<Method, String> {
    let name = method_name(rule.method);
    if rule.to.is_some() && rule.method != MethodName::Generalize {
        return Err(format!("`to` belongs to generalize, not {name}"));
    }
    if rule.value.is_some() && rule.method != MethodName::Substitute {
        return Err(format!("`value` belongs to substitute, not {name}"));
    }
    Ok(match rule.method {
        MethodName::Keep => Method::Keep,
        MethodName::Redact => Method::Redact,
        MethodName::CryptoHash => Method::CryptoHash,
        MethodName::DateShift => Method::DateShift,
        MethodName::Generalize => Method::Generalize(match rule.to.as_deref() {
            Some("year") => Generalization::Year,
            Some("zip3") => Generalization::Zip3,
            Some("birthDate") => Generalization::BirthDate,
            Some("age") => Generalization::Age,
            Some(other) => {
                return Err(format!(
                    "generalize to `{other}`: expected {GENERALIZATIONS}"
                ));
            }
            None => {
                return Err(format!("generalize needs `to`: {GENERALIZATIONS}"));
            }
        }),
        MethodName::Substitute => {
            let value = rule.value.as_ref().ok_or("substitute needs a `value`")?;
            if has_datetime(value) {
                return Err("a TOML date-time is no JSON value: write the date as a string".into());
            }
            Method::Substitute(serde_json::to_value(value).map_err(|e| format!("`value`: {e}"))?)
        }
    })
}

fn has_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(has_datetime),
        toml::Value::Table(table) => table.values().any(has_datetime),
        _ => false,
    }
}

/// The primitive types a method can act on, or `None` for every type.
pub(crate) fn accepted_primitives(method: &Method) -> Option<&'static [Primitive]> {
    const DATES: &[Primitive] = &[Primitive::Date, Primitive::DateTime, Primitive::Instant];
    const HASHABLE: &[Primitive] = &[
        Primitive::Id,
        Primitive::String,
        Primitive::Code,
        Primitive::Uri,
        Primitive::Url,
        Primitive::Canonical,
        Primitive::Oid,
        Primitive::Uuid,
        Primitive::Markdown,
    ];
    match method {
        Method::Keep | Method::Redact | Method::Substitute(_) => None,
        Method::CryptoHash => Some(HASHABLE),
        Method::DateShift | Method::Generalize(Generalization::Year) => Some(DATES),
        Method::Generalize(Generalization::BirthDate) => {
            Some(&[Primitive::Date, Primitive::DateTime])
        }
        Method::Generalize(Generalization::Zip3) => Some(&[Primitive::String]),
        // Acts on Age nodes, checked apart.
        Method::Generalize(Generalization::Age) => Some(&[]),
    }
}

fn safe_harbor_letter(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let c = chars.next()?;
    (chars.next().is_none() && ('A'..='R').contains(&c)).then_some(c)
}

/// `Resource` and `DomainResource` stand for every resource type (with a narrative, for the
/// latter); anything else is one type's name.
fn root_types(name: &str) -> Option<Vec<Type>> {
    match name {
        "Resource" => Some(Type::resources().collect()),
        "DomainResource" => Some(
            Type::resources()
                .filter(|t| t.element("text").is_some())
                .collect(),
        ),
        _ => Type::named(name).map(|t| vec![t]),
    }
}

fn resolve_type(name: &str) -> Result<Target, String> {
    if let Some(p) = Primitive::ALL.iter().find(|p| p.name() == name) {
        return Ok(Target::Primitive(*p));
    }
    if name.contains('.') {
        return Err(format!("`{name}` is a path: write it as `path`"));
    }
    root_types(name)
        .map(Target::Types)
        .ok_or_else(|| format!("`{name}` is not an R4 resource, datatype or primitive type"))
}

fn resolve_path(path: &str) -> Result<Target, String> {
    let mut parts = path.split('.');
    let root = parts.next().unwrap_or_default();
    let mut current =
        root_types(root).ok_or_else(|| format!("`{root}` is not an R4 resource or datatype"))?;
    let steps: Vec<&str> = parts.collect();
    if steps.is_empty() {
        return Ok(Target::Types(current));
    }
    let mut resolved: Vec<Vec<Element>> = Vec::with_capacity(steps.len());
    for (n, step) in steps.iter().enumerate() {
        if step.is_empty() {
            return Err(format!("`{path}` has an empty step"));
        }
        let mut elements: Vec<Element> = Vec::new();
        let mut next: Vec<Type> = Vec::new();
        for ty in &current {
            let found: Vec<Element> = if step.ends_with("[x]") {
                ty.elements()
                    .filter(|e| e.is_choice() && e.spec_name() == *step)
                    .collect()
            } else {
                ty.element(step).into_iter().collect()
            };
            for el in found {
                elements.push(el);
                match el.kind() {
                    Kind::Complex(t) => next.push(t),
                    Kind::Primitive(_) => next.push(Type::primitive_element()),
                    Kind::Resource => {}
                }
            }
        }
        if elements.is_empty() {
            let names: Vec<&str> = current.iter().map(|t| t.name()).collect();
            let owner = if names.len() > 3 {
                format!(
                    "any of the {} types at `{}`",
                    names.len(),
                    steps[..n].join(".")
                )
            } else {
                names.join(" or ")
            };
            return Err(format!("`{path}`: {owner} has no element `{step}`"));
        }
        next.sort_by_key(|t| t.index());
        next.dedup();
        if n + 1 < steps.len() && next.is_empty() {
            return Err(format!(
                "`{path}`: `{step}` holds resources: a path cannot go into them (select the resource type instead)"
            ));
        }
        resolved.push(elements);
        current = next;
    }
    Ok(Target::Path(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_harbor_file_compiles_and_covers_all_18_identifiers() {
        let rules = Rules::safe_harbor();
        assert_eq!(rules.name(), "HIPAA Safe Harbor");
        assert_eq!(rules.date_mode(), DateMode::Year);
        assert_eq!(rules.max_shift_days(), 365);
        let all: BTreeSet<char> = ('A'..='R').collect();
        assert_eq!(rules.safe_harbor_coverage(), &all);
        assert!(rules.len() > 10 && rules.len() <= MAX_RULES);
    }

    #[test]
    fn paths_resolve_through_the_definitions() {
        assert!(
            matches!(resolve_path("Patient.address.postalCode"), Ok(Target::Path(s)) if s.len() == 2)
        );
        assert!(
            matches!(resolve_path("Observation.value[x]"), Ok(Target::Path(s)) if s[0].len() == 11)
        );
        assert!(matches!(resolve_path("Resource.id"), Ok(Target::Path(s)) if s[0].len() == 146));
        assert!(matches!(
            resolve_path("Patient.birthDate.extension"),
            Ok(Target::Path(_))
        ));
        assert!(matches!(resolve_path("HumanName"), Ok(Target::Types(t)) if t.len() == 1));
        let err = |p: &str| resolve_path(p).err().unwrap_or_default();
        assert_eq!(
            err("Patient.adress"),
            "`Patient.adress`: Patient has no element `adress`"
        );
        assert_eq!(
            err("Nobody.name"),
            "`Nobody` is not an R4 resource or datatype"
        );
        assert!(err("Bundle.entry.resource.id").contains("cannot go into"));
        assert!(resolve_type("Patient.name").is_err());
        assert!(matches!(
            resolve_type("dateTime"),
            Ok(Target::Primitive(Primitive::DateTime))
        ));
    }
}
