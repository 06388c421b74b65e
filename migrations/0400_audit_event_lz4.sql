-- Audit events are about 2.5 kB of JSON, just over the TOAST threshold, so every row is
-- compressed as the audit writer inserts it, inside the group commit every request waits for.
-- lz4 does that at a fraction of the default pglz's cost. Rows already written keep their
-- compression; a server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE gateway_audit_log ALTER COLUMN event SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available on this server: audit events stay pglz-compressed';
END
$$;
