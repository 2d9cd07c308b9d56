-- The event store: the source of truth. Append-only; see docs/ARCHITECTURE.md.

CREATE TABLE events (
    -- Allocation order. Not commit order: readers order by (transaction_id, position)
    -- and only read below the oldest running transaction (commit-safe global order).
    position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  XID8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       TEXT NOT NULL,
    stream_version  BIGINT NOT NULL CHECK (stream_version > 0),
    event_id        UUID NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version > 0),
    payload         JSONB NOT NULL,
    command_id      UUID NOT NULL,
    correlation_id  UUID NOT NULL,
    causation_id    UUID,
    actor           TEXT NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_global_order_idx ON events (transaction_id, position);

-- One row per accepted command: the idempotency record and its first answer.
CREATE TABLE commands (
    command_id    UUID PRIMARY KEY,
    command_type  TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    outcome       JSONB NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Write-side guards kept in the same transaction as the events they follow from
-- (derivable from the events; never read by projections).
CREATE TABLE unique_keys (
    key    TEXT PRIMARY KEY,
    owner  TEXT NOT NULL
);

CREATE TABLE counters (
    key    TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);

-- Progress of named log readers (the relay).
CREATE TABLE checkpoints (
    name        TEXT PRIMARY KEY,
    tx          BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    extra       BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- History is never rewritten: the database itself refuses it.
CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER commands_append_only
    BEFORE UPDATE OR DELETE ON commands
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER commands_no_truncate
    BEFORE TRUNCATE ON commands
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
