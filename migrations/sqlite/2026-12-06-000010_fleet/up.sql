-- A fleet of companies (contract §3, §6).
-- token_wanted_at: when a job last asked for the company's token (written at most every few
-- minutes per instance); refresh ahead keeps only these companies warm.
-- renew_at: when refresh ahead renews the cached token, a moment spread over the window before
-- it runs out; moved ahead by the instance that claims the renewal.
ALTER TABLE credentials ADD COLUMN token_wanted_at TIMESTAMP;
ALTER TABLE credentials ADD COLUMN renew_at TIMESTAMP;
CREATE INDEX credentials_renew_at ON credentials (renew_at);
-- The company list filtered by state pages by company id within one state.
CREATE INDEX credentials_state_company ON credentials (state, company);
