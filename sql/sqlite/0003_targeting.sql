-- Targeting: who an offer accepts (countries, devices, sources, campaigns, as one JSON object of
-- lists; absent = anyone) and its daily caps (per UTC day; NULL = none).
ALTER TABLE offers ADD COLUMN targeting TEXT NOT NULL DEFAULT '{}';
ALTER TABLE offers ADD COLUMN daily_click_cap INTEGER CHECK (daily_click_cap > 0);
ALTER TABLE offers ADD COLUMN daily_ftd_cap INTEGER CHECK (daily_ftd_cap > 0);

-- What the router knew of each visitor. Country and device are NULL for clicks recorded before
-- this migration. A click sent to the fallback URL has no offer: offer_id 0, is_fallback 1.
ALTER TABLE clicks ADD COLUMN country TEXT;
ALTER TABLE clicks ADD COLUMN device TEXT;
ALTER TABLE clicks ADD COLUMN is_bot INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clicks ADD COLUMN is_fallback INTEGER NOT NULL DEFAULT 0;

-- Bot clicks of each hour, kept apart: the weight engines count clicks - bots as exposure.
ALTER TABLE click_rollup_hourly ADD COLUMN bots INTEGER NOT NULL DEFAULT 0;

-- Clicks per offer, hour and value of one visitor dimension (country, device, source, campaign;
-- '' when the click had none), for `/admin/stats?group_by=`. Maintained with click_rollup_hourly.
CREATE TABLE click_rollup_dims (
    offer_id  INTEGER NOT NULL,
    hour      INTEGER NOT NULL,
    dimension TEXT NOT NULL,
    value     TEXT NOT NULL,
    clicks    INTEGER NOT NULL,
    bots      INTEGER NOT NULL,
    PRIMARY KEY (dimension, hour, offer_id, value)
) WITHOUT ROWID;

-- The clicks stored before this migration, by source and campaign, and with an unknown ('') country
-- and device, so that grouped reports count them too. (A long history makes this migration scan
-- every click once.)
INSERT INTO click_rollup_dims (offer_id, hour, dimension, value, clicks, bots)
SELECT offer_id, (created_at / 3600000000) * 3600000000, 'source', COALESCE(source, ''), count(*), 0 FROM clicks GROUP BY 1, 2, 4
UNION ALL
SELECT offer_id, (created_at / 3600000000) * 3600000000, 'campaign', COALESCE(campaign, ''), count(*), 0 FROM clicks GROUP BY 1, 2, 4
UNION ALL
SELECT offer_id, hour, 'country', '', clicks, 0 FROM click_rollup_hourly
UNION ALL
SELECT offer_id, hour, 'device', '', clicks, 0 FROM click_rollup_hourly;

-- The day's click totals of every offer, for the daily caps: read by hour at each refresh.
CREATE INDEX click_rollup_hourly_hour ON click_rollup_hourly (hour);

-- FTDs of the current UTC day, for the daily FTD caps.
CREATE INDEX ftd_events_time ON ftd_events (ftd_timestamp);
