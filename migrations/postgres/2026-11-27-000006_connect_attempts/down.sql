ALTER TABLE audit_entries DROP COLUMN via;
DROP TABLE connect_attempts;
