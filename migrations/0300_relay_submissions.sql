-- Gas-free consent submissions (gateway/src/relay.rs): one row per checked submission,
-- written before the transaction is sent and updated with what became of it, so that no
-- submission is lost silently. No PHI: addresses, the EIP-712 digest and chain references.
CREATE TABLE relay_submissions (
    id           BIGSERIAL   PRIMARY KEY,
    chain_id     BIGINT      NOT NULL,
    kind         TEXT        NOT NULL CHECK (kind IN ('grant', 'revoke')),
    patient      BYTEA       NOT NULL,
    grantee      BYTEA       NOT NULL,
    signer       BYTEA       NOT NULL,
    digest       BYTEA       NOT NULL,
    -- checked: about to be sent; mined; not-sent (sending failed after retries);
    -- failed-after-send (reverted, or no receipt in time: see tx_hash)
    status       TEXT        NOT NULL
        CHECK (status IN ('checked', 'mined', 'not-sent', 'failed-after-send')),
    tx_hash      BYTEA,
    block_number BIGINT,
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX relay_submissions_patient ON relay_submissions (chain_id, patient, created_at);
