-- Read models, identical on PostgreSQL (server mode) and SQLite (embedded mode).
-- Instants are microseconds since the Unix epoch (BIGINT) so both backends compare them
-- exactly; the analyst views (docs/read-models.md) present them as timestamps.
-- Everything here is derived from the event log and can be rebuilt from it.

-- Current state of each customer, with its owner (NULL owner: in the pool).
CREATE TABLE rm_customers (
    customer_id          TEXT PRIMARY KEY,
    customer_type        TEXT NOT NULL,
    display_name         TEXT NOT NULL,
    region               TEXT NOT NULL,
    branch               TEXT,
    first_touch_channel  TEXT NOT NULL,
    stage                TEXT NOT NULL,
    value_tier           TEXT NOT NULL,
    aum_minor            BIGINT,
    owner_id             TEXT,
    owner_team           TEXT,
    owner_region         TEXT,
    owned_since_us       BIGINT,
    registered_at_us     BIGINT NOT NULL,
    last_contact_at_us   BIGINT,
    next_follow_up_us    BIGINT
);
CREATE INDEX rm_customers_owner_idx ON rm_customers (owner_id);

-- Every period of ownership: [from_us, to_us), to_us NULL while it lasts.
CREATE TABLE rm_ownership_periods (
    customer_id    TEXT NOT NULL,
    start_version  BIGINT NOT NULL,
    manager_id     TEXT NOT NULL,
    team           TEXT NOT NULL,
    region         TEXT NOT NULL,
    from_us        BIGINT NOT NULL,
    to_us          BIGINT,
    start_event    TEXT NOT NULL,
    start_reason   TEXT,
    started_by     TEXT NOT NULL,
    start_event_id TEXT NOT NULL,
    end_event      TEXT,
    ended_by       TEXT,
    PRIMARY KEY (customer_id, start_version)
);
CREATE INDEX rm_ownership_periods_manager_idx ON rm_ownership_periods (manager_id, from_us);

-- Managers, for portfolios by team and region.
CREATE TABLE rm_managers (
    manager_id     TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    team           TEXT NOT NULL,
    region         TEXT NOT NULL,
    branch         TEXT NOT NULL,
    holding_limit  BIGINT NOT NULL,
    active         BIGINT NOT NULL
);

-- Customer 360: every event of a customer (read newest first).
CREATE TABLE rm_timeline (
    customer_id     TEXT NOT NULL,
    version         BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    occurred_at_us  BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    summary         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    PRIMARY KEY (customer_id, version)
);

-- Exactly-once application: the last version of each event stream applied to the read
-- models. An event at or below it is a duplicate; one above the next is early.
CREATE TABLE rm_stream_positions (
    stream_id  TEXT PRIMARY KEY,
    version    BIGINT NOT NULL
);

-- Progress of each consumer (one per stream partition), written in the same
-- transaction as the read-model changes it covers.
CREATE TABLE rm_checkpoints (
    consumer         TEXT PRIMARY KEY,
    stream_sequence  BIGINT NOT NULL,
    events_applied   BIGINT NOT NULL,
    last_event_us    BIGINT NOT NULL,
    updated_at_us    BIGINT NOT NULL
);

-- Events that could not be projected (also sent to the dead-letter stream).
CREATE TABLE rm_dead_letters (
    event_id     TEXT PRIMARY KEY,
    stream_id    TEXT NOT NULL,
    version      BIGINT NOT NULL,
    event_type   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    recorded_us  BIGINT NOT NULL
);

-- Live projector instances (server mode): each holds a fair share of the partitions.
CREATE TABLE rm_projector_instances (
    instance_id   TEXT PRIMARY KEY,
    group_name    TEXT NOT NULL,
    heartbeat_us  BIGINT NOT NULL
);
