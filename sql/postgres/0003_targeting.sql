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

-- FTDs of the current UTC day, for the daily FTD caps.
CREATE INDEX ftd_events_time ON ftd_events (ftd_timestamp);
