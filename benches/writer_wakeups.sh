#!/usr/bin/env bash
# How often the click writer thread wakes up, and its CPU per click, under wrk with C connections
# (C=1 is a moderate, latency-bound load; C=64 saturates the router). Reads the writer thread's
# voluntary context switches and CPU ticks from /proc. Loopback only; cleans up after itself.
# Usage: benches/writer_wakeups.sh [C]   (ROUTER_BIN to measure another build)
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-1}"
pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="casino_wakeups_$$"
port=5091
token=wakeups-token-0123456789
router_bin="${ROUTER_BIN:-./target/release/casino-router}"
[[ -n "${ROUTER_BIN:-}" ]] || cargo build --release --quiet
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

cleanup() {
    [[ -n "${pid:-}" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    psql -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql -q "$pg" -c "CREATE DATABASE $db" >/dev/null
DATABASE_URL="${pg%/*}/$db" HOST=127.0.0.1 PORT=$port ADMIN_TOKEN=$token RUST_LOG=warn \
    taskset -c 0 "$router_bin" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 50); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
for i in 1 2 3; do
    curl -fs -o /dev/null -X POST "127.0.0.1:$port/admin/offers" -H "Authorization: Bearer $token" \
        -d "{\"name\": \"C$i\", \"casino_url\": \"https://c$i.example/r\"}"
done
task=$(dirname "$(grep -l click-writer /proc/$pid/task/*/comm | head -n 1)")
switches() { awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status"; }
ticks() { awk '{print $14 + $15}' "$task/stat"; }
s0=$(switches); t0=$(ticks)
out=$(taskset -c 1 wrk -t1 -c"$conns" -d5s "http://127.0.0.1:$port/click")
s1=$(switches); t1=$(ticks)
n=$(echo "$out" | awk '/requests in/ {print $1}')
awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" -v c="$conns" 'BEGIN {
    printf "connections %d, clicks %d: writer wake-ups per 1000 clicks %.1f, writer CPU per click %.2f us\n",
        c, n, s * 1000 / n, t * 1e6 / hz / n }'
