-- SOAP Credentials (contract §3, §8): the method a company uses, and its values. The Developer
-- Key and password are sealed like the other secrets (same key id column, their own field name
-- as associated data); the account GUID is shown, so it is plain.
ALTER TABLE credentials ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'refresh_token';
ALTER TABLE credentials ADD COLUMN developer_key BLOB;
ALTER TABLE credentials ADD COLUMN password BLOB;
ALTER TABLE credentials ADD COLUMN account_id TEXT;
