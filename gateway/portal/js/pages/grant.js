// Give access: choose an organisation from the on-chain directory, kinds of records, what they
// may do, a purpose and a period; the page then shows exactly what will be signed.

import { h, page, fail, clearNotice } from "../ui.js";
import { draft, keepDraft, pending } from "../session.js";
import { review, showReview } from "../signing.js";
import { directory } from "./consents.js";
import { typeName } from "../fhir.js";

const COMMON = ["Observation", "Condition", "MedicationRequest", "MedicationStatement", "AllergyIntolerance", "Immunization", "Encounter", "Procedure", "DiagnosticReport"];
const PERIODS = [["30", "30 days"], ["90", "3 months"], ["365", "1 year"]];
const ABILITIES = {
  read: { label: "See my records", actions: ["read", "search"] },
  write: { label: "See my records and add to them", actions: ["create", "read", "update", "search"] },
};

export async function render(ctx, session) {
  const reviewArea = h("div", { id: "review" });
  const form = h("form", { id: "grant-form", novalidate: true });
  page("Give access", h("p", {}, "Let a hospital, clinic or other member of the consortium see your records, for a purpose and a period you choose. You can withdraw it at any time."), form, reviewArea);
  const done = (ok) => {
    if (ok) keepDraft("grant", null);
    render(ctx, session);
  };
  if (pending()?.request?.kind === "grant") {
    showReview(reviewArea, ctx, done);
  }
  let orgs;
  try {
    orgs = [...(await directory()).values()].filter((o) => o.active && o.kind !== "Compliance");
  } catch (error) {
    fail(error);
    return;
  }
  const saved = draft("grant") || { types: ["Observation"], ability: "read", purpose: "TREAT", period: "30" };
  const org = h("select", { id: "org", name: "org", required: true },
    h("option", { value: "" }, "Choose an organisation"),
    orgs.map((o) => h("option", { value: o.address, selected: saved.org === o.address }, `${o.name} (${o.kind.toLowerCase()})`)));
  const others = ctx.resourceTypes.filter((t) => !COMMON.includes(t) && t !== "Consent" && t !== "AuditEvent");
  const typeBox = (t) => h("label", {}, h("input", { type: "checkbox", name: "types", value: t, checked: saved.types.includes(t) }), typeName(t));
  const purpose = h("select", { id: "purpose", name: "purpose" },
    ctx.purposes.filter((p) => p.code !== "ETREAT").map((p) => h("option", { value: p.code, selected: saved.purpose === p.code }, `${p.display[0].toUpperCase()}${p.display.slice(1)}`)));
  const untilDate = h("input", { type: "date", id: "until-date", name: "untilDate", value: saved.untilDate || "" });
  const submit = h("button", { type: "submit" }, "Review what I will sign");
  form.replaceChildren(
    h("label", { for: "org" }, h("strong", {}, "Who may see your records")), org,
    h("fieldset", {}, h("legend", {}, "Which kinds of records"),
      h("div", { class: "choices" }, COMMON.map(typeBox)),
      h("details", {}, h("summary", {}, "More kinds of records"), h("div", { class: "choices" }, others.map(typeBox)))),
    h("fieldset", {}, h("legend", {}, "What they may do"),
      Object.entries(ABILITIES).map(([key, a]) => h("label", {}, h("input", { type: "radio", name: "ability", value: key, checked: saved.ability === key }), a.label))),
    h("label", { for: "purpose" }, h("strong", {}, "For what purpose")), purpose,
    h("fieldset", {}, h("legend", {}, "For how long"),
      PERIODS.map(([days, label]) => h("label", {}, h("input", { type: "radio", name: "period", value: days, checked: saved.period === days }), label)),
      h("label", {}, h("input", { type: "radio", name: "period", value: "date", checked: saved.period === "date" }), "Until a date I choose:"),
      h("label", { for: "until-date", class: "muted" }, "End date"), untilDate),
    h("div", { class: "actions" }, submit));
  const read = () => {
    const data = new FormData(form);
    return {
      org: data.get("org") || "",
      types: data.getAll("types"),
      ability: data.get("ability") || "read",
      purpose: data.get("purpose") || "TREAT",
      period: data.get("period") || "30",
      untilDate: data.get("untilDate") || "",
    };
  };
  form.addEventListener("change", () => keepDraft("grant", read()));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearNotice();
    const choice = read();
    keepDraft("grant", choice);
    const problem = !choice.org ? "Choose who may see your records."
      : !choice.types.length ? "Choose at least one kind of record."
        : choice.period === "date" && !choice.untilDate ? "Choose the end date." : null;
    if (problem) {
      fail(new Error(problem));
      return;
    }
    const until = choice.period === "date"
      ? Math.floor(new Date(`${choice.untilDate}T23:59:59`).getTime() / 1000)
      : Math.floor(Date.now() / 1000) + Number(choice.period) * 86400;
    review({
      kind: "grant",
      patient: session.address,
      grantee: choice.org,
      resourceTypes: choice.types,
      actions: ABILITIES[choice.ability].actions,
      purposes: [choice.purpose],
      validUntil: until,
    }, reviewArea, ctx, done).catch(fail);
  });
}
