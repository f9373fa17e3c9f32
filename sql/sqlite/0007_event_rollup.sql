-- Registrations, FTDs and revenue per offer, hour of the click, and value of each visitor dimension,
-- kept by triggers in the transaction of every event, as on PostgreSQL (see
-- sql/postgres/0007_event_rollup.sql): dimension '' holds each offer's totals; amount_micros is the
-- revenue (payouts of FTDs not rejected, plus every deposit), in micro-units; hours in microseconds.
CREATE TABLE event_rollup_hourly (
    offer_id      INTEGER NOT NULL,
    hour          INTEGER NOT NULL,
    dimension     TEXT NOT NULL,
    value         TEXT NOT NULL,
    registrations INTEGER NOT NULL DEFAULT 0,
    ftds          INTEGER NOT NULL DEFAULT 0,
    amount_micros INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dimension, hour, offer_id, value)
) WITHOUT ROWID;

-- Each click's row in every dimension ('' for its offer's totals).
CREATE VIEW click_dimensions AS
    SELECT click_id, '' AS dimension, '' AS value FROM clicks
    UNION ALL SELECT click_id, 'country', COALESCE(country, '') FROM clicks
    UNION ALL SELECT click_id, 'device', COALESCE(device, '') FROM clicks
    UNION ALL SELECT click_id, 'source', COALESCE(source, '') FROM clicks
    UNION ALL SELECT click_id, 'campaign', COALESCE(campaign, '') FROM clicks;

CREATE TRIGGER registrations_rollup AFTER INSERT ON registrations BEGIN
    INSERT INTO event_rollup_hourly (offer_id, hour, dimension, value, registrations)
    SELECT NEW.offer_id, NEW.click_at / 3600000000 * 3600000000, dimension, value, 1
    FROM click_dimensions WHERE click_id = NEW.click_id
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET registrations = registrations + 1;
END;

CREATE TRIGGER ftd_events_rollup AFTER INSERT ON ftd_events WHEN NEW.voided_at IS NULL BEGIN
    INSERT INTO event_rollup_hourly (offer_id, hour, dimension, value, ftds)
    SELECT NEW.offer_id, NEW.click_at / 3600000000 * 3600000000, dimension, value, 1
    FROM click_dimensions WHERE click_id = NEW.click_id
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET ftds = ftds + 1;
END;

-- A payout counts while its FTD is not rejected.
CREATE TRIGGER payouts_rollup AFTER INSERT ON payouts BEGIN
    INSERT INTO event_rollup_hourly (offer_id, hour, dimension, value, amount_micros)
    SELECT f.offer_id, f.click_at / 3600000000 * 3600000000, d.dimension, d.value, NEW.amount_micros
    FROM ftd_events f JOIN click_dimensions d ON d.click_id = f.click_id
    WHERE f.id = NEW.ftd_event_id AND f.voided_at IS NULL
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET amount_micros = amount_micros + NEW.amount_micros;
END;

CREATE TRIGGER deposits_rollup AFTER INSERT ON deposits BEGIN
    INSERT INTO event_rollup_hourly (offer_id, hour, dimension, value, amount_micros)
    SELECT NEW.offer_id, NEW.click_at / 3600000000 * 3600000000, dimension, value, NEW.amount_micros
    FROM click_dimensions WHERE click_id = NEW.click_id
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET amount_micros = amount_micros + NEW.amount_micros;
END;

-- A rejection takes the FTD and its payout out.
CREATE TRIGGER ftd_events_rejection_rollup AFTER UPDATE OF voided_at ON ftd_events
WHEN OLD.voided_at IS NULL AND NEW.voided_at IS NOT NULL BEGIN
    UPDATE event_rollup_hourly
    SET ftds = ftds - 1,
        amount_micros = amount_micros - COALESCE((SELECT amount_micros FROM payouts WHERE ftd_event_id = NEW.id), 0)
    WHERE offer_id = NEW.offer_id AND hour = NEW.click_at / 3600000000 * 3600000000
      AND (dimension, value) IN (SELECT dimension, value FROM click_dimensions WHERE click_id = NEW.click_id);
END;

-- Reports read the whole hours of a range from the rollup and its partial first and last hours
-- from the events themselves, found by the time of their click.
CREATE INDEX ftd_events_click_at ON ftd_events (click_at);
CREATE INDEX deposits_click_at ON deposits (click_at);
CREATE INDEX registrations_click_at ON registrations (click_at);

-- The events stored before this migration.
INSERT INTO event_rollup_hourly (offer_id, hour, dimension, value, registrations, ftds, amount_micros)
SELECT e.offer_id, e.click_at / 3600000000 * 3600000000, d.dimension, d.value,
       sum(e.registrations), sum(e.ftds), sum(e.amount_micros)
FROM (
    SELECT click_id, offer_id, click_at, 1 AS registrations, 0 AS ftds, 0 AS amount_micros FROM registrations
    UNION ALL
    SELECT f.click_id, f.offer_id, f.click_at, 0, 1, COALESCE(p.amount_micros, 0)
    FROM ftd_events f LEFT JOIN payouts p ON p.ftd_event_id = f.id WHERE f.voided_at IS NULL
    UNION ALL
    SELECT click_id, offer_id, click_at, 0, 0, amount_micros FROM deposits
) e JOIN click_dimensions d ON d.click_id = e.click_id
GROUP BY 1, 2, 3, 4;
