# syntax=docker/dockerfile:1
# casino-router image: build with `docker build -t casino-router .` (BuildKit, the default builder).

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /app

# Dependencies first, against a dummy crate, so that this layer is reused until Cargo.toml or
# Cargo.lock change. benches/ goes in here too: cargo must find the files of any [[bench]] target
# to read the manifest at all. The wildcard makes the copy a no-op while benches/ does not exist.
COPY Cargo.toml Cargo.lock ./
COPY benche[s] ./benches/
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin casino-router \
    && rm -rf src

# The real sources. sql/ and data/bots/ (the bot list) are embedded with include_str!. Touching the
# crate roots makes them newer than the dummy build, so cargo cannot take the dummy artifacts as up
# to date.
COPY src/ ./src/
COPY sql/ ./sql/
COPY data/bots/ ./data/bots/
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin casino-router

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user; /app/data holds the embedded SQLite store (./data/casino-router.db), the default
# when DATABASE_URL is unset, and the click journal (./data/journal). Mount a volume there to keep them.
RUN useradd --system --user-group --uid 10001 --home-dir /app --shell /usr/sbin/nologin casino \
    && mkdir -p /app/data \
    && chown -R casino:casino /app

COPY --from=builder /app/target/release/casino-router /usr/local/bin/casino-router
# The IP-to-country database (DB-IP Lite, CC BY 4.0: see data/geoip/README.md), outside /app/data so
# that a volume mounted there does not hide it. Mount your own file and point GEOIP_DB at it instead.
COPY data/geoip/dbip-country.mmdb data/geoip/LICENSE data/geoip/README.md /usr/share/casino-router/geoip/

WORKDIR /app
USER casino

ENV HOST=0.0.0.0 \
    PORT=5000 \
    GEOIP_DB=/usr/share/casino-router/geoip/dbip-country.mmdb
EXPOSE 5000

# No curl in the image: bash's /dev/tcp sends a plain HTTP/1.0 request to /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/${PORT:-5000} && printf "GET /health HTTP/1.0\r\n\r\n" >&3 && grep -q "200 OK" <&3'

# The router drains in-flight requests on SIGTERM (SHUTDOWN_GRACE_SECONDS, default 10).
STOPSIGNAL SIGTERM
ENTRYPOINT ["casino-router"]
CMD ["serve"]
