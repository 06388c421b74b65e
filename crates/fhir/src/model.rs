//! The shape of the generated tables in `definitions.rs` and the lookups over them.

use std::sync::LazyLock;

use crate::definitions::{RESOURCES, TYPES, VALUE_SETS};

/// `Element::flags`: the element repeats (max `*`), so its JSON value is an array.
pub(crate) const MANY: u8 = 1;
/// `Element::flags`: an XML attribute in the spec (`Element.id`, `Extension.url`): a plain JSON
/// string with no `_name` sibling.
pub(crate) const ATTR: u8 = 2;
/// `Element::choice` of an element that is not part of a `name[x]` choice.
pub(crate) const NO_CHOICE: u8 = u8::MAX;
/// The most choice groups (`value[x]`, `effective[x]`, ...) one type has; the generator checks it.
pub(crate) const MAX_CHOICES: usize = 8;

/// The FHIR primitive types, each with its own JSON type and lexical rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prim {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Prim {
    /// The FHIR name of the type, for diagnostics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Base64Binary => "base64Binary",
            Self::Boolean => "boolean",
            Self::Canonical => "canonical",
            Self::Code => "code",
            Self::Date => "date",
            Self::DateTime => "dateTime",
            Self::Decimal => "decimal",
            Self::Id => "id",
            Self::Instant => "instant",
            Self::Integer => "integer",
            Self::Markdown => "markdown",
            Self::Oid => "oid",
            Self::PositiveInt => "positiveInt",
            Self::String => "string",
            Self::Time => "time",
            Self::UnsignedInt => "unsignedInt",
            Self::Uri => "uri",
            Self::Url => "url",
            Self::Uuid => "uuid",
            Self::Xhtml => "xhtml",
        }
    }
}

/// What an element holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    /// A primitive: a JSON string, number or boolean, with an optional `_name` sibling.
    Primitive(Prim),
    /// A complex datatype or backbone element: an index into `TYPES`.
    Complex(u16),
    /// Any resource, told apart by its `resourceType` (`contained`, `Bundle.entry.resource`).
    Resource,
}

/// One JSON property of a type. A choice element (`value[x]`) has one row per allowed type
/// (`valueQuantity`, `valueString`, ...), all sharing one slot and choice number.
#[derive(Debug)]
pub(crate) struct Element {
    /// The JSON property name.
    pub(crate) name: &'static str,
    /// The element's index among its type's elements (a bit in the seen-set).
    pub(crate) slot: u8,
    /// [`MANY`] and [`ATTR`].
    pub(crate) flags: u8,
    /// The element's type.
    pub(crate) ty: Ty,
    /// Index into `VALUE_SETS` of its required binding, or `u16::MAX`.
    pub(crate) binding: u16,
    /// Its choice group within the type, or [`NO_CHOICE`].
    pub(crate) choice: u8,
}

impl Element {
    pub(crate) fn many(&self) -> bool {
        self.flags & MANY != 0
    }

    pub(crate) fn attr(&self) -> bool {
        self.flags & ATTR != 0
    }

    /// The required value set bound to this element, if the package could expand it.
    pub(crate) fn value_set(&self) -> Option<&'static ValueSet> {
        VALUE_SETS.get(usize::from(self.binding))
    }
}

/// An element with a minimum cardinality of 1.
#[derive(Debug)]
pub(crate) struct Required {
    pub(crate) slot: u8,
    /// The element's name as the spec writes it (`code`, `value[x]`).
    pub(crate) name: &'static str,
}

/// A resource, complex datatype or backbone element (`Observation.component`).
#[derive(Debug)]
pub(crate) struct TypeDef {
    /// Its index in `TYPES`.
    pub(crate) id: u16,
    pub(crate) name: &'static str,
    /// Sorted by JSON name.
    pub(crate) elements: &'static [Element],
    pub(crate) required: &'static [Required],
}

impl TypeDef {
    pub(crate) fn get(index: u16) -> &'static TypeDef {
        &TYPES[usize::from(index)]
    }

    /// The element with this JSON property name.
    pub(crate) fn element(&self, name: &str) -> Option<&'static Element> {
        let elements = TYPES[usize::from(self.id)].elements;
        LOOKUP.types[usize::from(self.id)]
            .find(name, |i| elements[i].name)
            .map(|i| &elements[i])
    }

    /// The concrete resource type with this name.
    pub(crate) fn resource(name: &str) -> Option<&'static TypeDef> {
        LOOKUP
            .resources
            .find(name, |i| RESOURCES[i].0)
            .map(|i| Self::get(RESOURCES[i].1))
    }
}

/// Hash tables over the generated names, built once: looking a JSON property up is then one
/// hash of its name and, nearly always, one comparison, where a binary search over a type's
/// elements took several (most of the validation time).
struct Lookup {
    /// One table per entry of `TYPES`, over its elements' names.
    types: Vec<NameTable>,
    /// Over `RESOURCES`.
    resources: NameTable,
}

static LOOKUP: LazyLock<Lookup> = LazyLock::new(|| Lookup {
    types: TYPES
        .iter()
        .map(|t| NameTable::new(t.elements.iter().map(|e| e.name)))
        .collect(),
    resources: NameTable::new(RESOURCES.iter().map(|(name, _)| *name)),
});

/// An open-addressing (linear probing) table from a name to its index in a generated slice.
struct NameTable {
    /// `(hash, index)`; [`NameTable::EMPTY`] marks a free slot. At most half full.
    slots: Box<[(u32, u16)]>,
    mask: usize,
}

impl NameTable {
    const EMPTY: u16 = u16::MAX;

    fn new<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let size = (names.len() * 2).next_power_of_two().max(4);
        let mut slots = vec![(0, Self::EMPTY); size].into_boxed_slice();
        let mask = size - 1;
        for (i, name) in names.enumerate() {
            let hash = fnv1a(name);
            let mut at = hash as usize & mask;
            while slots[at].1 != Self::EMPTY {
                at = (at + 1) & mask;
            }
            slots[at] = (
                hash,
                u16::try_from(i).expect("generated tables index with u16"),
            );
        }
        Self { slots, mask }
    }

    fn find(&self, name: &str, name_of: impl Fn(usize) -> &'static str) -> Option<usize> {
        let hash = fnv1a(name);
        let mut at = hash as usize & self.mask;
        loop {
            let (h, i) = self.slots[at];
            if i == Self::EMPTY {
                return None;
            }
            if h == hash && name_of(usize::from(i)) == name {
                return Some(usize::from(i));
            }
            at = (at + 1) & self.mask;
        }
    }
}

/// 32-bit FNV-1a: short keys, no seed needed (the names are the spec's, not an attacker's; a
/// hostile key costs one failed probe sequence in a table at most half full).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The codes of a required value set: `(code, index into systems)`, sorted by code.
#[derive(Debug)]
pub(crate) struct ValueSet {
    pub(crate) url: &'static str,
    pub(crate) systems: &'static [&'static str],
    pub(crate) codes: &'static [(&'static str, u8)],
}

impl ValueSet {
    /// The rows with this code (one per code system that defines it).
    fn rows(&self, code: &str) -> &'static [(&'static str, u8)] {
        let codes = self.codes;
        let start = codes.partition_point(|(c, _)| *c < code);
        let end = start + codes[start..].partition_point(|(c, _)| *c == code);
        &codes[start..end]
    }

    /// A `code` element: the code alone (its system is implied by the binding).
    pub(crate) fn contains(&self, code: &str) -> bool {
        !self.rows(code).is_empty()
    }

    /// A `Coding`: the code in that system.
    pub(crate) fn contains_coding(&self, system: &str, code: &str) -> bool {
        self.rows(code)
            .iter()
            .any(|(_, s)| self.systems[usize::from(*s)] == system)
    }

    /// The codes for a diagnostic, when there are few enough to list.
    pub(crate) fn listing(&self) -> Option<String> {
        (self.codes.len() <= 12).then(|| {
            let codes: Vec<&str> = self.codes.iter().map(|(c, _)| *c).collect();
            codes.join(" | ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::UNEXPANDED;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for ty in &TYPES {
            assert!(
                ty.elements.windows(2).all(|w| w[0].name < w[1].name),
                "{}",
                ty.name
            );
        }
        assert!(RESOURCES.windows(2).all(|w| w[0].0 < w[1].0));
        for vs in &VALUE_SETS {
            assert!(vs.codes.windows(2).all(|w| w[0] <= w[1]), "{}", vs.url);
        }
    }

    #[test]
    fn r4_has_its_146_resource_types() {
        assert_eq!(RESOURCES.len(), 146);
        assert!(TypeDef::resource("Observation").is_some());
        // Abstract types and R5 newcomers are not resource types.
        for name in [
            "Resource",
            "DomainResource",
            "Quantity",
            "Observation.component",
            "Citation",
        ] {
            assert!(TypeDef::resource(name).is_none(), "{name}");
        }
    }

    #[test]
    fn required_bindings_come_from_the_value_sets() {
        let observation = TypeDef::resource("Observation").expect("Observation");
        let status = observation
            .element("status")
            .and_then(Element::value_set)
            .expect("bound");
        assert_eq!(
            status.url,
            "http://hl7.org/fhir/ValueSet/observation-status"
        );
        assert_eq!(
            status.listing().as_deref(),
            Some(
                "amended | cancelled | corrected | entered-in-error | final | preliminary | registered | unknown"
            )
        );
        let condition = TypeDef::resource("Condition").expect("Condition");
        let clinical = condition
            .element("clinicalStatus")
            .and_then(Element::value_set)
            .expect("bound");
        assert!(clinical.contains_coding(
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "active"
        ));
        assert!(!clinical.contains_coding("http://snomed.info/sct", "active"));
        assert_eq!(
            UNEXPANDED,
            [
                "http://hl7.org/fhir/ValueSet/currencies",
                "http://hl7.org/fhir/ValueSet/mimetypes",
                "http://hl7.org/fhir/ValueSet/ucum-units",
                "http://loinc.org/vs/LL379-9",
            ]
        );
    }

    #[test]
    fn choices_share_a_slot_and_simple_quantity_has_no_comparator() {
        let observation = TypeDef::resource("Observation").expect("Observation");
        let quantity = observation.element("valueQuantity").expect("valueQuantity");
        let string = observation.element("valueString").expect("valueString");
        assert_eq!(
            (quantity.slot, quantity.choice),
            (string.slot, string.choice)
        );
        assert_ne!(quantity.choice, NO_CHOICE);
        let range = observation
            .element("referenceRange")
            .expect("referenceRange");
        let Ty::Complex(range) = range.ty else {
            panic!("a backbone element")
        };
        let Some(Element {
            ty: Ty::Complex(low),
            ..
        }) = TypeDef::get(range).element("low")
        else {
            panic!("referenceRange.low")
        };
        assert_eq!(TypeDef::get(*low).name, "SimpleQuantity");
        assert!(TypeDef::get(*low).element("comparator").is_none());
        let choices = TYPES.iter().flat_map(|t| t.elements).map(|e| e.choice);
        assert!(
            choices
                .filter(|c| *c != NO_CHOICE)
                .all(|c| usize::from(c) < MAX_CHOICES)
        );
    }
}
