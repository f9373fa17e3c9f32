# Sourced by the load scripts: start the release router on a fresh PostgreSQL database, pinned to a
# core, with three offers (weights 1, 2, 3); stop it; drop its database. Loopback only.
# Reads: ROUTER_BIN (a prebuilt router; otherwise this builds one), BENCH_DATABASE_URL.

pg="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
router_bin="${ROUTER_BIN:-./target/release/casino-router}"
router_token=bench-token-0123456789
router_db="casino_bench_$$"
router_db_url="${pg%/*}/$router_db"
router_pid=""

[[ -n "${ROUTER_BIN:-}" ]] || cargo build --release --quiet

# start_router PORT CORE LOGFILE: sets router_pid once /health answers and the offers exist.
start_router() {
    local port=$1 core=$2 log=$3
    psql -q "$pg" -c "CREATE DATABASE $router_db" >/dev/null
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
    psql -q "$pg" -c "DROP DATABASE IF EXISTS $router_db WITH (FORCE)" >/dev/null 2>&1 || true
}
