-- Postbacks held for clicks not stored yet (issue #19). Behind a load balancer a platform may send
-- an FTD to one instance a moment after another instance answered the click, while the click still
-- waits in that instance's writer. An authenticated postback (its secret is an offer's) for a recent
-- click id that is not stored yet is kept here and answered 202 pending; whichever instance then
-- finds its click stored applies it, through the same rules as any postback (which make a second
-- application a duplicate, never a second event). Past expires_at it is dropped, and its log line
-- says expired. The secret is never stored: offer_id is the offer it matched. Times in
-- microseconds since the Unix epoch, money in integer micro-units.
CREATE TABLE held_postbacks (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    click_id           TEXT NOT NULL,
    offer_id           INTEGER NOT NULL REFERENCES offers (id),
    -- The event after the offer's aliases, and what makes a repeat of it a duplicate while held.
    kind               TEXT NOT NULL,
    repeat_key         TEXT NOT NULL,
    amount_micros      INTEGER,
    currency           TEXT NOT NULL,
    tid                TEXT,
    external_player_id TEXT,
    received_at        INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    -- Its line in postback_log (outcome 'pending' while held).
    log_id             INTEGER NOT NULL REFERENCES postback_log (id),
    -- An instance applying it holds it until then (a lease, so that a crash mid-way frees it).
    claimed_until      INTEGER,
    UNIQUE (click_id, kind, repeat_key)
);
CREATE INDEX held_postbacks_expires ON held_postbacks (expires_at);
CREATE INDEX held_postbacks_offer ON held_postbacks (offer_id);
