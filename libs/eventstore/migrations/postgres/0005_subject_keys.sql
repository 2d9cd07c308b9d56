-- One encryption key per data subject (customer) for its personal fields
-- (crypto-shredding, libs/privacy). Erasure sets `key` to NULL for good: what was
-- encrypted with it can no longer be read anywhere (events, JetStream messages, read
-- models, exports). Unlike events this table is not append-only: destroying keys is
-- its purpose. The old key survives in PostgreSQL only until VACUUM reclaims the row
-- version and the WAL segment holding it is recycled (see docs/audit.md, Erasure).

CREATE TABLE subject_keys (
    subject     TEXT PRIMARY KEY,
    key         BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    erased_at   TIMESTAMPTZ,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);
