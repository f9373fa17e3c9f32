-- Dashboard sign-ins (issue #20). The browser's cookie holds a random session id; only its SHA-256
-- (hex) is kept here, so that reading this table gives no one a session. Kept in the database, not in
-- an instance's memory, as on PostgreSQL. csrf_token is the session's token for its forms. Times in
-- microseconds since the Unix epoch.
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- How the routing shared out traffic over time, for the dashboard's Routing page: each active
-- offer's share of new clicks (over all segments) and, under thompson, its posterior then. One row
-- per offer and ten-minute slot, as on PostgreSQL.
CREATE TABLE routing_history (
    slot             INTEGER NOT NULL,
    offer_id         INTEGER NOT NULL,
    traffic_share    REAL NOT NULL,
    epc_mean         REAL,
    probability_best REAL,
    PRIMARY KEY (slot, offer_id)
) WITHOUT ROWID;
