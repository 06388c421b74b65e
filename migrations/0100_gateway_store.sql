-- carechain gateway: encrypted FHIR store, minimal search index and sign-in nonces.
--
-- Patients are wallets: `patient` columns hold the lower-case hex address ("0x" + 40 digits).
-- Record content exists only as AES-256-GCM ciphertext under the patient's data key; data keys
-- are stored wrapped by the key-encryption key, which is never in the database. Erasing a
-- patient clears `wrapped_key`: every version of every record becomes unreadable for good.

CREATE TABLE gateway_patient_keys (
    patient     TEXT        PRIMARY KEY,
    -- nonce (12) || AES-256-GCM(KEK, data key) || tag; NULL once erased.
    wrapped_key BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    erased_at   TIMESTAMPTZ,
    erased_by   TEXT,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);

-- Every version of every record. A delete is a version without content.
CREATE TABLE gateway_resource_versions (
    resource_type TEXT        NOT NULL,
    id            TEXT        NOT NULL,
    version_id    BIGINT      NOT NULL CHECK (version_id > 0),
    patient       TEXT        NOT NULL REFERENCES gateway_patient_keys (patient),
    last_updated  TIMESTAMPTZ NOT NULL,
    deleted       BOOLEAN     NOT NULL,
    -- nonce (12) || AES-256-GCM(data key, resource JSON, aad = type/id/version) || tag.
    sealed        BYTEA,
    -- keccak-256 of the version's RFC 8785 canonical JSON, as anchored in RecordRegistry.
    version_hash  BYTEA,
    -- The custodian organisation whose service key anchored the hash.
    custodian     BYTEA       NOT NULL,
    -- For versions anchored in a batch: the Merkle root and the proof (32-byte siblings).
    batch_root    BYTEA,
    batch_proof   BYTEA,
    PRIMARY KEY (resource_type, id, version_id),
    CHECK (deleted OR (sealed IS NOT NULL AND version_hash IS NOT NULL))
);
CREATE INDEX gateway_resource_versions_patient ON gateway_resource_versions (patient);

-- The current version of each record with its searchable fields: the minimal index.
-- Token fields (`codes`, `categories`) hold keyed hashes (HMAC-SHA-256) of `system|code`,
-- `code` and `system|`, never the codes themselves.
CREATE TABLE gateway_resources (
    resource_type TEXT        NOT NULL,
    id            TEXT        NOT NULL,
    patient       TEXT        NOT NULL,
    version_id    BIGINT      NOT NULL,
    last_updated  TIMESTAMPTZ NOT NULL,
    deleted       BOOLEAN     NOT NULL,
    date_start    TIMESTAMPTZ,
    date_end      TIMESTAMPTZ,
    codes         BYTEA[]     NOT NULL DEFAULT '{}',
    categories    BYTEA[]     NOT NULL DEFAULT '{}',
    encounter     TEXT,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX gateway_resources_patient ON gateway_resources (resource_type, patient, last_updated, id);
CREATE INDEX gateway_resources_updated ON gateway_resources (resource_type, last_updated, id);
CREATE INDEX gateway_resources_codes ON gateway_resources USING gin (codes);

-- Single-use EIP-4361 nonces.
CREATE TABLE gateway_siwe_nonces (
    nonce      TEXT        PRIMARY KEY,
    issued_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX gateway_siwe_nonces_expiry ON gateway_siwe_nonces (expires_at);
