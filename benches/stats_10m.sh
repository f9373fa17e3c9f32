#!/usr/bin/env bash
# Times GET /admin/stats on PostgreSQL with 10 million clicks (about 35 days of history, 10 offers,
# ~300,000 FTDs with payouts) in the table. Loopback only; cleans up the database it creates.
# Usage: benches/stats_10m.sh   (BENCH_DATABASE_URL names the server's maintenance database)
set -euo pipefail
cd "$(dirname "$0")/.."

pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db=casino_stats_bench
url="${pg%/*}/$db"
port=5077
token=stats-bench-token-0123456789

cleanup() {
    [[ -n "${router_pid:-}" ]] && kill -TERM "$router_pid" 2>/dev/null && wait "$router_pid" 2>/dev/null
    psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}
trap cleanup EXIT

cargo build --release --quiet
psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
DATABASE_URL="$url" ./target/release/casino-router migrate >/dev/null 2>&1

echo "== loading 10,000,000 clicks (takes a minute or two)"
psql -q "$url" <<'SQL'
INSERT INTO offers (name, casino_url, postback_secret)
SELECT 'Offer ' || i, 'https://o' || i || '.example/', md5(i::text) FROM generate_series(1, 10) i;
INSERT INTO clicks (click_id, offer_id, created_at, propensity)
SELECT gen_random_uuid(), 1 + i % 10, now() - make_interval(secs => i * 0.3), 0.1
FROM generate_series(1, 10000000) i;
INSERT INTO click_rollup_hourly (offer_id, hour, clicks)
SELECT offer_id, date_trunc('hour', created_at, 'UTC'), count(*) FROM clicks GROUP BY 1, 2;
INSERT INTO ftd_events (click_id, offer_id, click_at)
SELECT click_id, offer_id, created_at FROM clicks TABLESAMPLE SYSTEM (3);
INSERT INTO payouts (ftd_event_id, amount, currency) SELECT id, 100 + id % 200, 'USD' FROM ftd_events;
VACUUM ANALYZE;
SQL
psql -At "$url" -c "SELECT 'clicks: ' || count(*) FROM clicks" -c "SELECT 'ftds: ' || count(*) FROM ftd_events"

DATABASE_URL="$url" PORT=$port HOST=127.0.0.1 ADMIN_TOKEN=$token RUST_LOG=warn ./target/release/casino-router &
router_pid=$!
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

from=$(date -u -d '-7 days -17 minutes' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d '-1 day -43 minutes' +%Y-%m-%dT%H:%M:%SZ)
for query in "" "?from=$from&to=$to"; do
    echo "== GET /admin/stats$query (5 runs, seconds)"
    for _ in 1 2 3 4 5; do
        curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "127.0.0.1:$port/admin/stats$query"
    done
done
