-- The event rollup (0007) is kept by the statements that write events, no longer by triggers, and a
-- payout names its FTD's click (issue #21). Both for a distributed PostgreSQL (Citus), which shards
-- every event by its click: there a trigger runs on each shard, where it cannot update rollup rows
-- that live on other shards, and a payout is found on its FTD's shard only by the click id. On one
-- server the statements do the same work the triggers did, in the same transaction.

DROP TRIGGER registrations_rollup ON registrations;
DROP TRIGGER ftd_events_rollup ON ftd_events;
DROP TRIGGER ftd_events_rejection_rollup ON ftd_events;
DROP TRIGGER payouts_rollup ON payouts;
DROP TRIGGER deposits_rollup ON deposits;
DROP FUNCTION event_rollup_registrations(), event_rollup_ftds(), event_rollup_payouts(), event_rollup_deposits(),
    event_rollup_rejection(), event_rollup_add(rollup_event[]);
DROP TYPE rollup_event;

ALTER TABLE payouts ADD COLUMN click_id UUID;
UPDATE payouts p SET click_id = f.click_id FROM ftd_events f WHERE f.id = p.ftd_event_id;
ALTER TABLE payouts ALTER COLUMN click_id SET NOT NULL;
CREATE UNIQUE INDEX payouts_click ON payouts (click_id);
