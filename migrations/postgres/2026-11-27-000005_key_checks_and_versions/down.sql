DROP TABLE credentials_deleted_versions;
DROP TABLE key_checks;
