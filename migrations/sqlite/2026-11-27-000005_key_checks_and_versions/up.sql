-- One key check value per encryption key id: a known text sealed under that key, so a start-up
-- with a different key under the same id is refused instead of failing on every read.
CREATE TABLE key_checks (
    key_id TEXT PRIMARY KEY NOT NULL,
    check_value BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- The last version of a company's deleted credentials, so a later save continues after it and a
-- version (ETag) never repeats for a company.
CREATE TABLE credentials_deleted_versions (
    company TEXT PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL
);
