-- One event log for web-hook deliveries and live streams (contract §11): every event is kept
-- (for its retention), and `seq` numbers events in commit order — writers of events take turns
-- (SQLite's write lock; an advisory lock on PostgreSQL), so a stream that has sent seq N never
-- meets a later commit with a smaller one.
ALTER TABLE outbox_events ADD COLUMN seq BIGINT;
UPDATE outbox_events SET seq = (
    SELECT COUNT(*) FROM outbox_events o
    WHERE o.created_at < outbox_events.created_at
       OR (o.created_at = outbox_events.created_at AND o.id <= outbox_events.id)
);
CREATE UNIQUE INDEX outbox_events_seq ON outbox_events (seq);
