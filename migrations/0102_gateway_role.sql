-- carechain gateway: the privileges of a gateway that connects as its own database user.
--
-- The migrations run as the database owner; a gateway in production should connect as a user
-- of its own (started with --migrate=false). Such a user is made a gateway by one grant:
--
--     GRANT carechain_gateway TO <gateway login user>;
--
-- `carechain_gateway` may read and write the gateway's store, read the indexer's cursor, and
-- switch to `carechain_gateway_audit` (INSERT and SELECT on gateway_audit_log only), as the
-- audit writer does. Nothing here allows UPDATE, DELETE or TRUNCATE of the audit log, and its
-- trigger refuses them for every role anyway.

-- Roles are cluster-wide: several databases (tests) may race to create it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'carechain_gateway') THEN
        CREATE ROLE carechain_gateway NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- Memberships are cluster-wide too: a concurrent migration may have granted it first.
DO $$
BEGIN
    GRANT carechain_gateway_audit TO carechain_gateway;
EXCEPTION WHEN duplicate_object OR invalid_grant_operation OR unique_violation THEN
    NULL;
END
$$;

GRANT SELECT, INSERT, UPDATE ON gateway_resources, gateway_resource_versions, gateway_patient_keys
    TO carechain_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway_siwe_nonces TO carechain_gateway;
GRANT SELECT ON indexer_cursor TO carechain_gateway;
