-- carechain gateway: record versions anchored in groups.
--
-- A write is answered once its version is stored with `anchor_pending`; the gateway's
-- record anchorer cuts the pending versions of each custodian into batches (one Merkle root per
-- batch, `RecordRegistry.anchorBatch`), sets each version's root and inclusion proof, and
-- clears `anchor_pending` once the batch's transaction is mined. Until then a read serves the
-- version marked as not yet anchored. A batch row is committed, with its nonce, before its
-- transaction is signed, and every signed transaction's hash is recorded before it is sent, so
-- a restart finds every batch in flight (see gateway/src/records/anchoring.rs).

ALTER TABLE gateway_resource_versions
    ADD COLUMN anchor_pending BOOLEAN NOT NULL DEFAULT false;

-- Versions waiting for a batch, oldest first, per custodian.
CREATE INDEX gateway_resource_versions_unbatched
    ON gateway_resource_versions (custodian, last_updated)
    WHERE anchor_pending AND batch_root IS NULL;
-- Versions of a batch in flight.
CREATE INDEX gateway_resource_versions_in_flight
    ON gateway_resource_versions (custodian, batch_root)
    WHERE anchor_pending;

CREATE TABLE gateway_record_batches (
    custodian     BYTEA       NOT NULL,
    root          BYTEA       NOT NULL,
    versions      INTEGER     NOT NULL CHECK (versions > 0),
    state         TEXT        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'anchored')),
    -- The service key that sends it, its nonce, and the fees of the latest signed transaction.
    sender        BYTEA       NOT NULL,
    nonce         BIGINT      NOT NULL,
    max_fee       BIGINT,
    priority_fee  BIGINT,
    -- Every transaction signed for this batch (a fee bump or a new nonce adds one).
    tx_hashes     BYTEA[]     NOT NULL DEFAULT '{}',
    cut_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at       TIMESTAMPTZ,
    -- Once mined: the transaction, its block and gas (NULL when the batch was found anchored
    -- on chain without a receipt of ours), and when the gateway saw it.
    tx_hash       BYTEA,
    block_number  BIGINT,
    gas_used      BIGINT,
    anchored_at   TIMESTAMPTZ,
    PRIMARY KEY (custodian, root)
);
CREATE INDEX gateway_record_batches_in_flight
    ON gateway_record_batches (custodian, nonce) WHERE state = 'pending';

GRANT SELECT, INSERT, UPDATE ON gateway_record_batches TO carechain_gateway;
