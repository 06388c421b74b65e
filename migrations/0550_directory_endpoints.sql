-- The consortium's directory: each organisation's published FHIR endpoint (the base URL of its
-- gateway), from `ProviderRegistry.EndpointSet`. The keys its gateway acts with are its active
-- `Service` members (`ev_member_added` and the membership state). A gateway asks the other
-- active members' endpoints for a patient's records (the federation).

-- EndpointSet(address indexed org, string url)
CREATE TABLE ev_endpoint_set (
    chain_id     BIGINT  NOT NULL,
    block_number BIGINT  NOT NULL,
    log_index    INTEGER NOT NULL,
    tx_hash      BYTEA   NOT NULL,
    org          BYTEA   NOT NULL,
    url          TEXT    NOT NULL,
    PRIMARY KEY (chain_id, block_number, log_index)
);

-- Each organisation's current endpoint (the last one it published; an empty URL withdrew it).
CREATE VIEW organisation_endpoints AS
SELECT DISTINCT ON (chain_id, org) chain_id, org, url, block_number
FROM ev_endpoint_set
ORDER BY chain_id, org, block_number DESC, log_index DESC;
GRANT SELECT ON ev_endpoint_set, organisation_endpoints TO carechain_gateway;
