//! One request's audit record and the IHE BALP-shaped FHIR `AuditEvent` it becomes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// What one request did, as the audit layer records it.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// BALP subtype: `read`, `vread`, `history-instance`, `search-type`, `create`, `update`,
    /// `delete`, `transaction`, `batch`, `capabilities`, `login`, `erase`, or `unknown`.
    pub subtype: String,
    /// FHIR AuditEvent action: C, R, U, D or E.
    pub action: char,
    /// HTTP status of the response.
    pub status: u16,
    /// The signed-in requester, when known.
    pub agent: Option<String>,
    /// The requester's organisation, when a member.
    pub agent_org: Option<String>,
    /// For a federated request: the organisation whose gateway asked on the requester's
    /// behalf (a second agent of the event).
    pub via_org: Option<String>,
    /// The patient concerned, when known.
    pub patient: Option<String>,
    /// The resource touched (`Type/id[/_history/v]`) or the type searched.
    pub entity: Option<String>,
    /// Purpose of use (HL7 code).
    pub purpose: Option<String>,
    /// Block of the consent decision.
    pub consent_block: Option<u64>,
    /// Basis of the consent decision.
    pub basis: Option<String>,
    /// Short, PHI-free description of the outcome.
    pub detail: Option<String>,
    /// HTTP method.
    pub method: String,
    /// When the request arrived.
    pub recorded: DateTime<Utc>,
}

impl AuditRecord {
    /// The FHIR AuditEvent outcome code: 0 success, 4 minor failure, 8 serious failure.
    pub fn outcome_code(&self) -> &'static str {
        match self.status {
            s if s < 400 => "0",
            s if s < 500 => "4",
            _ => "8",
        }
    }

    /// The BALP-shaped AuditEvent.
    pub fn to_audit_event(&self, seq: u64) -> Value {
        let interaction = matches!(
            self.subtype.as_str(),
            "read"
                | "vread"
                | "history-instance"
                | "search-type"
                | "create"
                | "update"
                | "delete"
                | "transaction"
                | "batch"
                | "capabilities"
        );
        let subtype_system = if interaction {
            "http://hl7.org/fhir/restful-interaction"
        } else {
            "urn:carechain:audit-subtype"
        };
        let mut agents = vec![json!({
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110153", "display": "Source Role ID"}]},
            "who": {"display": "carechain-gateway"},
            "requestor": false
        })];
        if let Some(agent) = &self.agent {
            let mut who =
                json!({"who": {"identifier": {"system": "urn:carechain:wallet", "value": agent}}});
            who["type"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]});
            who["requestor"] = json!(true);
            if let Some(org) = &self.agent_org {
                who["extension"] = json!([{"url": "urn:carechain:agent-organisation", "valueIdentifier": {"system": "urn:carechain:wallet", "value": org}}]);
            }
            if let Some(purpose) = &self.purpose {
                who["purposeOfUse"] = purpose_concept(purpose);
            }
            agents.push(who);
        }
        if let Some(org) = &self.via_org {
            // IHE XCA: the initiating gateway of another member organisation.
            agents.push(json!({
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110152", "display": "Destination Role ID"}]},
                "who": {"identifier": {"system": "urn:carechain:wallet", "value": org}, "display": "requesting gateway"},
                "requestor": false
            }));
        }
        let mut entities = Vec::new();
        let mut details = Vec::new();
        if let Some(block) = self.consent_block {
            details.push(json!({"type": "consent-block", "valueString": block.to_string()}));
        }
        if let Some(basis) = &self.basis {
            details.push(json!({"type": "consent-basis", "valueString": basis}));
        }
        if let Some(patient) = &self.patient {
            let mut entity = json!({
                "what": {"reference": format!("Patient/{patient}")},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
            });
            if !details.is_empty() {
                entity["detail"] = Value::Array(std::mem::take(&mut details));
            }
            entities.push(entity);
        }
        if let Some(what) = &self.entity {
            let mut entity = json!({
                "what": {"reference": what},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource"}
            });
            // A search across patients has no patient entity: its decisions' summary goes here.
            if !details.is_empty() {
                entity["detail"] = Value::Array(details);
            }
            entities.push(entity);
        }
        let mut event = json!({
            "resourceType": "AuditEvent",
            "id": seq.to_string(),
            "meta": {"profile": ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"]},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": subtype_system, "code": self.subtype}],
            "action": self.action.to_string(),
            "recorded": self.recorded.to_rfc3339_opts(SecondsFormat::Micros, true),
            "outcome": self.outcome_code(),
            "outcomeDesc": match &self.detail {
                Some(d) => format!("{} {}: {d}", self.method, self.status),
                None => format!("{} {}", self.method, self.status),
            },
            "agent": agents,
            "source": {
                "observer": {"display": "carechain-gateway"},
                "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
            }
        });
        if let Some(purpose) = &self.purpose {
            event["purposeOfEvent"] = purpose_concept(purpose);
        }
        if !entities.is_empty() {
            event["entity"] = Value::Array(entities);
        }
        event
    }
}

fn purpose_concept(code: &str) -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}]}])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;
    use carechain_formats::audit_chain;

    #[test]
    fn events_are_balp_shaped() {
        let record = AuditRecord {
            subtype: "read".into(),
            action: 'R',
            status: 403,
            agent: Some("0xaa".into()),
            patient: Some("0xbb".into()),
            entity: Some("Observation/1".into()),
            purpose: Some("TREAT".into()),
            consent_block: Some(7),
            basis: Some("NoConsent".into()),
            method: "GET".into(),
            ..Default::default()
        };
        let event = record.to_audit_event(1);
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["subtype"][0]["code"], "read");
        assert_eq!(event["entity"][0]["what"]["reference"], "Patient/0xbb");
        assert_eq!(event["entity"][0]["detail"][0]["valueString"], "7");
        assert_eq!(event["agent"][1]["who"]["identifier"]["value"], "0xaa");
        let h1 = audit_chain::row_hash(B256::ZERO, 1, &event);
        assert_ne!(h1, audit_chain::row_hash(B256::ZERO, 2, &event));
        assert_ne!(h1, audit_chain::row_hash(h1, 1, &event));
    }
}
