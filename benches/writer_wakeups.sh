#!/usr/bin/env bash
# How often the click writer thread wakes up, and its CPU per click, under wrk with C connections
# (C=1 is a moderate, latency-bound load; C=64 saturates the router). Reads the writer thread's
# voluntary context switches and CPU ticks from /proc. Loopback only; cleans up after itself.
# Usage: benches/writer_wakeups.sh [C]   (ROUTER_BIN to measure another build)
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-1}"
port=5091
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# shellcheck source=benches/router.sh
source benches/router.sh
trap cleanup_router EXIT
start_router "$port" 0 /dev/null
task=$(dirname "$(grep -l click-writer /proc/$router_pid/task/*/comm | head -n 1)")
switches() { awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status"; }
ticks() { awk '{print $14 + $15}' "$task/stat"; }
s0=$(switches); t0=$(ticks)
out=$(taskset -c 1 wrk -t1 -c"$conns" -d5s "http://127.0.0.1:$port/click")
s1=$(switches); t1=$(ticks)
n=$(echo "$out" | awk '/requests in/ {print $1}')
awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" -v c="$conns" 'BEGIN {
    printf "connections %d, clicks %d: writer wake-ups per 1000 clicks %.1f, writer CPU per click %.2f us\n",
        c, n, s * 1000 / n, t * 1e6 / hz / n }'
