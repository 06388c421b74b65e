-- carechain indexer schema.
--
-- Three kinds of tables:
--
--   * indexer bookkeeping: `indexer_deployments`, `indexer_cursor`, `indexer_blocks`;
--   * the event log: one `ev_*` table per contract event, keyed by
--     (chain_id, block_number, log_index), holding the transaction hash and every decoded
--     field in a typed column. The event log is the source of truth;
--   * current state derived from the event log (`organisations`, `members`, `consents`,
--     `delegates`, `break_glass_sessions`, `record_anchors`, `record_batches`,
--     `audit_gateways`, `audit_batches`). The indexer rewrites these in the same transaction
--     as the events they derive from while following the chain (in batches just behind the
--     cursor during backfill), and recomputes them from the event log after a reorg. Readers
--     (the gateway) may rely on them being the fold of the event log up to
--     `indexer_derived_cursor`.
--
-- Column conventions:
--   * addresses and hashes are BYTEA (20 and 32 bytes, raw, not hex);
--   * Solidity enums are SMALLINT holding the Solidity value (see the interfaces in
--     contracts/interfaces and carechain_contracts::enums);
--   * uint8/uint16 are SMALLINT/INTEGER, uint32/uint40 are BIGINT;
--   * uint64 bitmaps (resource types) are BIGINT holding the same 64 bits (two's complement
--     if bit 63 were ever set; the table uses bits 0..13 today);
--   * uint64 counters and identifiers are NUMERIC(20, 0), uint256 is NUMERIC(78, 0);
--   * strings are TEXT; a NUL character (which PostgreSQL cannot store) is replaced by U+FFFD.
--
-- Change notifications (PostgreSQL NOTIFY, delivered on commit) so readers can drop caches:
-- (`EIP712DomainChanged` of ConsentRegistry is not stored: the domain is immutable, the event is
-- never emitted.)
--
--   * `carechain_consent`    {"chainId":..,"block":..,"patient":"0x.."}      consent, delegate or
--                                                                           break-glass change
--   * `carechain_membership` {"chainId":..,"block":..,"org":"0x.."}          organisation or key
--   * `carechain_anchor`     {"chainId":..,"block":..,"org":"0x.."}          record anchor, or
--                            {"chainId":..,"block":..,"gateway":"0x.."}      audit batch
--   * any channel            {"chainId":..,"block":..,"all":true}            drop everything (a
--     commit touching very many subjects, or a reorg rollback to "block").

-- ---------------------------------------------------------------------------------------------
-- Bookkeeping
-- ---------------------------------------------------------------------------------------------

-- The deployment a database indexes: the indexer refuses to run against a manifest that
-- names other contracts for the same chain.
CREATE TABLE indexer_deployments (
    chain_id          BIGINT      PRIMARY KEY,
    deployment_block  BIGINT      NOT NULL,
    provider_registry BYTEA       NOT NULL,
    consent_registry  BYTEA       NOT NULL,
    record_registry   BYTEA       NOT NULL,
    audit_anchor      BYTEA       NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The last block whose events are all in the database. Written in the same transaction as
-- those events: every block <= block_number is complete, nothing above it is present.
CREATE TABLE indexer_cursor (
    chain_id     BIGINT      PRIMARY KEY REFERENCES indexer_deployments (chain_id),
    block_number BIGINT      NOT NULL,
    -- Hash of block `block_number`, NULL before the first block is indexed.
    block_hash   BYTEA,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The last block folded into the derived state tables (never above `indexer_cursor`). While
-- following the chain it moves with the cursor in the same transaction; during backfill a
-- second connection folds the committed ranges in batches, so it trails the cursor briefly.
-- The derived tables are always exactly the fold of the event log up to this block.
CREATE TABLE indexer_derived_cursor (
    chain_id     BIGINT      PRIMARY KEY REFERENCES indexer_deployments (chain_id),
    block_number BIGINT      NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Hashes of indexed blocks within the reorg window below the cursor (every live block, and
-- the edges and log-bearing blocks of backfill ranges). A reorg is found by comparing these
-- with the chain; older rows are pruned.
CREATE TABLE indexer_blocks (
    chain_id     BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash   BYTEA  NOT NULL,
    -- Parent hash when known (live blocks and range edges), else NULL.
    parent_hash  BYTEA,
    PRIMARY KEY (chain_id, block_number)
);

-- ---------------------------------------------------------------------------------------------
-- Event log: ProviderRegistry
-- ---------------------------------------------------------------------------------------------

-- OrganisationAdmitted(address indexed org, OrgKind kind, string name)
CREATE TABLE ev_organisation_admitted (
    chain_id     BIGINT   NOT NULL,
    block_number BIGINT   NOT NULL,
    log_index    INTEGER  NOT NULL,
    tx_hash      BYTEA    NOT NULL,
    org          BYTEA    NOT NULL,
    kind         SMALLINT NOT NULL,
    name         TEXT     NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- OrganisationStatusChanged(address indexed org, Status status)
CREATE TABLE ev_organisation_status_changed (
    chain_id     BIGINT   NOT NULL,
    block_number BIGINT   NOT NULL,
    log_index    INTEGER  NOT NULL,
    tx_hash      BYTEA    NOT NULL,
    org          BYTEA    NOT NULL,
    status       SMALLINT NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- MemberAdded(address indexed org, address indexed key, MemberRole role)
CREATE TABLE ev_member_added (
    chain_id     BIGINT   NOT NULL,
    block_number BIGINT   NOT NULL,
    log_index    INTEGER  NOT NULL,
    tx_hash      BYTEA    NOT NULL,
    org          BYTEA    NOT NULL,
    member_key   BYTEA    NOT NULL,
    role         SMALLINT NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- MemberStatusChanged(address indexed org, address indexed key, Status status)
CREATE TABLE ev_member_status_changed (
    chain_id     BIGINT   NOT NULL,
    block_number BIGINT   NOT NULL,
    log_index    INTEGER  NOT NULL,
    tx_hash      BYTEA    NOT NULL,
    org          BYTEA    NOT NULL,
    member_key   BYTEA    NOT NULL,
    status       SMALLINT NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- MemberKeyRotated(address indexed org, address indexed oldKey, address indexed newKey)
CREATE TABLE ev_member_key_rotated (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    org          BYTEA   NOT NULL,
    old_key      BYTEA   NOT NULL,
    new_key      BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- MembershipMirrorSet(address indexed mirror)
CREATE TABLE ev_membership_mirror_set (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    mirror       BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- ---------------------------------------------------------------------------------------------
-- Event log: OpenZeppelin AccessControl (ProviderRegistry, ConsentRegistry, AuditAnchor); the
-- emitting contract is in `contract`.
-- ---------------------------------------------------------------------------------------------

-- RoleGranted(bytes32 indexed role, address indexed account, address indexed sender)
CREATE TABLE ev_role_granted (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    contract     BYTEA   NOT NULL,
    role         BYTEA   NOT NULL,
    account      BYTEA   NOT NULL,
    sender       BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender)
CREATE TABLE ev_role_revoked (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    contract     BYTEA   NOT NULL,
    role         BYTEA   NOT NULL,
    account      BYTEA   NOT NULL,
    sender       BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- RoleAdminChanged(bytes32 indexed role, bytes32 indexed previousAdminRole,
--   bytes32 indexed newAdminRole)
CREATE TABLE ev_role_admin_changed (
    chain_id            BIGINT  NOT NULL,
    block_number        BIGINT  NOT NULL,
    log_index           INTEGER NOT NULL,
    tx_hash             BYTEA   NOT NULL,
    contract            BYTEA   NOT NULL,
    role                BYTEA   NOT NULL,
    previous_admin_role BYTEA   NOT NULL,
    new_admin_role      BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- ---------------------------------------------------------------------------------------------
-- Event log: ConsentRegistry
-- ---------------------------------------------------------------------------------------------

-- ConsentGranted(address indexed patient, address indexed grantee, address indexed actor,
--   uint64 resourceTypes, uint8 actions, uint16 purposes, uint40 validFrom, uint40 validUntil,
--   bytes32 consentHash)
CREATE TABLE ev_consent_granted (
    chain_id       BIGINT   NOT NULL,
    block_number   BIGINT   NOT NULL,
    log_index      INTEGER  NOT NULL,
    tx_hash        BYTEA    NOT NULL,
    patient        BYTEA    NOT NULL,
    grantee        BYTEA    NOT NULL,
    actor          BYTEA    NOT NULL,
    resource_types BIGINT   NOT NULL,
    actions        SMALLINT NOT NULL,
    purposes       INTEGER  NOT NULL,
    valid_from     BIGINT   NOT NULL,
    valid_until    BIGINT   NOT NULL,
    consent_hash   BYTEA    NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_consent_granted_patient ON ev_consent_granted (chain_id, patient, grantee);

-- ConsentRevoked(address indexed patient, address indexed grantee, address indexed actor)
CREATE TABLE ev_consent_revoked (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    patient      BYTEA   NOT NULL,
    grantee      BYTEA   NOT NULL,
    actor        BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_consent_revoked_patient ON ev_consent_revoked (chain_id, patient, grantee);

-- NoncesInvalidated(address indexed patient, address indexed actor, uint256 newNonce)
CREATE TABLE ev_nonces_invalidated (
    chain_id     BIGINT         NOT NULL,
    block_number BIGINT         NOT NULL,
    log_index    INTEGER        NOT NULL,
    tx_hash      BYTEA          NOT NULL,
    patient      BYTEA          NOT NULL,
    actor        BYTEA          NOT NULL,
    new_nonce    NUMERIC(78, 0) NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- DelegateSet(address indexed patient, address indexed delegate, DelegateKind kind,
--   uint40 validUntil)
CREATE TABLE ev_delegate_set (
    chain_id     BIGINT   NOT NULL,
    block_number BIGINT   NOT NULL,
    log_index    INTEGER  NOT NULL,
    tx_hash      BYTEA    NOT NULL,
    patient      BYTEA    NOT NULL,
    delegate     BYTEA    NOT NULL,
    kind         SMALLINT NOT NULL,
    valid_until  BIGINT   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- DelegateRemoved(address indexed patient, address indexed delegate)
CREATE TABLE ev_delegate_removed (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    patient      BYTEA   NOT NULL,
    delegate     BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- BreakGlassOpened(uint64 indexed id, address indexed patient, address indexed org,
--   address opener, BreakGlassReason reason, uint40 expiresAt)
CREATE TABLE ev_break_glass_opened (
    chain_id     BIGINT         NOT NULL,
    block_number BIGINT         NOT NULL,
    log_index    INTEGER        NOT NULL,
    tx_hash      BYTEA          NOT NULL,
    session_id   NUMERIC(20, 0) NOT NULL,
    patient      BYTEA          NOT NULL,
    org          BYTEA          NOT NULL,
    opener       BYTEA          NOT NULL,
    reason       SMALLINT       NOT NULL,
    expires_at   BIGINT         NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- BreakGlassClosed(uint64 indexed id, address indexed patient, address indexed org,
--   address closer)
CREATE TABLE ev_break_glass_closed (
    chain_id     BIGINT         NOT NULL,
    block_number BIGINT         NOT NULL,
    log_index    INTEGER        NOT NULL,
    tx_hash      BYTEA          NOT NULL,
    session_id   NUMERIC(20, 0) NOT NULL,
    patient      BYTEA          NOT NULL,
    org          BYTEA          NOT NULL,
    closer       BYTEA          NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- BreakGlassMaxDurationSet(uint32 maxDuration)
CREATE TABLE ev_break_glass_max_duration_set (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    max_duration BIGINT  NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- ---------------------------------------------------------------------------------------------
-- Event log: RecordRegistry
-- ---------------------------------------------------------------------------------------------

-- RecordAnchored(address indexed org, bytes32 indexed versionHash, address anchorer)
CREATE TABLE ev_record_anchored (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    org          BYTEA   NOT NULL,
    version_hash BYTEA   NOT NULL,
    anchorer     BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- RecordBatchAnchored(address indexed org, bytes32 indexed root, uint32 count,
--   address anchorer)
CREATE TABLE ev_record_batch_anchored (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    org          BYTEA   NOT NULL,
    root         BYTEA   NOT NULL,
    leaf_count   BIGINT  NOT NULL,
    anchorer     BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- ---------------------------------------------------------------------------------------------
-- Event log: AuditAnchor
-- ---------------------------------------------------------------------------------------------

-- GatewayRegistered(address indexed gateway)
CREATE TABLE ev_gateway_registered (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    gateway      BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- GatewayRemoved(address indexed gateway)
CREATE TABLE ev_gateway_removed (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    gateway      BYTEA   NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- AuditBatchAnchored(uint64 indexed batchId, address indexed gateway, uint64 fromSeq,
--   uint64 toSeq, bytes32 root)
CREATE TABLE ev_audit_batch_anchored (
    chain_id     BIGINT         NOT NULL,
    block_number BIGINT         NOT NULL,
    log_index    INTEGER        NOT NULL,
    tx_hash      BYTEA          NOT NULL,
    batch_id     NUMERIC(20, 0) NOT NULL,
    gateway      BYTEA          NOT NULL,
    from_seq     NUMERIC(20, 0) NOT NULL,
    to_seq       NUMERIC(20, 0) NOT NULL,
    root         BYTEA          NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- ---------------------------------------------------------------------------------------------
-- Derived current state (rewritten by the indexer only; never edit by hand)
-- ---------------------------------------------------------------------------------------------

-- Organisations as `ProviderRegistry.organisation(org)` reports them.
CREATE TABLE organisations (
    chain_id       BIGINT   NOT NULL,
    org            BYTEA    NOT NULL,
    kind           SMALLINT NOT NULL, -- OrgKind
    name           TEXT     NOT NULL,
    status         SMALLINT NOT NULL, -- Status: 1 Active, 2 Suspended, 3 Retired
    admitted_block BIGINT   NOT NULL,
    updated_block  BIGINT   NOT NULL,
    PRIMARY KEY (chain_id, org)
);

-- Member keys as `ProviderRegistry.member(key)` reports them. A key is usable only when its
-- own status and its organisation's status are both Active (1).
CREATE TABLE members (
    chain_id      BIGINT   NOT NULL,
    member_key    BYTEA    NOT NULL,
    org           BYTEA    NOT NULL,
    role          SMALLINT NOT NULL, -- MemberRole: 0 Practitioner, 1 Service
    status        SMALLINT NOT NULL, -- Status
    added_block   BIGINT   NOT NULL,
    updated_block BIGINT   NOT NULL,
    PRIMARY KEY (chain_id, member_key)
);
CREATE INDEX members_org ON members (chain_id, org);

-- Stored consents as `ConsentRegistry.consentOf(patient, grantee)` reports them: a row exists
-- exactly while a consent is stored (a revoke deletes it). Validity against the clock is the
-- reader's business (valid_from <= now < valid_until, unix seconds).
CREATE TABLE consents (
    chain_id       BIGINT   NOT NULL,
    patient        BYTEA    NOT NULL,
    grantee        BYTEA    NOT NULL, -- an organisation or a member key
    resource_types BIGINT   NOT NULL, -- bitmap over FhirCodes resource types
    actions        SMALLINT NOT NULL, -- mask over c r u d s
    purposes       INTEGER  NOT NULL, -- bitmap over FhirCodes purposes of use
    valid_from     BIGINT   NOT NULL,
    valid_until    BIGINT   NOT NULL,
    consent_hash   BYTEA    NOT NULL, -- keccak-256 of the canonical FHIR Consent JSON
    actor          BYTEA    NOT NULL, -- the patient or the delegate who granted
    granted_block  BIGINT   NOT NULL,
    granted_tx     BYTEA    NOT NULL,
    PRIMARY KEY (chain_id, patient, grantee)
);
CREATE INDEX consents_grantee ON consents (chain_id, grantee);

-- Delegates as `ConsentRegistry.delegateOf(patient, delegate)` reports them: a row exists
-- while a delegate is set (a removal deletes it); active while now < valid_until.
CREATE TABLE delegates (
    chain_id     BIGINT   NOT NULL,
    patient      BYTEA    NOT NULL,
    delegate     BYTEA    NOT NULL,
    kind         SMALLINT NOT NULL, -- DelegateKind
    valid_until  BIGINT   NOT NULL,
    set_block    BIGINT   NOT NULL,
    PRIMARY KEY (chain_id, patient, delegate)
);
CREATE INDEX delegates_delegate ON delegates (chain_id, delegate);

-- Every break-glass session ever opened, with its closing when closed early. The open session
-- of (patient, org) is the latest one with closed_block IS NULL and now < expires_at.
CREATE TABLE break_glass_sessions (
    chain_id     BIGINT         NOT NULL,
    session_id   NUMERIC(20, 0) NOT NULL,
    patient      BYTEA          NOT NULL,
    org          BYTEA          NOT NULL,
    opener       BYTEA          NOT NULL,
    reason       SMALLINT       NOT NULL, -- BreakGlassReason
    expires_at   BIGINT         NOT NULL,
    opened_block BIGINT         NOT NULL,
    opened_tx    BYTEA          NOT NULL,
    closer       BYTEA,
    closed_block BIGINT,
    PRIMARY KEY (chain_id, session_id)
);
CREATE INDEX break_glass_sessions_patient ON break_glass_sessions (chain_id, patient, org);

-- Singly anchored record version hashes (`RecordRegistry.anchorOf`).
CREATE TABLE record_anchors (
    chain_id     BIGINT NOT NULL,
    version_hash BYTEA  NOT NULL,
    org          BYTEA  NOT NULL,
    anchorer     BYTEA  NOT NULL,
    block_number BIGINT NOT NULL,
    tx_hash      BYTEA  NOT NULL,
    PRIMARY KEY (chain_id, version_hash)
);

-- Anchored Merkle roots of record batches (`RecordRegistry.batchOf`).
CREATE TABLE record_batches (
    chain_id     BIGINT NOT NULL,
    root         BYTEA  NOT NULL,
    org          BYTEA  NOT NULL,
    leaf_count   BIGINT NOT NULL,
    anchorer     BYTEA  NOT NULL,
    block_number BIGINT NOT NULL,
    tx_hash      BYTEA  NOT NULL,
    PRIMARY KEY (chain_id, root)
);

-- Registered gateway service keys (`AuditAnchor.isGateway`).
CREATE TABLE audit_gateways (
    chain_id         BIGINT NOT NULL,
    gateway          BYTEA  NOT NULL,
    registered_block BIGINT NOT NULL,
    PRIMARY KEY (chain_id, gateway)
);

-- Anchored audit batches (`AuditAnchor.batch(batchId)`).
CREATE TABLE audit_batches (
    chain_id     BIGINT         NOT NULL,
    batch_id     NUMERIC(20, 0) NOT NULL,
    gateway      BYTEA          NOT NULL,
    from_seq     NUMERIC(20, 0) NOT NULL,
    to_seq       NUMERIC(20, 0) NOT NULL,
    root         BYTEA          NOT NULL,
    block_number BIGINT         NOT NULL,
    tx_hash      BYTEA          NOT NULL,
    PRIMARY KEY (chain_id, batch_id)
);

-- The current maximum break-glass duration (`ConsentRegistry.maxBreakGlassDuration`) as last
-- set by an event (the constructor emits one too).
CREATE VIEW break_glass_max_duration AS
SELECT DISTINCT ON (chain_id) chain_id, max_duration, block_number
FROM ev_break_glass_max_duration_set
ORDER BY chain_id, block_number DESC, log_index DESC;
