-- One row per Connect to ChannelAdvisor attempt (the authorization-code flow). The `state` sent
-- to ChannelAdvisor is kept only as its SHA-256, so a database reader cannot finish an attempt.
-- The row lives in the database, so the callback may land on any instance.
CREATE TABLE connect_attempts (
    state_hash TEXT PRIMARY KEY NOT NULL,
    company TEXT NOT NULL,
    caller TEXT NOT NULL,
    application_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    return_to TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX connect_attempts_company ON connect_attempts (company, created_at);

-- How a change was made when it was not a plain API write (`authorization_code` for Connect).
ALTER TABLE audit_entries ADD COLUMN via TEXT;
