-- RecordRegistry keys anchors by (organisation, hash): another organisation anchoring the
-- same version hash or batch root neither blocks the custodian nor speaks for it, so the
-- derived anchor tables hold one row per organisation and hash.
ALTER TABLE record_anchors DROP CONSTRAINT record_anchors_pkey;
ALTER TABLE record_anchors ADD CONSTRAINT record_anchors_pkey PRIMARY KEY (chain_id, org, version_hash);
ALTER TABLE record_batches DROP CONSTRAINT record_batches_pkey;
ALTER TABLE record_batches ADD CONSTRAINT record_batches_pkey PRIMARY KEY (chain_id, org, root);
