#!/usr/bin/env python3
"""Vendor (or multiply) the Synthea R4 test data that the PyPI package fhiry 5.2.2 ships.

fhiry (MIT, by Bell Eapen) keeps real Synthea output in its source distribution under
tests/resources/: two R4 patient transaction Bundles and an R4 Patient NDJSON file. This script
downloads that sdist with pip, checks its SHA-256, and writes the files here re-serialised
without whitespace (the content is unchanged: same keys, values and order).

Usage:
    tests/data/synthea/fetch.py                 # refresh the committed files in this folder
    tests/data/synthea/fetch.py --check         # exit 1 if the committed files differ
    tests/data/synthea/fetch.py --copies 50 --out /tmp/synthea
        # 50 copies of each bundle for a benchmark, each with every UUID replaced by a new,
        # deterministic one (uuid5 of the copy number and the old UUID), so the copies are
        # distinct patients with distinct resources; nothing of that size is committed.
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import uuid

SDIST = "fhiry==5.2.2"
SDIST_NAME = "fhiry-5.2.2.tar.gz"
SDIST_SHA256 = "f583412afeeb26714a2d2fc3e1bba80e5438804c3d12f257fb08c96538c6e047"
HERE = os.path.dirname(os.path.abspath(__file__))

# member of the sdist -> file written here. bfhir.json is byte-identical to afhir.json and
# is left out; Procedure.ndjson, AllergyIntolerance.ndjson and Device.ndjson are STU3.
FILES = {
    "fhiry-5.2.2/tests/resources/afhir.json": "bundle-afhir.json",
    "fhiry-5.2.2/tests/resources/cfhir.json": "bundle-cfhir.json",
    "fhiry-5.2.2/tests/resources/Patient.ndjson": "Patient.ndjson",
}

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def download(tmp):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         "-d", tmp, SDIST],
        check=True,
    )
    path = os.path.join(tmp, SDIST_NAME)
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"{SDIST_NAME}: sha256 {digest}, expected {SDIST_SHA256}")
    return data


def compact(text, ndjson):
    if ndjson:
        lines = [json.dumps(json.loads(l), separators=(",", ":"), ensure_ascii=False)
                 for l in text.splitlines() if l.strip()]
        return "\n".join(lines) + "\n"
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) + "\n"


def extract(data):
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in FILES.items():
            text = tar.extractfile(member).read().decode("utf-8")
            out[name] = compact(text, name.endswith(".ndjson"))
    return out


def multiply(files, copies, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, text in files.items():
        if not name.startswith("bundle-"):
            continue
        for n in range(copies):
            ns = uuid.uuid5(uuid.NAMESPACE_URL, f"carechain-synthea-copy-{n}")
            fresh = UUID_RE.sub(lambda m: str(uuid.uuid5(ns, m.group(0).lower())), text)
            with open(os.path.join(out_dir, f"{name[:-5]}-{n:04}.json"), "w", encoding="utf-8") as f:
                f.write(fresh)
    print(f"wrote {copies} copies of each bundle to {out_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed files")
    parser.add_argument("--copies", type=int, help="write this many re-keyed copies of each bundle")
    parser.add_argument("--out", help="where --copies writes (default: a new temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = extract(download(tmp))
    if args.copies:
        multiply(files, args.copies, args.out or tempfile.mkdtemp(prefix="synthea-"))
        return
    for name, text in files.items():
        path = os.path.join(HERE, name)
        if args.check:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    sys.exit(f"{path} differs from {SDIST}")
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        print(f"{'checked' if args.check else 'wrote'} {name} ({len(text.encode()):,} bytes)")


if __name__ == "__main__":
    main()
