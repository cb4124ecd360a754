DROP INDEX credentials_next_check_at;
ALTER TABLE credentials DROP COLUMN next_check_at;
ALTER TABLE credentials DROP COLUMN token_error_version;
ALTER TABLE credentials DROP COLUMN token_error_at;
ALTER TABLE credentials DROP COLUMN token_error;
ALTER TABLE credentials DROP COLUMN token_lease_owner;
ALTER TABLE credentials DROP COLUMN token_lease_until;
