//! The de-identification walk: one pass over a resource, guided by the R4 definitions, that
//! de-identifies it in place.

use carechain_fhir::schema::{Element, Kind, Primitive, Type};
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::date::{self, Date};
use crate::error::Error;
use crate::keys::{self, DeidSecret, StudyKey, Wallet, parse_uuid, parse_wallet};
use crate::rules::{Bits, DateMode, Generalization, Method, Rules, element_number};

/// The data-absent-reason extension put where R4 requires an element that the rules removed.
pub const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// The first three digits of the US ZIP codes whose three-digit area held 20,000 people or
/// fewer in the 2000 Census, which Safe Harbor requires to be written `000` (HHS, Guidance
/// Regarding Methods for De-identification of PHI, 2012, section 2.4, after 67 FR 53182).
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// De-identifies resources for one study at one custodian. Build one per export job (setting
/// it up compiles nothing: the rules are compiled already) and share it across threads.
pub struct Deidentifier {
    rules: Rules,
    key: StudyKey,
    reference_date: Date,
    /// Types and elements the walk recognises by identity.
    known: &'static Known,
}

/// The types and elements the walk recognises by identity.
struct Known {
    reference: Type,
    age: Type,
    address: Type,
    extension: Type,
    element: Type,
    patient: Type,
    full_url: Option<Element>,
}

impl std::fmt::Debug for Deidentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deidentifier")
            .field("rules", &self.rules.name())
            .field("reference_date", &self.reference_date)
            .finish_non_exhaustive()
    }
}

static KNOWN: LazyLock<Known> = LazyLock::new(|| {
    // The generated R4 tables define all of these: a missing one is a broken build.
    let named = |name: &str| Type::named(name).expect("an R4 datatype");
    Known {
        reference: named("Reference"),
        age: named("Age"),
        address: named("Address"),
        extension: named("Extension"),
        element: Type::primitive_element(),
        patient: Type::resource("Patient").expect("an R4 resource type"),
        full_url: named("Bundle.entry").element("fullUrl"),
    }
});

/// The patient a batch of resources belongs to: their pseudonym and date offset, derived once.
/// Get one from [`Deidentifier::patient`] and pass every resource of the patient through it.
pub struct PatientScope<'d> {
    deid: &'d Deidentifier,
    wallet: Wallet,
    pseudonym: String,
    offset_days: i32,
    source_id: Option<String>,
}

impl Deidentifier {
    /// A de-identifier for `study`, run by `custodian` (the organisation exporting: its ids
    /// that are not UUIDs are only unique on its servers, so they are hashed with it).
    ///
    /// # Errors
    ///
    /// [`Error::EmptyStudy`].
    pub fn new(
        rules: Rules,
        secret: &DeidSecret,
        study: &str,
        custodian: &str,
    ) -> Result<Self, Error> {
        Ok(Self {
            rules,
            key: StudyKey::new(secret, study, custodian)?,
            reference_date: Date::today(),
            known: &KNOWN,
        })
    }

    /// The date ages are counted at (default: today, UTC): the export's date. A birth date of
    /// someone aged 90 or over on it is generalised.
    pub fn with_reference_date(mut self, date: Date) -> Self {
        self.reference_date = date;
        self
    }

    /// The rules applied.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The scope of one patient, by wallet address (`0x` + 40 hex digits).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidWallet`].
    pub fn patient(&self, wallet: &str) -> Result<PatientScope<'_>, Error> {
        Ok(self.patient_wallet(Wallet::parse(wallet)?))
    }

    /// The scope of one patient, by wallet bytes.
    pub fn patient_wallet(&self, wallet: Wallet) -> PatientScope<'_> {
        PatientScope {
            deid: self,
            wallet,
            pseudonym: self.key.pseudonym(&wallet),
            offset_days: self.key.date_offset(&wallet, self.rules.max_shift_days),
            source_id: None,
        }
    }

    /// De-identifies one resource of a patient: `Ok(None)` when the rules drop its type.
    /// For many resources of one patient, [`Deidentifier::patient`] once and
    /// [`PatientScope::deidentify`] each is cheaper.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidWallet`], [`Error::NotAResource`].
    pub fn deidentify(
        &self,
        resource: &Value,
        patient_wallet: &str,
    ) -> Result<Option<Value>, Error> {
        self.patient(patient_wallet)?.deidentify(resource)
    }

    /// [`Deidentifier::deidentify`] of a resource the caller owns: it is de-identified in
    /// place, nothing kept is copied (what a streaming export wants).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidWallet`], [`Error::NotAResource`].
    pub fn deidentify_owned(
        &self,
        resource: Value,
        patient_wallet: &str,
    ) -> Result<Option<Value>, Error> {
        self.patient(patient_wallet)?.deidentify_owned(resource)
    }

    /// De-identifies a resource that belongs to no patient (an Organization, a Practitioner):
    /// with no patient offset, its dates are reduced to the year whatever the date mode.
    ///
    /// # Errors
    ///
    /// [`Error::NotAResource`].
    pub fn deidentify_unlinked(&self, resource: &Value) -> Result<Option<Value>, Error> {
        self.walk(resource.clone(), None)
    }

    /// [`Deidentifier::deidentify_unlinked`] in place.
    ///
    /// # Errors
    ///
    /// [`Error::NotAResource`].
    pub fn deidentify_unlinked_owned(&self, resource: Value) -> Result<Option<Value>, Error> {
        self.walk(resource, None)
    }

    /// The study pseudonym of a wallet (what its Patient's id becomes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidWallet`].
    pub fn pseudonym(&self, wallet: &str) -> Result<String, Error> {
        Ok(self.key.pseudonym(&Wallet::parse(wallet)?))
    }

    fn walk(
        &self,
        mut resource: Value,
        patient: Option<&PatientScope<'_>>,
    ) -> Result<Option<Value>, Error> {
        let obj = resource.as_object_mut().ok_or(Error::NotAResource)?;
        let ty = obj
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(Type::resource)
            .ok_or(Error::NotAResource)?;
        let walk = Walk {
            deid: self,
            rules: &self.rules,
            patient,
        };
        Ok(walk
            .resource(ty, obj, None, None, false)
            .then_some(resource))
    }
}

impl std::fmt::Debug for PatientScope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the wallet nor the offset: both would undo the de-identification.
        f.debug_struct("PatientScope")
            .field("pseudonym", &self.pseudonym)
            .finish_non_exhaustive()
    }
}

impl PatientScope<'_> {
    /// Also maps references to `Patient/<id>` (and `urn:uuid:<id>`) onto this patient's
    /// pseudonym, for a source whose Patient id is not the wallet (the gateway's is).
    pub fn with_source_id(mut self, id: &str) -> Self {
        self.source_id = Some(id.to_owned());
        self
    }

    /// The patient's pseudonym in the study.
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// The patient's date offset in days (custodian-side knowledge: never export it).
    pub fn date_offset_days(&self) -> i32 {
        self.offset_days
    }

    /// De-identifies one resource of this patient: `Ok(None)` when the rules drop its type.
    ///
    /// # Errors
    ///
    /// [`Error::NotAResource`].
    pub fn deidentify(&self, resource: &Value) -> Result<Option<Value>, Error> {
        self.deid.walk(resource.clone(), Some(self))
    }

    /// [`PatientScope::deidentify`] of a resource the caller owns: de-identified in place,
    /// nothing kept is copied.
    ///
    /// # Errors
    ///
    /// [`Error::NotAResource`].
    pub fn deidentify_owned(&self, resource: Value) -> Result<Option<Value>, Error> {
        self.deid.walk(resource, Some(self))
    }
}

/// One node's place: the element it was reached by and the rules covering it, linked to its
/// parent's (on the stack, so building one costs nothing).
struct Frame<'a> {
    parent: Option<&'a Frame<'a>>,
    via: Option<u32>,
    covering: Bits,
}

/// The resource being walked (a contained one has its own).
#[derive(Clone, Copy)]
struct Res {
    ty: Type,
    contained: bool,
}

/// What a rule does to one primitive value.
enum Outcome {
    /// Left as it is.
    Keep,
    /// Replaced.
    Set(Value),
    /// Cut to its first four characters (a date's year).
    Year,
    /// Removed.
    Remove,
    /// The rule cannot act on this type: the next covering rule decides.
    Skip,
}

/// What a value's siblings tell about it (only the country of an address, for ZIP codes).
struct Siblings {
    country: Option<String>,
}

struct Walk<'d> {
    deid: &'d Deidentifier,
    rules: &'d Rules,
    patient: Option<&'d PatientScope<'d>>,
}

impl Walk<'_> {
    /// De-identifies a resource in place; `false` when it is dropped.
    fn resource(
        &self,
        ty: Type,
        obj: &mut Map<String, Value>,
        parent: Option<&Frame<'_>>,
        via: Option<Element>,
        contained: bool,
    ) -> bool {
        if self.rules.drop[ty.index()] {
            return false;
        }
        let inherited = parent.map_or(0, |f| f.covering);
        let matched =
            self.rules.by_type[ty.index()] | via.map_or(0, |el| self.element_rules(el, parent));
        let matched = self.url_filter(matched, obj);
        let frame = Frame {
            parent,
            via: via.map(element_number),
            covering: inherited | matched,
        };
        if !self.object(ty, obj, &frame, Res { ty, contained }) {
            return false;
        }
        if !contained {
            self.label(obj);
        }
        true
    }

    /// Rules matching a node reached by `el` through its path (the node's parent is `parent`).
    fn element_rules(&self, el: Element, parent: Option<&Frame<'_>>) -> Bits {
        let i = el.index();
        let mut bits = self.rules.by_element[i];
        let deep = self.rules.by_element_deep[i];
        if deep != 0 {
            bits |= self.check_ancestors(deep, element_number(el), parent);
        }
        bits
    }

    fn check_ancestors(&self, mut candidates: Bits, el: u32, parent: Option<&Frame<'_>>) -> Bits {
        let mut matched = 0;
        while candidates != 0 {
            let r = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let ok = self.rules.rules[r].deep_paths.iter().any(|steps| {
                let Some((last, before)) = steps.split_last() else {
                    return false;
                };
                if last.binary_search(&el).is_err() {
                    return false;
                }
                let mut frame = parent;
                for step in before.iter().rev() {
                    match frame {
                        Some(f) if f.via.is_some_and(|v| step.binary_search(&v).is_ok()) => {
                            frame = f.parent;
                        }
                        _ => return false,
                    }
                }
                true
            });
            if ok {
                matched |= 1 << r;
            }
        }
        matched
    }

    /// Drops the url-conditioned rules whose urls the node does not carry.
    fn url_filter(&self, mut bits: Bits, obj: &Map<String, Value>) -> Bits {
        let mut conditioned = bits & self.rules.with_url;
        if conditioned == 0 {
            return bits;
        }
        let url = obj.get("url").and_then(Value::as_str);
        while conditioned != 0 {
            let r = conditioned.trailing_zeros() as usize;
            conditioned &= conditioned - 1;
            if !url.is_some_and(|u| self.rules.rules[r].urls.iter().any(|x| x == u)) {
                bits &= !(1 << r);
            }
        }
        bits
    }

    /// De-identifies the properties of an object of type `ty` in place; `false` when nothing is
    /// left of it.
    fn object(&self, ty: Type, obj: &mut Map<String, Value>, frame: &Frame<'_>, res: Res) -> bool {
        let mut removed = false;
        // A repeating primitive and its `_name` sibling line up index by index: they are taken
        // out, done together and put back once the other properties are done.
        let mut pairs: Vec<(String, Option<Value>, Option<Value>)> = Vec::new();
        if obj.keys().any(|k| k.starts_with('_')) {
            let names: Vec<String> = obj
                .keys()
                .filter_map(|k| k.strip_prefix('_'))
                .filter(|name| obj.contains_key(*name))
                .map(str::to_owned)
                .collect();
            for name in names {
                let Some(el) = ty.element(&name) else {
                    continue;
                };
                let Kind::Primitive(p) = el.kind() else {
                    continue;
                };
                if !el.repeats() || el.is_attribute() {
                    continue;
                }
                let mut values = obj.remove(&name);
                let mut extensions = obj.remove(&format!("_{name}"));
                removed |= self.primitive_pairs(el, p, &mut values, &mut extensions, frame, res);
                pairs.push((name, values, extensions));
            }
        }
        let siblings = Siblings {
            country: if ty == self.deid.known.address {
                obj.get("country")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            } else {
                None
            },
        };
        obj.retain(|key, value| {
            let keep = self.property(ty, key, value, frame, res, &siblings);
            removed |= !keep;
            keep
        });
        for (name, values, extensions) in pairs {
            if let Some(extensions) = extensions {
                obj.insert(format!("_{name}"), extensions);
            }
            if let Some(values) = values {
                obj.insert(name, values);
            }
        }
        if obj.is_empty() {
            return false;
        }
        if ty == self.deid.known.extension
            && (!obj.contains_key("url")
                || !(obj.contains_key("extension") || obj.keys().any(|k| k.starts_with("value"))))
        {
            return false;
        }
        if removed {
            fill_required(ty, obj, 0);
        }
        true
    }

    /// One property of an object: `false` when it goes.
    fn property(
        &self,
        ty: Type,
        key: &str,
        value: &mut Value,
        frame: &Frame<'_>,
        res: Res,
        siblings: &Siblings,
    ) -> bool {
        if key == "resourceType" {
            return ty.is_resource();
        }
        let (name, underscore) = match key.strip_prefix('_') {
            Some(name) => (name, true),
            None => (key, false),
        };
        let Some(el) = ty.element(name) else {
            return false;
        };
        match el.kind() {
            Kind::Primitive(_) if underscore => {
                if el.is_attribute() {
                    return false;
                }
                if el.repeats() {
                    // `_name` without values: its items are Elements or null.
                    let Value::Array(items) = value else {
                        return false;
                    };
                    for item in items.iter_mut() {
                        let keep = match item {
                            Value::Object(obj) => self.primitive_element(el, obj, frame, res),
                            _ => false,
                        };
                        if !keep {
                            *item = Value::Null;
                        }
                    }
                    return items.iter().any(|v| !v.is_null());
                }
                match value {
                    Value::Object(obj) => self.primitive_element(el, obj, frame, res),
                    _ => false,
                }
            }
            Kind::Primitive(p) if el.repeats() => {
                let Value::Array(items) = value else {
                    return false;
                };
                items.retain_mut(|v| self.leaf(el, p, v, frame, siblings, res));
                !items.is_empty()
            }
            Kind::Primitive(p) => self.leaf(el, p, value, frame, siblings, res),
            _ if underscore => false,
            Kind::Complex(t) if el.repeats() => {
                let Value::Array(items) = value else {
                    return false;
                };
                items.retain_mut(|item| self.complex(el, t, item, frame, res));
                !items.is_empty()
            }
            Kind::Complex(t) => self.complex(el, t, value, frame, res),
            Kind::Resource if el.repeats() => {
                let Value::Array(items) = value else {
                    return false;
                };
                items.retain_mut(|item| self.nested_resource(el, item, frame));
                !items.is_empty()
            }
            Kind::Resource => self.nested_resource(el, value, frame),
        }
    }

    fn nested_resource(&self, el: Element, value: &mut Value, frame: &Frame<'_>) -> bool {
        let Value::Object(obj) = value else {
            return false;
        };
        let Some(ty) = obj
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(Type::resource)
        else {
            return false;
        };
        self.resource(ty, obj, Some(frame), Some(el), el.name() == "contained")
    }

    fn complex(
        &self,
        el: Element,
        ty: Type,
        value: &mut Value,
        frame: &Frame<'_>,
        res: Res,
    ) -> bool {
        let Value::Object(obj) = value else {
            return false;
        };
        let matched = self.url_filter(
            self.rules.by_type[ty.index()] | self.element_rules(el, Some(frame)),
            obj,
        );
        let covering = frame.covering | matched;
        if covering != 0 {
            let first = covering.trailing_zeros() as usize;
            if matched & (1 << first) != 0 {
                match &self.rules.rules[first].method {
                    Method::Substitute(v) => {
                        *value = v.clone();
                        return true;
                    }
                    Method::Generalize(Generalization::Age) if ty == self.deid.known.age => {
                        cap_age(obj);
                    }
                    _ => {}
                }
            }
        }
        let child = Frame {
            parent: Some(frame),
            via: Some(element_number(el)),
            covering,
        };
        self.object(ty, obj, &child, res)
    }

    /// A primitive's `_name` sibling (its id and extensions).
    fn primitive_element(
        &self,
        el: Element,
        obj: &mut Map<String, Value>,
        frame: &Frame<'_>,
        res: Res,
    ) -> bool {
        let ty = self.deid.known.element;
        let matched = self.rules.by_type[ty.index()] | self.element_rules(el, Some(frame));
        let child = Frame {
            parent: Some(frame),
            via: Some(element_number(el)),
            covering: frame.covering | matched,
        };
        self.object(ty, obj, &child, res)
    }

    /// A repeating primitive with its `_name` sibling, kept aligned index by index: an index
    /// stays while its value or its extensions do. Says whether anything was lost.
    fn primitive_pairs(
        &self,
        el: Element,
        p: Primitive,
        values: &mut Option<Value>,
        extensions: &mut Option<Value>,
        frame: &Frame<'_>,
        res: Res,
    ) -> bool {
        let siblings = Siblings { country: None };
        let mut values_in = match values.take() {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let mut extensions_in = match extensions.take() {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let n = values_in.len().max(extensions_in.len());
        values_in.resize(n, Value::Null);
        extensions_in.resize(n, Value::Null);
        let mut lost = false;
        let mut out_values = Vec::with_capacity(n);
        let mut out_extensions = Vec::with_capacity(n);
        for (mut value, mut extension) in values_in.into_iter().zip(extensions_in) {
            let has_value = !value.is_null() && self.leaf(el, p, &mut value, frame, &siblings, res);
            let has_extension = match &mut extension {
                Value::Object(obj) => self.primitive_element(el, obj, frame, res),
                _ => false,
            };
            if !has_value && !has_extension {
                lost = true;
                continue;
            }
            out_values.push(if has_value { value } else { Value::Null });
            out_extensions.push(if has_extension {
                extension
            } else {
                Value::Null
            });
        }
        let some = |items: Vec<Value>| {
            items
                .iter()
                .any(|v| !v.is_null())
                .then_some(Value::Array(items))
        };
        *values = some(out_values);
        *extensions = some(out_extensions);
        lost
    }

    /// One primitive value, in place: the first covering rule that can act on its type decides.
    /// `false` when it goes.
    fn leaf(
        &self,
        el: Element,
        p: Primitive,
        value: &mut Value,
        frame: &Frame<'_>,
        siblings: &Siblings,
        res: Res,
    ) -> bool {
        if value.is_null() || value.is_array() || value.is_object() {
            return false;
        }
        let matched = self.rules.by_primitive[p as usize] | self.element_rules(el, Some(frame));
        let mut covering = frame.covering | matched;
        while covering != 0 {
            let r = covering.trailing_zeros() as usize;
            covering &= covering - 1;
            match self.apply(&self.rules.rules[r].method, el, p, value, siblings, res) {
                Outcome::Keep => return true,
                Outcome::Set(v) => {
                    *value = v;
                    return true;
                }
                Outcome::Year => {
                    if let Value::String(s) = value {
                        s.truncate(4);
                    }
                    return true;
                }
                Outcome::Remove => return false,
                Outcome::Skip => {}
            }
        }
        true
    }

    fn apply(
        &self,
        method: &Method,
        el: Element,
        p: Primitive,
        value: &Value,
        siblings: &Siblings,
        res: Res,
    ) -> Outcome {
        let text = value.as_str();
        match method {
            Method::Keep => Outcome::Keep,
            Method::Redact => Outcome::Remove,
            Method::Substitute(v) => Outcome::Set(v.clone()),
            Method::CryptoHash => match text {
                Some(text) => self.hash(el, p, text, res),
                None => Outcome::Skip,
            },
            Method::DateShift => match (is_date(p), text) {
                (true, Some(text)) => self.date(p, text, self.rules.date_mode),
                _ => Outcome::Skip,
            },
            Method::Generalize(Generalization::Year) => match (is_date(p), text) {
                (true, Some(text)) => self.date(p, text, DateMode::Year),
                _ => Outcome::Skip,
            },
            Method::Generalize(Generalization::BirthDate) => match (p, text) {
                (Primitive::Date | Primitive::DateTime, Some(text)) => {
                    let at = self.deid.reference_date;
                    match date::age_at(text, at) {
                        Some(age) if age >= 90 => {
                            Outcome::Set(Value::String(format!("{:04}", at.year - 91)))
                        }
                        Some(_) => self.date(p, text, self.rules.date_mode),
                        None => Outcome::Remove,
                    }
                }
                _ => Outcome::Skip,
            },
            // Acts on the Age node (in `complex`), never on a value.
            Method::Generalize(Generalization::Age) => Outcome::Skip,
            Method::Generalize(Generalization::Zip3) => match (p, text) {
                (Primitive::String, Some(text)) => match zip3(text, siblings.country.as_deref()) {
                    Some(zip) => Outcome::Set(Value::String(zip.to_owned())),
                    None => Outcome::Remove,
                },
                _ => Outcome::Skip,
            },
        }
    }

    fn date(&self, p: Primitive, text: &str, mode: DateMode) -> Outcome {
        if let (DateMode::Shift, Some(patient)) = (mode, self.patient) {
            return date::shift(text, patient.offset_days)
                .map_or(Outcome::Remove, |s| Outcome::Set(Value::String(s)));
        }
        // An instant must be complete: reduced to a year it is no instant.
        if p == Primitive::Instant || date::year_of(text).is_none() {
            return Outcome::Remove;
        }
        if text.len() == 4 {
            Outcome::Keep
        } else {
            Outcome::Year
        }
    }

    fn hash(&self, el: Element, p: Primitive, text: &str, res: Res) -> Outcome {
        let key = &self.deid.key;
        let known = &self.deid.known;
        if el.name() == "id" && el.owner() == res.ty {
            let id = if res.contained {
                key.local_id(text)
            } else if res.ty == known.patient {
                self.patient_id(text, true)
            } else {
                key.resource_id(res.ty.name(), text)
            };
            return Outcome::Set(Value::String(id));
        }
        if (el.name() == "reference" && el.owner() == known.reference) || Some(el) == known.full_url
        {
            return self
                .reference(text)
                .map_or(Outcome::Remove, |r| Outcome::Set(Value::String(r)));
        }
        let digest = || key.value(text);
        let out = match p {
            Primitive::Uuid => match text.strip_prefix("urn:uuid:").and_then(parse_uuid) {
                Some(uuid) => format!("urn:uuid:{}", key.uuid_id(&uuid)),
                None => format!("urn:uuid:{}", keys::uuid_text(&digest())),
            },
            Primitive::Oid => keys::oid_text(&digest()),
            Primitive::Id
            | Primitive::String
            | Primitive::Code
            | Primitive::Uri
            | Primitive::Url
            | Primitive::Canonical
            | Primitive::Markdown => keys::hex16(&digest()),
            _ => return Outcome::Skip,
        };
        Outcome::Set(Value::String(out))
    }

    /// The pseudonymous id of a Patient: the study pseudonym for a wallet (and for this
    /// patient's source id), a keyed hash for any other id.
    fn patient_id(&self, id: &str, own_resource: bool) -> String {
        if let Some(wallet) = parse_wallet(id) {
            return match self.patient {
                Some(p) if p.wallet == wallet => p.pseudonym.clone(),
                _ => self.deid.key.pseudonym(&wallet),
            };
        }
        match self.patient {
            Some(p) if own_resource || p.source_id.as_deref() == Some(id) => p.pseudonym.clone(),
            _ => self.deid.key.resource_id("Patient", id),
        }
    }

    /// A reference rewritten to pseudonymous ids: `Type/<hash>`, `urn:uuid:<hash>`,
    /// `#<hash>`. `None` for what cannot be rewritten (a conditional reference, a URL that is
    /// not a resource's): it goes.
    fn reference(&self, text: &str) -> Option<String> {
        let key = &self.deid.key;
        if let Some(local) = text.strip_prefix('#') {
            return Some(if local.is_empty() {
                "#".into()
            } else {
                format!("#{}", key.local_id(local))
            });
        }
        if let Some(uuid) = text.strip_prefix("urn:uuid:") {
            if let Some(p) = self.patient
                && p.source_id
                    .as_deref()
                    .is_some_and(|id| id.eq_ignore_ascii_case(uuid))
            {
                return Some(format!("urn:uuid:{}", p.pseudonym));
            }
            return parse_uuid(uuid).map(|u| format!("urn:uuid:{}", key.uuid_id(&u)));
        }
        if text.starts_with("urn:oid:") {
            return Some(keys::oid_text(&key.value(text)));
        }
        if text.contains('?') {
            return None;
        }
        let path = text.find("/_history/").map_or(text, |at| &text[..at]);
        let (rest, id) = path.rsplit_once('/')?;
        let type_name = rest.rsplit('/').next()?;
        let ty = Type::resource(type_name)?;
        let valid_id = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
        if !valid_id {
            return None;
        }
        let hashed = if ty == self.deid.known.patient {
            self.patient_id(id, false)
        } else {
            key.resource_id(type_name, id)
        };
        Some(format!("{type_name}/{hashed}"))
    }

    /// Adds the rule file's security labels to `meta.security`.
    fn label(&self, out: &mut Map<String, Value>) {
        if self.rules.labels.is_empty() {
            return;
        }
        let meta = out
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(meta) = meta else { return };
        let security = meta
            .entry("security")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(security) = security else {
            return;
        };
        for label in &self.rules.labels {
            let present = security.iter().any(|c| {
                c.get("system") == label.get("system") && c.get("code") == label.get("code")
            });
            if !present {
                security.push(label.clone());
            }
        }
    }
}

fn is_date(p: Primitive) -> bool {
    matches!(
        p,
        Primitive::Date | Primitive::DateTime | Primitive::Instant
    )
}

/// A US ZIP code's first three digits (`000` for the restricted ones); `None` for anything
/// else, which is then removed.
fn zip3<'a>(text: &'a str, country: Option<&str>) -> Option<&'a str> {
    let us = country.is_none_or(|c| {
        matches!(
            c.trim().to_ascii_uppercase().as_str(),
            "US" | "USA" | "UNITED STATES" | "UNITED STATES OF AMERICA"
        )
    });
    let text = text.trim();
    let b = text.as_bytes();
    let five = b.len() >= 5 && b[..5].iter().all(u8::is_ascii_digit);
    let plus4 = match &b[5.min(b.len())..] {
        [] => true,
        [b'-', rest @ ..] | rest => rest.len() == 4 && rest.iter().all(u8::is_ascii_digit),
    };
    if !(us && five && plus4) {
        return None;
    }
    let prefix = &text[..3];
    Some(if RESTRICTED_ZIP3.contains(&prefix) {
        "000"
    } else {
        prefix
    })
}

/// An `Age` of 90 years or more becomes `>= 90` years (Safe Harbor's "90 or older"). The
/// value is read in its UCUM unit (years, months, weeks, days, hours or minutes).
fn cap_age(age: &mut Map<String, Value>) {
    let Some(value) = age.get("value").and_then(Value::as_f64) else {
        return;
    };
    let unit = age
        .get("code")
        .or_else(|| age.get("unit"))
        .and_then(Value::as_str)
        .unwrap_or("a");
    let per_year = match unit {
        "a" | "yr" | "year" | "years" | "y" => 1.0,
        "mo" | "month" | "months" => 12.0,
        "wk" | "week" | "weeks" => 52.1775,
        "d" | "day" | "days" => 365.25,
        "h" | "hour" | "hours" => 8766.0,
        "min" | "minute" | "minutes" => 525_960.0,
        _ => return,
    };
    if value / per_year < 90.0 {
        return;
    }
    age.insert("value".into(), json!(90));
    age.insert("comparator".into(), json!(">="));
    age.insert("unit".into(), json!("years"));
    age.insert("system".into(), json!("http://unitsofmeasure.org"));
    age.insert("code".into(), json!("a"));
}

/// Puts a data-absent-reason where R4 requires an element that is no longer there.
fn fill_required(ty: Type, out: &mut Map<String, Value>, depth: usize) {
    for el in ty.required() {
        let present = if el.is_choice() {
            ty.elements()
                .filter(|e| e.slot() == el.slot())
                .any(|e| out.contains_key(e.name()) || out.contains_key(&format!("_{}", e.name())))
        } else {
            out.contains_key(el.name()) || out.contains_key(&format!("_{}", el.name()))
        };
        if present || el.is_attribute() {
            continue;
        }
        let (key, value) = match el.kind() {
            Kind::Primitive(_) => (format!("_{}", el.name()), absent()),
            Kind::Complex(t) if depth < 8 => {
                let mut obj = Map::new();
                obj.insert("extension".into(), json!([absent_extension()]));
                fill_required(t, &mut obj, depth + 1);
                (el.name().to_owned(), Value::Object(obj))
            }
            _ => continue,
        };
        let value = if el.repeats() {
            Value::Array(vec![value])
        } else {
            value
        };
        out.insert(key, value);
    }
}

fn absent_extension() -> Value {
    json!({"url": DATA_ABSENT_REASON, "valueCode": "masked"})
}

fn absent() -> Value {
    json!({"extension": [absent_extension()]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_codes() {
        let (none, canada) = (None, Some("CA"));
        assert_eq!(zip3("02780", none), Some("027"));
        assert_eq!(zip3("02780-1234", none), Some("027"));
        assert_eq!(zip3("036 12", none), None);
        assert_eq!(zip3("03601", none), Some("000"));
        assert_eq!(zip3("89301", none), Some("000"));
        assert_eq!(zip3("0278", none), None);
        assert_eq!(zip3("K1A 0B1", canada), None);
        assert_eq!(zip3("02780", canada), None);
    }
}
