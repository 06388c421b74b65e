-- Issue 21: FHIR Bulk Data export jobs for research organisations.
--
-- A job is kicked off by a research organisation's member key, runs in the background on the
-- gateway that accepted it, writes NDJSON files (de-identified by default) to the gateway's
-- export directory and is polled by its status URL. The rows hold no PHI: who asked (address,
-- organisation), the study id, the types, the counts, the consent block; the files' names are
-- `<type>.ndjson`. A gateway that starts finds the jobs it left running and fails them visibly
-- (state `failed`, with the reason) rather than leaving them polling forever.

CREATE TABLE research_export_jobs (
    id            TEXT        PRIMARY KEY,
    -- The requester (lower-case address) and its organisation.
    requester     TEXT        NOT NULL,
    org           TEXT        NOT NULL,
    study         TEXT        NOT NULL,
    -- `system` ([base]/$export), `patient` (Patient/$export) or `group` (Group/[id]/$export).
    level         TEXT        NOT NULL CHECK (level IN ('system', 'patient', 'group')),
    group_id      TEXT,
    types         TEXT[]      NOT NULL,
    since         TIMESTAMPTZ,
    deidentified  BOOLEAN     NOT NULL,
    -- The kick-off URL, for the manifest's `request`.
    request_url   TEXT        NOT NULL,
    state         TEXT        NOT NULL
                  CHECK (state IN ('running', 'completed', 'failed', 'cancelled', 'expired')),
    -- The block every consent decision of the job was made at.
    start_block   BIGINT      NOT NULL,
    -- Progress while running, totals once completed.
    patients      INTEGER     NOT NULL DEFAULT 0,
    cohort        INTEGER     NOT NULL DEFAULT 0,
    resources     BIGINT      NOT NULL DEFAULT 0,
    -- Why a job failed (PHI-free text).
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Written with the progress while running: a stale heartbeat means the gateway stopped.
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ,
    -- The completed job's output: [{"type": ..., "file": ..., "count": ...}].
    output        JSONB
);
CREATE INDEX research_export_jobs_active ON research_export_jobs (state) WHERE state = 'running';
CREATE INDEX research_export_jobs_expiry ON research_export_jobs (expires_at) WHERE state = 'completed';

GRANT SELECT, INSERT, UPDATE, DELETE ON research_export_jobs TO carechain_gateway;
