-- Company credentials: one row per company. Secrets are sealed (AES-256-GCM) under `key_id`;
-- every sealed column of a row shares that key so rotation and the start-up key check work per row.
CREATE TABLE credentials (
    company TEXT PRIMARY KEY NOT NULL,
    application_id TEXT,
    shared_secret BLOB,
    refresh_token BLOB,
    key_id TEXT,
    profile_id BIGINT,
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_since TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE INDEX credentials_key_id ON credentials (key_id);

-- Who changed what and when; field names only, never values. Kept after the credentials are deleted.
CREATE TABLE audit_entries (
    id TEXT PRIMARY KEY NOT NULL,
    company TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    fields TEXT NOT NULL,
    version BIGINT
);
CREATE INDEX audit_entries_company_at ON audit_entries (company, at, id);
