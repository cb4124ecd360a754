DROP INDEX outbox_events_seq;
ALTER TABLE outbox_events DROP COLUMN seq;
