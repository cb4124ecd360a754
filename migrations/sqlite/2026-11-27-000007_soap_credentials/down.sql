ALTER TABLE credentials DROP COLUMN account_id;
ALTER TABLE credentials DROP COLUMN password;
ALTER TABLE credentials DROP COLUMN developer_key;
ALTER TABLE credentials DROP COLUMN auth_method;
