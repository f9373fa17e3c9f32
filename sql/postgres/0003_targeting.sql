-- Targeting: who an offer accepts (countries, devices, sources, campaigns, as one JSON object of
-- lists; absent = anyone) and its daily caps (per UTC day; NULL = none).
ALTER TABLE offers ADD COLUMN targeting JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE offers ADD COLUMN daily_click_cap BIGINT CHECK (daily_click_cap > 0);
ALTER TABLE offers ADD COLUMN daily_ftd_cap BIGINT CHECK (daily_ftd_cap > 0);

-- What the router knew of each visitor. Country and device are NULL for clicks recorded before
-- this migration. A click sent to the fallback URL has no offer: offer_id 0, is_fallback TRUE.
ALTER TABLE clicks ADD COLUMN country TEXT;
ALTER TABLE clicks ADD COLUMN device TEXT;
ALTER TABLE clicks ADD COLUMN is_bot BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clicks ADD COLUMN is_fallback BOOLEAN NOT NULL DEFAULT FALSE;

-- Bot clicks of each hour, kept apart: the weight engines count clicks - bots as exposure.
ALTER TABLE click_rollup_hourly ADD COLUMN bots BIGINT NOT NULL DEFAULT 0;

-- Clicks per offer, hour and value of one visitor dimension (country, device, source, campaign;
-- '' when the click had none), for `/admin/stats?group_by=`. Maintained with click_rollup_hourly.
CREATE TABLE click_rollup_dims (
    offer_id  BIGINT NOT NULL,
    hour      TIMESTAMPTZ NOT NULL,
    dimension TEXT NOT NULL,
    value     TEXT NOT NULL,
    clicks    BIGINT NOT NULL,
    bots      BIGINT NOT NULL,
    PRIMARY KEY (dimension, hour, offer_id, value)
);

-- The clicks stored before this migration, by source and campaign, and with an unknown ('') country
-- and device, so that grouped reports count them too. (A long history makes this migration scan
-- every click once.)
INSERT INTO click_rollup_dims (offer_id, hour, dimension, value, clicks, bots)
SELECT offer_id, date_trunc('hour', created_at, 'UTC'), 'source', COALESCE(source, ''), count(*), 0 FROM clicks GROUP BY 1, 2, 4
UNION ALL
SELECT offer_id, date_trunc('hour', created_at, 'UTC'), 'campaign', COALESCE(campaign, ''), count(*), 0 FROM clicks GROUP BY 1, 2, 4
UNION ALL
SELECT offer_id, hour, 'country', '', clicks, 0 FROM click_rollup_hourly
UNION ALL
SELECT offer_id, hour, 'device', '', clicks, 0 FROM click_rollup_hourly;

-- The day's click totals of every offer, for the daily caps: read by hour at each refresh.
CREATE INDEX click_rollup_hourly_hour ON click_rollup_hourly (hour);

-- FTDs of the current UTC day, for the daily FTD caps.
CREATE INDEX ftd_events_time ON ftd_events (ftd_timestamp);
