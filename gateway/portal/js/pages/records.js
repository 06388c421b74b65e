// My records: every record of the patient's, from every custodian of the consortium (the
// gateway asks the others), grouped and in words, each with its custodian and the integrity
// check the gateway made against the chain before serving it; a custodian that could not be
// asked is named.

import { api, searchAll } from "../api.js";
import { h, page, day, fail } from "../ui.js";
import { GROUPS, describe } from "../fhir.js";

export async function render(ctx, session) {
  const status = h("p", { class: "muted", id: "records-status" }, "Loading your records…");
  const area = h("div", { id: "records" });
  const download = h("button", { type: "button", class: "secondary", disabled: true }, "Download everything (FHIR Bundle)");
  page("My records", status, h("div", { class: "actions" }, download), area);
  try {
    const [custodians, directory, ...groups] = await Promise.all([
      api(`/portal/api/custodians?patient=${session.address}`),
      api("/portal/api/directory", { auth: false }),
      ...GROUPS.flatMap((g) => g.types).map((type) =>
        searchAll(`/${type}?patient=${session.address}&_count=100`, { purpose: "PATRQT" })),
    ]);
    const keptBy = new Map(custodians.records.map((r) => [r.reference, r]));
    // A record from another custodian says where it came from (meta.source: its endpoint).
    const byEndpoint = new Map((directory.organisations || []).filter((o) => o.endpoint).map((o) => [o.endpoint, o]));
    for (const e of groups.flat()) {
      const source = e.resource?.meta?.source;
      const org = source && byEndpoint.get(source.replace(/\/$/, ""));
      const reference = `${e.resource?.resourceType}/${e.resource?.id}`;
      if (org && !keptBy.has(reference)) keptBy.set(reference, { custodianName: org.name, custodian: org.address });
    }
    const all = groups.flat();
    const entries = all.filter((e) => e.search?.mode !== "outcome");
    const missing = [...new Set(all.filter((e) => e.search?.mode === "outcome")
      .map((e) => e.resource?.issue?.[0]?.diagnostics).filter(Boolean))];
    const resources = entries.map((e) => e.resource).filter(Boolean);
    status.textContent = resources.length
      ? `${resources.length} records. Each one was checked against the fingerprint its keeper recorded on the blockchain before it was shown to you.`
      : "No records are kept for you yet.";
    download.disabled = false;
    download.addEventListener("click", () => save(entries, session));
    area.replaceChildren(
      ...(missing.length ? [h("div", { class: "notice", role: "status", id: "records-missing" },
        h("p", {}, "Some of the places that keep records could not be asked, so this list may be incomplete:"),
        h("ul", {}, missing.map((m) => h("li", {}, m))))] : []),
      ...GROUPS.map((group) => section(group, resources, keptBy)).filter(Boolean));
  } catch (error) {
    status.textContent = "Your records could not be shown.";
    fail(error);
  }
}

function section(group, resources, keptBy) {
  const mine = resources.filter((r) => group.types.includes(r.resourceType));
  if (!mine.length) return null;
  const rows = mine
    .map((r) => ({ r, d: describe(r) }))
    .sort((a, b) => String(b.d.date || "").localeCompare(String(a.d.date || "")));
  const id = `group-${group.types[0]}`;
  return h("section", { "aria-labelledby": id },
    h("h2", { id }, group.title),
    h("table", { class: "responsive" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "What"), h("th", { scope: "col" }, "Result"), h("th", { scope: "col" }, "Date"), h("th", { scope: "col" }, "Kept by"), h("th", { scope: "col" }, "Integrity"))),
      h("tbody", {}, rows.map(({ r, d }) => {
        const kept = keptBy.get(`${r.resourceType}/${r.id}`);
        return h("tr", {},
          h("td", { "data-label": "What" }, d.name || r.resourceType),
          h("td", { "data-label": "Result" }, d.value || "—"),
          h("td", { "data-label": "Date" }, d.date ? day(d.date) : "—"),
          h("td", { "data-label": "Kept by" }, kept?.custodianName || kept?.custodian || "this service"),
          h("td", { "data-label": "Integrity" }, integrity(r)));
      }))));
}

/** The gateway verifies every version it serves against its custodian's anchor on chain; a
 * version written moments ago is served marked as not anchored yet (urn:carechain:anchor). */
function integrity(r) {
  const pendingAnchor = (r.meta?.tag || []).some((t) => t.system === "urn:carechain:anchor" && t.code === "not-yet-anchored");
  return pendingAnchor
    ? h("span", { class: "pending" }, "Received; its fingerprint is being recorded on the blockchain")
    : h("span", { class: "verified" }, "✓ verified on the blockchain");
}

function save(entries, session) {
  const bundle = {
    resourceType: "Bundle",
    type: "collection",
    timestamp: new Date().toISOString(),
    entry: entries.map((e) => ({ fullUrl: e.fullUrl, resource: e.resource })),
  };
  const blob = new Blob([JSON.stringify(bundle, null, 2)], { type: "application/fhir+json" });
  const link = h("a", { href: URL.createObjectURL(blob), download: `my-records-${session.address.slice(2, 10)}.json` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}
