-- Dashboard sign-ins (issue #20). The browser's cookie holds a random session id; only its SHA-256
-- (hex) is kept here, so that reading this table gives no one a session. Kept in the database, not in
-- an instance's memory: behind a load balancer a browser's requests reach every instance, and signing
-- out must end the session on all of them. csrf_token is the session's token for its forms.
CREATE TABLE dashboard_sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- How the routing shared out traffic over time, for the dashboard's Routing page: each active
-- offer's share of new clicks (over all segments) and, under thompson, its posterior then. One row
-- per offer and ten-minute slot: the shares as of the slot's first table, or of its last change of
-- offers (every instance computes the same shares from the same evidence).
CREATE TABLE routing_history (
    slot             TIMESTAMPTZ NOT NULL,
    offer_id         BIGINT NOT NULL,
    traffic_share    DOUBLE PRECISION NOT NULL,
    epc_mean         DOUBLE PRECISION,
    probability_best DOUBLE PRECISION,
    PRIMARY KEY (slot, offer_id)
);
