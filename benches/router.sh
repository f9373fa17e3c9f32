# Sourced by the load scripts: start the release router on a fresh PostgreSQL database, pinned to a
# core, with three offers (weights 1, 2, 3); stop it; drop its database. Loopback only.
# Reads: ROUTER_BIN (a prebuilt router; otherwise this builds one), BENCH_DATABASE_URL, and
# ROUTER_DATABASE_URL: an existing database to run on instead (a loaded one; kept, not dropped).

pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
router_bin="${ROUTER_BIN:-./target/release/casino-router}"
router_token=bench-token-0123456789
router_db="casino_bench_$$"
router_db_url="${ROUTER_DATABASE_URL:-${pg%/*}/$router_db}"
router_pid=""

[[ -n "${ROUTER_BIN:-}" ]] || cargo build --release --quiet

# start_router PORT CORE LOGFILE: sets router_pid once /health answers and the offers exist.
start_router() {
    local port=$1 core=$2 log=$3
    [[ -n "${ROUTER_DATABASE_URL:-}" ]] || psql -q "$pg" -c "CREATE DATABASE $router_db" >/dev/null
    DATABASE_URL="$router_db_url" HOST=127.0.0.1 PORT=$port ADMIN_TOKEN=$router_token RUST_LOG=warn \
        taskset -c "$core" "$router_bin" > "$log" 2>&1 &
    router_pid=$!
    for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    for i in 1 2 3; do
        curl -fs -o /dev/null -X POST "127.0.0.1:$port/admin/offers" -H "Authorization: Bearer $router_token" \
            -d "{\"name\": \"Casino $i\", \"casino_url\": \"https://casino-$i.example/register\", \"weight\": $i}"
    done
}

# Stops the router gracefully (every queued click is written first).
stop_router() {
    if [[ -n "$router_pid" ]]; then
        kill -TERM "$router_pid" 2>/dev/null && wait "$router_pid" 2>/dev/null || true
        router_pid=""
    fi
}

# Stops the router if it runs and drops its database.
cleanup_router() {
    stop_router
    [[ -n "${ROUTER_DATABASE_URL:-}" ]] ||
        psql -q "$pg" -c "DROP DATABASE IF EXISTS $router_db WITH (FORCE)" >/dev/null 2>&1 || true
}

# CPU ticks (user + system) of processes and all their threads (for nginx, master plus worker).
ticks() {
    local total=0 pid
    for pid in "$@"; do total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") )); done
    echo "$total"
}

# cpu_us_per_request TICKS REQUESTS
cpu_us_per_request() {
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }'
}

# wrk_figures OUTPUT (of `wrk --latency`): prints "requests non_2xx_3xx req/s p50_us p99_us".
wrk_figures() {
    local out="$1" requests bad rps p50 p99
    to_us() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v+0; else if (v ~ /ms$/) print v*1000; else print v*1000000 }'; }
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    bad=$(echo "$out" | awk '/Non-2xx or 3xx/ {print $5}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")
    p99=$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    echo "$requests ${bad:-0} $rps $p50 $p99"
}
