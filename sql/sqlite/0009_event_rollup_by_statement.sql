-- A payout names its FTD's click, as on PostgreSQL, where events are found by their click on a
-- distributed database (issue #21). SQLite keeps 0007's triggers for the event rollup: it serves one
-- instance on one file, and its triggers run in the transaction of the statement that fires them.
ALTER TABLE payouts ADD COLUMN click_id TEXT NOT NULL DEFAULT '';
UPDATE payouts SET click_id = (SELECT f.click_id FROM ftd_events f WHERE f.id = payouts.ftd_event_id);
CREATE UNIQUE INDEX payouts_click ON payouts (click_id);
