-- Least privilege (docs/operations.md, "Database roles"). The tables belong to the role
-- that runs migrations (the owner); no service connects as it. Services connect as
-- login roles that are members of one of these (cluster-wide, created if missing):
--   crm_writer    command service, scheduler: appends through crm_append only (it
--                 cannot insert, update or delete events itself); reads what deciding
--                 needs; creates and erases customers' keys.
--   crm_relay     relay: reads the log; keeps its checkpoint; seals global checkpoints.
--   crm_query     query service: reads keys to decrypt, the log for audit replay;
--                 appends its records of personal-data reads through crm_append.
--   crm_auditor   auditors' logins: read the log and the checkpoints, nothing else here.
-- Read-model roles (crm_projector, crm_analyst, crm_manager) are granted with the read
-- models (libs/projections/src/views.rs).

DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['crm_writer', 'crm_relay', 'crm_query', 'crm_auditor'] LOOP
        -- Only when missing: CREATE ROLE needs CREATEROLE even for a role that exists,
        -- and an owner whose roles an operator made (CloudNativePG) has none.
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
END $$;

REVOKE ALL ON events, commands, unique_keys, counters, checkpoints, global_checkpoints,
    subject_keys FROM PUBLIC;

-- Appending is the function's job, with the owner's rights; nobody else writes events.
ALTER FUNCTION crm_append(bigint[], uuid[], text[], bigint[], bytea[], text[], text[], text[],
    bigint[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[], uuid[], uuid[], text[],
    timestamptz[], bytea[], uuid[], text[], text[], text[], text[], text[], text[], bigint[])
    SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION crm_append(bigint[], uuid[], text[], bigint[], bytea[], text[],
    text[], text[], bigint[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[], uuid[],
    uuid[], text[], timestamptz[], bytea[], uuid[], text[], text[], text[], text[], text[],
    text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm_append(bigint[], uuid[], text[], bigint[], bytea[], text[],
    text[], text[], bigint[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[], uuid[],
    uuid[], text[], timestamptz[], bytea[], uuid[], text[], text[], text[], text[], text[],
    text[], bigint[]) TO crm_writer, crm_query;

GRANT SELECT ON events, commands, unique_keys, counters TO crm_writer;
GRANT SELECT, INSERT, UPDATE ON subject_keys TO crm_writer;
-- The scheduler keeps its own progress like the relay.
GRANT SELECT, INSERT, UPDATE ON checkpoints TO crm_writer, crm_relay;

GRANT SELECT ON events, global_checkpoints TO crm_relay, crm_query, crm_auditor;
GRANT INSERT ON global_checkpoints TO crm_relay;
GRANT SELECT ON subject_keys TO crm_query;
GRANT SELECT ON commands TO crm_query;

-- Services started without migrating check the schema version here.
GRANT SELECT ON _sqlx_migrations TO crm_writer, crm_relay, crm_query, crm_auditor;
