// FHIR R4 resources in words a person reads: a name, a value, a date.

function concept(cc) {
  if (!cc) return "";
  if (cc.text) return cc.text;
  const coding = (cc.coding || []).find((c) => c.display) || (cc.coding || [])[0];
  return coding ? coding.display || coding.code || "" : "";
}

function quantity(q) {
  if (!q || q.value === undefined) return "";
  return `${q.value}${q.unit ? ` ${q.unit === "Cel" ? "°C" : q.unit}` : ""}`;
}

function observationValue(o) {
  if (o.valueQuantity) return quantity(o.valueQuantity);
  if (o.valueCodeableConcept) return concept(o.valueCodeableConcept);
  if (o.valueString !== undefined) return o.valueString;
  if (o.valueBoolean !== undefined) return o.valueBoolean ? "yes" : "no";
  if (o.valueInteger !== undefined) return String(o.valueInteger);
  if (o.component) {
    return o.component.map((c) => `${concept(c.code)} ${quantity(c.valueQuantity)}`.trim()).join("; ");
  }
  return "";
}

const VISIT_KINDS = { AMB: "outpatient visit", IMP: "hospital stay", EMER: "emergency visit", HH: "home visit", VR: "video or phone consultation", OBSENC: "observation stay" };

function period(p) {
  return p?.start || p?.end || "";
}

/** FHIR resource types in a patient's words (the FHIR name follows in brackets wherever the
 * page offers or shows a choice, as the review before signing names the types by it). */
export const TYPE_NAMES = {
  Patient: "Personal details",
  Observation: "Measurements and test results",
  Condition: "Conditions and diagnoses",
  MedicationRequest: "Prescriptions",
  AllergyIntolerance: "Allergies",
  Procedure: "Procedures",
  Immunization: "Immunisations",
  Encounter: "Visits and stays",
  DiagnosticReport: "Reports",
  DocumentReference: "Documents and letters",
  CarePlan: "Care plans",
  MedicationStatement: "Medicines you take",
  Consent: "Consent documents",
  AuditEvent: "Access records",
  MedicationAdministration: "Medicines given to you",
  CareTeam: "Care teams",
  Goal: "Health goals",
  ImagingStudy: "Scans and X-rays",
  Device: "Medical devices",
  SupplyDelivery: "Supplies delivered",
  Claim: "Insurance claims",
  ExplanationOfBenefit: "Insurance statements",
  Coverage: "Insurance cover",
  Provenance: "Where records came from",
};

export function typeName(code) {
  return TYPE_NAMES[code] ? `${TYPE_NAMES[code]} (${code})` : code;
}

/** The groups shown, in order: FHIR type(s), heading. */
export const GROUPS = [
  { types: ["Observation"], title: "Measurements and test results" },
  { types: ["Condition"], title: "Conditions" },
  { types: ["MedicationRequest", "MedicationStatement"], title: "Medications" },
  { types: ["AllergyIntolerance"], title: "Allergies" },
  { types: ["Immunization"], title: "Immunisations" },
  { types: ["Encounter"], title: "Visits" },
  { types: ["Procedure"], title: "Procedures" },
  { types: ["DiagnosticReport"], title: "Reports" },
];

/** {name, value, date} of a resource. */
export function describe(r) {
  switch (r.resourceType) {
    case "Observation":
      return { name: concept(r.code), value: observationValue(r), date: r.effectiveDateTime || period(r.effectivePeriod) || r.issued };
    case "Condition":
      return { name: concept(r.code), value: concept(r.clinicalStatus), date: r.onsetDateTime || r.recordedDate };
    case "MedicationRequest":
      return { name: concept(r.medicationCodeableConcept) || r.medicationReference?.display || "Medication", value: (r.dosageInstruction || []).map((d) => d.text).filter(Boolean).join("; ") || r.status, date: r.authoredOn };
    case "MedicationStatement":
      return { name: concept(r.medicationCodeableConcept) || "Medication", value: r.status, date: r.effectiveDateTime || period(r.effectivePeriod) };
    case "AllergyIntolerance":
      return { name: concept(r.code), value: [r.criticality && `criticality ${r.criticality}`, concept(r.clinicalStatus)].filter(Boolean).join(", "), date: r.recordedDate || r.onsetDateTime };
    case "Immunization":
      return { name: concept(r.vaccineCode), value: r.status, date: r.occurrenceDateTime };
    case "Encounter":
      return { name: (r.type || []).map(concept).filter(Boolean).join(", ") || r.class?.display || VISIT_KINDS[r.class?.code] || r.class?.code || "Visit", value: r.status, date: period(r.period) };
    case "Procedure":
      return { name: concept(r.code), value: r.status, date: r.performedDateTime || period(r.performedPeriod) };
    case "DiagnosticReport":
      return { name: concept(r.code), value: r.conclusion || r.status, date: r.effectiveDateTime || r.issued };
    default:
      return { name: r.resourceType, value: "", date: r.meta?.lastUpdated };
  }
}
