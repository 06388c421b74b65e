//! Searches: `GET [type]?..` and the next pages of one (sealed cursors).
//!
//! Consent is decided before the index is paged: a search naming its patient needs that
//! patient's decision (403 otherwise); a search without `patient` spans exactly the patients
//! whose decision allows the requester to search, so `total`, the pages and `_include` count
//! and show nothing else. Every page (cursor) is decided again.

use super::{
    RecordRequest, Served, parse_patient,
    query::{self, SearchQuery},
    store,
};
use crate::{crypto::SecretKey, error::AppError, fhir::resource};
use carechain_contracts::{Action, ResourceType};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Most records `_revinclude` adds per patient and type to one page (beyond: an outcome entry
/// says so; the client searches the type itself).
const MAX_REVINCLUDED: i64 = 1000;

/// `GET [type]?..` (or the next page of one, from its cursor): a searchset Bundle.
///
/// Consent is decided before the index is paged: a search naming its patient needs that
/// patient's decision (403 otherwise); a search without `patient` spans exactly the patients
/// whose decision allows the requester to search, so `total`, the pages and `_include` count
/// and show nothing else. Every page (cursor) is decided again.
pub async fn search(
    req: &RecordRequest<'_>,
    resource_type: ResourceType,
    params: &[(String, String)],
) -> Result<Value, AppError> {
    let name = resource_type.code();
    req.audit.entity(name.to_owned());
    let cursor = params
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let (query, after) = match cursor {
        Some(token) => {
            if params
                .iter()
                .any(|(k, _)| !matches!(k.as_str(), "_cursor" | "_purpose" | "_format"))
            {
                return Err(AppError::Invalid("a paging cursor is used alone".into()));
            }
            let (query, after) = query::resume(req.records.cursors(), token, req.claims.sub)?;
            if query.resource_type != name {
                return Err(AppError::Invalid(
                    "the paging cursor is for another type".into(),
                ));
            }
            (query, Some(after))
        }
        None => (
            SearchQuery::parse(
                resource_type,
                params,
                req.records.settings().default_page_size,
                req.records.settings().max_page_size,
            )?,
            None,
        ),
    };
    let across = query.patient.is_empty();
    let patients = if across {
        searchable_patients(req, &query).await?
    } else {
        // One decision covers the compartment; it is made again for every page.
        req.decide(query.patient_address()?, resource_type, Action::Search)
            .await?;
        if store::is_erased(req.records.pool(), &query.patient).await? {
            return Err(AppError::Gone("the patient's records were erased".into()));
        }
        vec![query.patient.clone()]
    };
    let page = query::run(
        req.records.pool(),
        req.records.hasher(),
        req.records.cursors(),
        &query,
        &patients,
        after.as_ref(),
        req.claims.sub,
    )
    .await?;
    let versions = store::current_versions(req.records.pool(), &page.keys).await?;
    let allowed: HashSet<&str> = patients.iter().map(String::as_str).collect();
    if versions
        .iter()
        .any(|v| !allowed.contains(v.patient.as_str()))
    {
        return Err(AppError::internal(std::io::Error::other(
            "a search page holds a record outside its decided patients",
        )));
    }
    let base = req.records.base_url();
    // One key per patient on the page; the page's anchors are verified a few at a time.
    let mut keys: HashMap<&str, SecretKey> = HashMap::new();
    for stored in &versions {
        if !keys.contains_key(stored.patient.as_str()) {
            let key = req.records.patient_key(&stored.patient).await?;
            keys.insert(stored.patient.as_str(), key);
        }
    }
    let mut entries = Vec::with_capacity(versions.len());
    // Each match's patient and encounter reference (for `_include`).
    let mut matched: Vec<(&str, Option<String>)> = Vec::with_capacity(versions.len());
    if !versions.is_empty() {
        use futures::{StreamExt, TryStreamExt};
        let mut pending = Vec::with_capacity(versions.len());
        for stored in &versions {
            let key = keys.get(stored.patient.as_str()).ok_or_else(|| {
                AppError::internal(std::io::Error::other("no key for a page's patient"))
            })?;
            pending.push(req.records.open_verified_with(stored, key));
        }
        let served: Vec<Served> = futures::stream::iter(pending)
            .buffered(8)
            .try_collect()
            .await?;
        let summary = query
            .summary
            .as_deref()
            .and_then(|s| s.parse::<carechain_fhir::Summary>().ok());
        for (stored, served) in versions.iter().zip(served) {
            let encounter = if query.include.is_empty() {
                None
            } else {
                resource::search_fields(resource_type, &served.resource).encounter
            };
            matched.push((stored.patient.as_str(), encounter));
            // A federated request's matches say how they are anchored: the requesting gateway
            // checks them against the chain before passing them on.
            let proof = served
                .proof
                .as_ref()
                .filter(|_| req.claims.via.is_some())
                .map(|p| json!([{"url": crate::federation::ANCHOR_PROOF_URL, "valueString": p.to_text()}]));
            // _summary and _elements subset the matches (not what _include adds), after the
            // integrity check: what was verified is the stored version.
            let mut resource = served.resource;
            if let Some(mode) = summary {
                carechain_fhir::summarize_in_place(&mut resource, mode);
            }
            if !query.elements.is_empty() {
                carechain_fhir::select_elements_in_place(&mut resource, &query.elements)
                    .map_err(|err| AppError::Invalid(err.to_string()))?;
            }
            let mut entry = json!({
                "fullUrl": format!("{base}/{}/{}", stored.resource_type, stored.id),
                "resource": resource,
                "search": {"mode": "match"},
            });
            if let Some(proof) = proof {
                entry["extension"] = proof;
            }
            entries.push(entry);
        }
    }
    // _include: only targets of the same patient, only where consent covers reading them; a
    // denied target is left out silently (the matches themselves were allowed).
    let include_patients: Vec<&str> = if across {
        let mut seen = Vec::new();
        for (patient, _) in &matched {
            if !seen.contains(patient) {
                seen.push(*patient);
            }
        }
        seen
    } else {
        vec![query.patient.as_str()]
    };
    for target in &query.include {
        let target: ResourceType = target
            .parse()
            .map_err(|_| AppError::Invalid("the paging cursor is invalid".into()))?;
        for patient in &include_patients {
            let key = req.key(parse_patient(patient)?, target, Action::Read);
            let allowed = req.records.consent().decide(key).await?.allowed;
            if !allowed {
                continue;
            }
            let mut ids: Vec<String> = Vec::new();
            if target == ResourceType::Patient {
                ids.push((*patient).to_owned());
            } else {
                for (_, encounter) in matched.iter().filter(|(p, _)| p == patient) {
                    if let Some(id) = encounter
                        && !ids.contains(id)
                    {
                        ids.push(id.clone());
                    }
                }
            }
            for id in ids {
                let Some(stored) =
                    store::version(req.records.pool(), target.code(), &id, None).await?
                else {
                    continue;
                };
                if stored.deleted || stored.patient != *patient {
                    continue;
                }
                let served = req.records.open_verified(&stored).await?;
                entries.push(json!({
                    "fullUrl": format!("{base}/{}/{id}", target.code()),
                    "resource": served.resource,
                    "search": {"mode": "include"},
                }));
            }
        }
    }
    // _revinclude: records of the same patient that reference the matches (the patient
    // itself, or a matched Encounter), only where consent covers reading them.
    let mut truncated = false;
    for (target, param) in &query.revinclude {
        let target: ResourceType = target
            .parse()
            .map_err(|_| AppError::Invalid("the paging cursor is invalid".into()))?;
        for patient in &include_patients {
            let key = req.key(parse_patient(patient)?, target, Action::Read);
            if !req.records.consent().decide(key).await?.allowed {
                continue;
            }
            let encounters: Option<Vec<String>> = (param == "encounter").then(|| {
                versions
                    .iter()
                    .filter(|v| v.patient == *patient)
                    .map(|v| v.id.clone())
                    .collect()
            });
            if encounters.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            let keys = store::referencing(
                req.records.pool(),
                target.code(),
                patient,
                encounters.as_deref(),
                MAX_REVINCLUDED + 1,
            )
            .await?;
            truncated |= keys.len() as i64 > MAX_REVINCLUDED;
            for stored in store::current_versions(req.records.pool(), &keys)
                .await?
                .iter()
                .take(MAX_REVINCLUDED as usize)
            {
                let served = req.records.open_verified(stored).await?;
                entries.push(json!({
                    "fullUrl": format!("{base}/{}/{}", stored.resource_type, stored.id),
                    "resource": served.resource,
                    "search": {"mode": "include"},
                }));
            }
        }
    }
    if truncated {
        entries.push(json!({
            "resource": crate::error::operation_outcome(
                "warning",
                "too-costly",
                &format!("_revinclude returned at most {MAX_REVINCLUDED} records per patient and type; search the type itself for the rest"),
            ),
            "search": {"mode": "outcome"},
        }));
    }
    let mut links = vec![json!({
        "relation": "self",
        "url": match cursor {
            Some(token) => format!("{base}/{name}?_cursor={token}"),
            None if across => format!(
                "{base}/{name}?_count={}&_sort={}",
                query.count,
                query::sort_code(&query)
            ),
            None => format!(
                "{base}/{name}?patient={}&_count={}&_sort={}",
                query.patient,
                query.count,
                query::sort_code(&query)
            ),
        },
    })];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": format!("{base}/{name}?_cursor={next}")}));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    Ok(bundle)
}

/// The patients a search without `patient` may return: those with a match whose consent
/// decision allows the requester to search this type for this purpose (failing closed like
/// any decision). At most `--max-search-patients` candidates are decided.
async fn searchable_patients(
    req: &RecordRequest<'_>,
    query: &SearchQuery,
) -> Result<Vec<String>, AppError> {
    let resource_type: ResourceType = query
        .resource_type
        .parse()
        .map_err(|_| AppError::Invalid("the paging cursor is invalid".into()))?;
    let max = req.records.settings().max_search_patients;
    let candidates = query::candidate_patients(
        req.records.pool(),
        req.records.hasher(),
        query,
        max.saturating_add(1),
    )
    .await?;
    if candidates.len() > max {
        return Err(AppError::TooCostly(format!(
            "a search without `patient` may span at most {max} patients; name the patient or narrow the search"
        )));
    }
    let mut allowed = Vec::new();
    let mut block = 0;
    for patient in candidates {
        let key = req.key(parse_patient(&patient)?, resource_type, Action::Search);
        let decision = req.records.consent().decide(key).await?;
        block = block.max(decision.block);
        if decision.allowed {
            allowed.push(patient);
        }
    }
    req.audit.scope(block, req.purpose, allowed.len());
    Ok(allowed)
}
