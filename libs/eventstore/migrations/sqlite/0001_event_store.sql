-- The event store, embedded edition. Same shape as the PostgreSQL schema; SQLite
-- serialises writers, so allocation order is commit order and tx = position.

CREATE TABLE events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    event_id        TEXT NOT NULL UNIQUE,
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version > 0),
    payload         TEXT NOT NULL,
    command_id      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    causation_id    TEXT,
    actor           TEXT NOT NULL,
    occurred_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    UNIQUE (stream_id, stream_version)
);

CREATE TABLE commands (
    command_id    TEXT PRIMARY KEY,
    command_type  TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    recorded_at   TEXT NOT NULL
);

CREATE TABLE unique_keys (
    key    TEXT PRIMARY KEY,
    owner  TEXT NOT NULL
);

CREATE TABLE counters (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);

CREATE TABLE checkpoints (
    name        TEXT PRIMARY KEY,
    tx          INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    extra       INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'table events is append-only: UPDATE refused'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'table events is append-only: DELETE refused'); END;
CREATE TRIGGER commands_no_update BEFORE UPDATE ON commands
BEGIN SELECT RAISE(ABORT, 'table commands is append-only: UPDATE refused'); END;
CREATE TRIGGER commands_no_delete BEFORE DELETE ON commands
BEGIN SELECT RAISE(ABORT, 'table commands is append-only: DELETE refused'); END;
