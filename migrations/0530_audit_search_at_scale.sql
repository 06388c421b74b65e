-- carechain gateway, compliance: the AuditEvent search stays fast at tens of millions of rows
-- (issue 19, section 3).
--
-- A search page is a keyset walk in (recorded, seq) order over one index, newest or oldest
-- first, merged with the few chain events that match; every filter compliance staff and
-- patients use has an index that starts with it and then gives that order, so a page costs a
-- few index pages whatever the size of the log. The search itself (gateway/src/compliance/
-- events.rs) queries the log and the chain events separately, so that each side's filters
-- reach its own indexes (the union view `gateway_audit_events` stays for other readers).
--
-- The log stays one table: it is append-only and hash-chained in sequence order, every index
-- below is a B-tree that grows by its logarithm, and verification reads it in sequence order by
-- its primary key, so no partition would make a search or a verification cheaper.

-- The references in an AuditEvent's entities (`Patient/0x..`, `Observation/..`): an
-- expression the entity filter and its index share. IMMUTABLE: it reads its argument only.
-- PL/pgSQL so that the planner never inlines it (an inlined body would no longer match the
-- index expression).
CREATE FUNCTION gateway_audit_entities(event jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN ARRAY(SELECT x -> 'what' ->> 'reference'
                 FROM jsonb_array_elements(COALESCE(event -> 'entity', '[]'::jsonb)) x
                 WHERE x -> 'what' ->> 'reference' IS NOT NULL);
END
$$;

-- A patient's access log and an agent's activity, by date, in date order.
DROP INDEX gateway_audit_log_patient;
DROP INDEX gateway_audit_log_agent;
CREATE INDEX gateway_audit_log_patient ON gateway_audit_log (patient, recorded, seq);
CREATE INDEX gateway_audit_log_agent ON gateway_audit_log (agent, recorded, seq);
-- Searches by subtype, outcome (denials, failures) or purpose (ETREAT), in date order.
CREATE INDEX gateway_audit_log_subtype ON gateway_audit_log (subtype, recorded, seq);
CREATE INDEX gateway_audit_log_outcome ON gateway_audit_log (outcome, recorded, seq);
CREATE INDEX gateway_audit_log_purpose ON gateway_audit_log (purpose, recorded, seq);
-- Searches by entity (every access to one record).
CREATE INDEX gateway_audit_log_entities ON gateway_audit_log USING gin (gateway_audit_entities(event));

-- Chain events as AuditEvents: the same view with the raw addresses of the patient and the
-- agent appended, so that a search compares bytes with the event tables' own columns and
-- reaches their indexes (below, and ev_consent_*_patient of the indexer's schema).
CREATE OR REPLACE VIEW gateway_chain_audit_events AS
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'consent-grant'::text AS subtype,
       'C'::text AS action, '0x' || encode(e.actor, 'hex') AS agent,
       '0x' || encode(e.patient, 'hex') AS patient, NULL::text AS purpose,
       'Consent/0x' || encode(e.grantee, 'hex') AS entity, NULL::text AS detail,
       e.actor AS agent_key, e.patient AS patient_key
FROM ev_consent_granted e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'consent-revoke', 'D',
       '0x' || encode(e.actor, 'hex'), '0x' || encode(e.patient, 'hex'), NULL,
       'Consent/0x' || encode(e.grantee, 'hex'), NULL, e.actor, e.patient
FROM ev_consent_revoked e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'delegate-set', 'U',
       '0x' || encode(e.patient, 'hex'), '0x' || encode(e.patient, 'hex'), NULL,
       'RelatedPerson/0x' || encode(e.delegate, 'hex'), 'kind ' || e.kind::text,
       e.patient, e.patient
FROM ev_delegate_set e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'delegate-remove', 'D',
       '0x' || encode(e.patient, 'hex'), '0x' || encode(e.patient, 'hex'), NULL,
       'RelatedPerson/0x' || encode(e.delegate, 'hex'), NULL, e.patient, e.patient
FROM ev_delegate_removed e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'break-glass-open', 'E',
       '0x' || encode(e.opener, 'hex'), '0x' || encode(e.patient, 'hex'), 'ETREAT',
       'Organization/0x' || encode(e.org, 'hex'),
       'session ' || e.session_id::text || ', reason ' || e.reason::text, e.opener, e.patient
FROM ev_break_glass_opened e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'member-status', 'U',
       '0x' || encode(e.member_key, 'hex'), NULL, NULL,
       'Organization/0x' || encode(e.org, 'hex'), 'status ' || e.status::text,
       e.member_key, NULL::bytea
FROM ev_member_status_changed e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'organisation-status', 'U',
       NULL, NULL, NULL, 'Organization/0x' || encode(e.org, 'hex'), 'status ' || e.status::text,
       NULL::bytea, NULL::bytea
FROM ev_organisation_status_changed e;

-- The chain events of a patient or an agent. The two on the consent tables, which grow with
-- every grant, are built by the indexer after a first backfill like its own reader indexes
-- (indexer/src/derive.rs, DEFERRED_EVENT_INDEXES, same definitions).
CREATE INDEX ev_consent_granted_actor ON ev_consent_granted (chain_id, actor);
CREATE INDEX ev_consent_revoked_actor ON ev_consent_revoked (chain_id, actor);
CREATE INDEX ev_delegate_set_patient ON ev_delegate_set (chain_id, patient);
CREATE INDEX ev_delegate_removed_patient ON ev_delegate_removed (chain_id, patient);
CREATE INDEX ev_break_glass_opened_patient ON ev_break_glass_opened (chain_id, patient);
CREATE INDEX ev_break_glass_opened_opener ON ev_break_glass_opened (chain_id, opener);
CREATE INDEX ev_member_status_changed_key ON ev_member_status_changed (chain_id, member_key);
-- Chain events in a date range: the blocks of that range first.
CREATE INDEX gateway_block_times_time ON gateway_block_times (block_time);

-- The break-glass review queue, oldest first, paged.
CREATE INDEX break_glass_sessions_opened ON break_glass_sessions (chain_id, opened_block, session_id);
