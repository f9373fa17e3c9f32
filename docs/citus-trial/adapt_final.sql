-- Citus adaptation, applied after 0001..0008 on the coordinator.
\set ON_ERROR_STOP 1
-- 0007's rollup triggers: cannot stay (see findings (b)).
DROP TRIGGER registrations_rollup ON registrations;
DROP TRIGGER ftd_events_rollup ON ftd_events;
DROP TRIGGER ftd_events_rejection_rollup ON ftd_events;
DROP TRIGGER payouts_rollup ON payouts;
DROP TRIGGER deposits_rollup ON deposits;

-- held_postbacks.log_id cannot reference postback_log once held_postbacks is distributed by click_id.
ALTER TABLE held_postbacks DROP CONSTRAINT held_postbacks_log_id_fkey;
-- held_postbacks.offer_id -> offers (reference): allowed, but then any transaction that reads a distributed
-- table in parallel and then modifies offers fails (recalculation, offer deletion); see findings.
ALTER TABLE held_postbacks DROP CONSTRAINT held_postbacks_offer_id_fkey;

-- payouts get the click id of their FTD (filled while both are still local).
ALTER TABLE payouts ADD COLUMN click_id UUID;
UPDATE payouts p SET click_id = f.click_id FROM ftd_events f WHERE f.id = p.ftd_event_id;
ALTER TABLE payouts ALTER COLUMN click_id SET NOT NULL;

-- keys that must contain the distribution column
ALTER TABLE ftd_events DROP CONSTRAINT ftd_events_pkey CASCADE;          -- drops payouts_ftd_event_id_fkey
ALTER TABLE ftd_events ADD PRIMARY KEY (click_id, id);
DROP INDEX ftd_events_offer_tid;                                          -- UNIQUE (offer_id, tid): not enforceable
ALTER TABLE registrations DROP CONSTRAINT registrations_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE deposits DROP CONSTRAINT deposits_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE deposits DROP CONSTRAINT deposits_offer_id_tid_key, ADD CONSTRAINT deposits_click_offer_tid_key UNIQUE (click_id, offer_id, tid);
ALTER TABLE payouts DROP CONSTRAINT payouts_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE payouts DROP CONSTRAINT payouts_ftd_event_id_key, ADD CONSTRAINT payouts_click_id_key UNIQUE (click_id);
ALTER TABLE payouts ADD CONSTRAINT payouts_ftd_fkey FOREIGN KEY (click_id, ftd_event_id) REFERENCES ftd_events (click_id, id);
ALTER TABLE held_postbacks DROP CONSTRAINT held_postbacks_pkey, ADD PRIMARY KEY (click_id, id);
ALTER TABLE weight_history DROP CONSTRAINT weight_history_pkey, ADD PRIMARY KEY (offer_id, id);

-- event_rollup_add: LANGUAGE sql cannot take part in distributed plans, and the OFFSET 0 lateral of 0008 is
-- refused; plpgsql with a plain join works when called on the coordinator (not from a shard).
DROP FUNCTION event_rollup_add(rollup_event[]);
CREATE FUNCTION event_rollup_add(events rollup_event[]) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    ids UUID[] := ARRAY(SELECT e.click_id FROM unnest(events) e);  -- a parameter: prunes clicks to the shards of these ids
BEGIN
    INSERT INTO event_rollup_hourly AS r (offer_id, hour, dimension, value, registrations, ftds, amount)
    SELECT e.offer_id, date_trunc('hour', e.click_at, 'UTC'), d.dimension, d.value,
           sum(e.registrations), sum(e.ftds), sum(e.revenue)
    FROM unnest(events) e
    JOIN clicks c ON c.click_id = e.click_id AND c.click_id = ANY (ids)
    CROSS JOIN LATERAL (VALUES ('', ''), ('country', COALESCE(c.country, '')), ('device', COALESCE(c.device, '')),
                               ('source', COALESCE(c.source, '')), ('campaign', COALESCE(c.campaign, ''))) d(dimension, value)
    GROUP BY 1, 2, 3, 4
    ORDER BY 3, 2, 1, 4
    ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET
        registrations = r.registrations + excluded.registrations,
        ftds = r.ftds + excluded.ftds,
        amount = r.amount + excluded.amount;
END $f$;
DROP FUNCTION event_rollup_registrations(), event_rollup_ftds(), event_rollup_payouts(), event_rollup_deposits(), event_rollup_rejection();

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
SELECT create_distributed_table('routing_history', 'offer_id', colocate_with => 'click_rollup_hourly');
SELECT create_distributed_table('weight_history', 'offer_id', colocate_with => 'click_rollup_hourly');

