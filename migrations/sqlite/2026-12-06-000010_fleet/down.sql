DROP INDEX credentials_state_company;
DROP INDEX credentials_renew_at;
ALTER TABLE credentials DROP COLUMN renew_at;
ALTER TABLE credentials DROP COLUMN token_wanted_at;
