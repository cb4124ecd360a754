DROP TRIGGER connection_counts_track ON credentials;
DROP FUNCTION connection_counts_track();
DROP TABLE connection_counts;
