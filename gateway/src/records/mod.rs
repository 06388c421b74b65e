//! The record service: consent first, then the store, then integrity.
//!
//! Every operation resolves the request to (patient, requester, resource type, action,
//! purpose), asks [`ConsentService::decide`](crate::consent::ConsentService::decide), and only
//! when allowed opens the patient's data key. The only store access before the decision is
//! the lookup of which patient a record id belongs to (index metadata, no content): the
//! decision needs the patient.
//!
//! - [`read`]: read, vread and history (with the single-query read under a cached decision);
//! - [`write`]: create, update, delete and erase;
//! - [`search`]: searches, paged with sealed cursors ([`query`]: parsing and the index query);
//! - [`bundle`]: transaction and batch Bundles;
//! - [`anchoring`]: new versions anchored on chain in groups, in the background;
//! - [`store`]: the encrypted versions and the search index in PostgreSQL;
//! - [`patients`]: which patient each record belongs to, remembered.
//!
//! Each operation takes one [`RecordRequest`]: the gateway's [`Records`] service, who asks
//! and for which purpose, and where the audit record learns what happened.

pub mod anchoring;
pub mod bundle;
mod compartment;
pub mod directory;
pub mod patients;
pub mod query;
pub mod read;
pub mod search;
pub mod store;
pub mod write;

pub use bundle::transaction;
pub use patients::RecordPatients;
pub use read::{history, read};
pub use search::search;
pub use write::{delete, erase, write};

use crate::{
    auth::{Claims, Role},
    chain::ChainClient,
    consent::{ConsentService, Decision, DecisionKey},
    crypto::{CryptoError, SecretKey, record_aad},
    db::ReadConnections,
    error::{AppError, not_found_text},
    paging::CursorCodec,
};
use alloy::primitives::Address;
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_formats::canonical::canonical_hash;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use store::{KeyState, SearchTermHasher, StoredVersion};

/// What the audit layer learns from an operation.
pub trait AuditSink {
    /// The patient concerned.
    fn patient(&self, patient: Address);
    /// The consent decision.
    fn decision(&self, decision: &Decision, purpose: Purpose);
    /// The resource touched.
    fn entity(&self, entity: String);
    /// A search across patients: the highest decision block and how many patients it spans.
    fn scope(&self, block: u64, purpose: Purpose, patients: usize);
}

/// A stored resource returned to the client.
#[derive(Debug, Clone)]
pub struct Served {
    /// The resource JSON (with `id` and `meta`).
    pub resource: Value,
    /// Its version.
    pub version_id: i64,
    /// When it was written.
    pub last_updated: DateTime<Utc>,
    /// Whether its anchor was verified on chain, or it is still waiting for its batch.
    pub anchor: anchoring::AnchorState,
    /// How it was verified (what another member's gateway checks again), once anchored.
    pub proof: Option<crate::federation::AnchorProof>,
}

/// Limits and defaults of the record service.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    /// Public base URL of the gateway, without a trailing slash (for `fullUrl`s and links).
    pub base_url: String,
    /// Page size when a search gives no `_count`.
    pub default_page_size: usize,
    /// Largest page a search may ask for.
    pub max_page_size: usize,
    /// Most patients a search without `patient` may span.
    pub max_search_patients: usize,
    /// The custodian of records written by patients and delegates (members write for their
    /// own organisation).
    pub default_custodian: Option<Address>,
    /// Whether an update must name the version it replaces (`If-Match`, or `request.ifMatch`
    /// in a transaction).
    pub require_if_match: bool,
    /// Whether writes are validated as FHIR R4 (off only in the benchmark's baseline).
    pub validate: bool,
    /// Group anchoring of new versions.
    pub anchoring: anchoring::AnchoringSettings,
}

impl RecordSettings {
    /// Refuses a resource that is not valid FHIR R4 (every issue, with its location).
    pub fn check_valid(&self, resource: &Value) -> Result<(), AppError> {
        if self.validate {
            carechain_fhir::validate(resource)?;
        }
        Ok(())
    }

    /// Refuses an update without the version it replaces, when that is required.
    pub fn check_if_match(&self, if_match: Option<i64>) -> Result<(), AppError> {
        if self.require_if_match && if_match.is_none() {
            return Err(AppError::PreconditionRequired(
                "this gateway requires If-Match on update (the version being replaced, e.g. W/\"3\")"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The record service's dependencies: the store, the chain, the consent decisions and keys.
#[derive(Debug)]
pub struct Records {
    pool: PgPool,
    reads: ReadConnections,
    patients: RecordPatients,
    chain: Arc<ChainClient>,
    consent: Arc<ConsentService>,
    kek: SecretKey,
    hasher: SearchTermHasher,
    cursors: CursorCodec,
    settings: RecordSettings,
}

/// The pieces a [`Records`] service is made of.
#[derive(Debug)]
pub struct RecordsParts {
    /// The database pool.
    pub pool: PgPool,
    /// Connections for record reads (see [`crate::db`]).
    pub reads: ReadConnections,
    /// The chain client.
    pub chain: Arc<ChainClient>,
    /// The consent decision service.
    pub consent: Arc<ConsentService>,
    /// The key-encryption key.
    pub kek: SecretKey,
    /// Keyed hashing of search terms.
    pub hasher: SearchTermHasher,
    /// Sealer of paging cursors.
    pub cursors: CursorCodec,
    /// Limits and defaults.
    pub settings: RecordSettings,
}

impl Records {
    /// A record service over `parts`.
    pub fn new(parts: RecordsParts) -> Self {
        let RecordsParts {
            pool,
            reads,
            chain,
            consent,
            kek,
            hasher,
            cursors,
            settings,
        } = parts;
        Self {
            pool,
            reads,
            patients: RecordPatients::default(),
            chain,
            consent,
            kek,
            hasher,
            cursors,
            settings,
        }
    }

    /// A request by `claims` for `purpose`, audited through `audit`.
    pub fn request<'a>(
        &'a self,
        claims: &'a Claims,
        purpose: Purpose,
        audit: &'a (dyn AuditSink + Sync),
    ) -> RecordRequest<'a> {
        RecordRequest {
            records: self,
            claims,
            purpose,
            audit,
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
    /// Connections for record reads.
    pub fn reads(&self) -> &ReadConnections {
        &self.reads
    }
    /// The patients of records read recently.
    pub fn patients(&self) -> &RecordPatients {
        &self.patients
    }
    /// The chain client.
    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }
    /// The consent decision service.
    pub fn consent(&self) -> &ConsentService {
        &self.consent
    }
    /// The key-encryption key.
    pub fn kek(&self) -> &SecretKey {
        &self.kek
    }
    /// Keyed hashing of search terms.
    pub fn hasher(&self) -> &SearchTermHasher {
        &self.hasher
    }
    /// Sealer of paging cursors.
    pub fn cursors(&self) -> &CursorCodec {
        &self.cursors
    }
    /// Limits and defaults.
    pub fn settings(&self) -> &RecordSettings {
        &self.settings
    }
    /// Public base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.settings.base_url
    }

    /// Decrypts a stored version, checks its hash and its on-chain anchor.
    async fn open_verified(&self, stored: &StoredVersion) -> Result<Served, AppError> {
        let key = self.patient_key(&stored.patient).await?;
        self.open_verified_with(stored, &key).await
    }

    /// The data key of a patient whose records exist (erased: gone).
    async fn patient_key(&self, patient: &str) -> Result<SecretKey, AppError> {
        let mut conn = self.pool.acquire().await?;
        active_key(store::data_key(&mut conn, &self.kek, patient, false).await?)
    }

    /// Decrypts a stored version with its patient's key, checks its hash and its on-chain
    /// anchor.
    async fn open_verified_with(
        &self,
        stored: &StoredVersion,
        key: &SecretKey,
    ) -> Result<Served, AppError> {
        self.open_verified_remembering(stored, key, None).await
    }

    /// [`Self::open_verified_with`] for work that opens many versions at once (a research
    /// export): a batch root found anchored once is remembered in `verified_roots` and not
    /// asked of the chain again for the other versions of its batch.
    pub(crate) async fn open_verified_remembering(
        &self,
        stored: &StoredVersion,
        key: &SecretKey,
        verified_roots: Option<&mut std::collections::HashSet<(alloy::primitives::B256, Address)>>,
    ) -> Result<Served, AppError> {
        let sealed = stored.sealed.as_deref().ok_or(AppError::Integrity)?;
        let aad = record_aad(&stored.resource_type, &stored.id, stored.version_id);
        let plain = key.open(sealed, aad.as_bytes()).map_err(|err| match err {
            CryptoError::Tampered => {
                tracing::error!(resource_type = %stored.resource_type, "stored ciphertext failed authentication");
                AppError::Integrity
            }
            other => AppError::internal(other),
        })?;
        let resource: Value = serde_json::from_slice(&plain).map_err(|_| AppError::Integrity)?;
        let hash = canonical_hash(&resource);
        if Some(hash) != stored.version_hash {
            tracing::error!(resource_type = %stored.resource_type, "stored version does not match its hash");
            return Err(AppError::Integrity);
        }
        if stored.anchor_pending {
            let anchor = anchoring::check_pending(&self.settings.anchoring, stored.last_updated)?;
            let mut resource = resource;
            anchor.mark(&mut resource);
            return Ok(Served {
                resource,
                version_id: stored.version_id,
                last_updated: stored.last_updated,
                anchor,
                proof: None,
            });
        }
        let remembered = match (&stored.batch_root, verified_roots.as_deref()) {
            (Some(root), Some(roots)) => {
                roots.contains(&(*root, stored.custodian))
                    && carechain_contracts::merkle::verify(hash, &stored.batch_proof, *root)
            }
            _ => false,
        };
        let anchored = match &stored.batch_root {
            _ if remembered => Ok(true),
            None => self.chain.verify_anchor(hash, stored.custodian).await,
            Some(root) => {
                let anchored = self
                    .chain
                    .verify_inclusion(hash, *root, stored.batch_proof.clone(), stored.custodian)
                    .await;
                if let (Ok(true), Some(roots)) = (&anchored, verified_roots) {
                    roots.insert((*root, stored.custodian));
                }
                anchored
            }
        }
        .map_err(|err| {
            tracing::warn!(%err, "anchor check failed");
            AppError::Unavailable("record verification is unavailable: the chain is unreachable")
        })?;
        if !anchored {
            tracing::error!(resource_type = %stored.resource_type, "stored version is not anchored on chain");
            return Err(AppError::Integrity);
        }
        Ok(Served {
            resource,
            version_id: stored.version_id,
            last_updated: stored.last_updated,
            anchor: anchoring::AnchorState::Verified,
            proof: Some(match &stored.batch_root {
                None => crate::federation::AnchorProof::Single,
                Some(root) => crate::federation::AnchorProof::Batch {
                    root: *root,
                    proof: stored.batch_proof.clone(),
                },
            }),
        })
    }
}

/// One request to the record service: the service, who asks, for which purpose, and where the
/// audit record learns what happened. Every operation of this module takes one.
#[derive(Clone, Copy)]
pub struct RecordRequest<'a> {
    /// The record service.
    pub records: &'a Records,
    /// The signed-in requester.
    pub claims: &'a Claims,
    /// The purpose of use.
    pub purpose: Purpose,
    /// The request's audit record.
    pub audit: &'a (dyn AuditSink + Sync),
}

impl std::fmt::Debug for RecordRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordRequest")
            .field("requester", &self.claims.sub)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl<'a> RecordRequest<'a> {
    /// The same request, audited through `audit` instead.
    pub fn with_audit(self, audit: &'a (dyn AuditSink + Sync)) -> Self {
        Self { audit, ..self }
    }

    /// The same request, for `purpose` instead.
    pub fn for_purpose(self, purpose: Purpose) -> Self {
        Self { purpose, ..self }
    }

    /// The decision key for `action` on the `patient`'s `resource_type`.
    fn key(&self, patient: Address, resource_type: ResourceType, action: Action) -> DecisionKey {
        DecisionKey {
            patient,
            requester: self.claims.sub,
            resource_type,
            action,
            purpose: self.purpose,
        }
    }

    /// Decides `action` on the `patient`'s `resource_type`, records it in the audit record and
    /// turns a denial into 403.
    async fn decide(
        &self,
        patient: Address,
        resource_type: ResourceType,
        action: Action,
    ) -> Result<Decision, AppError> {
        let key = self.key(patient, resource_type, action);
        self.audit.patient(patient);
        let decision = self.records.consent.decide(key).await?;
        verdict(decision, key, self.audit)
    }

    /// Resolve an existing record to its patient and decide the read on chain. A record that
    /// does not exist and a record consent does not cover are answered alike (404).
    async fn decide_read_of_record(
        &self,
        conn: &mut sqlx::PgConnection,
        resource_type: ResourceType,
        id: &str,
    ) -> Result<Decision, AppError> {
        let name = resource_type.code();
        // The record's patient and the indexer's cursor in one query (index metadata only).
        let (patient, cursor) =
            store::patient_of_record_and_cursor(conn, name, id, self.records.chain.chain_id())
                .await?;
        let patient_text = patient.ok_or_else(|| AppError::NotFound(not_found_text(name, id)))?;
        let patient = parse_patient(&patient_text)?;
        self.records
            .patients
            .remember(resource_type, id, &patient_text);
        let key = self.key(patient, resource_type, Action::Read);
        self.audit.patient(patient);
        let decision = self.records.consent.decide_at_cursor(key, cursor).await?;
        verdict(decision, key, self.audit).map_err(|err| conceal(err, resource_type, id))
    }

    /// The organisation that keeps what this request writes: a member's own organisation,
    /// else the configured custodian of patients' own records.
    fn custodian(&self) -> Result<Address, AppError> {
        let org = match (
            self.claims.role,
            self.claims.org,
            self.records.settings.default_custodian,
        ) {
            (Role::Member, Some(org), _) => org,
            (_, _, Some(org)) => org,
            _ => {
                return Err(AppError::Unprocessable(
                    "no custodian organisation is configured for records written by patients"
                        .into(),
                ));
            }
        };
        // A version is accepted only where it will be anchored: by this gateway's anchorer,
        // with the custodian's service key.
        if self.records.chain.service_key(org).is_none() {
            return Err(AppError::Unprocessable(format!(
                "this gateway holds no service key for the custodian organisation {org:#x}, so it \
                 cannot anchor records for it; write at that organisation's gateway"
            )));
        }
        Ok(org)
    }
}

fn parse_patient(text: &str) -> Result<Address, AppError> {
    text.parse()
        .map_err(|_| AppError::internal(std::io::Error::other("stored patient is not an address")))
}

/// Records a decision and turns a denial into 403 (callers conceal it where the request names
/// a record).
fn verdict(
    decision: Decision,
    DecisionKey {
        resource_type,
        action,
        purpose,
        ..
    }: DecisionKey,
    audit: &(dyn AuditSink + Sync),
) -> Result<Decision, AppError> {
    audit.decision(&decision, purpose);
    if decision.allowed {
        Ok(decision)
    } else {
        Err(AppError::Forbidden(format!(
            "consent denies {} of {resource_type} for purpose {purpose}: {}",
            action.long_name(),
            decision.basis
        )))
    }
}

/// A denial of an interaction with a record named by id, answered as the record's absence
/// (see [`AppError::ConcealedDenial`]); other errors pass unchanged.
fn conceal(err: AppError, resource_type: ResourceType, id: &str) -> AppError {
    match err {
        AppError::Forbidden(_) => {
            AppError::ConcealedDenial(not_found_text(resource_type.code(), id))
        }
        other => other,
    }
}

/// The data key of a patient whose records exist (erased: gone).
fn active_key(key: KeyState) -> Result<SecretKey, AppError> {
    match key {
        KeyState::Active(key) => Ok(key),
        KeyState::Erased => Err(AppError::Gone("the patient's records were erased".into())),
        KeyState::Missing => Err(AppError::internal(std::io::Error::other(
            "record without a data key",
        ))),
    }
}

/// A server-assigned logical id: 128 random bits in hex (no PHI, not guessable).
fn new_id() -> String {
    use aes_gcm::aead::{OsRng, rand_core::RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    alloy::hex::encode(bytes)
}

/// Stamps `id` and `meta` on a resource about to be stored.
fn stamp(body: &mut Value, id: &str, version_id: i64, now: DateTime<Utc>) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("id".into(), Value::String(id.to_owned()));
        let mut meta = obj
            .remove("meta")
            .and_then(|m| match m {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        meta.insert("versionId".into(), Value::String(version_id.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(now.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        obj.insert("meta".into(), Value::Object(meta));
    }
}
