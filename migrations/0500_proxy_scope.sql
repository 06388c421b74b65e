-- Issue 22: a Proxy delegate acts within a scope the patient delegated to it.
--
-- ProxyScopeSet(address indexed patient, address indexed delegate, uint64 resourceTypes,
--   uint8 actions, uint16 purposes), emitted right after the Proxy's DelegateSet: the most it
--   may grant, and the resource types it may read. The bitmaps are those of FhirCodes.sol
--   (resource_types holds the uint64's bits in a BIGINT, as ev_consent_granted does).
CREATE TABLE ev_proxy_scope_set (
    chain_id       BIGINT   NOT NULL,
    block_number   BIGINT   NOT NULL,
    log_index      INTEGER  NOT NULL,
    tx_hash        BYTEA    NOT NULL,
    patient        BYTEA    NOT NULL,
    delegate       BYTEA    NOT NULL,
    resource_types BIGINT   NOT NULL,
    actions        SMALLINT NOT NULL,
    purposes       INTEGER  NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX ev_proxy_scope_set_patient ON ev_proxy_scope_set (chain_id, patient, delegate);
