-- One encryption key per data subject: see migrations/postgres/0005_subject_keys.sql.

CREATE TABLE subject_keys (
    subject     TEXT PRIMARY KEY,
    key         BLOB,
    created_at  TEXT NOT NULL,
    erased_at   TEXT,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);
