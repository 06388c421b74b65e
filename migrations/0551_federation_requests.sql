-- Federated requests a custodian has accepted, by their request id: each id is accepted once
-- (a replayed request is refused). Rows are kept a while past their expiry, then cleared.
CREATE TABLE gateway_federation_requests (
    request_id BYTEA       PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX gateway_federation_requests_expiry ON gateway_federation_requests (expires_at);
GRANT SELECT, INSERT, DELETE ON gateway_federation_requests TO carechain_gateway;
