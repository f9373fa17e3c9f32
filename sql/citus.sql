-- The distributed layout, applied once, after the migrations, to a database where the Citus
-- extension is installed (issue #21; see SCALING.md). Clicks and every event of a click are sharded
-- by click_id and co-located, so a postback's statements touch one shard; the rollups and routing
-- history by offer_id, co-located with each other; offers, the routing version and the segment
-- rollup marks are reference tables (a copy on every node); the postback log, dashboard sessions,
-- the partition list and schema_migrations stay on the coordinator.
--
-- What Citus requires of the single-server schema, and so what changes here:
-- - every primary or unique key of a distributed table contains its distribution column: events get
--   (click_id, id), a payout is unique per click, weight history is keyed (offer_id, id);
-- - one transaction id per offer (an FTD's, a deposit's) cannot be a unique index of tables sharded
--   by click: event_tids, sharded by offer, holds them, and the event statements claim a tid there
--   in the statement that inserts the event;
-- - a distributed table cannot refer to a local one, and a reference to offers would force
--   Citus's sequential mode on every postback: held postbacks lose their foreign keys to the
--   postback log (their line is written first, in the same transaction) and to offers.

ALTER TABLE held_postbacks DROP CONSTRAINT held_postbacks_log_id_fkey;
ALTER TABLE held_postbacks DROP CONSTRAINT held_postbacks_offer_id_fkey;

ALTER TABLE ftd_events DROP CONSTRAINT ftd_events_pkey CASCADE; -- and payouts' foreign key on it
ALTER TABLE ftd_events ADD PRIMARY KEY (click_id, id);
ALTER TABLE payouts DROP CONSTRAINT payouts_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE payouts DROP CONSTRAINT payouts_ftd_event_id_key, ADD CONSTRAINT payouts_click_id_key UNIQUE (click_id);
ALTER TABLE payouts ADD CONSTRAINT payouts_ftd_fkey FOREIGN KEY (click_id, ftd_event_id)
    REFERENCES ftd_events (click_id, id);
ALTER TABLE registrations DROP CONSTRAINT registrations_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE deposits DROP CONSTRAINT deposits_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE held_postbacks DROP CONSTRAINT held_postbacks_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE weight_history DROP CONSTRAINT weight_history_pkey, ADD PRIMARY KEY (offer_id, id);

CREATE TABLE event_tids (
    offer_id BIGINT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('ftd', 'deposit')),
    tid      TEXT NOT NULL,
    click_id UUID NOT NULL,
    PRIMARY KEY (offer_id, kind, tid)
);
INSERT INTO event_tids (offer_id, kind, tid, click_id)
SELECT offer_id, 'ftd', tid, click_id FROM ftd_events WHERE tid IS NOT NULL
UNION ALL
SELECT offer_id, 'deposit', tid, click_id FROM deposits;
DROP INDEX ftd_events_offer_tid;
ALTER TABLE deposits DROP CONSTRAINT deposits_offer_id_tid_key;

SELECT create_reference_table('offers');
SELECT create_reference_table('routing_state');
SELECT create_reference_table('segment_rollups');

SELECT create_distributed_table('clicks', 'click_id');
SELECT create_distributed_table('ftd_events', 'click_id', colocate_with => 'clicks');
SELECT create_distributed_table('payouts', 'click_id', colocate_with => 'clicks');
SELECT create_distributed_table('registrations', 'click_id', colocate_with => 'clicks');
SELECT create_distributed_table('deposits', 'click_id', colocate_with => 'clicks');
SELECT create_distributed_table('held_postbacks', 'click_id', colocate_with => 'clicks');

SELECT create_distributed_table('click_rollup_hourly', 'offer_id', colocate_with => 'none');
SELECT create_distributed_table('click_rollup_dims', 'offer_id', colocate_with => 'click_rollup_hourly');
SELECT create_distributed_table('event_rollup_hourly', 'offer_id', colocate_with => 'click_rollup_hourly');
SELECT create_distributed_table('event_tids', 'offer_id', colocate_with => 'click_rollup_hourly');
SELECT create_distributed_table('routing_history', 'offer_id', colocate_with => 'click_rollup_hourly');
SELECT create_distributed_table('weight_history', 'offer_id', colocate_with => 'click_rollup_hourly');
