//! Writes: create, update and delete of one record, and the erasure of a patient.
//!
//! A write is decided for the patient it concerns before the store is looked up; every new
//! version is encrypted with its patient's data key, stored, and queued for anchoring on chain
//! with the other versions of its window (see [`super::anchoring`]): the answer does not wait
//! for a block, and says that the version is not yet anchored.

use super::{
    RecordRequest, Served, active_key,
    anchoring::{self, AnchorState},
    compartment::{self, PlannedPatients},
    conceal, new_id, parse_patient, stamp,
    store::{self, KeyState, NewVersion},
};
use crate::{
    error::{AppError, not_found_text},
    fhir::resource::{self, SearchFields},
};
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_formats::canonical::canonical_hash;
use chrono::Utc;
use serde_json::Value;

/// `POST [type]` and `PUT [type]/[id]`: checks, decides, encrypts, stores and queues the
/// version for anchoring.
/// `update` carries the id and the `If-Match` version when given.
pub async fn write(
    req: &RecordRequest<'_>,
    resource_type: ResourceType,
    update: Option<(&str, Option<i64>)>,
    mut body: Value,
) -> Result<Served, AppError> {
    let name = resource_type.code();
    if resource::body_type(&body)? != resource_type {
        return Err(AppError::Invalid(format!(
            "the body's resourceType is not {name}"
        )));
    }
    // The gateway alone says whether a version is anchored.
    anchoring::strip_mark(&mut body);
    // Nothing that is not valid FHIR R4 is stored: every issue is answered, with its location.
    req.records.settings().check_valid(&body)?;
    let (id, _) = match update {
        Some((id, if_match)) => {
            if body.get("id").and_then(Value::as_str) != Some(id) {
                return Err(AppError::Invalid(
                    "the body's id must equal the id in the URL".into(),
                ));
            }
            req.records.settings().check_if_match(if_match)?;
            (id.to_owned(), if_match)
        }
        None if resource_type == ResourceType::Patient => {
            let patient =
                resource::patient_of(resource_type, body.get("id").and_then(Value::as_str), &body)?;
            (patient, None)
        }
        None => (new_id(), None),
    };
    resource::validate_id(&id)?;
    req.audit.entity(format!("{name}/{id}"));
    let patient_text = resource::patient_of(resource_type, Some(&id), &body)?;
    let patient = parse_patient(&patient_text)?;
    compartment::check(req, name, &patient_text, &body, &PlannedPatients::new()).await?;
    let current = match update {
        // An update is decided for the body's patient before the record is looked up, and a
        // record of another patient is answered as absent: a requester without consent learns
        // nothing about which ids exist.
        Some(_) => {
            req.decide(patient, resource_type, Action::Update)
                .await
                .map_err(|err| conceal(err, resource_type, &id))?;
            match store::locate(req.records.pool(), name, &id).await? {
                Some(current) if current.0 == patient_text => Some(current),
                _ => return Err(AppError::NotFound(not_found_text(name, &id))),
            }
        }
        None => {
            req.decide(patient, resource_type, Action::Create).await?;
            if store::locate(req.records.pool(), name, &id)
                .await?
                .is_some()
            {
                return Err(AppError::Conflict(format!("{name}/{id} already exists")));
            }
            None
        }
    };
    let current_version = current.as_ref().map_or(0, |(_, v, _)| *v);
    if let Some(Some(wanted)) = update.map(|(_, m)| m)
        && wanted != current_version
    {
        return Err(AppError::PreconditionFailed(format!(
            "If-Match names version {wanted}, the current version is {current_version}"
        )));
    }
    let version_id = current_version + 1;
    let now = Utc::now();
    stamp(&mut body, &id, version_id, now);
    let hash = canonical_hash(&body);
    let org = req.custodian()?;
    let fields: SearchFields = resource::search_fields(resource_type, &body);
    let content = serde_json::to_vec(&body).map_err(AppError::internal)?;
    let mut tx = req.records.pool().begin().await?;
    let key = active_key(store::data_key(&mut tx, req.records.kek(), &patient_text, true).await?)?;
    store::write_version(
        &mut tx,
        &key,
        req.records.hasher(),
        &NewVersion {
            resource_type: name.to_owned(),
            id: id.clone(),
            version_id,
            patient: patient_text,
            last_updated: now,
            content: Some(content),
            version_hash: Some(hash),
            custodian: org,
            fields,
        },
        current_version,
    )
    .await?;
    tx.commit().await?;
    AnchorState::Pending.mark(&mut body);
    Ok(Served {
        resource: body,
        version_id,
        last_updated: now,
        anchor: AnchorState::Pending,
        proof: None,
    })
}

/// `DELETE [type]/[id]`: a new version without content.
pub async fn delete(
    req: &RecordRequest<'_>,
    resource_type: ResourceType,
    id: &str,
) -> Result<(), AppError> {
    let name = resource_type.code();
    req.audit.entity(format!("{name}/{id}"));
    let (patient_text, current, deleted) = store::locate(req.records.pool(), name, id)
        .await?
        .ok_or_else(|| AppError::NotFound(not_found_text(name, id)))?;
    let patient = parse_patient(&patient_text)?;
    req.decide(patient, resource_type, Action::Delete)
        .await
        .map_err(|err| conceal(err, resource_type, id))?;
    if deleted {
        // Deleting a deleted resource succeeds (FHIR: idempotent).
        return Ok(());
    }
    let org = req.custodian()?;
    let mut tx = req.records.pool().begin().await?;
    let key = match store::data_key(&mut tx, req.records.kek(), &patient_text, false).await? {
        KeyState::Active(key) => key,
        KeyState::Erased => return Ok(()),
        KeyState::Missing => {
            return Err(AppError::internal(std::io::Error::other(
                "record without a data key",
            )));
        }
    };
    store::write_version(
        &mut tx,
        &key,
        req.records.hasher(),
        &NewVersion {
            resource_type: name.to_owned(),
            id: id.to_owned(),
            version_id: current + 1,
            patient: patient_text,
            last_updated: Utc::now(),
            content: None,
            version_hash: None,
            custodian: org,
            fields: SearchFields::default(),
        },
        current,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `POST Patient/[address]/$erase`: destroys the patient's data key, so every version of every
/// record of theirs becomes unreadable (reported gone). Only the patient or an active delegate.
pub async fn erase(req: &RecordRequest<'_>, patient_id: &str) -> Result<(), AppError> {
    let patient_text = resource::normalize_address(patient_id)
        .ok_or_else(|| AppError::Invalid("a Patient id is a wallet address".into()))?;
    req.audit.entity(format!("Patient/{patient_text}"));
    let patient = parse_patient(&patient_text)?;
    let decision = req
        .for_purpose(Purpose::PatientRequest)
        .decide(patient, ResourceType::Patient, Action::Delete)
        .await?;
    if !matches!(
        decision.basis,
        carechain_contracts::Basis::OwnData | carechain_contracts::Basis::Delegate
    ) {
        return Err(AppError::Forbidden(
            "only the patient or an active delegate may erase the patient's records".into(),
        ));
    }
    let by = format!("{:#x}", req.claims.sub);
    if store::erase_patient(req.records.pool(), &patient_text, &by).await? {
        Ok(())
    } else if store::is_erased(req.records.pool(), &patient_text).await? {
        Err(AppError::Gone(
            "the patient's records were already erased".into(),
        ))
    } else {
        Err(AppError::NotFound(
            "no records are stored for this patient".into(),
        ))
    }
}
