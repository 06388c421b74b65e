//! The search parameters `_summary` and `_elements`: a subset of a resource, chosen by the
//! generated definitions (`isSummary`, `isModifier`, minimum cardinality, choice names).

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value, json};

use crate::definitions::{ELEMENT, EXTENSION, REFERENCE};
use crate::issue::{Issue, IssueCode, Severity, operation_outcome};
use crate::model::{NO_CHOICE, Prim, Ty, TypeDef};
use crate::validate::refers_to_container;

/// The code system of the tag that marks a subsetted resource.
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
/// The tag's code: the resource is incomplete and must not be used to overwrite the stored one.
const SUBSETTED_CODE: &str = "SUBSETTED";

/// A value of the `_summary` search parameter that returns resources (`count` returns none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Summary {
    /// `true`: the elements marked `isSummary` in the R4 definitions, at every level.
    True,
    /// `text`: `text`, `id`, `meta` and the mandatory top-level elements.
    Text,
    /// `data`: everything except `text`.
    Data,
    /// `false`: the whole resource.
    False,
}

impl Summary {
    /// The parameter's value (`true`, `text`, `data`, `false`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "true",
            Self::Text => "text",
            Self::Data => "data",
            Self::False => "false",
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Summary {
    type Err = SummaryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "true" => Ok(Self::True),
            "text" => Ok(Self::Text),
            "data" => Ok(Self::Data),
            "false" => Ok(Self::False),
            "count" => Err(SummaryError::Count),
            other => Err(SummaryError::Unknown(other.to_owned())),
        }
    }
}

/// A `_summary` value that [`Summary`] does not cover.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// `count`: a valid value, but the search answers with its total and no resources.
    #[error("_summary=count returns the total of the matches and no resources")]
    Count,
    /// Not a `_summary` value at all (a 400 for the client).
    #[error("'{0}' is not a value of _summary (true, text, data, count or false)")]
    Unknown(String),
}

/// An `_elements` list that does not fit the resource type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElementsError {
    /// The type is not a concrete R4 resource type (or the resource has no `resourceType`).
    #[error("'{0}' is not an R4 resource type")]
    UnknownType(String),
    /// Names that are not top-level elements of the type, in the order the list gave them.
    #[error("{resource_type} has no element {}", Quoted(.names))]
    UnknownElements {
        /// The resource type the names were looked up in.
        resource_type: String,
        /// The names it does not have.
        names: Vec<String>,
    },
}

impl ElementsError {
    /// The error as a FHIR R4 OperationOutcome (one `invalid` issue), for a 400 answer.
    pub fn to_operation_outcome(&self) -> Value {
        operation_outcome(&[Issue {
            severity: Severity::Error,
            code: IssueCode::Invalid,
            expression: String::new(),
            diagnostics: format!("_elements: {self}"),
        }])
    }
}

/// `'a', 'b'`
struct Quoted<'a>(&'a [String]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "'{name}'")?;
        }
        Ok(())
    }
}

/// The resource as `_summary` asks for it, copying only what it keeps. Every mode but
/// [`Summary::False`] adds the tag `SUBSETTED` (system
/// `http://terminology.hl7.org/CodeSystem/v3-ObservationValue`) to `meta.tag`, once. A value
/// that is not an object with an R4 `resourceType` is returned as it is.
///
/// - [`Summary::True`]: `id`, `meta`, and the elements marked `isSummary` or `isModifier` in the
///   R4 definitions or mandatory (minimum cardinality 1); a kept datatype or backbone element is
///   summarised the same way by its own definition (`Attachment.data`, `referenceRange` of an
///   Observation's `component` go), and left out when nothing of it remains unless it is
///   mandatory (then it is kept whole). Extensions, a primitive's `_name` sibling and a
///   resource held in an element (`Bundle.entry.resource`) are kept whole.
/// - [`Summary::Text`]: `text`, `id`, `meta` and the mandatory top-level elements, whole.
/// - [`Summary::Data`]: everything but `text`.
/// - [`Summary::False`]: everything, untagged.
pub fn summarize(resource: &Value, mode: Summary) -> Value {
    match (typed(resource), Rule::of(mode)) {
        (Some((ty, obj)), Some(rule)) => {
            let mut out = copy_kept(ty, obj, rule, true);
            tag_subsetted(&mut out);
            Value::Object(out)
        }
        _ => resource.clone(),
    }
}

/// [`summarize`] in place: what is not kept is dropped from `resource` and nothing is copied,
/// for a caller that owns the resource (about twice as fast as copying: only the tag is
/// allocated).
pub fn summarize_in_place(resource: &mut Value, mode: Summary) {
    let Value::Object(obj) = resource else {
        return;
    };
    if let (Some(ty), Some(rule)) = (resource_type(obj), Rule::of(mode)) {
        retain_kept(ty, obj, rule, true);
        tag_subsetted(obj);
    }
}

/// The resource with the named top-level elements only (each as a whole), plus `id`, `meta` and
/// the mandatory elements; tagged `SUBSETTED` like [`summarize`]. A choice is named by its base
/// (`value` keeps whichever `value[x]` is present). When `contained` is named, the contained
/// resources that no kept element references any more are left out (dom-3).
///
/// # Errors
///
/// [`ElementsError`] when the resource has no R4 `resourceType` or a name is not one of its
/// elements (checked before anything is copied).
pub fn select_elements(
    resource: &Value,
    names: &[impl AsRef<str>],
) -> Result<Value, ElementsError> {
    let (ty, obj) = typed(resource).ok_or_else(|| not_a_resource(resource))?;
    let slots = slots(ty, names.iter().map(AsRef::as_ref))?;
    let mut out = copy_kept(ty, obj, Rule::Elements(&slots), true);
    prune_contained(&mut out);
    tag_subsetted(&mut out);
    Ok(Value::Object(out))
}

/// [`select_elements`] in place, for a caller that owns the resource.
///
/// # Errors
///
/// As [`select_elements`]; `resource` is left untouched then.
pub fn select_elements_in_place(
    resource: &mut Value,
    names: &[impl AsRef<str>],
) -> Result<(), ElementsError> {
    let (ty, _) = typed(resource).ok_or_else(|| not_a_resource(resource))?;
    let slots = slots(ty, names.iter().map(AsRef::as_ref))?;
    if let Value::Object(obj) = resource {
        retain_kept(ty, obj, Rule::Elements(&slots), true);
        prune_contained(obj);
        tag_subsetted(obj);
    }
    Ok(())
}

/// The error for a value without an R4 `resourceType` (an empty name when it has none).
fn not_a_resource(resource: &Value) -> ElementsError {
    let name = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    ElementsError::UnknownType(name.to_owned())
}

/// The names of an `_elements` value (`code,status, value`) for a search of `resource_type`,
/// checked before any resource is read: trimmed, empty items skipped, duplicates dropped. An
/// empty value gives an empty list, which [`select_elements`] answers with `id`, `meta` and the
/// mandatory elements only.
///
/// # Errors
///
/// [`ElementsError::UnknownType`] for a type that is not a concrete R4 resource type,
/// [`ElementsError::UnknownElements`] with every name the type does not have.
pub fn parse_elements(resource_type: &str, list: &str) -> Result<Vec<String>, ElementsError> {
    let ty = TypeDef::resource(resource_type)
        .ok_or_else(|| ElementsError::UnknownType(resource_type.to_owned()))?;
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    slots(ty, names.iter().map(String::as_str))?;
    Ok(names)
}

/// The resource's type and object, when it is an object with an R4 `resourceType`.
fn typed(resource: &Value) -> Option<(&'static TypeDef, &Map<String, Value>)> {
    let obj = resource.as_object()?;
    Some((resource_type(obj)?, obj))
}

/// The type an object's `resourceType` names, if it is an R4 resource type.
fn resource_type(obj: &Map<String, Value>) -> Option<&'static TypeDef> {
    TypeDef::resource(obj.get("resourceType")?.as_str()?)
}

/// A set of a type's element slots.
#[derive(Default)]
struct Slots([u64; 4]);

impl Slots {
    fn insert(&mut self, slot: u8) {
        self.0[usize::from(slot / 64)] |= 1 << (slot % 64);
    }

    fn contains(&self, slot: u8) -> bool {
        self.0[usize::from(slot / 64)] & (1 << (slot % 64)) != 0
    }
}

/// The slots of the named elements: a plain element by its JSON name, a choice by its base.
fn slots<'n>(
    ty: &'static TypeDef,
    names: impl Iterator<Item = &'n str>,
) -> Result<Slots, ElementsError> {
    let mut slots = Slots::default();
    let mut unknown = Vec::new();
    for name in names {
        let plain = ty.element(name).filter(|el| el.choice == NO_CHOICE);
        let choice = || {
            let index = ty.choice_names().iter().position(|base| *base == name)?;
            ty.elements
                .iter()
                .find(|el| usize::from(el.choice) == index)
        };
        match plain.or_else(choice) {
            Some(el) => slots.insert(el.slot),
            None if !unknown.iter().any(|n| n == name) => unknown.push(name.to_owned()),
            None => {}
        }
    }
    if unknown.is_empty() {
        Ok(slots)
    } else {
        Err(ElementsError::UnknownElements {
            resource_type: ty.name.to_owned(),
            names: unknown,
        })
    }
}

/// The name of an element a JSON property holds: `birthDate` for `birthDate` and `_birthDate`.
fn element_name(key: &str) -> (&str, bool) {
    match key.strip_prefix('_') {
        Some(name) => (name, true),
        None => (key, false),
    }
}

/// What the top level of a resource keeps.
#[derive(Clone, Copy)]
enum Rule<'s> {
    /// `_summary=true`, at every level.
    Summary,
    /// `_summary=text`.
    Text,
    /// `_summary=data`.
    Data,
    /// `_elements`, with the slots of the named elements.
    Elements(&'s Slots),
}

impl Rule<'_> {
    /// The rule of a `_summary` mode; none for [`Summary::False`], which keeps everything.
    fn of(mode: Summary) -> Option<Self> {
        match mode {
            Summary::True => Some(Self::Summary),
            Summary::Text => Some(Self::Text),
            Summary::Data => Some(Self::Data),
            Summary::False => None,
        }
    }
}

/// What becomes of one JSON property.
enum Keep {
    Drop,
    Whole,
    /// Summarised by its type's definition (`_summary=true` below the top level); if nothing
    /// of it would remain and it is mandatory (`true`), kept whole.
    Reduce(&'static TypeDef, bool),
}

/// What `rule` keeps of the property `key` of an object of type `ty` (the resource itself when
/// `top`). Whatever is not an element of `ty` is dropped (a stored resource has been validated).
fn decide(ty: &'static TypeDef, key: &str, rule: Rule<'_>, top: bool) -> Keep {
    if top && key == "resourceType" {
        return Keep::Whole;
    }
    let (name, underscore) = element_name(key);
    let Some(el) = ty.element(name) else {
        return Keep::Drop;
    };
    if top && matches!(name, "id" | "meta") {
        return Keep::Whole;
    }
    let required = ty.is_required(el.slot);
    let kept = match rule {
        Rule::Summary => el.summary() || el.modifier() || required,
        Rule::Text => required || name == "text",
        Rule::Data => name != "text",
        Rule::Elements(slots) => required || slots.contains(el.slot),
    };
    match el.ty {
        _ if !kept => Keep::Drop,
        Ty::Complex(index)
            if matches!(rule, Rule::Summary) && index != EXTENSION && !underscore =>
        {
            Keep::Reduce(TypeDef::get(index), required)
        }
        _ => Keep::Whole,
    }
}

/// A copy of what `rule` keeps of `obj` (of type `ty`; the resource itself when `top`).
fn copy_kept(
    ty: &'static TypeDef,
    obj: &Map<String, Value>,
    rule: Rule<'_>,
    top: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in obj {
        let kept = match decide(ty, key, rule, top) {
            Keep::Drop => None,
            Keep::Whole => Some(value.clone()),
            Keep::Reduce(inner, required) => copy_reduced(inner, value, required),
        };
        if let Some(kept) = kept {
            out.insert(key.clone(), kept);
        }
    }
    out
}

/// A summarised copy of a kept element's value, as [`reduce`] leaves it in place.
fn copy_reduced(ty: &'static TypeDef, value: &Value, required: bool) -> Option<Value> {
    if required && vanishes(ty, value) {
        return Some(value.clone());
    }
    let copy_one = |item: &Value| match item {
        Value::Object(obj) => {
            let kept = copy_kept(ty, obj, Rule::Summary, false);
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    };
    match value {
        Value::Array(items) => {
            let items: Vec<Value> = items.iter().filter_map(copy_one).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        single => copy_one(single),
    }
}

/// Drops from `obj` (of type `ty`; the resource itself when `top`) what `rule` does not keep.
fn retain_kept(ty: &'static TypeDef, obj: &mut Map<String, Value>, rule: Rule<'_>, top: bool) {
    obj.retain(|key, value| match decide(ty, key, rule, top) {
        Keep::Drop => false,
        Keep::Whole => true,
        Keep::Reduce(inner, required) => reduce(inner, value, required),
    });
}

/// Summarises a kept element's value (an object of type `ty`, or an array of them) in place;
/// whether anything of it is left. A mandatory one that would vanish is kept whole.
fn reduce(ty: &'static TypeDef, value: &mut Value, required: bool) -> bool {
    if required && vanishes(ty, value) {
        return true;
    }
    let reduce_one = |item: &mut Value| match item {
        Value::Object(obj) => {
            retain_kept(ty, obj, Rule::Summary, false);
            !obj.is_empty()
        }
        _ => true,
    };
    match value {
        Value::Array(items) => {
            items.retain_mut(reduce_one);
            !items.is_empty()
        }
        single => reduce_one(single),
    }
}

/// Whether nothing of a value of type `ty` (or an array of them) would be left by the summary.
fn vanishes(ty: &'static TypeDef, value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|item| vanishes(ty, item)),
        Value::Object(obj) => {
            obj.iter()
                .all(|(key, value)| match decide(ty, key, Rule::Summary, false) {
                    Keep::Drop => true,
                    Keep::Whole => false,
                    Keep::Reduce(inner, required) => !required && vanishes(inner, value),
                })
        }
        _ => false,
    }
}

/// Adds the `SUBSETTED` tag to `meta.tag` unless it is there already.
fn tag_subsetted(resource: &mut Map<String, Value>) {
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else {
        return;
    };
    let tags = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(tags) = tags else {
        return;
    };
    let subsetted = |tag: &Value| {
        tag.get("system").and_then(Value::as_str) == Some(SUBSETTED_SYSTEM)
            && tag.get("code").and_then(Value::as_str) == Some(SUBSETTED_CODE)
    };
    if !tags.iter().any(subsetted) {
        tags.push(json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}));
    }
}

/// Drops the contained resources that nothing kept references any more (dom-3, as the
/// validator checks it). `contained` goes when none is left.
fn prune_contained(resource: &mut Map<String, Value>) {
    let Some(Value::Array(contained)) = resource.get("contained") else {
        return;
    };
    let kept = referenced_contained(resource, contained);
    if kept.iter().all(|k| *k) {
        return;
    }
    let items: Vec<Value> = contained
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| **kept)
        .map(|(item, _)| item.clone())
        .collect();
    if items.is_empty() {
        resource.remove("contained");
    } else {
        resource.insert("contained".to_owned(), Value::Array(items));
    }
}

/// Which contained resources are referenced (`#id`, from a Reference or a uri, url or canonical)
/// from the rest of the resource or from another one so referenced, or refer to their container
/// (`#`).
fn referenced_contained(resource: &Map<String, Value>, contained: &[Value]) -> Vec<bool> {
    let mut refs = Vec::new();
    if let Some(ty) = resource_type(resource) {
        for (key, value) in resource {
            if key != "contained" {
                property_refs(ty, key, value, &mut refs);
            }
        }
    }
    let mut kept = vec![false; contained.len()];
    loop {
        let before = refs.len();
        for (item, kept) in contained.iter().zip(&mut kept) {
            let id = item.get("id").and_then(Value::as_str);
            let referenced =
                id.is_some_and(|id| refs.iter().any(|r| r.strip_prefix('#') == Some(id)));
            if *kept || !(referenced || refers_to_container(item)) {
                continue;
            }
            *kept = true;
            if let Some(obj) = item.as_object()
                && let Some(ty) = resource_type(obj)
            {
                for (key, value) in obj {
                    property_refs(ty, key, value, &mut refs);
                }
            }
        }
        if refs.len() == before {
            return kept;
        }
    }
}

/// The local references (`#...`) in one property of an object of type `ty`, where the
/// validator looks for them; resources other than contained ones open their own scope there,
/// so they are not entered.
fn property_refs<'v>(ty: &'static TypeDef, key: &str, value: &'v Value, refs: &mut Vec<&'v str>) {
    let (name, underscore) = element_name(key);
    let Some(el) = ty.element(name) else {
        return;
    };
    let items = match value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    for item in items {
        let target = if underscore {
            Ty::Complex(ELEMENT)
        } else {
            el.ty
        };
        match (target, item) {
            (Ty::Primitive(Prim::Uri | Prim::Url | Prim::Canonical), Value::String(s))
                if s.starts_with('#') =>
            {
                refs.push(s);
            }
            (Ty::Complex(index), Value::Object(obj)) => {
                let inner = TypeDef::get(index);
                for (key, value) in obj {
                    property_refs(inner, key, value, refs);
                }
                if index == REFERENCE
                    && let Some(Value::String(r)) = obj.get("reference")
                    && r.starts_with('#')
                {
                    refs.push(r);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every valid example of `tests/data`, and each entry of the Synthea Bundle.
    fn examples() -> Vec<Value> {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let read = |path: std::path::PathBuf| -> Value {
            let text = std::fs::read_to_string(&path).expect("test data");
            serde_json::from_str(&text).expect("JSON")
        };
        let mut examples: Vec<Value> = std::fs::read_dir(data.join("valid"))
            .expect("tests/data/valid")
            .map(|entry| read(entry.expect("a directory entry").path()))
            .collect();
        let synthea = read(data.join("synthea-r4-transaction.json"));
        let entries = synthea["entry"].as_array().expect("entries");
        examples.extend(entries.iter().map(|e| e["resource"].clone()));
        examples.push(synthea);
        examples
    }

    /// Checks `_summary=true` against the generated flags, level by level: a property is kept
    /// exactly when its element is `isSummary`, `isModifier` or mandatory (or it is the top
    /// level's `resourceType`, `id` or `meta`); a kept complex value is checked in turn, unless
    /// it is one of those kept whole.
    fn check_summary(ty: &TypeDef, input: &Map<String, Value>, output: &Map<String, Value>) {
        let top = input.contains_key("resourceType");
        for (key, value) in input {
            if top && key == "resourceType" {
                assert_eq!(output.get(key), Some(value));
                continue;
            }
            let (name, underscore) = element_name(key);
            let el = ty.element(name).expect("a valid example");
            let allowed = el.summary() || el.modifier() || ty.is_required(el.slot);
            let Some(kept) = output.get(key) else {
                // Only a complex value can vanish, when nothing of it is in the summary.
                assert!(
                    !allowed || matches!(el.ty, Ty::Complex(_)),
                    "{}.{key} dropped",
                    ty.name
                );
                continue;
            };
            assert!(allowed, "{}.{key} is not in the summary", ty.name);
            let whole = underscore || (top && name == "meta");
            match el.ty {
                Ty::Complex(index) if index != EXTENSION && !whole => {
                    let inner = TypeDef::get(index);
                    let pairs: Vec<(&Value, &Value)> = match (value, kept) {
                        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                            a.iter().zip(b).collect()
                        }
                        (Value::Array(_), _) => Vec::new(), // items left out: checked by count
                        _ => vec![(value, kept)],
                    };
                    for (a, b) in pairs {
                        check_summary(
                            inner,
                            a.as_object().expect("object"),
                            b.as_object().expect("object"),
                        );
                    }
                }
                _ if top && name == "meta" => {} // plus the tag
                _ => assert_eq!(kept, value, "{}.{key} is kept whole", ty.name),
            }
        }
        for key in output.keys() {
            assert!(
                input.contains_key(key) || (top && key == "meta"),
                "{}.{key} was added",
                ty.name
            );
        }
    }

    #[test]
    fn summary_true_follows_the_generated_flags_at_every_level() {
        let mut checked = 0;
        for example in examples() {
            let (ty, input) = typed(&example).expect("a resource");
            let output = summarize(&example, Summary::True);
            check_summary(ty, input, output.as_object().expect("an object"));
            checked += 1;
        }
        assert!(checked > 300);
    }

    #[test]
    fn text_keeps_text_id_meta_and_the_mandatory_top_level_elements() {
        for example in examples() {
            let (ty, input) = typed(&example).expect("a resource");
            let output = summarize(&example, Summary::Text);
            let output = output.as_object().expect("an object");
            let mut expected: Vec<&str> = input
                .keys()
                .map(String::as_str)
                .filter(|key| {
                    let (name, _) = element_name(key);
                    *key == "resourceType"
                        || matches!(name, "text" | "id" | "meta")
                        || ty.element(name).is_some_and(|el| ty.is_required(el.slot))
                })
                .chain(["meta"]) // tagged
                .collect();
            expected.sort_unstable();
            expected.dedup();
            let kept: Vec<&str> = output.keys().map(String::as_str).collect();
            assert_eq!(kept, expected, "{}", ty.name);
        }
    }

    #[test]
    fn every_choice_element_has_its_base_name() {
        let mut groups = 0;
        for ty in &crate::definitions::TYPES {
            let names = ty.choice_names();
            for el in ty.elements.iter().filter(|el| el.choice != NO_CHOICE) {
                let base = names[usize::from(el.choice)];
                let rest = el.name.strip_prefix(base).expect("a base of the name");
                assert!(
                    rest.starts_with(|c: char| c.is_ascii_uppercase()),
                    "{}",
                    el.name
                );
            }
            groups += names.len();
            let used = ty.elements.iter().filter(|el| el.choice != NO_CHOICE);
            assert_eq!(
                used.map(|el| el.choice)
                    .max()
                    .map_or(0, |c| usize::from(c) + 1),
                names.len(),
                "{}",
                ty.name
            );
        }
        assert!(groups > 150, "{groups}");
    }

    /// Stored resources have been validated, but nothing here may panic on one that was not.
    #[test]
    fn malformed_resources_do_not_panic() {
        let shapes = [
            json!({"resourceType": "Observation", "meta": "x", "code": 5, "component": {"code": 1}}),
            json!({"resourceType": "Observation", "meta": {"tag": {"code": "x"}}, "code": [null]}),
            json!({"resourceType": "Observation", "_status": [null], "component": [1, null, []]}),
            json!({"resourceType": "Observation", "contained": {"id": "x"}, "subject": "#x"}),
            json!({"resourceType": "Observation", "contained": [1, {"id": 2}, {"resourceType": 3}],
                   "subject": {"reference": 4}, "bogus": {"a": 1}}),
            json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": "x"}]}),
        ];
        for shape in shapes {
            for mode in [Summary::True, Summary::Text, Summary::Data, Summary::False] {
                let copy = summarize(&shape, mode);
                let mut owned = shape.clone();
                summarize_in_place(&mut owned, mode);
                assert_eq!(owned, copy);
            }
            for names in [
                &["contained", "subject", "code"][..],
                &["component", "name"],
            ] {
                let copy = select_elements(&shape, names);
                let mut owned = shape.clone();
                let in_place = select_elements_in_place(&mut owned, names).map(|()| owned);
                assert_eq!(in_place, copy);
            }
        }
    }

    #[test]
    fn flags_come_from_the_definitions() {
        let observation = TypeDef::resource("Observation").expect("Observation");
        let flags = |name: &str| {
            let el = observation.element(name).expect(name);
            (el.summary(), el.modifier())
        };
        assert_eq!(flags("status"), (true, true));
        assert_eq!(flags("valueQuantity"), (true, false));
        assert_eq!(flags("note"), (false, false));
        assert_eq!(flags("modifierExtension"), (false, true));
        assert_eq!(
            observation.choice_names(),
            ["effective", "value"].as_slice()
        );
    }
}
