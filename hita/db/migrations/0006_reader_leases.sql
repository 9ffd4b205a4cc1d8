-- Reader leases: which instances may serve from Redis, and which changes each
-- has taken in (docs/cache.md, "No read older than an acknowledged write").
--
-- cache_outbox rows now carry the id of the transaction that wrote them (xid),
-- so an instance reads "every row committed since the snapshot I read last"
-- exactly, and when an instance has applied a row to Redis it says so
-- (acked_at): rows nobody acknowledged are what the sweep re-applies, and
-- acknowledged rows are kept a while for re-applying after a Redis failover.
ALTER TABLE cache_outbox
    ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN acked_at timestamptz;
CREATE INDEX cache_outbox_xid ON cache_outbox (xid);
CREATE INDEX cache_outbox_unacked ON cache_outbox (id) WHERE acked_at IS NULL;

-- One row per instance, renewed every CACHE_READER_RENEW_MS on its own session.
-- lease_until: until when it may serve from Redis (the database's clock);
-- applied: a snapshot every outbox row visible in which it has taken in (made
-- suspect and queued for Redis) before it renewed.
CREATE TABLE cache_readers (
    instance    text PRIMARY KEY,
    lease_until timestamptz NOT NULL,
    applied     pg_snapshot,
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- Readers read the outbox table on every lease renewal; a notification is
-- only a hint to renew soon, so a change is seen in milliseconds rather than
-- at the next renewal. When the notification queue is half full (a listener
-- that stopped reading), the hint is left out, so a frozen listener can never
-- make writes fail. A row names up to 10,000 users (beyond: "every user"):
-- readers read the ids from the table, the notification carries only its id.
CREATE OR REPLACE FUNCTION hita_cache_outbox_record(ids text[], change_scope text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    row_id bigint;
BEGIN
    IF ids IS NOT NULL AND cardinality(ids) = 0 THEN
        RETURN;  -- the statement changed no row
    END IF;
    IF cardinality(ids) > 10000 THEN
        ids := NULL;  -- say "everyone"
    END IF;
    INSERT INTO cache_outbox (user_ids, scope) VALUES (ids, change_scope) RETURNING id INTO row_id;
    IF pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('hita_cache', json_build_object('i', row_id)::text);
    END IF;
END
$$;
