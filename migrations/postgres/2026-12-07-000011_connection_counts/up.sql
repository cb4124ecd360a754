-- Every company counted by state, kept by a trigger in the transaction that changes a state: the
-- fleet's counts (each page of the company list, the connections gauge) are a read of five rows
-- instead of a count of every company (35 ms at 100,000 on PostgreSQL, 13 ms on SQLite). A change
-- of state updates both of its rows in one statement, so every transaction locks them in the
-- order of one scan of the table, and two opposite changes cannot deadlock.
CREATE TABLE connection_counts (
    state TEXT PRIMARY KEY NOT NULL,
    companies BIGINT NOT NULL
);
INSERT INTO connection_counts (state, companies)
    SELECT s, (SELECT count(*) FROM credentials WHERE credentials.state = s)
    FROM unnest(ARRAY['not_configured', 'incomplete', 'untested', 'connected', 'failed']) AS s;
CREATE FUNCTION connection_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE connection_counts SET companies = companies + 1 WHERE state = NEW.state;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE connection_counts SET companies = companies - 1 WHERE state = OLD.state;
    ELSIF OLD.state IS DISTINCT FROM NEW.state THEN
        UPDATE connection_counts
            SET companies = companies + (CASE WHEN state = NEW.state THEN 1 ELSE -1 END)
            WHERE state IN (OLD.state, NEW.state);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER connection_counts_track AFTER INSERT OR DELETE OR UPDATE OF state ON credentials
    FOR EACH ROW EXECUTE FUNCTION connection_counts_track();
