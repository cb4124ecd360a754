-- Token refresh coordination across instances: one instance holds a short lease while it calls
-- ChannelAdvisor (no database connection is held during the call); the outcome of a failed
-- refresh is kept so waiters on every instance get that error too.
ALTER TABLE credentials ADD COLUMN token_lease_until TIMESTAMP;
ALTER TABLE credentials ADD COLUMN token_lease_owner TEXT;
ALTER TABLE credentials ADD COLUMN token_error TEXT;
ALTER TABLE credentials ADD COLUMN token_error_at TIMESTAMP;
ALTER TABLE credentials ADD COLUMN token_error_version BIGINT;
-- Scheduled health checks: when this company is next re-tested (NULL = not yet scheduled).
ALTER TABLE credentials ADD COLUMN next_check_at TIMESTAMP;
CREATE INDEX credentials_next_check_at ON credentials (next_check_at);
