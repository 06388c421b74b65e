//! FHIR Bulk Data Access (v2) export for research organisations: the jobs behind
//! `GET [base]/$export`, `[base]/Patient/$export` and `[base]/Group/[id]/$export`
//! (the routes are in `http::research`).
//!
//! - **Who.** A member key of an organisation of kind Research, active on chain at the job's
//!   start block. Everyone else is refused (403) before a job exists.
//! - **Which patients.** Every patient with records of the requested types at this custodian is
//!   decided on chain (`ConsentService::decide_at_block`) for a read of each type, for purpose
//!   `HRESCH`, by the requester, **at the job's start block** (stated in the manifest). Only
//!   the types a patient's consent allows are exported; a patient whose consent allows none is
//!   absent, so a revocation takes effect from the next job on.
//! - **De-identified** by default with `carechain-deid` (HIPAA Safe Harbor, pseudonyms per study,
//!   the same for every custodian holding the consortium's secret); plain output only on a
//!   benchmark gateway (`--bench-export-identified`).
//! - **Jobs** are rows of `research_export_jobs` (no PHI: addresses, study, counts); the worker
//!   writes one NDJSON file per type into its own directory, updates its progress and heartbeat
//!   as it goes, and ends the job `completed` (files listed), `failed` (with the reason) or
//!   `cancelled`. A job whose gateway stopped (a shutdown, a crash) is failed visibly: by the
//!   worker itself at shutdown, or by the first status poll that finds its heartbeat stale.
//!   Completed files expire after `--export-ttl` (deleted, status 404).
//! - **Audit.** Besides every request's own row, each job ends with one AuditEvent
//!   (`export-job`): the requester and organisation, the study, the number of patients and
//!   resources, the start block; no PHI.

use crate::{
    AppState,
    audit::AuditRecord,
    config::ResearchExportConfig,
    consent::DecisionKey,
    error::AppError,
    fhir::resource,
    records::{anchoring, directory::DIRECTORY_COMPARTMENT, store},
};
use alloy::primitives::{Address, B256};
use carechain_contracts::{Action, OrgKind, Purpose, ResourceType};
use carechain_deid::{DeidSecret, Deidentifier, Rules};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::Row;
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Mutex,
    time::Duration,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// A running job whose heartbeat is older than this is taken as orphaned (its gateway stopped).
const STALE_AFTER: Duration = Duration::from_secs(30);
/// How often a running job writes its progress and heartbeat.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// What a client is told to wait between status polls (seconds).
pub const RETRY_AFTER_SECS: u64 = 2;

/// Which Bulk Data endpoint a job was kicked off at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`.
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group(String),
}

impl Level {
    fn code(&self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Patient => "patient",
            Self::Group(_) => "group",
        }
    }
}

/// What a kick-off asks for, checked.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Which endpoint.
    pub level: Level,
    /// The study the pseudonyms are made for.
    pub study: String,
    /// The types exported (`_type`, default: every type of patient data).
    pub types: Vec<ResourceType>,
    /// Only resources changed at or after this instant (`_since`).
    pub since: Option<DateTime<Utc>>,
    /// De-identified (the default).
    pub deidentify: bool,
    /// The kick-off URL (for the manifest's `request`).
    pub request_url: String,
}

/// The types a research export may hold: patient data, less what is not clinical data of the
/// patient (Consent and AuditEvent are the consent layer's own).
pub fn exportable(rt: ResourceType) -> bool {
    resource::storable(rt) && rt != ResourceType::Consent
}

/// A study id: a FHIR id (`[A-Za-z0-9\-.]{1,64}`), so that it is never free text.
pub fn check_study(study: &str) -> Result<(), AppError> {
    resource::validate_id(study).map_err(|_| {
        AppError::Invalid("the study is an id: 1 to 64 letters, digits, `-` or `.`".into())
    })
}

/// The export service of one gateway: settings, the jobs it runs, shutdown.
pub struct Exports {
    secret: Option<DeidSecret>,
    dir: PathBuf,
    max_jobs: u32,
    ttl: Duration,
    allow_identified: bool,
    /// Cancellation of the jobs this gateway runs, by id.
    running: Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("dir", &self.dir)
            .field("max_jobs", &self.max_jobs)
            .finish_non_exhaustive()
    }
}

/// One job as its row holds it.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The job id.
    pub id: String,
    /// Its state: running, completed, failed, cancelled, expired.
    pub state: String,
    /// The study.
    pub study: String,
    /// The start block.
    pub start_block: i64,
    /// Patients exported so far.
    pub patients: i32,
    /// Patients of the cohort (with records of the types).
    pub cohort: i32,
    /// Resources exported so far.
    pub resources: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// The kick-off URL.
    pub request_url: String,
    /// When it was kicked off.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When its files expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its files.
    pub output: Option<Value>,
    /// Whether de-identified.
    pub deidentified: bool,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
}

impl Exports {
    /// The service from the configuration; jobs stop when `shutdown` is cancelled.
    pub fn new(
        config: &ResearchExportConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            secret: config.secret()?,
            dir: config.dir(),
            max_jobs: config.export_max_jobs,
            ttl: Duration::from_secs(config.export_ttl_secs),
            allow_identified: config.bench_export_identified,
            running: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    /// Whether `_deidentify=false` is accepted (benchmark gateways only).
    pub fn allows_identified(&self) -> bool {
        self.allow_identified
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The path of a job's file, when `file` is one of its names (`<Type>.ndjson`).
    pub fn file_path(&self, id: &str, file: &str) -> Option<PathBuf> {
        let (name, ext) = file.split_once('.')?;
        (ext == "ndjson" && name.parse::<ResourceType>().is_ok())
            .then(|| self.job_dir(id).join(file))
    }
}

/// Checks the requester and starts a job: its id and start block. Refuses a requester that is
/// not a member key of an active research organisation at the start block (403), an export
/// while `--export-max-jobs` run (429), and a gateway without the de-identification secret
/// (503).
pub async fn kick_off(
    state: &AppState,
    claims: &crate::auth::Claims,
    request: ExportRequest,
) -> Result<(String, u64), AppError> {
    let exports = state.exports();
    if request.deidentify && exports.secret.is_none() {
        return Err(AppError::Unavailable(
            "research export is not configured on this gateway (no de-identification secret)",
        ));
    }
    if !request.deidentify && !exports.allow_identified {
        return Err(AppError::Forbidden(
            "research exports are de-identified: _deidentify=false is refused".into(),
        ));
    }
    if claims.role != crate::auth::Role::Member {
        return Err(AppError::Forbidden(
            "Bulk Data export is for research organisations' member keys".into(),
        ));
    }
    let start_block = state.consent().current_block()?;
    let org = match state
        .chain()
        .active_organisation(claims.sub, start_block)
        .await
        .map_err(|err| {
            tracing::warn!(%err, "membership check unavailable");
            AppError::Unavailable("the chain is unreachable (fail closed)")
        })? {
        Some((org, OrgKind::Research)) => org,
        Some(_) => {
            return Err(AppError::Forbidden(
                "Bulk Data export is for research organisations only".into(),
            ));
        }
        None => {
            return Err(AppError::Forbidden(
                "the key or its organisation is not active".into(),
            ));
        }
    };
    let pool = state.pool();
    sweep(state).await?;
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM research_export_jobs WHERE state = 'running'")
            .fetch_one(pool)
            .await?;
    if running >= i64::from(exports.max_jobs) {
        return Err(AppError::TooManyRequests(RETRY_AFTER_SECS * 15));
    }
    let id = new_job_id();
    let types: Vec<&str> = request.types.iter().map(|t| t.code()).collect();
    sqlx::query(
        "INSERT INTO research_export_jobs
           (id, requester, org, study, level, group_id, types, since, deidentified, request_url,
            state, start_block, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, now())",
    )
    .bind(&id)
    .bind(format!("{:#x}", claims.sub))
    .bind(format!("{org:#x}"))
    .bind(&request.study)
    .bind(request.level.code())
    .bind(match &request.level {
        Level::Group(g) => Some(g.clone()),
        _ => None,
    })
    .bind(&types)
    .bind(request.since)
    .bind(request.deidentify)
    .bind(&request.request_url)
    .bind(i64::try_from(start_block).map_err(AppError::internal)?)
    .execute(pool)
    .await?;
    let cancel = exports.shutdown.child_token();
    exports
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), cancel.clone());
    let job = Job {
        id: id.clone(),
        requester: claims.sub,
        org,
        start_block,
        request,
    };
    tokio::spawn(run(state.clone(), job, cancel));
    Ok((id, start_block))
}

fn new_job_id() -> String {
    use aes_gcm::aead::{OsRng, rand_core::RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    alloy::hex::encode(bytes)
}

/// A job's row, for its requester only (anyone else: `None`, answered as absent). A running
/// job whose heartbeat is stale is failed first; a completed one past its expiry is expired.
pub async fn status(
    state: &AppState,
    claims: &crate::auth::Claims,
    id: &str,
) -> Result<Option<JobRow>, AppError> {
    sweep(state).await?;
    let row = sqlx::query(
        "SELECT id, state, study, start_block, patients, cohort, resources, error, request_url,
                created_at, finished_at, expires_at, output, deidentified, heartbeat_at
         FROM research_export_jobs WHERE id = $1 AND requester = $2",
    )
    .bind(id)
    .bind(format!("{:#x}", claims.sub))
    .fetch_optional(state.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(JobRow {
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        study: row.try_get("study")?,
        start_block: row.try_get("start_block")?,
        patients: row.try_get("patients")?,
        cohort: row.try_get("cohort")?,
        resources: row.try_get("resources")?,
        error: row.try_get("error")?,
        request_url: row.try_get("request_url")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        expires_at: row.try_get("expires_at")?,
        output: row.try_get("output")?,
        deidentified: row.try_get("deidentified")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
    }))
}

/// `DELETE` of a status URL: a running job stops, a completed one's files are deleted; either
/// way the job is `cancelled` and its status URL answers 404 from then on. `false`: no such
/// job of this requester (or already cancelled or expired).
pub async fn cancel(
    state: &AppState,
    claims: &crate::auth::Claims,
    id: &str,
) -> Result<bool, AppError> {
    let Some(job) = status(state, claims, id).await? else {
        return Ok(false);
    };
    if !matches!(job.state.as_str(), "running" | "completed" | "failed") {
        return Ok(false);
    }
    let exports = state.exports();
    let updated = sqlx::query(
        "UPDATE research_export_jobs SET state = 'cancelled', finished_at = coalesce(finished_at, now())
         WHERE id = $1 AND state IN ('running', 'completed', 'failed')",
    )
    .bind(id)
    .execute(state.pool())
    .await?
    .rows_affected();
    if let Some(token) = exports
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
    {
        token.cancel();
    }
    remove_dir(&exports.job_dir(id)).await;
    Ok(updated > 0)
}

async fn remove_dir(dir: &std::path::Path) {
    if let Err(err) = tokio::fs::remove_dir_all(dir).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%err, "an export directory could not be removed");
    }
}

/// Fails running jobs whose gateway stopped (stale heartbeat) and expires completed jobs past
/// their time (their files deleted).
pub async fn sweep(state: &AppState) -> Result<(), AppError> {
    let pool = state.pool();
    sqlx::query(
        "UPDATE research_export_jobs
         SET state = 'failed', finished_at = now(),
             error = 'the gateway running the job stopped before it finished; kick off a new export'
         WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1)",
    )
    .bind(STALE_AFTER.as_secs_f64())
    .execute(pool)
    .await?;
    let expired: Vec<String> = sqlx::query_scalar(
        "UPDATE research_export_jobs SET state = 'expired'
         WHERE state = 'completed' AND expires_at <= now() RETURNING id",
    )
    .fetch_all(pool)
    .await?;
    for id in expired {
        remove_dir(&state.exports().job_dir(&id)).await;
    }
    Ok(())
}

/// Sweeps every minute until shutdown (files expire even when nobody polls).
pub fn spawn_sweeper(state: AppState) {
    let shutdown = state.exports().shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            if let Err(err) = sweep(&state).await {
                tracing::warn!(%err, "export sweep failed");
            }
        }
    });
}

/// The Bulk Data manifest of a completed job.
pub fn manifest(base_url: &str, job: &JobRow) -> Value {
    let output: Vec<Value> = job
        .output
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            json!({
                "type": f["type"],
                "url": format!("{base_url}/$export-file/{}/{}", job.id, f["file"].as_str().unwrap_or_default()),
                "count": f["count"],
            })
        })
        .collect();
    json!({
        "transactionTime": job.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "request": job.request_url,
        "requiresAccessToken": true,
        "output": output,
        "error": [],
        "extension": {
            "urn:carechain:consent-block": job.start_block,
            "urn:carechain:study": job.study,
            "urn:carechain:deidentified": job.deidentified,
            "urn:carechain:patients": job.patients,
            "urn:carechain:expires": job.expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }
    })
}

/// What the worker needs of a kicked-off job.
struct Job {
    id: String,
    requester: Address,
    org: Address,
    start_block: u64,
    request: ExportRequest,
}

/// How a job ended.
enum Ending {
    Completed { patients: i32, resources: i64 },
    Cancelled,
    Stopped,
}

/// Runs a job to its end and records it (row and AuditEvent).
async fn run(state: AppState, job: Job, cancel: CancellationToken) {
    let outcome = export(&state, &job, &cancel).await;
    let pool = state.pool();
    let (status, detail, patients, resources) = match outcome {
        Ok(Ending::Completed {
            patients,
            resources,
        }) => (200, "completed", patients, resources),
        Ok(Ending::Cancelled) => {
            // Cancelled (or failed by a sweep) while running: nothing of it is kept.
            remove_dir(&state.exports().job_dir(&job.id)).await;
            (204, "cancelled", 0, 0)
        }
        Ok(Ending::Stopped) => {
            let _ = sqlx::query(
                "UPDATE research_export_jobs SET state = 'failed', finished_at = now(),
                   error = 'the gateway shut down before the job finished; kick off a new export'
                 WHERE id = $1 AND state = 'running'",
            )
            .bind(&job.id)
            .execute(pool)
            .await;
            (503, "stopped by a shutdown", 0, 0)
        }
        Err(err) => {
            tracing::error!(%err, job = %job.id, "research export failed");
            let reason = match &err {
                AppError::Unavailable(why) => (*why).to_owned(),
                AppError::Integrity => "a stored record failed its integrity check".to_owned(),
                _ => "the export failed on this gateway".to_owned(),
            };
            let _ = sqlx::query(
                "UPDATE research_export_jobs SET state = 'failed', finished_at = now(), error = $2
                 WHERE id = $1 AND state = 'running'",
            )
            .bind(&job.id)
            .bind(format!("{reason}; kick off a new export"))
            .execute(pool)
            .await;
            remove_dir(&state.exports().job_dir(&job.id)).await;
            (500, "failed", 0, 0)
        }
    };
    state
        .exports()
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&job.id);
    let record = AuditRecord {
        subtype: "export-job".into(),
        action: 'E',
        status,
        agent: Some(format!("{:#x}", job.requester)),
        agent_org: Some(format!("{:#x}", job.org)),
        via_org: None,
        patient: None,
        entity: Some(format!("$export job {}", job.id)),
        purpose: Some(Purpose::Research.code().to_owned()),
        consent_block: Some(job.start_block),
        basis: None,
        detail: Some(format!(
            "study {}: {detail}, {patients} patients, {resources} resources, {}",
            job.request.study,
            if job.request.deidentify {
                "de-identified"
            } else {
                "identified (benchmark)"
            }
        )),
        method: "GET".into(),
        recorded: Utc::now(),
    };
    if let Err(err) = state.audit().append(record).await {
        tracing::error!(%err, job = %job.id, "the export job's audit row was not written");
    }
}

/// One type's output file while it is written.
struct OutputFile {
    writer: tokio::io::BufWriter<tokio::fs::File>,
    count: i64,
}

/// The export itself: the cohort, its decisions at the start block, the files.
async fn export(
    state: &AppState,
    job: &Job,
    cancel: &CancellationToken,
) -> Result<Ending, AppError> {
    let exports = state.exports();
    let records = state.records();
    let pool = state.pool();
    let request = &job.request;
    let dir = exports.job_dir(&job.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(AppError::internal)?;
    let deid = match (&exports.secret, request.deidentify) {
        (Some(secret), true) => {
            let today = carechain_deid::Date::today();
            Some(
                Deidentifier::new(
                    Rules::safe_harbor(),
                    secret,
                    &request.study,
                    &format!("{:#x}", job.org_custodian(state)),
                )
                .map_err(AppError::internal)?
                .with_reference_date(today),
            )
        }
        _ => None,
    };
    let types: Vec<&str> = request.types.iter().map(|t| t.code()).collect();
    // The cohort: every patient with current records of the types (index metadata only).
    let cohort: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT patient, array_agg(DISTINCT resource_type) FROM gateway_resources
         WHERE resource_type = ANY($1) AND patient <> $2 AND NOT deleted
           AND ($3::timestamptz IS NULL OR last_updated >= $3)
         GROUP BY patient ORDER BY patient",
    )
    .bind(&types)
    .bind(DIRECTORY_COMPARTMENT)
    .bind(request.since)
    .fetch_all(pool)
    .await?;
    sqlx::query("UPDATE research_export_jobs SET cohort = $2, heartbeat_at = now() WHERE id = $1")
        .bind(&job.id)
        .bind(i32::try_from(cohort.len()).unwrap_or(i32::MAX))
        .execute(pool)
        .await?;
    let mut files: HashMap<ResourceType, OutputFile> = HashMap::new();
    let mut verified_roots: HashSet<(B256, Address)> = HashSet::new();
    let (mut patients, mut resources) = (0i32, 0i64);
    let mut last_progress = std::time::Instant::now();
    let mut line = Vec::with_capacity(4096);
    for (patient_text, patient_types) in &cohort {
        if cancel.is_cancelled() {
            return Ok(if exports.shutdown.is_cancelled() {
                Ending::Stopped
            } else {
                Ending::Cancelled
            });
        }
        let Ok(patient) = patient_text.parse::<Address>() else {
            continue;
        };
        // The types this patient's consent lets the requester read for research, decided at
        // the start block.
        let mut allowed = Vec::new();
        for rt in &request.types {
            if !patient_types.iter().any(|t| t == rt.code()) {
                continue;
            }
            let key = DecisionKey {
                patient,
                requester: job.requester,
                resource_type: *rt,
                action: Action::Read,
                purpose: Purpose::Research,
            };
            if state
                .consent()
                .decide_at_block(key, job.start_block)
                .await?
                .allowed
            {
                allowed.push(*rt);
            }
        }
        if allowed.is_empty() {
            continue;
        }
        let key = {
            let mut conn = pool.acquire().await?;
            match store::data_key(&mut conn, records.kek(), patient_text, false).await? {
                store::KeyState::Active(key) => key,
                // Erased or nothing stored: nothing to export.
                _ => continue,
            }
        };
        let scope = deid
            .as_ref()
            .map(|d| d.patient(patient_text))
            .transpose()
            .map_err(AppError::internal)?;
        let mut exported_any = false;
        for rt in allowed {
            let versions =
                store::patient_current_versions(pool, rt.code(), patient_text, request.since)
                    .await?;
            for stored in versions {
                let served = records
                    .open_verified_remembering(&stored, &key, Some(&mut verified_roots))
                    .await?;
                let mut resource = served.resource;
                anchoring::strip_mark(&mut resource);
                let out = match &scope {
                    Some(scope) => match scope
                        .deidentify_owned(resource)
                        .map_err(AppError::internal)?
                    {
                        Some(out) => out,
                        None => continue,
                    },
                    None => resource,
                };
                let file = match files.entry(rt) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let f = tokio::fs::File::create(dir.join(format!("{}.ndjson", rt.code())))
                            .await
                            .map_err(AppError::internal)?;
                        e.insert(OutputFile {
                            writer: tokio::io::BufWriter::with_capacity(256 * 1024, f),
                            count: 0,
                        })
                    }
                };
                line.clear();
                serde_json::to_writer(&mut line, &out).map_err(AppError::internal)?;
                line.push(b'\n');
                file.writer
                    .write_all(&line)
                    .await
                    .map_err(AppError::internal)?;
                file.count += 1;
                resources += 1;
                exported_any = true;
                // Progress and heartbeat within a patient too: one patient's records may take
                // longer than the heartbeat's staleness.
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = std::time::Instant::now();
                    if !heartbeat(pool, &job.id, patients, resources).await? {
                        return Ok(Ending::Cancelled);
                    }
                }
            }
        }
        if exported_any {
            patients += 1;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = std::time::Instant::now();
            if !heartbeat(pool, &job.id, patients, resources).await? {
                return Ok(Ending::Cancelled);
            }
        }
    }
    let mut output = Vec::new();
    let mut written: Vec<(ResourceType, OutputFile)> = files.into_iter().collect();
    written.sort_by_key(|(rt, _)| rt.index());
    for (rt, mut file) in written {
        file.writer.flush().await.map_err(AppError::internal)?;
        file.writer
            .get_ref()
            .sync_all()
            .await
            .map_err(AppError::internal)?;
        output.push(json!({"type": rt.code(), "file": format!("{}.ndjson", rt.code()), "count": file.count}));
    }
    let ttl = exports.ttl.as_secs_f64();
    let done = sqlx::query(
        "UPDATE research_export_jobs
         SET state = 'completed', patients = $2, resources = $3, output = $4, finished_at = now(),
             expires_at = now() + make_interval(secs => $5), heartbeat_at = now()
         WHERE id = $1 AND state = 'running'",
    )
    .bind(&job.id)
    .bind(patients)
    .bind(resources)
    .bind(Value::Array(output))
    .bind(ttl)
    .execute(pool)
    .await?
    .rows_affected();
    if done == 0 {
        // Cancelled while the last files were written.
        remove_dir(&dir).await;
        return Ok(Ending::Cancelled);
    }
    Ok(Ending::Completed {
        patients,
        resources,
    })
}

/// Writes a running job's progress and heartbeat. `false`: the job is no longer running (it was
/// cancelled, possibly through another gateway, or failed by a sweep): the worker stops.
async fn heartbeat(
    pool: &sqlx::PgPool,
    id: &str,
    patients: i32,
    resources: i64,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE research_export_jobs SET patients = $2, resources = $3, heartbeat_at = now()
         WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(patients)
    .bind(resources)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(updated > 0)
}

impl Job {
    /// The custodian the pseudonymous resource ids are made for: this gateway's organisation.
    fn org_custodian(&self, state: &AppState) -> Address {
        state
            .records()
            .settings()
            .default_custodian
            .or_else(|| state.chain().custodians().next().copied())
            .unwrap_or_default()
    }
}
