-- carechain gateway: record versions anchored in groups.
--
-- A write is answered once its version is stored with `anchor_pending` and queued; the
-- gateway's record anchorer cuts the queued versions of each custodian into batches (one
-- Merkle root per batch, `RecordRegistry.anchorBatch`) and, once the batch's transaction is
-- mined, gives each version its root and inclusion proof and clears `anchor_pending`. Until then a read serves the
-- version marked as not yet anchored. A batch row is committed, with its nonce, before its
-- transaction is signed, and every signed transaction's hash is recorded before it is sent, so
-- a restart finds every batch in flight (see gateway/src/records/anchoring.rs).

-- Set once, when the version's batch is mined, together with its root and proof: one update
-- of each version row, which stays on its page (a heap-only update: none of these columns is
-- indexed) when the page has room, hence the fill factor.
ALTER TABLE gateway_resource_versions
    ADD COLUMN anchor_pending BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE gateway_resource_versions SET (fillfactor = 75);

-- The versions waiting for anchoring, and those in a batch not mined yet (with the batch's
-- root and their inclusion proofs); a mined batch's rows are moved into the versions and
-- deleted here.
CREATE TABLE gateway_anchor_queue (
    custodian     BYTEA       NOT NULL,
    resource_type TEXT        NOT NULL,
    id            TEXT        NOT NULL,
    version_id    BIGINT      NOT NULL,
    version_hash  BYTEA       NOT NULL,
    queued_at     TIMESTAMPTZ NOT NULL,
    batch_root    BYTEA,
    batch_proof   BYTEA,
    PRIMARY KEY (resource_type, id, version_id)
);
CREATE INDEX gateway_anchor_queue_waiting
    ON gateway_anchor_queue (custodian, queued_at) WHERE batch_root IS NULL;
CREATE INDEX gateway_anchor_queue_in_batch
    ON gateway_anchor_queue (custodian, batch_root) WHERE batch_root IS NOT NULL;

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
    -- Checked again once its block is final: a batch reorged away before finality goes back
    -- to pending (and is sent again) instead of leaving its versions unverifiable.
    final         BOOLEAN     NOT NULL DEFAULT false,
    PRIMARY KEY (custodian, root)
);
CREATE INDEX gateway_record_batches_in_flight
    ON gateway_record_batches (custodian, nonce) WHERE state = 'pending';
CREATE INDEX gateway_record_batches_not_final
    ON gateway_record_batches (custodian, block_number) WHERE state = 'anchored' AND NOT final;

GRANT SELECT, INSERT, UPDATE ON gateway_record_batches TO carechain_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway_anchor_queue TO carechain_gateway;
