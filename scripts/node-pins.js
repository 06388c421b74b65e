// The npm pins of the repository, checked (called by ensure_node_deps in scripts/lib.sh).
//
// Usage: node scripts/node-pins.js lockfile|installed REPO_ROOT
//
//   lockfile   package.json pins every devDependency to an exact version, package-lock.json
//              locks that version, and the lockfile is closed: every optional dependency a
//              locked package declares is locked as well. A closed lockfile is what lets
//              `npm ci` install without resolving anything against the registry (see
//              ensure_node_deps for why that holds).
//   installed  node_modules holds, at the locked version and integrity, every package this
//              platform installs: the non-optional ones, and the optional ones whose os and
//              cpu match (Foundry's native binaries).
//
// Exits 0 when the check holds; otherwise prints what is wrong and what to do, exits 1.
"use strict";
const fs = require("fs");
const path = require("path");

const [mode, root] = process.argv.slice(2);
if (!["lockfile", "installed"].includes(mode) || !root) {
  process.stderr.write("usage: node scripts/node-pins.js lockfile|installed REPO_ROOT\n");
  process.exit(2);
}

const readJson = (file) => JSON.parse(fs.readFileSync(path.join(root, file), "utf8"));
const problems = [];

function checkLockfile() {
  const pkg = readJson("package.json");
  const lock = readJson("package-lock.json");
  const locked = lock.packages || {};
  for (const [name, want] of Object.entries(pkg.devDependencies || {})) {
    if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(want)) {
      problems.push(`package.json: ${name} is "${want}", not an exact version`);
      continue;
    }
    const entry = locked[`node_modules/${name}`];
    if (!entry || entry.version !== want) {
      problems.push(
        `package-lock.json locks ${name} at ${entry ? entry.version : "nothing"}, package.json pins ${want}`,
      );
    }
  }
  for (const [where, entry] of Object.entries(locked)) {
    if (where === "") continue;
    if (!entry.integrity) problems.push(`package-lock.json: ${where} has no integrity`);
    for (const [dep, range] of Object.entries(entry.optionalDependencies || {})) {
      if (!locked[`node_modules/${dep}`]) {
        problems.push(`package-lock.json: ${where} declares the optional ${dep}@${range}, which is not locked`);
      }
    }
  }
  if (problems.length) {
    problems.push(
      "regenerate the lockfile (rm -rf node_modules package-lock.json && npm install), check that every " +
        "pinned version is unchanged, and commit it",
    );
  }
}

function runsHere(entry) {
  const matches = (list, value) => {
    if (!list) return true;
    const denied = list.filter((x) => x.startsWith("!")).map((x) => x.slice(1));
    const allowed = list.filter((x) => !x.startsWith("!"));
    if (denied.includes(value)) return false;
    return allowed.length === 0 || allowed.includes(value);
  };
  return matches(entry.os, process.platform) && matches(entry.cpu, process.arch);
}

function checkInstalled() {
  const lock = readJson("package-lock.json");
  let have;
  try {
    have = readJson("node_modules/.package-lock.json").packages || {};
  } catch {
    problems.push("node_modules is missing or was not installed by npm");
    return;
  }
  for (const [where, want] of Object.entries(lock.packages || {})) {
    if (where === "" || (want.optional && !runsHere(want))) continue;
    const got = have[where];
    if (!got) {
      problems.push(`${where} is not installed`);
    } else if (got.version !== want.version || got.integrity !== want.integrity) {
      problems.push(`${where} is ${got.version}, the lockfile pins ${want.version} (or another integrity)`);
    }
  }
}

if (mode === "lockfile") checkLockfile();
else checkInstalled();
for (const p of problems) process.stderr.write(`  ${p}\n`);
process.exit(problems.length ? 1 : 0);
