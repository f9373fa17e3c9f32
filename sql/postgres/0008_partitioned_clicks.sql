-- Clicks partitioned by time (issue #21), so that old clicks leave by dropping a whole partition
-- (CLICK_RETENTION_DAYS) instead of by DELETE, and each partition's indexes stay the size of its days.
--
-- The partition key is the click id itself: a UUID v7 begins with its millisecond, so a range of ids
-- is a range of time, the primary key stays (click_id) alone, and every lookup of one click (a
-- postback, a held postback) is pruned to the one partition that can hold it, with no other column
-- to pass. The router creates partitions ahead of time and drops those past retention (the store's
-- `maintain_clicks`, every hour); this migration creates them for the history it moves.
--
-- Partitions live in the schema click_partitions, named dYYYYMMDD by their first day, and listed
-- with their bounds in click_partitions.bounds. click_partitions.other (the default partition)
-- catches a click no partition covers (a clock far off, a replay older than the first partition);
-- a partition created later takes its rows out of it.
--
-- Events keep no foreign key to clicks: a partitioned table cannot lose a partition that rows
-- elsewhere refer to, and events outlive the clicks retention drops. What the key guaranteed (no
-- event for an unknown click) each event insert now checks itself: it inserts only the rows whose
-- click it finds, in the same statement.

ALTER TABLE ftd_events DROP CONSTRAINT ftd_events_click_id_fkey;
ALTER TABLE registrations DROP CONSTRAINT registrations_click_id_fkey;
ALTER TABLE deposits DROP CONSTRAINT deposits_click_id_fkey;

ALTER TABLE clicks RENAME TO clicks_unpartitioned;
ALTER INDEX clicks_pkey RENAME TO clicks_unpartitioned_pkey;
ALTER INDEX clicks_offer_time RENAME TO clicks_unpartitioned_offer_time;

CREATE TABLE clicks (LIKE clicks_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (click_id);
ALTER TABLE clicks ADD PRIMARY KEY (click_id);
CREATE INDEX clicks_offer_time ON clicks (offer_id, created_at DESC);

CREATE SCHEMA click_partitions;
CREATE TABLE click_partitions.other PARTITION OF clicks DEFAULT;

-- Every partition but the default: its table's name in click_partitions, and the time it covers.
CREATE TABLE click_partitions.bounds (
    name   TEXT PRIMARY KEY,
    starts TIMESTAMPTZ NOT NULL UNIQUE,
    ends   TIMESTAMPTZ NOT NULL CHECK (ends > starts)
);

-- The smallest UUID of the millisecond `t` starts (the version and random bits zero): every click id
-- minted at or after `t` is at least this, every one minted before is less.
CREATE FUNCTION click_partitions.first_id(t TIMESTAMPTZ) RETURNS UUID IMMUTABLE STRICT LANGUAGE sql AS $$
    SELECT CAST(lpad(to_hex(CAST(floor(extract(epoch FROM t) * 1000) AS BIGINT)), 12, '0') || repeat('0', 20) AS UUID)
$$;

-- Creates the partition of [starts_at, ends_at), named by its first day. The rows of the default
-- partition that it covers move into it before it is attached (attaching checks that none is left).
CREATE FUNCTION click_partitions.create(starts_at TIMESTAMPTZ, ends_at TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    partition TEXT := 'd' || to_char(starts_at AT TIME ZONE 'UTC', 'YYYYMMDD');
    first_id UUID := click_partitions.first_id(starts_at);
    end_id UUID := click_partitions.first_id(ends_at);
BEGIN
    EXECUTE format('CREATE TABLE click_partitions.%I (LIKE clicks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', partition);
    EXECUTE format('WITH moved AS (DELETE FROM click_partitions.other WHERE click_id >= $1 AND click_id < $2 RETURNING *)
                    INSERT INTO click_partitions.%I SELECT * FROM moved', partition)
        USING first_id, end_id;
    EXECUTE format('ALTER TABLE clicks ATTACH PARTITION click_partitions.%I FOR VALUES FROM (%L) TO (%L)',
                   partition, first_id, end_id);
    INSERT INTO click_partitions.bounds (name, starts, ends) VALUES (partition, starts_at, ends_at);
END $$;

-- Adds partitions of `days` days each until [since, upto] is covered: after the last one, before the
-- first one, or from the UTC day of `since` when there is none. Returns how many were created. One
-- caller at a time (the advisory lock), so that instances starting together do not create the same
-- partition twice.
CREATE FUNCTION click_partitions.extend(since TIMESTAMPTZ, upto TIMESTAMPTZ, days INTEGER)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    span INTERVAL := make_interval(days => days);
    first_start TIMESTAMPTZ;
    last_end TIMESTAMPTZ;
    created INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7161097350405439491);
    SELECT min(b.starts), max(b.ends) INTO first_start, last_end FROM click_partitions.bounds b;
    IF first_start IS NULL THEN
        first_start := date_trunc('day', since, 'UTC');
        last_end := first_start;
    END IF;
    WHILE first_start > since LOOP
        PERFORM click_partitions.create(first_start - span, first_start);
        first_start := first_start - span;
        created := created + 1;
    END LOOP;
    WHILE last_end <= upto LOOP
        PERFORM click_partitions.create(last_end, last_end + span);
        last_end := last_end + span;
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;

-- Drops the partitions that end at or before `before`, and deletes the default partition's clicks
-- older than it; returns the names of the partitions dropped. Dropping a partition locks `clicks`
-- for a moment, until the transaction commits: the caller bounds the wait with lock_timeout.
CREATE FUNCTION click_partitions.drop_before(before TIMESTAMPTZ)
RETURNS SETOF TEXT LANGUAGE plpgsql AS $$
DECLARE
    partition TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(7161097350405439491);
    FOR partition IN SELECT b.name FROM click_partitions.bounds b WHERE b.ends <= before ORDER BY b.starts LOOP
        EXECUTE format('DROP TABLE click_partitions.%I', partition);
        DELETE FROM click_partitions.bounds WHERE name = partition;
        RETURN NEXT partition;
    END LOOP;
    DELETE FROM click_partitions.other WHERE click_id < click_partitions.first_id(before);
END $$;

-- The event rollup's function (0007) looks each event's click up by its id, one probe per event: as a
-- plain join, the planner may hash all of `clicks` (every partition) for a handful of events, which it
-- did on partitions not analyzed yet. OFFSET 0 keeps the subquery apart, so each probe is pruned to
-- the partition of its id.
CREATE OR REPLACE FUNCTION event_rollup_add(events rollup_event[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO event_rollup_hourly AS r (offer_id, hour, dimension, value, registrations, ftds, amount)
    SELECT e.offer_id, date_trunc('hour', e.click_at, 'UTC'), d.dimension, d.value,
           sum(e.registrations), sum(e.ftds), sum(e.revenue)
    FROM unnest(events) e
    CROSS JOIN LATERAL (SELECT c.country, c.device, c.source, c.campaign FROM clicks c
                        WHERE c.click_id = e.click_id OFFSET 0) c
    CROSS JOIN LATERAL (VALUES ('', ''), ('country', COALESCE(c.country, '')), ('device', COALESCE(c.device, '')),
                               ('source', COALESCE(c.source, '')), ('campaign', COALESCE(c.campaign, ''))) d(dimension, value)
    GROUP BY 1, 2, 3, 4
    ORDER BY 3, 2, 1, 4
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET
        registrations = r.registrations + excluded.registrations,
        ftds = r.ftds + excluded.ftds,
        amount = r.amount + excluded.amount
$$;

-- The history: partitions for its days (and a week ahead), then its rows, in this transaction.
SELECT click_partitions.extend(coalesce(min(created_at), now()), now() + interval '7 days', 1)
FROM clicks_unpartitioned;
INSERT INTO clicks SELECT * FROM clicks_unpartitioned;
DROP TABLE clicks_unpartitioned;
