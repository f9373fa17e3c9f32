-- Registrations, FTDs and revenue per offer, hour of the click, and value of each visitor dimension,
-- kept by triggers in the transaction of every event, whichever code path writes it (one postback,
-- a batch, a held postback, a rejection). Reports over long periods read these few thousand rows
-- instead of every event and its click (issue #20: the dashboard's pages on 10 million clicks).
--
-- dimension '' (value '') holds each offer's totals; 'country', 'device', 'source' and 'campaign'
-- hold them by the click's value ('' when it had none), as click_rollup_dims does for clicks.
-- amount is the revenue, by the reports' rule: the payouts of FTDs not rejected, plus every deposit.
CREATE TABLE event_rollup_hourly (
    offer_id      BIGINT NOT NULL,
    hour          TIMESTAMPTZ NOT NULL,
    dimension     TEXT NOT NULL,
    value         TEXT NOT NULL,
    registrations BIGINT NOT NULL DEFAULT 0,
    ftds          BIGINT NOT NULL DEFAULT 0,
    amount        NUMERIC(20, 6) NOT NULL DEFAULT 0,
    PRIMARY KEY (dimension, hour, offer_id, value)
);

-- An event's part in the rollup.
CREATE TYPE rollup_event AS (click_id UUID, offer_id BIGINT, click_at TIMESTAMPTZ, registrations BIGINT,
                             ftds BIGINT, revenue NUMERIC);

-- Adds the events to their rows, once per dimension (the visitor's values are the click's). Rows are
-- locked in key order, so that concurrent transactions wait for each other instead of deadlocking.
CREATE FUNCTION event_rollup_add(events rollup_event[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO event_rollup_hourly AS r (offer_id, hour, dimension, value, registrations, ftds, amount)
    SELECT e.offer_id, date_trunc('hour', e.click_at, 'UTC'), d.dimension, d.value,
           sum(e.registrations), sum(e.ftds), sum(e.revenue)
    FROM unnest(events) e
    JOIN clicks c ON c.click_id = e.click_id
    CROSS JOIN LATERAL (VALUES ('', ''), ('country', COALESCE(c.country, '')), ('device', COALESCE(c.device, '')),
                               ('source', COALESCE(c.source, '')), ('campaign', COALESCE(c.campaign, ''))) d(dimension, value)
    GROUP BY 1, 2, 3, 4
    ORDER BY 3, 2, 1, 4
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET
        registrations = r.registrations + excluded.registrations,
        ftds = r.ftds + excluded.ftds,
        amount = r.amount + excluded.amount
$$;

-- One statement-level trigger per kind of event: a batch of postbacks is one statement, and its
-- events are added in one pass.
CREATE FUNCTION event_rollup_registrations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM event_rollup_add(ARRAY(SELECT ROW(n.click_id, n.offer_id, n.click_at, 1, 0, 0)::rollup_event
                                   FROM new_rows n));
    RETURN NULL;
END $$;
CREATE TRIGGER registrations_rollup AFTER INSERT ON registrations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_rollup_registrations();

CREATE FUNCTION event_rollup_ftds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM event_rollup_add(ARRAY(SELECT ROW(n.click_id, n.offer_id, n.click_at, 0, 1, 0)::rollup_event
                                   FROM new_rows n WHERE n.voided_at IS NULL));
    RETURN NULL;
END $$;
CREATE TRIGGER ftd_events_rollup AFTER INSERT ON ftd_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_rollup_ftds();

-- A payout counts while its FTD is not rejected.
CREATE FUNCTION event_rollup_payouts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM event_rollup_add(ARRAY(SELECT ROW(f.click_id, f.offer_id, f.click_at, 0, 0, n.amount)::rollup_event
                                   FROM new_rows n JOIN ftd_events f ON f.id = n.ftd_event_id
                                   WHERE f.voided_at IS NULL));
    RETURN NULL;
END $$;
CREATE TRIGGER payouts_rollup AFTER INSERT ON payouts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_rollup_payouts();

CREATE FUNCTION event_rollup_deposits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM event_rollup_add(ARRAY(SELECT ROW(n.click_id, n.offer_id, n.click_at, 0, 0, n.amount)::rollup_event
                                   FROM new_rows n));
    RETURN NULL;
END $$;
CREATE TRIGGER deposits_rollup AFTER INSERT ON deposits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION event_rollup_deposits();

-- A rejection takes the FTD and its payout out.
CREATE FUNCTION event_rollup_rejection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM event_rollup_add(ARRAY[ROW(NEW.click_id, NEW.offer_id, NEW.click_at, 0, -1,
        -COALESCE((SELECT amount FROM payouts WHERE ftd_event_id = NEW.id), 0))::rollup_event]);
    RETURN NULL;
END $$;
CREATE TRIGGER ftd_events_rejection_rollup AFTER UPDATE OF voided_at ON ftd_events
    FOR EACH ROW WHEN (OLD.voided_at IS NULL AND NEW.voided_at IS NOT NULL) EXECUTE FUNCTION event_rollup_rejection();

-- Reports read the whole hours of a range from the rollup and its partial first and last hours
-- from the events themselves, found by the time of their click.
CREATE INDEX ftd_events_click_at ON ftd_events (click_at);
CREATE INDEX deposits_click_at ON deposits (click_at);
CREATE INDEX registrations_click_at ON registrations (click_at);

-- The events stored before this migration.
SELECT event_rollup_add(ARRAY(
    SELECT ROW(click_id, offer_id, click_at, 1, 0, 0)::rollup_event FROM registrations
    UNION ALL
    SELECT ROW(f.click_id, f.offer_id, f.click_at, 0, 1, COALESCE(p.amount, 0))::rollup_event
    FROM ftd_events f LEFT JOIN payouts p ON p.ftd_event_id = f.id WHERE f.voided_at IS NULL
    UNION ALL
    SELECT ROW(click_id, offer_id, click_at, 0, 0, amount)::rollup_event FROM deposits
));
