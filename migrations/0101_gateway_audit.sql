-- carechain gateway: the append-only, hash-chained audit log.
--
-- One row per request (IHE BALP-shaped FHIR AuditEvent in `event`). `seq` is global and
-- contiguous from 1; `hash = keccak256(prev_hash || seq as 8 bytes big-endian || JCS(event))`
-- with 32 zero bytes as the first `prev_hash`. AuditAnchor anchors Merkle roots over ranges of
-- `hash`. Rows can be inserted and read, never changed: a trigger refuses UPDATE, DELETE and
-- TRUNCATE for every role, and the gateway writes as `carechain_gateway_audit`, which holds
-- only INSERT and SELECT.

CREATE TABLE gateway_audit_log (
    seq           BIGINT      PRIMARY KEY CHECK (seq > 0),
    recorded      TIMESTAMPTZ NOT NULL,
    subtype       TEXT        NOT NULL,
    outcome       TEXT        NOT NULL,
    http_status   INTEGER     NOT NULL,
    agent         TEXT,
    patient       TEXT,
    purpose       TEXT,
    consent_block BIGINT,
    event         JSONB       NOT NULL,
    prev_hash     BYTEA       NOT NULL,
    hash          BYTEA       NOT NULL UNIQUE
);
CREATE INDEX gateway_audit_log_patient ON gateway_audit_log (patient, seq);

CREATE FUNCTION gateway_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'gateway_audit_log is append-only (% refused)', TG_OP;
END
$$;

CREATE TRIGGER gateway_audit_log_no_change
    BEFORE UPDATE OR DELETE ON gateway_audit_log
    FOR EACH ROW EXECUTE FUNCTION gateway_audit_log_append_only();
CREATE TRIGGER gateway_audit_log_no_truncate
    BEFORE TRUNCATE ON gateway_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION gateway_audit_log_append_only();

-- Roles are cluster-wide: several databases (tests) may race to create it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'carechain_gateway_audit') THEN
        CREATE ROLE carechain_gateway_audit NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

REVOKE ALL ON gateway_audit_log FROM PUBLIC;
GRANT SELECT, INSERT ON gateway_audit_log TO carechain_gateway_audit;
-- The role that runs the migrations (the gateway's) may switch to the audit role.
DO $$
BEGIN
    EXECUTE format('GRANT carechain_gateway_audit TO %I', current_user);
EXCEPTION WHEN duplicate_object OR invalid_grant_operation THEN
    NULL;
END
$$;
