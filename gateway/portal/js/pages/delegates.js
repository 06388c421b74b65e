// People who can act for me: guardians and caregivers with an end date; add and remove, signed
// by the patient and submitted gas-free through the relay.

import { api } from "../api.js";
import { h, page, when, fail, clearNotice } from "../ui.js";
import { draft, keepDraft, pending } from "../session.js";
import { review, showReview } from "../signing.js";
import { typeName } from "../fhir.js";

const PROXY_TYPES = ["Observation", "Condition", "MedicationRequest", "MedicationStatement", "AllergyIntolerance", "Immunization", "Encounter", "Procedure", "DiagnosticReport"];

const KINDS = {
  guardian: "Guardian: may read all your records and give or withdraw access for you",
  caregiver: "Caregiver: may read all your records, but never changes who has access",
  proxy: "Proxy: may use and give access to the records you choose, for the purposes you choose, and withdraw only what they gave",
};

export async function render(ctx, session) {
  const reviewArea = h("div", { id: "review" });
  const list = h("ul", { class: "list", id: "delegates" }, h("li", { class: "muted" }, "Loading…"));
  const form = h("form", { id: "delegate-form", novalidate: true });
  page("People who can act for me",
    h("p", {}, "A parent, a legal guardian or a carer can act for you with their own wallet, until the date you choose."),
    reviewArea,
    h("section", { "aria-labelledby": "current-delegates" }, h("h2", { id: "current-delegates" }, "Who can act for you now"), list),
    h("section", { "aria-labelledby": "add-delegate" }, h("h2", { id: "add-delegate" }, "Add someone"), form));
  const refresh = (ok) => {
    if (ok) keepDraft("delegate", null);
    render(ctx, session);
  };
  const kind = pending()?.request?.kind;
  if (["set-delegate", "set-proxy", "remove-delegate"].includes(kind)) showReview(reviewArea, ctx, refresh);

  const saved = { types: ["Observation"], purpose: "TREAT", ...(draft("delegate") || { address: "", relationship: "caregiver", until: "" }) };
  const address = h("input", { type: "text", id: "delegate-address", name: "address", value: saved.address, autocomplete: "off", spellcheck: "false", inputmode: "text", placeholder: "0x…", "aria-describedby": "delegate-address-help" });
  const until = h("input", { type: "date", id: "delegate-until", name: "until", value: saved.until, required: true });
  const proxyScope = h("fieldset", { id: "proxy-scope", hidden: saved.relationship !== "proxy" },
    h("legend", {}, "For a proxy: which records, and for what purpose"),
    h("div", { class: "choices" }, PROXY_TYPES.map((t) => h("label", {}, h("input", { type: "checkbox", name: "types", value: t, checked: saved.types.includes(t) }), typeName(t)))),
    h("label", { for: "proxy-purpose" }, h("strong", {}, "For what purpose")),
    h("select", { id: "proxy-purpose", name: "purpose" },
      ctx.purposes.filter((p) => p.code !== "ETREAT").map((p) => h("option", { value: p.code, selected: saved.purpose === p.code }, `${p.display[0].toUpperCase()}${p.display.slice(1)}`))));
  form.replaceChildren(
    h("label", { for: "delegate-address" }, h("strong", {}, "Their wallet address")), address,
    h("p", { id: "delegate-address-help", class: "muted" }, "Ask them for it: it starts with 0x and has 40 letters and digits after that."),
    h("fieldset", {}, h("legend", {}, "What they may do"),
      ["guardian", "caregiver", "proxy"].map((k) => h("label", {}, h("input", { type: "radio", name: "relationship", value: k, checked: saved.relationship === k }), KINDS[k]))),
    proxyScope,
    h("label", { for: "delegate-until" }, h("strong", {}, "Until")), until,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Review what I will sign")));
  const read = () => {
    const data = new FormData(form);
    return {
      address: String(data.get("address") || "").trim(),
      relationship: data.get("relationship") || "caregiver",
      until: data.get("until") || "",
      types: data.getAll("types"),
      purpose: data.get("purpose") || "TREAT",
    };
  };
  form.addEventListener("input", () => keepDraft("delegate", read()));
  form.addEventListener("change", () => {
    const choice = read();
    proxyScope.hidden = choice.relationship !== "proxy";
    keepDraft("delegate", choice);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearNotice();
    const choice = read();
    keepDraft("delegate", choice);
    if (!/^0x[0-9a-fA-F]{40}$/.test(choice.address)) {
      fail(new Error("That wallet address does not look right: it starts with 0x and has 40 letters and digits after that."));
      return;
    }
    if (!choice.until) {
      fail(new Error("Choose until when they may act for you."));
      return;
    }
    const validUntil = Math.floor(new Date(`${choice.until}T23:59:59`).getTime() / 1000);
    if (choice.relationship === "proxy" && !choice.types.length) {
      fail(new Error("Choose at least one kind of record the proxy may act on."));
      return;
    }
    const request = choice.relationship === "proxy"
      ? { kind: "set-proxy", patient: session.address, delegate: choice.address, resourceTypes: choice.types, actions: ["read", "search"], purposes: [choice.purpose], validUntil }
      : { kind: "set-delegate", patient: session.address, delegate: choice.address, relationship: choice.relationship, validUntil };
    review(request, reviewArea, ctx, refresh).catch(fail);
  });

  try {
    const { delegates } = await api(`/portal/api/delegates?patient=${session.address}`);
    list.replaceChildren(...(delegates.length ? delegates.map((d) => {
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${d.address}` }, "Remove");
      remove.addEventListener("click", () => review({ kind: "remove-delegate", patient: session.address, delegate: d.address }, reviewArea, ctx, refresh).catch(fail));
      return h("li", { class: `card ${d.active ? "active" : "ended"}` },
        h("p", { class: "mono" }, d.address),
        h("dl", { class: "words" },
          h("dt", {}, "As"), h("dd", {}, KINDS[d.kind] || d.kind),
          h("dt", {}, d.active ? "Until" : "Ended"), h("dd", {}, when(d.validUntil))),
        h("div", { class: "actions" }, remove));
    }) : [h("li", {}, "Nobody can act for you.")]));
  } catch (error) {
    list.replaceChildren(h("li", {}, "Your delegates could not be shown."));
    fail(error);
  }
}
