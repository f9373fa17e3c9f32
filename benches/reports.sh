#!/usr/bin/env bash
# Times the reports on PostgreSQL with CLICKS clicks in the table (10 million by default; about 35
# days of history in daily partitions, 10 offers, two countries and three sources, FTDs with payouts
# for 3% of the clicks, registrations, deposits, a postback-log line per FTD, the routing history):
# GET /admin/stats, and every dashboard page over its default and its widest common period; then
# the retention's drop of the oldest day. Loopback only; cleans up the database it creates.
# Usage: benches/reports.sh   (CLICKS=50000000 for the scale figures; BENCH_DATABASE_URL names the
#                             server's maintenance database; CARGO_TARGET_DIR is honoured;
#                             KEEP_DATABASE=1 keeps the loaded database for a look at its query plans
#                             or for benches/ingest.rs's BENCH_LOADED_DATABASE_URL, and a later run
#                             with the same CLICKS reuses it)
set -euo pipefail
cd "$(dirname "$0")/.."

pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
clicks="${CLICKS:-10000000}"
db="casino_reports_bench_$clicks"
url="${pg%/*}/$db"
port=5077
token=reports-bench-token-0123456789
router="${CARGO_TARGET_DIR:-target}/release/casino-router"
cookies=$(mktemp)

cleanup() {
    [[ -n "${router_pid:-}" ]] && kill -TERM "$router_pid" 2>/dev/null && wait "$router_pid" 2>/dev/null
    rm -f "$cookies"
    if [[ "${KEEP_DATABASE:-}" == 1 ]]; then
        echo "kept: $url"
    else
        psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    fi
}
trap cleanup EXIT

cargo build --release --quiet --bin casino-router
loaded=$(psql -At "$url" -c "SELECT EXISTS (SELECT 1 FROM routing_history)" 2>/dev/null || true)
if [[ "${KEEP_DATABASE:-}" == 1 && "$loaded" == t ]]; then
    echo "== reusing the loaded database $db"
else
psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
DATABASE_URL="$url" "$router" migrate >/dev/null 2>&1

echo "== loading $clicks clicks (a few minutes per 10 million)"
psql -q "$url" -v clicks="$clicks" <<'SQL'
-- The partitions of the history's days (the router creates only today's and a week ahead).
SELECT click_partitions.extend(now() - interval '36 days', now(), 1);
INSERT INTO offers (name, casino_url, postback_secret)
SELECT 'Offer ' || i, 'https://o' || i || '.example/', md5(i::text) FROM generate_series(1, 10) i;
-- Click ids are UUID v7 (the time in their first 48 bits), as the router mints them.
INSERT INTO clicks (click_id, offer_id, created_at, propensity, country, device, source, is_bot)
SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid,
       1 + i % 10, t, 0.1, (ARRAY['DE', 'GB'])[1 + i % 2], 'mobile',
       (ARRAY['facebook', 'google', 'tiktok'])[1 + i % 3], i % 50 = 0
FROM (SELECT i, now() - make_interval(secs => i * 3000000.0 / :clicks) AS t FROM generate_series(1, :clicks) i) g;
INSERT INTO click_rollup_hourly (offer_id, hour, clicks, bots)
SELECT offer_id, date_trunc('hour', created_at, 'UTC'), count(*), count(*) FILTER (WHERE is_bot)
FROM clicks GROUP BY 1, 2;
INSERT INTO click_rollup_dims (offer_id, hour, dimension, value, clicks, bots)
SELECT offer_id, date_trunc('hour', created_at, 'UTC'), d.dimension, d.value, count(*), count(*) FILTER (WHERE is_bot)
FROM clicks, LATERAL (VALUES ('country', country), ('device', device), ('source', source), ('campaign', '')) d(dimension, value)
GROUP BY 1, 2, 3, 4;
INSERT INTO ftd_events (click_id, offer_id, click_at)
SELECT click_id, offer_id, created_at FROM clicks TABLESAMPLE SYSTEM (3);
INSERT INTO payouts (ftd_event_id, amount, currency) SELECT id, 100 + id % 200, 'USD' FROM ftd_events;
INSERT INTO registrations (click_id, offer_id, click_at)
SELECT click_id, offer_id, created_at FROM clicks TABLESAMPLE SYSTEM (5) ON CONFLICT DO NOTHING;
INSERT INTO deposits (click_id, offer_id, click_at, tid, amount, currency)
SELECT click_id, offer_id, click_at, 'tx-' || id, 40, 'USD' FROM ftd_events WHERE id % 3 = 0;
INSERT INTO postback_log (received_at, offer_id, click_id, event, payout, outcome)
SELECT click_at + interval '1 hour', offer_id, click_id::text, 'ftd', 100, 'accepted' FROM ftd_events;
INSERT INTO routing_history (slot, offer_id, traffic_share)
SELECT s, o, 0.1 FROM generate_series(date_trunc('hour', now()) - interval '35 days', now(), interval '10 minutes') s,
     generate_series(1, 10) o;
VACUUM ANALYZE;
SQL
fi
psql -At "$url" -c "SELECT 'clicks: ' || count(*) FROM clicks" -c "SELECT 'ftds: ' || count(*) FROM ftd_events" \
    -c "SELECT 'registrations: ' || count(*) FROM registrations" -c "SELECT 'deposits: ' || count(*) FROM deposits"

DATABASE_URL="$url" PORT=$port HOST=127.0.0.1 ADMIN_TOKEN=$token RUST_LOG=warn "$router" &
router_pid=$!
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
curl -fs -o /dev/null -c "$cookies" -d "token=$token" "127.0.0.1:$port/dashboard/login"

# Each request 5 times; the server's whole answer as curl sees it, in seconds.
time_it() {
    local label=$1; shift
    printf '%-58s' "$label"
    for _ in 1 2 3 4 5; do
        printf ' %s' "$(curl -s -o /dev/null -w '%{time_total}' "$@")"
    done
    echo
}

from=$(date -u -d '-7 days -17 minutes' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d '-1 day -43 minutes' +%Y-%m-%dT%H:%M:%SZ)
echo "== seconds per request, 5 runs"
time_it "GET /admin/stats" -H "Authorization: Bearer $token" "127.0.0.1:$port/admin/stats"
time_it "GET /admin/stats?from=..&to=.." -H "Authorization: Bearer $token" "127.0.0.1:$port/admin/stats?from=$from&to=$to"
for group in country source; do
    time_it "GET /admin/stats?group_by=$group" -H "Authorization: Bearer $token" \
        "127.0.0.1:$port/admin/stats?group_by=$group"
done
for page in "" "?period=30d" "?period=30d&bucket=hour" /offers /reports "/reports?period=30d&group=country" \
    "/reports?period=30d&group=offer" /routing "/routing?days=30" /postbacks /live; do
    path="/dashboard$page"
    time_it "GET $path" -b "$cookies" "127.0.0.1:$port$path"
done

if [[ "${KEEP_DATABASE:-}" != 1 ]]; then
    echo "== retention: dropping the oldest day's partition (the router's hourly upkeep runs the same function)"
    psql -At "$url" -c "SELECT name || ': ' || (SELECT count(*) FROM clicks WHERE click_id >= click_partitions.first_id(starts)
                                                AND click_id < click_partitions.first_id(ends)) || ' clicks'
                        FROM click_partitions.bounds ORDER BY starts LIMIT 1"
    psql -At "$url" <<'SQL'
\timing on
SELECT click_partitions.drop_before((SELECT min(ends) FROM click_partitions.bounds));
SQL
fi
