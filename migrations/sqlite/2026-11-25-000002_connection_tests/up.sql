-- Test Connection results (history, newest first per company) and the connection status fields.
CREATE TABLE connection_tests (
    id TEXT PRIMARY KEY NOT NULL,
    company TEXT NOT NULL,
    candidate BOOLEAN NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    result TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    triggered_by TEXT NOT NULL
);
CREATE INDEX connection_tests_company_started ON connection_tests (company, started_at, id);

-- The cached access token of a company (sealed), valid for the credentials version it was
-- obtained with; saving or deleting credentials deletes it in the same transaction.
CREATE TABLE access_tokens (
    company TEXT PRIMARY KEY NOT NULL,
    key_id TEXT NOT NULL,
    token BLOB NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    credentials_version BIGINT NOT NULL,
    obtained_at TIMESTAMP NOT NULL
);

ALTER TABLE credentials ADD COLUMN last_test_id TEXT;
ALTER TABLE credentials ADD COLUMN last_success_at TIMESTAMP;
