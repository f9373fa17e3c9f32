-- casino-router schema, PostgreSQL. Applied once, tracked in schema_migrations.
-- Money is NUMERIC (exact); the API speaks JSON numbers and converts at the edge.

CREATE TABLE offers (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL CHECK (name <> ''),
    casino_url      TEXT NOT NULL,
    weight          DOUBLE PRECISION NOT NULL DEFAULT 1.0
                    CHECK (weight >= 0 AND weight < 'Infinity'::float8),
    postback_secret TEXT NOT NULL,
    active          BOOLEAN NOT NULL DEFAULT TRUE,
    event_aliases   JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Bumped by every offer or weight change; each instance polls it to rebuild its routing table.
CREATE TABLE routing_state (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   BIGINT NOT NULL
);
INSERT INTO routing_state (singleton, version) VALUES (TRUE, 1);

-- No foreign key to offers on purpose: a click already redirected must be stored even if its offer
-- is deleted a moment later. Click ids are UUID v7, so the primary key index grows at its end.
CREATE TABLE clicks (
    click_id   UUID PRIMARY KEY,
    offer_id   BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    user_agent TEXT,
    ip_address INET,
    referrer   TEXT,
    source     TEXT,
    campaign   TEXT,
    propensity DOUBLE PRECISION NOT NULL
);
-- The EV window (last N clicks per offer) and ranged stats per offer.
CREATE INDEX clicks_offer_time ON clicks (offer_id, created_at DESC);

-- Clicks per offer and hour, maintained in the same transaction as each insert batch, so that stats
-- over a long history read thousands of rows, not millions.
CREATE TABLE click_rollup_hourly (
    offer_id BIGINT NOT NULL,
    hour     TIMESTAMPTZ NOT NULL,
    clicks   BIGINT NOT NULL,
    PRIMARY KEY (offer_id, hour)
);

CREATE TABLE ftd_events (
    id                 BIGSERIAL PRIMARY KEY,
    click_id           UUID NOT NULL UNIQUE REFERENCES clicks (click_id),
    offer_id           BIGINT NOT NULL,
    click_at           TIMESTAMPTZ NOT NULL,
    ftd_timestamp      TIMESTAMPTZ NOT NULL DEFAULT now(),
    external_player_id TEXT,
    tid                TEXT,
    voided_at          TIMESTAMPTZ
);
CREATE UNIQUE INDEX ftd_events_offer_tid ON ftd_events (offer_id, tid) WHERE tid IS NOT NULL;
CREATE INDEX ftd_events_offer_click_at ON ftd_events (offer_id, click_at);

CREATE TABLE payouts (
    id           BIGSERIAL PRIMARY KEY,
    ftd_event_id BIGINT NOT NULL UNIQUE REFERENCES ftd_events (id),
    amount       NUMERIC(20, 6) NOT NULL CHECK (amount >= 0),
    currency     TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE registrations (
    id                 BIGSERIAL PRIMARY KEY,
    click_id           UUID NOT NULL UNIQUE REFERENCES clicks (click_id),
    offer_id           BIGINT NOT NULL,
    click_at           TIMESTAMPTZ NOT NULL,
    registered_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    external_player_id TEXT
);
CREATE INDEX registrations_offer_click_at ON registrations (offer_id, click_at);

CREATE TABLE deposits (
    id          BIGSERIAL PRIMARY KEY,
    click_id    UUID NOT NULL REFERENCES clicks (click_id),
    offer_id    BIGINT NOT NULL,
    click_at    TIMESTAMPTZ NOT NULL,
    tid         TEXT NOT NULL,
    amount      NUMERIC(20, 6) NOT NULL CHECK (amount >= 0),
    currency    TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (offer_id, tid)
);
CREATE INDEX deposits_click ON deposits (click_id);
CREATE INDEX deposits_offer_click_at ON deposits (offer_id, click_at);

-- Every postback received, accepted or not. Never the secret.
CREATE TABLE postback_log (
    id          BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    offer_id    BIGINT,
    click_id    TEXT,
    event       TEXT,
    payout      DOUBLE PRECISION,
    currency    TEXT,
    tid         TEXT,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    source_ip   INET
);
CREATE INDEX postback_log_offer ON postback_log (offer_id, id DESC);
CREATE INDEX postback_log_received ON postback_log (received_at DESC);

CREATE TABLE weight_history (
    id       BIGSERIAL PRIMARY KEY,
    run_at   TIMESTAMPTZ NOT NULL,
    offer_id BIGINT NOT NULL,
    clicks   BIGINT NOT NULL,
    ftds     BIGINT NOT NULL,
    payout   DOUBLE PRECISION NOT NULL,
    ev       DOUBLE PRECISION NOT NULL,
    weight   DOUBLE PRECISION NOT NULL
);
CREATE INDEX weight_history_offer ON weight_history (offer_id, run_at DESC);
