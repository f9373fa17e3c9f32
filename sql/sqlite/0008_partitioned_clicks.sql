-- PostgreSQL partitions its clicks by time in this migration (issue #21). SQLite keeps one clicks
-- table: the embedded store serves one instance, and retention (CLICK_RETENTION_DAYS) deletes its
-- old clicks in bounded batches instead of dropping partitions. The events' foreign keys to clicks
-- stay, so that no event can be stored for an unknown click; the retention's deletes alone run with
-- foreign keys unchecked, because events outlive the clicks they came from.
SELECT 1;
