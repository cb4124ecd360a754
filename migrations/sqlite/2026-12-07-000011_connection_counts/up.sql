-- Every company counted by state, kept by triggers in the transaction that changes a state: the
-- fleet's counts (each page of the company list, the connections gauge) are a read of five rows
-- instead of a count of every company (35 ms at 100,000 on PostgreSQL, 13 ms on SQLite).
CREATE TABLE connection_counts (
    state TEXT PRIMARY KEY NOT NULL,
    companies BIGINT NOT NULL
);
INSERT INTO connection_counts (state, companies) VALUES
    ('not_configured', 0), ('incomplete', 0), ('untested', 0), ('connected', 0), ('failed', 0);
UPDATE connection_counts
    SET companies = (SELECT count(*) FROM credentials WHERE credentials.state = connection_counts.state);
CREATE TRIGGER connection_counts_insert AFTER INSERT ON credentials BEGIN
    UPDATE connection_counts SET companies = companies + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER connection_counts_delete AFTER DELETE ON credentials BEGIN
    UPDATE connection_counts SET companies = companies - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER connection_counts_update AFTER UPDATE OF state ON credentials
    WHEN OLD.state <> NEW.state BEGIN
    UPDATE connection_counts
        SET companies = companies + (CASE WHEN state = NEW.state THEN 1 ELSE -1 END)
        WHERE state IN (OLD.state, NEW.state);
END;
