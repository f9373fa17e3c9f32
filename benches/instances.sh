#!/usr/bin/env bash
# Three router instances (INSTANCES=3) on one PostgreSQL database behind nginx (round robin, keep-alive to each):
# wrk sends clicks through nginx for DURATION seconds; then every stored click gets its FTD reported
# twice, in random order, each report to whichever instance nginx picks. Prints the total clicks/s,
# then checks after a graceful stop of all three that the click rows equal the 302s wrk counted
# (zero loss, in-flight requests aside) and that each click has exactly one FTD and one payout (every
# FTD counted once, wherever its reports landed). Loopback only; bounded; cleans up after itself.
#
# Usage: benches/instances.sh   (DURATION=10 CONNECTIONS=64 FTDS=20000 INSTANCES=3 (1 to 5); ROUTER_BIN
#                               for a prebuilt router; BENCH_DATABASE_URL names the server's
#                               maintenance database)
# Needs: wrk and nginx (installed from Debian's packages if missing), PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-10}"
connections="${CONNECTIONS:-64}"
ftds="${FTDS:-20000}"
pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="casino_instances_bench_$$"
url="${pg%/*}/$db"
token=instances-bench-token-0123456789
instances="${INSTANCES:-3}"
(( instances >= 1 && instances <= 5 )) || { echo "INSTANCES must be 1 to 5" >&2; exit 1; }
ports=()
for i in $(seq 1 "$instances"); do ports+=($(( 5100 + i ))); done
lb_port=5100
router_bin="${ROUTER_BIN:-./target/release/casino-router}"
work="$(mktemp -d)"
pids=()

install() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
command -v wrk >/dev/null 2>&1 || { echo "== installing wrk"; install wrk; }
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || { echo "== installing nginx"; install nginx-light; }
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
fail() { echo "$*" >&2; exit 1; }

stop_routers() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_routers
    [[ -f "$work/nginx.pid" ]] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
    psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

[[ -n "${ROUTER_BIN:-}" ]] || cargo build --release --quiet --bin casino-router
psql -q "$pg" -c "CREATE DATABASE $db" >/dev/null
DATABASE_URL="$url" RUST_LOG=warn "$router_bin" migrate >/dev/null
for port in "${ports[@]}"; do
    mkdir -p "$work/journal-$port"
    DATABASE_URL="$url" HOST=127.0.0.1 PORT=$port ADMIN_TOKEN=$token JOURNAL_DIR="$work/journal-$port" \
        TABLE_REFRESH_SECONDS=1 RUST_LOG=warn "$router_bin" > "$work/router-$port.log" 2>&1 &
    pids+=($!)
done
for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
for i in 1 2 3; do
    curl -fs -o /dev/null -X POST "127.0.0.1:${ports[0]}/admin/offers" -H "Authorization: Bearer $token" \
        -d "{\"name\": \"Casino $i\", \"casino_url\": \"https://casino-$i.example/register\"}"
done
sleep 2 # every instance sees the offers (TABLE_REFRESH_SECONDS=1)

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    upstream routers {
$(for port in "${ports[@]}"; do echo "        server 127.0.0.1:$port;"; done)
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$lb_port;
        location / {
            proxy_pass http://routers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"$nginx_bin" -c "$work/nginx.conf" -p "$work"
for _ in $(seq 1 50); do curl -fs "127.0.0.1:$lb_port/health" >/dev/null && break; sleep 0.1; done

echo "== clicks through nginx to $instances instances for ${duration}s, wrk -t1 -c$connections"
out=$(wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$lb_port/click?source=instances")
requests=$(echo "$out" | awk '/requests in/ {print $1}')
bad=$(echo "$out" | awk '/Non-2xx or 3xx/ {print $5}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
echo "clicks: $requests (${bad:-0} not 3xx)   per second: $rps   p99: $p99"
(( ${bad:-0} == 0 )) || fail "some clicks were not redirected"
sleep 1
stored=$(psql -At "$url" -c "SELECT count(*) FROM clicks")
written=""
for port in "${ports[@]}"; do
    written+=" $(curl -fs "127.0.0.1:$port/health" | grep -o '"clicks_written":[0-9]*' | cut -d: -f2)"
done
echo "click rows: $stored for $requests redirects counted by wrk (written by each instance:$written)"
(( stored >= requests && stored - requests <= connections )) || fail "MISMATCH: $stored rows for $requests redirects"

echo "== $ftds clicks' FTDs, each reported twice in random order through nginx"
psql -At -F' ' "$url" -c "SELECT c.click_id, o.postback_secret FROM clicks c JOIN offers o ON o.id = c.offer_id
                          ORDER BY random() LIMIT $ftds" |
    awk '{ line = sprintf("/postback?click_id=%s&event=ftd&payout=120.50&secret=%s", $1, $2); print line; print line }' |
    shuf > "$work/paths"
# wrk runs for its whole duration even once the list is done (its threads stop, its clock does not):
# long enough for the list at 1,000 postbacks/s; the rate is benches/postbacks.sh's to measure.
out=$(wrk -t1 -c32 -d"$(( ftds * 2 / 1000 + 5 ))s" --latency -s benches/postbacks.lua "http://127.0.0.1:$lb_port" -- "$work/paths" once)
p_requests=$(echo "$out" | awk '/requests in/ {print $1}')
p_bad=$(echo "$out" | awk '/Non-2xx or 3xx/ {print $5}')
p_p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
echo "postbacks: $p_requests (${p_bad:-0} not 2xx)   p99: $p_p99"
(( p_requests >= ftds * 2 )) || fail "only $p_requests of $(( ftds * 2 )) postbacks were sent: raise the duration"

echo "== stopping the instances gracefully and counting rows"
stop_routers
read -r ftd_rows payouts distinct amount <<< "$(psql -At -F' ' "$url" -c \
    "SELECT (SELECT count(*) FROM ftd_events), (SELECT count(*) FROM payouts),
            (SELECT count(DISTINCT click_id) FROM ftd_events), (SELECT coalesce(sum(amount), 0) FROM payouts)")"
logged=$(psql -At "$url" -c "SELECT outcome || ': ' || count(*) FROM postback_log GROUP BY outcome ORDER BY 1" | paste -sd ' ')
echo "FTD rows: $ftd_rows (distinct clicks $distinct), payouts: $payouts, amount: $amount; postback log: $logged"
(( ${p_bad:-0} == 0 )) || fail "MISMATCH: ${p_bad} postbacks were refused"
(( ftd_rows == ftds && distinct == ftds && payouts == ftds )) || fail "MISMATCH: $ftd_rows FTDs for $ftds clicks"
[[ "$(printf '%.2f' "$amount")" == "$(awk -v n="$ftds" 'BEGIN { printf "%.2f", n * 120.5 }')" ]] || fail "MISMATCH: amount $amount"
echo "zero loss: every redirected click stored; every FTD counted once"
