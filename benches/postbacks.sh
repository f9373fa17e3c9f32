#!/usr/bin/env bash
# Load test of /postback: the release router on PostgreSQL, CLICKS clicks made through /click, then
# wrk reporting one EVENT per click (each click once, in random order, with its offer's secret) for
# DURATION seconds. Prints postbacks/s, p50/p99 latency and the router's CPU time per postback, then
# checks after a graceful stop that the event rows equal the postbacks wrk counted (each stored once,
# none lost) and that the amounts add up. Loopback only; bounded; cleans up after itself.
#
# Usage: benches/postbacks.sh   (EVENT=ftd|deposit|reg DURATION=10 CONNECTIONS=32 CLICKS=300000 to
#                                change; ROUTER_DATABASE_URL to run on a loaded database, such as
#                                the one KEEP_DATABASE=1 benches/reports.sh keeps)
# Needs: wrk (installed from Debian's packages if missing), PostgreSQL on 127.0.0.1:5432 with trust
# auth (BENCH_DATABASE_URL names its maintenance database).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-10}"
connections="${CONNECTIONS:-32}"
clicks="${CLICKS:-300000}"
event="${EVENT:-ftd}"
router_port=5090
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
server_core=0
client_core=$(( $(nproc) > 1 ? 1 : 0 ))

command -v wrk >/dev/null 2>&1 || {
    echo "== installing wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

# shellcheck source=benches/router.sh
source benches/router.sh
trap 'cleanup_router; rm -rf "$work"' EXIT
fail() { echo "$*" >&2; exit 1; }
# The event's rows and the sum of their amounts (a registration carries none).
case "$event" in
    ftd) rows_sql="SELECT (SELECT count(*) FROM ftd_events), (SELECT coalesce(sum(amount), 0) FROM payouts)"; unit=120.5 ;;
    deposit) rows_sql="SELECT count(*), coalesce(sum(amount), 0) FROM deposits"; unit=120.5 ;;
    reg) rows_sql="SELECT count(*), 0 FROM registrations"; unit=0 ;;
    *) fail "EVENT must be ftd, deposit or reg" ;;
esac

start_router "$router_port" "$server_core" "$work/router.log"

echo "== $clicks clicks through /click"
# This run's clicks: minted since now (the smallest UUID v7 of this millisecond on: an index range,
# and on a partitioned table only today's partition), from this script's source.
since=$(printf '%012x' "$(date +%s%3N)")
mine="click_id >= '${since:0:8}-${since:8:4}-0000-0000-000000000000' AND source = 'postbacks'"
made=0
for _ in $(seq 1 30); do
    (( made < clicks )) || break
    taskset -c "$client_core" wrk -t1 -c64 -d2s "http://127.0.0.1:$router_port/click?source=postbacks" >/dev/null
    made=$(psql -At "$router_db_url" -c "SELECT count(*) FROM clicks WHERE $mine")
done
(( made >= clicks )) || fail "only $made clicks stored after a minute of clicking"
sleep 1
psql -At -F' ' "$router_db_url" -c \
    "SELECT c.click_id, o.postback_secret FROM clicks c JOIN offers o ON o.id = c.offer_id WHERE $mine ORDER BY random()" |
    awk -v event="$event" '{ printf "/postback?click_id=%s&event=%s&payout=120.50&tid=t%d&secret=%s\n", $1, event, NR, $2 }' \
    > "$work/paths"
available=$(wc -l < "$work/paths")

read -r stored_before amounts_before <<< "$(psql -At -F' ' "$router_db_url" -c "$rows_sql")"
echo "== $event postbacks for ${duration}s, wrk -t1 -c$connections, router on core $server_core, wrk on core $client_core"
before=$(ticks "$router_pid")
out=$(taskset -c "$client_core" wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s benches/postbacks.lua "http://127.0.0.1:$router_port" -- "$work/paths")
after=$(ticks "$router_pid")
read -r requests bad rps p50 p99 < <(wrk_figures "$out")
(( requests > 0 )) || fail "wrk counted no postback: $out"
socket_errors=$(echo "$out" | awk '/Socket errors/ {n = 0; for (i = 3; i <= NF; i += 2) n += $(i + 1); print n}')
echo "postbacks: $requests ($bad not 2xx)   per second: $rps   p50 ${p50} us   p99 ${p99} us"
echo "router CPU per postback: $(cpu_us_per_request $(( after - before )) "$requests") us"
(( requests < available )) || fail "wrk ran out of clicks ($available): raise CLICKS so that every postback is a first report"
[[ -z "$socket_errors" || "$socket_errors" == 0 ]] || fail "wrk saw socket errors: $(echo "$out" | grep 'Socket errors')"

echo "== stopping the router gracefully and counting rows"
stop_router
counts=$(psql -At -F' ' "$router_db_url" -c "$rows_sql") || fail "cannot count rows"
read -r stored amounts <<< "$counts"
stored=$(( stored - stored_before ))
amounts=$(awk -v a="$amounts" -v b="$amounts_before" 'BEGIN { printf "%.2f", a - b }')
accepted=$(( requests - bad ))
echo "postbacks accepted by wrk's count: $accepted   $event rows: $stored   amounts: $amounts"
extra=$(( stored - accepted ))
expected_amounts=$(awk -v n="$stored" -v unit="$unit" 'BEGIN { printf "%.2f", n * unit }')
(( bad == 0 )) || fail "MISMATCH: $bad postbacks were refused"
(( extra >= 0 && extra <= connections )) || fail "MISMATCH: $stored $event rows for $accepted accepted postbacks"
[[ "$(printf '%.2f' "$amounts")" == "$expected_amounts" ]] || fail "MISMATCH: amounts $amounts, expected $expected_amounts"
echo "every accepted postback is stored once ($extra more rows: requests in flight when wrk stopped counting)"
