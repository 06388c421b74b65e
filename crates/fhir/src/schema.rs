//! Read-only access to the generated R4 tables, for code that walks resources by their
//! definitions rather than by hand-written lists (the de-identification engine does).
//!
//! ```
//! use carechain_fhir::schema::{Kind, Primitive, Type};
//!
//! let patient = Type::resource("Patient").unwrap();
//! let address = patient.element("address").unwrap();
//! assert!(address.repeats());
//! let Kind::Complex(address_type) = address.kind() else { panic!() };
//! assert_eq!(address_type.name(), "Address");
//! let postal = address_type.element("postalCode").unwrap();
//! assert_eq!(postal.kind(), Kind::Primitive(Primitive::String));
//! // Choice elements: one JSON name per allowed type, sharing the spec's name.
//! let observation = Type::resource("Observation").unwrap();
//! let value = observation.element("valueQuantity").unwrap();
//! assert_eq!(value.spec_name(), "value[x]");
//! ```

use std::sync::LazyLock;

use crate::definitions::{RESOURCES, TYPES};
use crate::model::{self, NO_CHOICE, Ty, TypeDef};

pub use crate::model::Prim as Primitive;

/// A resource, complex datatype (`HumanName`, `SimpleQuantity`) or backbone element
/// (`Observation.component`).
#[derive(Clone, Copy)]
pub struct Type(&'static TypeDef);

impl std::fmt::Debug for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl PartialEq for Type {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Type {}

/// What an element holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A primitive: a JSON string, number or boolean, with an optional `_name` sibling.
    Primitive(Primitive),
    /// A complex datatype or backbone element: a JSON object.
    Complex(Type),
    /// Any resource, told apart by its `resourceType` (`contained`, `Bundle.entry.resource`).
    Resource,
}

/// One JSON property of a [`Type`]. A choice element (`value[x]`) is one `Element` per allowed
/// type (`valueQuantity`, `valueString`, ...).
#[derive(Clone, Copy)]
pub struct Element {
    def: &'static model::Element,
    owner: u16,
    position: u16,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.owner().name(), self.def.name)
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        (self.owner, self.position) == (other.owner, other.position)
    }
}

impl Eq for Element {}

/// Where each type's elements start in the numbering of [`Element::index`].
static ELEMENT_OFFSETS: LazyLock<Vec<u32>> = LazyLock::new(|| {
    let mut offsets = Vec::with_capacity(TYPES.len() + 1);
    let mut total = 0u32;
    for ty in &TYPES {
        offsets.push(total);
        total += u32::try_from(ty.elements.len()).expect("a few thousand elements");
    }
    offsets.push(total);
    offsets
});

impl Type {
    /// How many types there are: [`Type::index`] is below this.
    pub const COUNT: usize = TYPES.len();

    /// The concrete resource type with this name (`Observation`).
    pub fn resource(name: &str) -> Option<Type> {
        TypeDef::resource(name).map(Type)
    }

    /// The type with this name: a resource, a complex datatype (`HumanName`,
    /// `SimpleQuantity`), a backbone element (`Observation.component`) or `Element` (the content
    /// of a primitive's `_name` sibling). A linear search: for setting things up, not for walks.
    pub fn named(name: &str) -> Option<Type> {
        TYPES.iter().find(|t| t.name == name).map(Type)
    }

    /// Every concrete resource type, by name.
    pub fn resources() -> impl Iterator<Item = Type> {
        RESOURCES.iter().map(|(_, i)| Type(TypeDef::get(*i)))
    }

    /// `Element`, the type of a primitive's `_name` sibling (its `id` and `extension`).
    pub fn primitive_element() -> Type {
        Type(TypeDef::get(crate::definitions::ELEMENT))
    }

    /// The type's name as the definitions give it.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// A number below [`Type::COUNT`], distinct per type: for tables indexed by type.
    pub fn index(self) -> usize {
        usize::from(self.0.id)
    }

    /// Whether this is a concrete resource type.
    pub fn is_resource(self) -> bool {
        TypeDef::resource(self.0.name).is_some_and(|t| t.id == self.0.id)
    }

    /// The element with this JSON property name (`valueQuantity`, not `value[x]`).
    pub fn element(self, json_name: &str) -> Option<Element> {
        self.0.element_position(json_name).map(|i| self.at(i))
    }

    /// Every element, sorted by JSON name.
    pub fn elements(self) -> impl Iterator<Item = Element> {
        (0..self.0.elements.len()).map(move |i| self.at(i))
    }

    /// The elements with a minimum cardinality of 1; for a required choice, its first JSON
    /// name by sort order stands for the group.
    pub fn required(self) -> impl Iterator<Item = Element> {
        self.0.required.iter().filter_map(move |req| {
            self.0
                .elements
                .iter()
                .position(|e| e.slot == req.slot)
                .map(|i| self.at(i))
        })
    }

    fn at(self, position: usize) -> Element {
        Element {
            def: &self.0.elements[position],
            owner: self.0.id,
            position: u16::try_from(position).expect("fewer than 65536 elements per type"),
        }
    }
}

impl Element {
    /// How many elements all types have together: [`Element::index`] is below this.
    pub fn count() -> usize {
        ELEMENT_OFFSETS.last().map_or(0, |n| *n as usize)
    }

    /// The JSON property name (`valueQuantity`).
    pub fn name(self) -> &'static str {
        self.def.name
    }

    /// The name the specification gives the element: `value[x]` for every member of a choice,
    /// the JSON name otherwise.
    pub fn spec_name(self) -> &'static str {
        if self.def.choice == NO_CHOICE {
            return self.def.name;
        }
        self.owner()
            .0
            .required
            .iter()
            .find(|r| r.slot == self.def.slot)
            .map(|r| r.name)
            .unwrap_or_else(|| choice_name(self))
    }

    /// The type the element belongs to.
    pub fn owner(self) -> Type {
        Type(TypeDef::get(self.owner))
    }

    /// Whether the element repeats (its JSON value is an array).
    pub fn repeats(self) -> bool {
        self.def.many()
    }

    /// Whether the element is an XML attribute in the spec (`Element.id`, `Extension.url`): a
    /// plain JSON string with no `_name` sibling.
    pub fn is_attribute(self) -> bool {
        self.def.attr()
    }

    /// Whether the element has a minimum cardinality of 1 (for a choice: the group has).
    pub fn is_required(self) -> bool {
        self.owner()
            .0
            .required
            .iter()
            .any(|r| r.slot == self.def.slot)
    }

    /// Whether the element is one type of a choice (`valueQuantity` of `value[x]`).
    pub fn is_choice(self) -> bool {
        self.def.choice != NO_CHOICE
    }

    /// The element's slot within its type: the members of one choice share it.
    pub fn slot(self) -> u8 {
        self.def.slot
    }

    /// What the element holds.
    pub fn kind(self) -> Kind {
        match self.def.ty {
            Ty::Primitive(p) => Kind::Primitive(p),
            Ty::Complex(i) => Kind::Complex(Type(TypeDef::get(i))),
            Ty::Resource => Kind::Resource,
        }
    }

    /// A number below [`Element::count`], distinct per element of every type: for tables
    /// indexed by element.
    pub fn index(self) -> usize {
        ELEMENT_OFFSETS[usize::from(self.owner)] as usize + usize::from(self.position)
    }
}

/// `value[x]` for a member of a choice that is not required: the JSON names of the group's
/// members share the base name, followed by an upper-case type name.
fn choice_name(element: Element) -> &'static str {
    static NAMES: LazyLock<Vec<Vec<(u8, &'static str)>>> = LazyLock::new(|| {
        TYPES
            .iter()
            .map(|ty| {
                let mut groups: Vec<(u8, &'static str)> = Vec::new();
                for el in ty.elements.iter().filter(|e| e.choice != NO_CHOICE) {
                    if groups.iter().any(|(slot, _)| *slot == el.slot) {
                        continue;
                    }
                    let members: Vec<&str> = ty
                        .elements
                        .iter()
                        .filter(|e| e.slot == el.slot)
                        .map(|e| e.name)
                        .collect();
                    let base = common_base(&members);
                    let name: &'static str = Box::leak(format!("{base}[x]").into_boxed_str());
                    groups.push((el.slot, name));
                }
                groups
            })
            .collect()
    });
    NAMES[usize::from(element.owner)]
        .iter()
        .find(|(slot, _)| *slot == element.def.slot)
        .map_or(element.def.name, |(_, name)| name)
}

/// The longest prefix of all names that ends before an upper-case letter in each of them.
fn common_base<'a>(names: &[&'a str]) -> &'a str {
    let first = names.first().copied().unwrap_or("");
    let mut end = first.len();
    for name in names {
        end = end.min(
            first
                .bytes()
                .zip(name.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while end > 0
        && !names
            .iter()
            .all(|n| n.as_bytes().get(end).is_some_and(u8::is_ascii_uppercase))
    {
        end -= 1;
    }
    &first[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_elements_are_numbered_densely() {
        let mut seen = vec![false; Element::count()];
        for i in 0..Type::COUNT {
            let ty = Type(TypeDef::get(u16::try_from(i).expect("u16")));
            assert_eq!(ty.index(), i);
            for el in ty.elements() {
                assert!(!seen[el.index()], "{el:?}");
                seen[el.index()] = true;
                assert_eq!(ty.element(el.name()), Some(el));
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn choice_names_and_required_elements() {
        let observation = Type::resource("Observation").expect("Observation");
        for name in ["valueQuantity", "valueString", "valueDateTime"] {
            assert_eq!(
                observation.element(name).map(Element::spec_name),
                Some("value[x]")
            );
        }
        assert_eq!(
            observation
                .element("effectiveDateTime")
                .map(Element::spec_name),
            Some("effective[x]")
        );
        let required: Vec<&str> = observation.required().map(Element::name).collect();
        assert_eq!(required, ["status", "code"]);
        let request = Type::resource("MedicationRequest").expect("MedicationRequest");
        let medication = request
            .element("medicationReference")
            .expect("medicationReference");
        assert!(medication.is_required() && medication.is_choice());
        assert_eq!(medication.spec_name(), "medication[x]");
        let patient = Type::resource("Patient").expect("Patient");
        assert_eq!(
            patient.element("deceasedDateTime").map(Element::spec_name),
            Some("deceased[x]")
        );
        assert_eq!(
            patient
                .element("multipleBirthInteger")
                .map(Element::spec_name),
            Some("multipleBirth[x]")
        );
    }

    #[test]
    fn named_types() {
        assert!(Type::named("HumanName").is_some_and(|t| !t.is_resource()));
        assert!(Type::named("Observation.component").is_some());
        assert!(Type::named("Patient").is_some_and(Type::is_resource));
        assert!(Type::named("Nonsense").is_none());
        assert_eq!(Type::resources().count(), 146);
        assert_eq!(Type::primitive_element().name(), "Element");
    }
}
