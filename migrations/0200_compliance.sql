-- carechain gateway, compliance: audit anchoring, break-glass reviews, and the audit index
-- compliance staff and patients search.
--
-- `gateway_audit_anchors` records which AuditAnchor transaction anchored which range of
-- `gateway_audit_log`. A row is written as 'pending' (committed) before its transaction is
-- sent, and becomes 'anchored' with the transaction's hash, block and batch id once mined, or
-- when reconciliation at start finds the batch among the indexer's `audit_batches`. Ranges
-- never overlap (the contract refuses a range that does not start at its `nextSeq`).

CREATE TABLE gateway_audit_anchors (
    from_seq     BIGINT      PRIMARY KEY CHECK (from_seq > 0),
    to_seq       BIGINT      NOT NULL UNIQUE CHECK (to_seq >= from_seq),
    root         BYTEA       NOT NULL,
    state        TEXT        NOT NULL CHECK (state IN ('pending', 'anchored')),
    -- The key that anchored (or is anchoring) the range.
    gateway      BYTEA       NOT NULL,
    tx_hash      BYTEA,
    batch_id     BIGINT,
    block_number BIGINT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    anchored_at  TIMESTAMPTZ,
    CHECK ((state = 'anchored') = (tx_hash IS NOT NULL AND batch_id IS NOT NULL AND block_number IS NOT NULL))
);

-- Timestamps of the blocks whose events are served as AuditEvents (filled by the gateway from
-- the chain; the indexer does not store block times).
CREATE TABLE gateway_block_times (
    chain_id     BIGINT      NOT NULL,
    block_number BIGINT      NOT NULL,
    block_time   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);

-- Compliance reviews of break-glass sessions (one per session). The review request itself is
-- an AuditEvent (`audit_seq`).
CREATE TABLE gateway_break_glass_reviews (
    chain_id    BIGINT         NOT NULL,
    session_id  NUMERIC(20, 0) NOT NULL,
    reviewer    TEXT           NOT NULL,
    reviewer_org TEXT          NOT NULL,
    outcome     TEXT           NOT NULL,
    reviewed_at TIMESTAMPTZ    NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, session_id)
);

CREATE INDEX gateway_audit_log_agent ON gateway_audit_log (agent, seq);
CREATE INDEX gateway_audit_log_recorded ON gateway_audit_log (recorded, seq);

-- Chain events served as AuditEvents: consent and delegate changes, break-glass openings,
-- organisation and member status changes (suspensions). Addresses as lower-case hex.
CREATE VIEW gateway_chain_audit_events AS
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'consent-grant'::text AS subtype,
       'C'::text AS action, '0x' || encode(e.actor, 'hex') AS agent,
       '0x' || encode(e.patient, 'hex') AS patient, NULL::text AS purpose,
       'Consent/0x' || encode(e.grantee, 'hex') AS entity, NULL::text AS detail
FROM ev_consent_granted e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'consent-revoke', 'D',
       '0x' || encode(e.actor, 'hex'), '0x' || encode(e.patient, 'hex'), NULL,
       'Consent/0x' || encode(e.grantee, 'hex'), NULL
FROM ev_consent_revoked e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'delegate-set', 'U',
       '0x' || encode(e.patient, 'hex'), '0x' || encode(e.patient, 'hex'), NULL,
       'RelatedPerson/0x' || encode(e.delegate, 'hex'), 'kind ' || e.kind::text
FROM ev_delegate_set e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'delegate-remove', 'D',
       '0x' || encode(e.patient, 'hex'), '0x' || encode(e.patient, 'hex'), NULL,
       'RelatedPerson/0x' || encode(e.delegate, 'hex'), NULL
FROM ev_delegate_removed e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'break-glass-open', 'E',
       '0x' || encode(e.opener, 'hex'), '0x' || encode(e.patient, 'hex'), 'ETREAT',
       'Organization/0x' || encode(e.org, 'hex'),
       'session ' || e.session_id::text || ', reason ' || e.reason::text
FROM ev_break_glass_opened e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'member-status', 'U',
       '0x' || encode(e.member_key, 'hex'), NULL, NULL,
       'Organization/0x' || encode(e.org, 'hex'), 'status ' || e.status::text
FROM ev_member_status_changed e
UNION ALL
SELECT e.chain_id, e.block_number, e.log_index, e.tx_hash, 'organisation-status', 'U',
       NULL, NULL, NULL, 'Organization/0x' || encode(e.org, 'hex'), 'status ' || e.status::text
FROM ev_organisation_status_changed e;

-- One searchable stream: the gateway's audit rows and the chain events (once their block time
-- is known). `id` is the AuditEvent id: the sequence number, or `chain-<chain>-<block>-<log>`.
CREATE VIEW gateway_audit_events AS
SELECT l.seq::text AS id, l.recorded, l.subtype, l.event ->> 'action' AS action, l.outcome,
       l.agent, l.patient, l.purpose,
       ARRAY(SELECT x -> 'what' ->> 'reference' FROM jsonb_array_elements(l.event -> 'entity') x)
         AS entities,
       l.event, NULL::bigint AS chain_id, NULL::bigint AS block_number,
       NULL::integer AS log_index, NULL::bytea AS tx_hash, NULL::text AS detail
FROM gateway_audit_log l
UNION ALL
SELECT 'chain-' || c.chain_id::text || '-' || c.block_number::text || '-' || c.log_index::text,
       t.block_time, c.subtype, c.action, '0', c.agent, c.patient, c.purpose,
       ARRAY[c.entity] || CASE WHEN c.patient IS NULL THEN ARRAY[]::text[]
                               ELSE ARRAY['Patient/' || c.patient] END,
       NULL::jsonb, c.chain_id, c.block_number, c.log_index, c.tx_hash, c.detail
FROM gateway_chain_audit_events c
JOIN gateway_block_times t ON t.chain_id = c.chain_id AND t.block_number = c.block_number;
