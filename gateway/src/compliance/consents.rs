//! `GET /Consent?patient=`: the patient's current and past consents, from the index of the
//! ConsentRegistry's events, as FHIR Consent resources with their chain proof, newest first
//! and paged by the grant's `(block, log index)` (index `ev_consent_granted_patient`).

use crate::error::AppError;
use alloy::primitives::Address;
use carechain_contracts::{Action, Purpose, ResourceType};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

type GrantRow = (
    i64,
    i32,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    i64,
    i16,
    i32,
    i64,
    i64,
    Vec<u8>,
    Option<bool>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i16>,
);

fn hex(bytes: &[u8]) -> String {
    format!("0x{}", alloy::hex::encode(bytes))
}

fn instant(secs: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp(secs, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// How many consents were ever granted by or for `patient`.
pub async fn count_consents(
    pool: &PgPool,
    chain_id: u64,
    patient: Address,
) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM ev_consent_granted WHERE chain_id = $1 AND patient = $2",
    )
    .bind(db_chain_id(chain_id)?)
    .bind(patient.as_slice())
    .fetch_one(pool)
    .await?)
}

fn db_chain_id(chain_id: u64) -> Result<i64, AppError> {
    i64::try_from(chain_id)
        .map_err(|_| AppError::internal(std::io::Error::other("chain id out of range")))
}

/// A page of the consents ever granted by or for `patient`, newest first: up to `count`
/// before the grant at `(block, log index)` `before` (from the newest when `None`), each with
/// the event that ended it (a later grant to the same grantee, or a revocation) when there is
/// one, and the key of the last one when more follow.
pub async fn consents_of(
    pool: &PgPool,
    chain_id: u64,
    patient: Address,
    count: usize,
    before: Option<(i64, i32)>,
) -> Result<(Vec<Value>, Option<(i64, i32)>), AppError> {
    let chain_id = db_chain_id(chain_id)?;
    let (before_block, before_log) = before.unwrap_or((i64::MAX, i32::MAX));
    let mut rows: Vec<GrantRow> = sqlx::query_as(
        "WITH ev AS (
            SELECT block_number, log_index, grantee, true AS grant FROM ev_consent_granted
            WHERE chain_id = $1 AND patient = $2
            UNION ALL
            SELECT block_number, log_index, grantee, false FROM ev_consent_revoked
            WHERE chain_id = $1 AND patient = $2)
         SELECT g.block_number, g.log_index, g.tx_hash, g.grantee, g.actor, g.resource_types,
                g.actions, g.purposes, g.valid_from, g.valid_until, g.consent_hash,
                nx.grant, nx.block_number, nx.tx_hash, o.kind
         FROM ev_consent_granted g
         LEFT JOIN LATERAL (
            SELECT ev.grant, ev.block_number,
                   COALESCE(r.tx_hash, gg.tx_hash) AS tx_hash
            FROM ev
            LEFT JOIN ev_consent_revoked r ON NOT ev.grant AND r.chain_id = $1
                 AND r.block_number = ev.block_number AND r.log_index = ev.log_index
            LEFT JOIN ev_consent_granted gg ON ev.grant AND gg.chain_id = $1
                 AND gg.block_number = ev.block_number AND gg.log_index = ev.log_index
            WHERE ev.grantee = g.grantee
              AND (ev.block_number, ev.log_index) > (g.block_number, g.log_index)
            ORDER BY ev.block_number, ev.log_index LIMIT 1) nx ON true
         LEFT JOIN organisations o ON o.chain_id = $1 AND o.org = g.grantee
         WHERE g.chain_id = $1 AND g.patient = $2
           AND (g.block_number, g.log_index) < ($3, $4)
         ORDER BY g.block_number DESC, g.log_index DESC LIMIT $5",
    )
    .bind(chain_id)
    .bind(patient.as_slice())
    .bind(before_block)
    .bind(before_log)
    .bind(i64::try_from(count + 1).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let more = rows.len() > count;
    rows.truncate(count);
    let last = rows.last().map(|row| (row.0, row.1)).filter(|_| more);
    let now = Utc::now().timestamp();
    let patient_ref = format!("Patient/{patient:#x}");
    let consents = rows
        .into_iter()
        .map(|row| {
            let (block, log, tx, grantee, actor, types, actions, purposes, from, until, hash, ended_by_grant, ended_block, ended_tx, org_kind) =
                row;
            let ended = ended_block.is_some();
            let status = if !ended && from <= now && now < until {
                "active"
            } else {
                "inactive"
            };
            let grantee_ref = if org_kind.is_some() {
                format!("Organization/{}", hex(&grantee))
            } else {
                format!("Practitioner/{}", hex(&grantee))
            };
            let actions: Vec<Value> = Action::from_bits(u8::try_from(actions).unwrap_or(0))
                .into_iter()
                .map(|a| json!({"coding": [{"system": "urn:carechain:consent-action", "code": a.long_name()}]}))
                .collect();
            let purposes: Vec<Value> = Purpose::from_bits(u16::try_from(purposes).unwrap_or(0))
                .into_iter()
                .map(|p| json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": p.code()}))
                .collect();
            let classes: Vec<Value> = ResourceType::from_bits(types as u64)
                .into_iter()
                .map(|t| json!({"system": "http://hl7.org/fhir/resource-types", "code": t.code()}))
                .collect();
            let mut proof = vec![
                json!({"url": "txHash", "valueString": hex(&tx)}),
                json!({"url": "blockNumber", "valueInteger": block}),
                json!({"url": "logIndex", "valueInteger": log}),
                json!({"url": "consentHash", "valueString": hex(&hash)}),
            ];
            if let (Some(b), Some(t)) = (ended_block, ended_tx) {
                let by = if ended_by_grant == Some(true) { "superseded" } else { "revoked" };
                proof.push(json!({"url": "endedBy", "valueCode": by}));
                proof.push(json!({"url": "endedTxHash", "valueString": hex(&t)}));
                proof.push(json!({"url": "endedBlockNumber", "valueInteger": b}));
            }
            let mut period = json!({});
            if let Some(s) = instant(from) {
                period["start"] = json!(s);
            }
            if let Some(e) = instant(until) {
                period["end"] = json!(e);
            }
            json!({
                "resourceType": "Consent",
                "id": format!("chain-{block}-{log}"),
                "extension": [{"url": "urn:carechain:chain-proof", "extension": proof}],
                "status": status,
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
                "patient": {"reference": patient_ref},
                "performer": [{"identifier": {"system": "urn:carechain:wallet", "value": hex(&actor)}}],
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                "provision": {
                    "type": "permit",
                    "period": period,
                    "actor": [{
                        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                        "reference": {"reference": grantee_ref}
                    }],
                    "action": actions,
                    "purpose": purposes,
                    "class": classes
                }
            })
        })
        .collect();
    Ok((consents, last))
}
