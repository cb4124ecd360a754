-- Who created, deleted, pinged a web-hook subscription or rotated its secret, and when (never
-- the secret). `companies` is the subscription's list at the time, so an entry stays visible to
-- the callers who could manage the subscription after it is deleted.
CREATE TABLE webhook_audit (
    id TEXT PRIMARY KEY NOT NULL,
    webhook_id TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    companies TEXT NOT NULL
);
CREATE INDEX webhook_audit_at ON webhook_audit (at);
