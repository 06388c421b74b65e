//! The walk over a resource's JSON, driven by the generated definitions.

use serde_json::{Map, Value};

use crate::definitions::{CODEABLE_CONCEPT, CODING, ELEMENT, EXTENSION, REFERENCE};
use crate::issue::{Issue, IssueCode, Severity, ValidationError};
use crate::model::{Element, MAX_CHOICES, NO_CHOICE, Prim, Ty, TypeDef, ValueSet};
use crate::path::Path;
use crate::primitive::{self, Fault};

/// Past this many issues the walk stops reporting: enough to fix a resource, bounded for a
/// hostile one.
pub(crate) const MAX_ISSUES: usize = 1000;

/// Validates one resource (a Bundle's entries included) against the R4 definitions.
pub(crate) fn validate(resource: &Value) -> Result<(), ValidationError> {
    let mut walker = Walker::default();
    match resource {
        Value::Object(obj) => {
            let root = obj
                .get("resourceType")
                .and_then(Value::as_str)
                .and_then(TypeDef::resource)
                .map_or("", |ty| ty.name);
            walker.resource(obj, &Path::root(root), false);
        }
        _ => walker.report(
            IssueCode::Invalid,
            &Path::root(""),
            "a FHIR resource must be a JSON object".into(),
        ),
    }
    if walker.issues.is_empty() {
        Ok(())
    } else {
        Err(ValidationError {
            issues: walker.issues,
        })
    }
}

#[derive(Default)]
struct Walker<'v> {
    issues: Vec<Issue>,
    /// Local references (`#id`, `#`) in the resources being walked: a resource that is not
    /// contained opens a scope here and closes it once its contained resources are checked.
    local_refs: Vec<&'v str>,
}

impl<'v> Walker<'v> {
    #[cold]
    fn report(&mut self, code: IssueCode, path: &Path<'_>, diagnostics: String) {
        match self.issues.len() {
            n if n < MAX_ISSUES => self.issues.push(Issue {
                severity: Severity::Error,
                code,
                expression: path.render(),
                diagnostics,
            }),
            MAX_ISSUES => self.issues.push(Issue {
                severity: Severity::Error,
                code: IssueCode::TooCostly,
                expression: String::new(),
                diagnostics: format!("more than {MAX_ISSUES} issues: the rest are not reported"),
            }),
            _ => {}
        }
    }

    /// A resource: a top-level one, a Bundle entry's, a Parameters part's or a contained one.
    fn resource(&mut self, obj: &'v Map<String, Value>, path: &Path<'_>, contained: bool) {
        let ty = match obj.get("resourceType") {
            Some(Value::String(name)) => match TypeDef::resource(name) {
                Some(ty) => ty,
                None => {
                    let msg = format!("'{name}' is not an R4 resource type");
                    return self.report(IssueCode::Invalid, &path.field("resourceType"), msg);
                }
            },
            Some(_) => {
                let msg = "resourceType must be a string".into();
                return self.report(IssueCode::Structure, &path.field("resourceType"), msg);
            }
            None => {
                let msg = "a resource needs its resourceType".into();
                return self.report(IssueCode::Required, path, msg);
            }
        };
        let scope = self.local_refs.len();
        self.object(ty, obj, path, true);
        if contained {
            self.contained_rules(obj, path);
        } else {
            self.contained_referenced(obj, path, scope);
            self.local_refs.truncate(scope);
        }
    }

    /// dom-2, dom-4 and dom-5: what a contained resource may not carry.
    fn contained_rules(&mut self, obj: &'v Map<String, Value>, path: &Path<'_>) {
        if obj.contains_key("contained") {
            let msg = "dom-2: a contained resource SHALL NOT contain resources".into();
            self.report(IssueCode::Invariant, &path.field("contained"), msg);
        }
        if let Some(Value::Object(meta)) = obj.get("meta") {
            let at = path.field("meta");
            for key in ["versionId", "lastUpdated"] {
                if meta.contains_key(key) {
                    let msg = format!("dom-4: a contained resource SHALL NOT have a meta.{key}");
                    self.report(IssueCode::Invariant, &at.field(key), msg);
                }
            }
            if meta.contains_key("security") {
                let msg = "dom-5: a contained resource SHALL NOT have a security label".into();
                self.report(IssueCode::Invariant, &at.field("security"), msg);
            }
        }
    }

    /// dom-3: every contained resource is referenced from elsewhere in the resource (`#id`), or
    /// refers to its container (`#`).
    fn contained_referenced(&mut self, obj: &'v Map<String, Value>, path: &Path<'_>, scope: usize) {
        let Some(Value::Array(contained)) = obj.get("contained") else {
            return;
        };
        let at = path.field("contained");
        for (i, item) in contained.iter().enumerate() {
            let Value::Object(resource) = item else {
                continue;
            };
            let id = resource.get("id").and_then(Value::as_str);
            let referenced = id.is_some_and(|id| {
                self.local_refs[scope..]
                    .iter()
                    .any(|r| r.strip_prefix('#') == Some(id))
            });
            if !referenced && !refers_to_container(item) {
                let msg = match id {
                    Some(id) => format!(
                        "dom-3: the contained resource '{id}' is not referenced ('#{id}') from \
                         the resource and does not refer to it ('#')"
                    ),
                    None => "dom-3: a contained resource without an id can be referenced by \
                             nothing and does not refer to its container ('#')"
                        .into(),
                };
                self.report(IssueCode::Invariant, &at.index(i), msg);
            }
        }
    }

    /// An object of a known type: each property known and valid, required ones present, at most
    /// one of each choice.
    fn object(
        &mut self,
        ty: &'static TypeDef,
        obj: &'v Map<String, Value>,
        path: &Path<'_>,
        resource: bool,
    ) {
        if obj.is_empty() {
            let msg = format!("an empty object is not a valid {}", ty.name);
            return self.report(IssueCode::Structure, path, msg);
        }
        let mut seen = [0u64; 4];
        let mut chosen: [Option<&'static str>; MAX_CHOICES] = [None; MAX_CHOICES];
        for (key, value) in obj {
            let (name, underscore) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            if resource && key == "resourceType" {
                continue;
            }
            let here = path.field(key);
            let element = ty
                .element(name)
                .filter(|el| !underscore || matches!(el.ty, Ty::Primitive(_)) && !el.attr());
            let Some(el) = element else {
                let msg = format!("unknown element '{key}': {} has no such element", ty.name);
                self.report(IssueCode::Structure, &here, msg);
                continue;
            };
            if underscore {
                self.primitive_extension(el, value, obj, name, &here);
            } else {
                self.element(el, value, obj, &here);
            }
            seen[usize::from(el.slot / 64)] |= 1 << (el.slot % 64);
            if el.choice != NO_CHOICE {
                match &mut chosen[usize::from(el.choice)] {
                    slot @ None => *slot = Some(el.name),
                    Some(other) if *other != el.name => {
                        let msg = format!(
                            "{} and {} are two choices of one element: only one is allowed",
                            other, el.name
                        );
                        self.report(IssueCode::Structure, &here, msg);
                    }
                    Some(_) => {}
                }
            }
        }
        for req in ty.required {
            if seen[usize::from(req.slot / 64)] & (1 << (req.slot % 64)) == 0 {
                let msg = format!(
                    "{}.{} is required (minimum cardinality 1)",
                    ty.name, req.name
                );
                self.report(IssueCode::Required, &path.field(req.name), msg);
            }
        }
    }

    /// A property's value: an array for a repeating element, one value otherwise.
    fn element(
        &mut self,
        el: &'static Element,
        value: &'v Value,
        parent: &'v Map<String, Value>,
        path: &Path<'_>,
    ) {
        if !el.many() {
            match value {
                Value::Array(_) => {
                    let msg = format!("{} does not repeat: it must not be an array", el.name);
                    self.report(IssueCode::Structure, path, msg);
                }
                Value::Null => {
                    self.report(IssueCode::Structure, path, "null is not a value".into())
                }
                _ => self.single(el, value, path),
            }
            return;
        }
        let Value::Array(items) = value else {
            let msg = format!("{} repeats: its value must be an array", el.name);
            return self.report(IssueCode::Structure, path, msg);
        };
        if items.is_empty() {
            let msg = "an array must not be empty (leave the element out)".into();
            return self.report(IssueCode::Structure, path, msg);
        }
        for (i, item) in items.iter().enumerate() {
            let at = path.index(i);
            if item.is_null() {
                if !extension_at(parent, el.name, i) {
                    let msg = format!(
                        "null in {} is only allowed where _{} has an extension at the same index",
                        el.name, el.name
                    );
                    self.report(IssueCode::Structure, &at, msg);
                }
                continue;
            }
            self.single(el, item, &at);
        }
    }

    /// A primitive's `_name` sibling: its id and extensions (an array of those, or nulls, for a
    /// repeating primitive).
    fn primitive_extension(
        &mut self,
        el: &'static Element,
        value: &'v Value,
        parent: &'v Map<String, Value>,
        name: &str,
        path: &Path<'_>,
    ) {
        let element = TypeDef::get(ELEMENT);
        if !el.many() {
            match value {
                Value::Object(obj) => self.object(element, obj, path, false),
                _ => {
                    let msg = format!("_{name} must be an object (id, extension)");
                    self.report(IssueCode::Structure, path, msg);
                }
            }
            return;
        }
        let Value::Array(items) = value else {
            let msg = format!("_{name} must be an array, as {name} repeats");
            return self.report(IssueCode::Structure, path, msg);
        };
        // Both arrays line up index by index; `_name` alone (values all absent) is allowed.
        let values = match parent.get(name) {
            Some(Value::Array(values)) => Some(values.as_slice()),
            _ => None,
        };
        if let Some(values) = values
            && items.len() != values.len()
        {
            let msg = format!(
                "_{name} must have as many items as {name} ({})",
                values.len()
            );
            return self.report(IssueCode::Structure, path, msg);
        }
        for (i, item) in items.iter().enumerate() {
            let at = path.index(i);
            match item {
                Value::Object(obj) => self.object(element, obj, &at, false),
                Value::Null if values.is_some_and(|v| !v[i].is_null()) => {}
                Value::Null => {
                    let msg = format!(
                        "_{name}[{i}] is null and so is {name}[{i}]: one must have content"
                    );
                    self.report(IssueCode::Structure, &at, msg);
                }
                _ => {
                    let msg = format!("the items of _{name} must be objects or null");
                    self.report(IssueCode::Structure, &at, msg);
                }
            }
        }
    }

    /// One value of an element.
    fn single(&mut self, el: &'static Element, value: &'v Value, path: &Path<'_>) {
        match el.ty {
            Ty::Primitive(prim) => self.primitive(el, prim, value, path),
            Ty::Complex(index) => {
                let ty = TypeDef::get(index);
                let Value::Object(obj) = value else {
                    let msg = format!("{} must be a JSON object (a {})", el.name, ty.name);
                    return self.report(IssueCode::Structure, path, msg);
                };
                self.object(ty, obj, path, false);
                match index {
                    REFERENCE => {
                        if let Some(Value::String(r)) = obj.get("reference")
                            && r.starts_with('#')
                        {
                            self.local_refs.push(r);
                        }
                    }
                    EXTENSION => self.extension_rule(obj, path),
                    CODING | CODEABLE_CONCEPT => {
                        if let Some(vs) = el.value_set() {
                            self.coded(vs, index == CODING, obj, path);
                        }
                    }
                    _ => {}
                }
            }
            Ty::Resource => match value {
                Value::Object(obj) => self.resource(obj, path, el.name == "contained"),
                _ => {
                    let msg = format!("{} must be a resource (a JSON object)", el.name);
                    self.report(IssueCode::Structure, path, msg);
                }
            },
        }
    }

    fn primitive(&mut self, el: &'static Element, prim: Prim, value: &'v Value, path: &Path<'_>) {
        if let Err(fault) = primitive::check(prim, value) {
            let (code, msg) = match fault {
                Fault::JsonType(expected) => (
                    IssueCode::Structure,
                    format!(
                        "{} is a {}: its JSON value must be {expected}, not {}",
                        el.name,
                        prim.name(),
                        json_type(value)
                    ),
                ),
                Fault::Empty => (
                    IssueCode::Value,
                    "a FHIR string is never empty (leave the element out)".into(),
                ),
                Fault::Format => (
                    IssueCode::Value,
                    format!("{} is not a valid {}", value, prim.name()),
                ),
                Fault::TooLong => (
                    IssueCode::TooLong,
                    format!("a {} may not exceed 1 MiB", prim.name()),
                ),
            };
            return self.report(code, path, msg);
        }
        let Value::String(s) = value else {
            return;
        };
        match prim {
            Prim::Uri | Prim::Url | Prim::Canonical if s.starts_with('#') => {
                self.local_refs.push(s)
            }
            Prim::Code => {
                if let Some(vs) = el.value_set()
                    && !vs.contains(s)
                {
                    let msg = not_in_value_set(&format!("'{s}'"), vs);
                    self.report(IssueCode::CodeInvalid, path, msg);
                }
            }
            _ => {}
        }
    }

    /// ext-1: an extension has a value or nested extensions, not both.
    fn extension_rule(&mut self, obj: &Map<String, Value>, path: &Path<'_>) {
        let has_value = obj.keys().any(|k| k.starts_with("value"));
        let has_extensions = obj.contains_key("extension");
        if has_value == has_extensions {
            let msg =
                "ext-1: an extension must have either extensions or a value[x], not both".into();
            self.report(IssueCode::Invariant, path, msg);
        }
    }

    /// A required binding on a Coding or CodeableConcept: one of its codings is in the value set.
    fn coded(
        &mut self,
        vs: &'static ValueSet,
        coding: bool,
        obj: &Map<String, Value>,
        path: &Path<'_>,
    ) {
        let matches = |c: &Map<String, Value>| {
            let system = c.get("system").and_then(Value::as_str);
            let code = c.get("code").and_then(Value::as_str);
            system
                .zip(code)
                .is_some_and(|(s, c)| vs.contains_coding(s, c))
        };
        let found = if coding {
            matches(obj)
        } else {
            match obj.get("coding") {
                Some(Value::Array(codings)) => {
                    codings.iter().filter_map(Value::as_object).any(matches)
                }
                _ => false,
            }
        };
        if !found {
            let what = if coding {
                "the coding"
            } else {
                "none of the codings"
            };
            self.report(IssueCode::CodeInvalid, path, not_in_value_set(what, vs));
        }
    }
}

/// Whether `_name` (the sibling of a repeating primitive) has content at index `i`.
fn extension_at(parent: &Map<String, Value>, name: &str, i: usize) -> bool {
    match parent.get(&format!("_{name}")) {
        Some(Value::Array(items)) => items.get(i).is_some_and(Value::is_object),
        _ => false,
    }
}

/// Whether a contained resource has a reference to its container (`#`) anywhere in it.
fn refers_to_container(value: &Value) -> bool {
    match value {
        Value::String(s) => s == "#",
        Value::Array(items) => items.iter().any(refers_to_container),
        Value::Object(obj) => obj.values().any(refers_to_container),
        _ => false,
    }
}

fn not_in_value_set(what: &str, vs: &ValueSet) -> String {
    match vs.listing() {
        Some(codes) => format!(
            "{what} is not in the required value set {} ({codes})",
            vs.url
        ),
        None => format!("{what} is not in the required value set {}", vs.url),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
