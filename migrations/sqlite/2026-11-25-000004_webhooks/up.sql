-- Web-hook subscriptions; the signing secret is sealed like every other secret.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    companies TEXT NOT NULL,
    description TEXT,
    enabled BOOLEAN NOT NULL,
    key_id TEXT NOT NULL,
    secret BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by TEXT NOT NULL
);

-- The outbox: every event, written in the same transaction as the change it describes.
CREATE TABLE outbox_events (
    id TEXT PRIMARY KEY NOT NULL,
    event_type TEXT NOT NULL,
    company TEXT,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- One delivery per event and matching subscription, also written in that transaction.
-- A delivery is claimed with a short lease; per subscription and company, only the oldest
-- pending one is eligible, so events arrive in the order they happened.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    company TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP,
    locked_until TIMESTAMP,
    locked_by TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, company, status, created_at, id);

-- Every attempt: status, duration, a short error.
CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    delivery_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at TIMESTAMP NOT NULL,
    status_code BIGINT,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_webhook_at ON webhook_attempts (webhook_id, at, id);
