-- casino-router schema, embedded SQLite. Kept in step with sql/postgres/0001_initial.sql: the same
-- tables, keys and unique constraints. Differences of representation only:
--   times are INTEGER microseconds since the Unix epoch (UTC);
--   money is INTEGER micro-units (amount x 1,000,000), so sums are exact;
--   UUIDs and IP addresses are TEXT; aliases are a JSON TEXT object.

CREATE TABLE offers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL CHECK (name <> ''),
    casino_url      TEXT NOT NULL,
    weight          REAL NOT NULL DEFAULT 1.0 CHECK (weight >= 0),
    postback_secret TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,
    event_aliases   TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE routing_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
INSERT INTO routing_state (singleton, version) VALUES (1, 1);

-- No foreign key to offers on purpose (see the PostgreSQL schema).
CREATE TABLE clicks (
    click_id   TEXT PRIMARY KEY,
    offer_id   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    user_agent TEXT,
    ip_address TEXT,
    referrer   TEXT,
    source     TEXT,
    campaign   TEXT,
    propensity REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX clicks_offer_time ON clicks (offer_id, created_at DESC);

CREATE TABLE click_rollup_hourly (
    offer_id INTEGER NOT NULL,
    hour     INTEGER NOT NULL,
    clicks   INTEGER NOT NULL,
    PRIMARY KEY (offer_id, hour)
) WITHOUT ROWID;

CREATE TABLE ftd_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    click_id           TEXT NOT NULL UNIQUE REFERENCES clicks (click_id),
    offer_id           INTEGER NOT NULL,
    click_at           INTEGER NOT NULL,
    ftd_timestamp      INTEGER NOT NULL,
    external_player_id TEXT,
    tid                TEXT,
    voided_at          INTEGER
);
CREATE UNIQUE INDEX ftd_events_offer_tid ON ftd_events (offer_id, tid) WHERE tid IS NOT NULL;
CREATE INDEX ftd_events_offer_click_at ON ftd_events (offer_id, click_at);

CREATE TABLE payouts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ftd_event_id  INTEGER NOT NULL UNIQUE REFERENCES ftd_events (id),
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    currency      TEXT NOT NULL,
    received_at   INTEGER NOT NULL
);

CREATE TABLE registrations (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    click_id           TEXT NOT NULL UNIQUE REFERENCES clicks (click_id),
    offer_id           INTEGER NOT NULL,
    click_at           INTEGER NOT NULL,
    registered_at      INTEGER NOT NULL,
    external_player_id TEXT
);
CREATE INDEX registrations_offer_click_at ON registrations (offer_id, click_at);

CREATE TABLE deposits (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    click_id      TEXT NOT NULL REFERENCES clicks (click_id),
    offer_id      INTEGER NOT NULL,
    click_at      INTEGER NOT NULL,
    tid           TEXT NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    currency      TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (offer_id, tid)
);
CREATE INDEX deposits_click ON deposits (click_id);
CREATE INDEX deposits_offer_click_at ON deposits (offer_id, click_at);

CREATE TABLE postback_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    offer_id    INTEGER,
    click_id    TEXT,
    event       TEXT,
    payout      REAL,
    currency    TEXT,
    tid         TEXT,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    source_ip   TEXT
);
CREATE INDEX postback_log_offer ON postback_log (offer_id, id DESC);
CREATE INDEX postback_log_received ON postback_log (received_at DESC);

CREATE TABLE weight_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_at   INTEGER NOT NULL,
    offer_id INTEGER NOT NULL,
    clicks   INTEGER NOT NULL,
    ftds     INTEGER NOT NULL,
    payout   REAL NOT NULL,
    ev       REAL NOT NULL,
    weight   REAL NOT NULL
);
CREATE INDEX weight_history_offer ON weight_history (offer_id, run_at DESC);
