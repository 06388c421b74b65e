// Who may see my data: every consent, current and past, in plain words, with Withdraw.

import { api } from "../api.js";
import { h, page, when, fail } from "../ui.js";
import { review, showReview, proofOf } from "../signing.js";
import { pending } from "../session.js";
import { typeName } from "../fhir.js";

const ACTIONS = { read: "see", search: "look up", create: "add to", update: "change", delete: "delete" };

/** Organisations by address; `memberOrg` maps a member key to its organisation's address. */
export async function directory() {
  const { organisations, memberKeys } = await api("/portal/api/directory");
  const orgs = new Map(organisations.map((o) => [o.address, o]));
  orgs.memberOrg = new Map((memberKeys || []).map((m) => [m.key, m.organisation]));
  // Organisations by their published endpoint (where a record or log entry came from).
  orgs.byEndpoint = new Map([...orgs.values()].filter((o) => o.endpoint).map((o) => [o.endpoint, o]));
  return orgs;
}

export function describeConsent(c, orgs, ctx) {
  const ref = c.provision?.actor?.[0]?.reference?.reference || "";
  const address = ref.split("/")[1] || "";
  const org = orgs.get(address);
  const keyOf = orgs.get(orgs.memberOrg?.get(address));
  const who = org ? org.name : keyOf ? `a staff key of ${keyOf.name} (${address})` : `the key ${address}`;
  const types = (c.provision?.class || []).map((k) => k.code);
  const actions = (c.provision?.action || []).map((a) => a.coding?.[0]?.code).filter(Boolean);
  const purposes = (c.provision?.purpose || []).map((p) => {
    const known = ctx.purposes.find((q) => q.code === p.code);
    return known ? known.display : p.code;
  });
  const writes = actions.some((a) => ["create", "update", "delete"].includes(a));
  return {
    address,
    who,
    lines: [
      { label: "Who", text: org ? `${org.name} (${org.kind.toLowerCase()})` : who },
      { label: "Which records", text: types.length === ctx.resourceTypes.length ? "all kinds of records" : types.map(typeName).join(", ") },
      { label: "What they may do", text: `${writes ? "read and write" : "read only"}: ${actions.map((a) => ACTIONS[a] || a).join(", ")}` },
      { label: "For what purpose", text: purposes.join(", ") },
      { label: "From", text: when(c.provision?.period?.start) },
      { label: "Until", text: when(c.provision?.period?.end) },
    ].filter((l) => l.label !== "From" || new Date(c.provision?.period?.start || 0).getTime() > 0),
  };
}

export async function render(ctx, session) {
  const area = h("div", { id: "consents" }, h("p", { class: "muted" }, "Loading…"));
  const reviewArea = h("div", { id: "review" });
  page("Who may see my data",
    h("p", {}, "These are the permissions you gave, as recorded on the blockchain. Withdrawing one takes effect as soon as it is recorded."),
    reviewArea, area);
  const refresh = () => render(ctx, session);
  if (pending()?.request?.kind === "revoke") showReview(reviewArea, ctx, refresh);
  try {
    const [orgs, bundle] = await Promise.all([directory(), api(`/Consent?patient=${session.address}&_count=100`)]);
    const all = (bundle.entry || []).map((e) => e.resource);
    const current = all.filter((c) => c.status === "active");
    const past = all.filter((c) => c.status !== "active");
    area.replaceChildren(
      h("section", { "aria-labelledby": "current-title" },
        h("h2", { id: "current-title" }, `In force now (${current.length})`),
        current.length ? h("ul", { class: "list" }, current.map((c) => card(c, orgs, ctx, session, reviewArea, refresh, true)))
          : h("p", {}, "Nobody has access to your records through a permission of yours.")),
      h("section", { "aria-labelledby": "past-title" },
        h("h2", { id: "past-title" }, `Ended (${past.length})`),
        past.length ? h("ul", { class: "list" }, past.map((c) => card(c, orgs, ctx, session, reviewArea, refresh, false)))
          : h("p", {}, "None.")));
  } catch (error) {
    area.replaceChildren(h("p", {}, "Your permissions could not be shown."));
    fail(error);
  }
}

function card(c, orgs, ctx, session, reviewArea, refresh, active) {
  const d = describeConsent(c, orgs, ctx);
  const ended = proofOf(c, "endedBy");
  const state = active ? h("span", { class: "badge ok" }, "In force")
    : h("span", { class: "badge neutral" }, ended === "revoked" ? "Withdrawn" : ended === "superseded" ? "Replaced by a newer permission" : "Expired");
  const item = h("li", { class: `card ${active ? "active" : "ended"}` },
    h("h3", {}, d.who, " ", state),
    h("dl", { class: "words" }, d.lines.map((l) => [h("dt", {}, l.label), h("dd", {}, l.text)])));
  if (active) {
    const button = h("button", { type: "button", class: "danger" }, `Withdraw access of ${d.who}`);
    button.addEventListener("click", () => {
      review({ kind: "revoke", patient: session.address, grantee: d.address }, reviewArea, ctx, refresh)
        .catch(fail);
    });
    item.append(h("div", { class: "actions" }, button));
  }
  return item;
}
