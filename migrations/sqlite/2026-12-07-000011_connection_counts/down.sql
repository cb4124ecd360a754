DROP TRIGGER connection_counts_update;
DROP TRIGGER connection_counts_delete;
DROP TRIGGER connection_counts_insert;
DROP TABLE connection_counts;
