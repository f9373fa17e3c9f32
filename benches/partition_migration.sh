#!/usr/bin/env bash
# Times the upgrade of an unpartitioned `clicks` (a database as release 0007 left it) into the
# partitioned layout of migration 0008, with CLICKS clicks over 30 days (5 million by default) and
# FTDs for 3% of them: `casino-router migrate`, as an upgrade runs it. Prints the seconds and the
# seconds per million clicks, then checks that every click and event is still there. Loopback only;
# cleans up the database it creates.
# Usage: benches/partition_migration.sh   (CLICKS=...; BENCH_DATABASE_URL names the server's
#                                         maintenance database; CARGO_TARGET_DIR is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."

pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
clicks="${CLICKS:-5000000}"
db=casino_partition_migration_bench
url="${pg%/*}/$db"
router="${CARGO_TARGET_DIR:-target}/release/casino-router"
trap 'psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT

cargo build --release --quiet --bin casino-router
psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
{
    echo "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
    for version in 1 2 3 4 5 6 7; do
        cat sql/postgres/000${version}_*.sql
        echo "INSERT INTO schema_migrations (version) VALUES ($version);"
    done
} | psql -q -v ON_ERROR_STOP=1 "$url" >/dev/null

echo "== loading $clicks clicks into the unpartitioned table"
psql -q -v ON_ERROR_STOP=1 -v clicks="$clicks" "$url" <<'SQL'
INSERT INTO offers (name, casino_url, postback_secret)
SELECT 'Offer ' || i, 'https://o' || i || '.example/', md5(i::text) FROM generate_series(1, 10) i;
INSERT INTO clicks (click_id, offer_id, created_at, user_agent, ip_address, propensity, country, device, source)
SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid,
       1 + i % 10, t, 'Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36',
       '203.0.113.7', 0.1, (ARRAY['DE', 'GB'])[1 + i % 2], 'mobile', (ARRAY['facebook', 'google', 'tiktok'])[1 + i % 3]
FROM (SELECT i, now() - make_interval(secs => i * 2592000.0 / :clicks) AS t FROM generate_series(1, :clicks) i) g;
INSERT INTO ftd_events (click_id, offer_id, click_at)
SELECT click_id, offer_id, created_at FROM clicks TABLESAMPLE SYSTEM (3);
VACUUM ANALYZE;
SQL
before=$(psql -At "$url" -c "SELECT count(*) || ' ' || (SELECT count(*) FROM ftd_events) FROM clicks")
size=$(psql -At "$url" -c "SELECT pg_size_pretty(pg_total_relation_size('clicks'))")
echo "clicks and FTDs: $before; clicks table with its indexes: $size"

echo "== casino-router migrate (migration 0008)"
start=$(date +%s.%N)
DATABASE_URL="$url" RUST_LOG=warn "$router" migrate
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
after=$(psql -At "$url" -c "SELECT count(*) || ' ' || (SELECT count(*) FROM ftd_events) FROM clicks")
partitions=$(psql -At "$url" -c "SELECT count(*) FROM click_partitions.bounds")
[[ "$after" == "$before" ]] || { echo "clicks and FTDs after: $after, before: $before" >&2; exit 1; }
awk -v s="$seconds" -v n="$clicks" -v p="$partitions" \
    'BEGIN { printf "moved %d clicks into %d partitions in %.1f s: %.2f s per million clicks\n", n, p, s, s * 1e6 / n }'
