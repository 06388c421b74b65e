// Who accessed my data: the patient's access log from the gateway's audit index (requests,
// allowed or refused, and the chain's consent, delegate and break-glass events), newest first.

import { api } from "../api.js";
import { h, page, when, fail, short } from "../ui.js";
import { directory } from "./consents.js";

/** What a requester did, in words; `type` is the kind of record (Observation, ...). */
const DOING = {
  read: (type) => `opened a record (${type})`,
  vread: (type) => `opened an earlier version of a record (${type})`,
  "history-instance": (type) => `looked at the history of a record (${type})`,
  "search-type": (type) => `searched your records (${type})`,
  create: (type) => `added a record (${type})`,
  update: (type) => `changed a record (${type})`,
  delete: (type) => `deleted a record (${type})`,
  transaction: () => "wrote several records at once",
  batch: () => "wrote several records at once",
  erase: () => "erased all your records",
  "consent-grant": () => "gave access (recorded on the blockchain)",
  "consent-revoke": () => "withdrew access (recorded on the blockchain)",
  "consent-relay": () => "sent a signed change of your permissions",
  "delegate-set": () => "appointed someone to act for you",
  "delegate-remove": () => "removed someone who could act for you",
  "break-glass-open": () => "opened EMERGENCY ACCESS to your records",
  "break-glass-review": () => "reviewed an emergency access (compliance office)",
  "portal-typed-data": () => "prepared a change for you to sign",
  "portal-delegates": () => "looked at who can act for you",
  "portal-custodians": () => "looked at where your records are kept",
};

const BREAK_GLASS_EXPLAINED = "(\u201cbreak-glass\u201d): a clinician opened your records in an emergency, without a permission of yours. "
  + "This is allowed only for emergency treatment, for a short time, is always recorded, and is reviewed by the compliance office, who will tell you the outcome.";
const BREAK_GLASS_REFUSED = "(\u201cbreak-glass\u201d) was asked for and refused: no emergency access was open for this organisation, so nothing was shown.";

function subtype(ev) {
  return ev.subtype?.[0]?.code || "unknown";
}

function purposeOf(ev) {
  const concepts = [].concat(ev.purposeOfEvent || []);
  return concepts.map((c) => c.coding?.[0]?.code || c.code).filter(Boolean)[0] || "";
}

function basisOf(ev) {
  for (const entity of ev.entity || []) {
    const d = (entity.detail || []).find((x) => x.type === "consent-basis");
    if (d) return d.valueString;
  }
  return "";
}

function requestor(ev) {
  const agent = (ev.agent || []).find((a) => a.requestor);
  if (!agent) return { who: "", org: "" };
  const org = (agent.extension || []).find((x) => x.url === "urn:carechain:agent-organisation");
  return { who: agent.who?.identifier?.value || "", org: org?.valueIdentifier?.value || "" };
}

function what(ev) {
  const refs = (ev.entity || []).map((e) => e.what?.reference).filter((r) => r && !r.startsWith("Patient/"));
  return refs.map((r) => r.split("/")[0]).join(", ");
}

function purposeWords(code, ctx) {
  const known = ctx.purposes.find((p) => p.code === code);
  return known ? `${known.display} (${code})` : code;
}

export function isBreakGlass(ev) {
  return subtype(ev) === "break-glass-open" || basisOf(ev) === "BreakGlass" || purposeOf(ev) === "ETREAT";
}

export async function render(ctx, session) {
  const list = h("ol", { class: "list", id: "access-log" });
  const own = h("input", { type: "checkbox", id: "show-own" });
  own.addEventListener("change", () => list.classList.toggle("show-own", own.checked));
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show older entries");
  const status = h("p", { class: "muted" }, "Loading…");
  page("Who accessed my data",
    h("p", {}, "Every request for your records is recorded before it is answered, whether it was allowed or refused. This list also shows changes to your permissions and delegates."),
    h("label", { for: "show-own" }, own, " Also show what I did myself"),
    status, list, h("div", { class: "actions" }, more));
  let orgs;
  let next = `/AuditEvent?patient=${session.address}&_sort=-date&_count=50`;
  const load = async () => {
    const bundle = await api(next);
    const link = (bundle.link || []).find((l) => l.relation === "next");
    next = link ? new URL(link.url, location.href).pathname + new URL(link.url, location.href).search : null;
    more.hidden = !next;
    // Entries come from every custodian's log (the gateway asks them); one it could not ask is
    // named rather than left out silently.
    const entries = bundle.entry || [];
    for (const e of entries.filter((e) => e.search?.mode === "outcome")) {
      list.append(h("li", { class: "card notice warn" }, e.resource?.issue?.[0]?.diagnostics || "A record keeper could not be asked."));
    }
    list.append(...entries.filter((e) => e.resource?.resourceType === "AuditEvent").map((e) => item(e.resource, orgs, session, ctx)));
    const others = list.querySelectorAll("li:not([data-own])").length;
    status.textContent = others ? "" : "Nobody but you has accessed your records in the entries shown.";
  };
  more.addEventListener("click", () => load().catch(fail));
  try {
    orgs = await directory();
    await load();
  } catch (error) {
    status.textContent = "Your access log could not be shown.";
    fail(error);
  }
}

function item(ev, orgs, session, ctx) {
  const { who, org } = requestor(ev);
  const kind = subtype(ev);
  const mine = who === session.address || (!who && kind.startsWith("portal-"));
  const orgName = orgs.get(org || orgs.memberOrg.get(who))?.name || orgs.get(who)?.name || "";
  const person = mine ? "You" : who ? `${orgName ? `${orgName}, ` : ""}key ${short(who)}` : "Someone not signed in";
  const allowed = ev.outcome === "0";
  const purpose = purposeOf(ev);
  const breakGlass = isBreakGlass(ev);
  const doing = DOING[kind];
  const action = doing ? doing(what(ev) || "any kind") : kind;
  const source = ev.meta?.source;
  const keeper = source ? orgs.byEndpoint?.get(source.replace(/\/$/, ""))?.name || source : "";
  return h("li", { class: `card${breakGlass ? " breakglass" : ""}`, "data-own": mine },
    h("p", {}, h("strong", {}, person), ` ${action}`),
    h("dl", { class: "words" },
      h("dt", {}, "When"), h("dd", {}, when(ev.recorded)),
      h("dt", {}, "Result"), h("dd", {}, allowed ? h("span", { class: "badge ok" }, "Allowed") : h("span", { class: "badge bad" }, "Refused")),
      purpose ? [h("dt", {}, "Purpose"), h("dd", {}, purposeWords(purpose, ctx))] : null,
      orgName ? [h("dt", {}, "Organisation"), h("dd", {}, orgName)] : null,
      keeper ? [h("dt", {}, "Recorded by"), h("dd", {}, keeper)] : null),
    breakGlass ? h("p", { class: "explain" }, h("strong", {}, "Emergency access "), allowed ? BREAK_GLASS_EXPLAINED : BREAK_GLASS_REFUSED) : null);
}
