// Who accessed my data: the patient's access log from the gateway's audit index (requests,
// allowed or refused, and the chain's consent, delegate and break-glass events), newest first.

import { api } from "../api.js";
import { h, page, when, fail, short } from "../ui.js";
import { directory } from "./consents.js";

const DOING = {
  read: "opened", vread: "opened an earlier version of", "history-instance": "looked at the history of",
  "search-type": "searched", create: "added", update: "changed", delete: "deleted",
  transaction: "wrote several records", batch: "wrote several records", erase: "erased all records",
  "consent-grant": "consent given", "consent-revoke": "consent withdrawn", "consent-relay": "sent a signed consent change",
  "delegate-set": "delegate appointed", "delegate-remove": "delegate removed",
  "break-glass-open": "EMERGENCY ACCESS opened", "break-glass-review": "emergency access reviewed by compliance",
};

const BREAK_GLASS_EXPLAINED = "Emergency access (\u201cbreak-glass\u201d): a clinician opened your records in an emergency, without a permission of yours. "
  + "This is allowed only for emergency treatment, for a short time, is always recorded, and is reviewed by the compliance office, who will tell you the outcome.";

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

export function isBreakGlass(ev) {
  return subtype(ev) === "break-glass-open" || basisOf(ev) === "BreakGlass" || purposeOf(ev) === "ETREAT";
}

export async function render(ctx, session) {
  const list = h("ol", { class: "list", id: "access-log" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show older entries");
  const status = h("p", { class: "muted" }, "Loading…");
  page("Who accessed my data",
    h("p", {}, "Every request for your records is recorded before it is answered, whether it was allowed or refused. This list also shows changes to your permissions and delegates."),
    status, list, h("div", { class: "actions" }, more));
  let orgs;
  let next = `/AuditEvent?patient=${session.address}&_sort=-date&_count=50`;
  const load = async () => {
    const bundle = await api(next);
    const link = (bundle.link || []).find((l) => l.relation === "next");
    next = link ? new URL(link.url, location.href).pathname + new URL(link.url, location.href).search : null;
    more.hidden = !next;
    list.append(...(bundle.entry || []).map((e) => item(e.resource, orgs, session)));
    status.textContent = list.children.length ? "" : "Nobody has accessed your records yet.";
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

function item(ev, orgs, session) {
  const { who, org } = requestor(ev);
  const orgName = orgs.get(org)?.name || orgs.get(who)?.name || "";
  const person = who === session.address ? "You" : who ? `${orgName ? `${orgName}, ` : ""}key ${short(who)}` : "The service";
  const kind = subtype(ev);
  const allowed = ev.outcome === "0";
  const purpose = purposeOf(ev);
  const breakGlass = isBreakGlass(ev);
  const target = what(ev);
  const action = `${DOING[kind] || kind}${target && !kind.includes("-") ? ` ${target}` : ""}`;
  return h("li", { class: `card${breakGlass ? " breakglass" : ""}` },
    h("p", {}, h("strong", {}, person), ` ${action}`),
    h("dl", { class: "words" },
      h("dt", {}, "When"), h("dd", {}, when(ev.recorded)),
      h("dt", {}, "Result"), h("dd", {}, allowed ? h("span", { class: "badge ok" }, "Allowed") : h("span", { class: "badge bad" }, "Refused")),
      purpose ? [h("dt", {}, "Purpose"), h("dd", {}, purpose)] : null,
      orgName ? [h("dt", {}, "Organisation"), h("dd", {}, orgName)] : null),
    breakGlass ? h("p", { class: "explain" }, h("strong", {}, "Emergency access. "), BREAK_GLASS_EXPLAINED) : null);
}
