-- Write-once facts are read from the event log itself, not copied (issue 19).
--
-- A record anchor, a record batch root and an audit batch are each written once on chain and
-- never change: RecordRegistry refuses a second anchoring of the same (organisation, hash)
-- (`RecordAlreadyAnchored`) and AuditAnchor numbers its batches itself. Their event rows are
-- therefore already the "current state", one row per key, and copying them into derived
-- tables cost the indexer a second row per event for nothing. The derived tables become views
-- of the same names and columns over the event tables (readers keep their queries), and the
-- event tables get the indexes those readers need. A reorg rollback that deletes event rows
-- removes them from the views in the same transaction.
--
-- What really changes (organisations, members, consents, delegates, break-glass sessions,
-- registered audit gateways) stays derived.

DROP TABLE record_anchors;
DROP TABLE record_batches;
DROP TABLE audit_batches;

-- Singly anchored record version hashes (`RecordRegistry.anchorOf(hash, org)`).
CREATE VIEW record_anchors AS
SELECT chain_id, version_hash, org, anchorer, block_number, tx_hash
FROM ev_record_anchored;

-- Anchored Merkle roots of record batches (`RecordRegistry.batchOf(root, org)`).
CREATE VIEW record_batches AS
SELECT chain_id, root, org, leaf_count, anchorer, block_number, tx_hash
FROM ev_record_batch_anchored;

-- Anchored audit batches (`AuditAnchor.batch(batchId)`).
CREATE VIEW audit_batches AS
SELECT chain_id, batch_id, gateway, from_seq, to_seq, root, block_number, tx_hash
FROM ev_audit_batch_anchored;

-- Lookups by hash (with or without the organisation: few organisations anchor one hash), by
-- root, and the gateway's reconciliation of its pending audit ranges by first sequence number.
-- The indexer drops the first two during a first backfill into empty tables and builds them at
-- its end (indexer/src/derive.rs, DEFERRED_EVENT_INDEXES, same definitions).
CREATE INDEX ev_record_anchored_hash ON ev_record_anchored (chain_id, version_hash);
CREATE INDEX ev_record_batch_anchored_root ON ev_record_batch_anchored (chain_id, root);
CREATE INDEX ev_audit_batch_anchored_from ON ev_audit_batch_anchored (chain_id, from_seq);
