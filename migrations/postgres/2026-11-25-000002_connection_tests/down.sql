ALTER TABLE credentials DROP COLUMN last_success_at;
ALTER TABLE credentials DROP COLUMN last_test_id;
DROP TABLE access_tokens;
DROP TABLE connection_tests;
