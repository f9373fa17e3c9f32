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

-- FTDs of the current UTC day, for the daily FTD caps.
CREATE INDEX ftd_events_time ON ftd_events (ftd_timestamp);
