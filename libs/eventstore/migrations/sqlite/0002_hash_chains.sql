-- Tamper evidence, embedded edition: the same chain links and global checkpoints as
-- migrations/postgres/0004_hash_chains.sql.

ALTER TABLE events ADD COLUMN chain_hash BLOB NOT NULL DEFAULT x'';

CREATE TABLE global_checkpoints (
    seq               INTEGER PRIMARY KEY CHECK (seq > 0),
    after_tx          INTEGER NOT NULL,
    after_position    INTEGER NOT NULL,
    through_tx        INTEGER NOT NULL,
    through_position  INTEGER NOT NULL,
    event_count       INTEGER NOT NULL CHECK (event_count > 0),
    leaves            BLOB NOT NULL,
    prev_hash         BLOB NOT NULL,
    hash              BLOB NOT NULL,
    sealed_at         TEXT NOT NULL
);

CREATE TRIGGER global_checkpoints_no_update BEFORE UPDATE ON global_checkpoints
BEGIN SELECT RAISE(ABORT, 'table global_checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER global_checkpoints_no_delete BEFORE DELETE ON global_checkpoints
BEGIN SELECT RAISE(ABORT, 'table global_checkpoints is append-only: DELETE refused'); END;
