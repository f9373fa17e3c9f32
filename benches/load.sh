#!/usr/bin/env bash
# Load test of the click path against the physical limit on this machine: the release router on
# PostgreSQL versus nginx answering a static `return 302` and a bare hyper server answering a 302
# with a fresh UUID (benches/bare_redirect.rs), same wrk settings, alternating rounds, server and wrk
# pinned to different cores. Prints requests/s, p50/p99 latency and the server's CPU time per request
# (from /proc/PID/stat, counting every thread, the click writer included), PostgreSQL's CPU time per
# request, the share of the round wrk spent waiting for its core, the router/nginx and router/bare
# ratios, resident memory, and finally checks that the click rows equal the 302s wrk counted (zero
# loss) after a graceful stop. Loopback only; bounded; cleans up after itself.
#
# Usage: benches/load.sh            (ROUNDS=3 DURATION=10 CONNECTIONS=64 THREADS=1 USER_AGENT=... to
#                                    change; ROUTER_BIN and BARE_BIN for prebuilt binaries;
#                                    POSTGRES_CORE=N pins PostgreSQL to core N for the run)
# Needs: wrk and nginx (installed from Debian's packages if missing), PostgreSQL on 127.0.0.1:5432
# with trust auth (BENCH_DATABASE_URL names its maintenance database).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${ROUNDS:-3}"
duration="${DURATION:-10}"
(( duration >= 3 )) || { echo "DURATION must be at least 3 seconds" >&2; exit 1; }
connections="${CONNECTIONS:-64}"
threads="${THREADS:-1}"
# A phone browser's user agent, so that the router classifies the visitor (device, bot check) as it
# does for real traffic; the visitor's address, 127.0.0.1, is looked up in the IP database.
user_agent="${USER_AGENT:-Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1}"
router_port=5088
nginx_port=5089
bare_port=5087
work="$(mktemp -d)"
server_core=0
client_core=$(( $(nproc) > 1 ? 1 : 0 ))

install() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
command -v wrk >/dev/null 2>&1 || { echo "== installing wrk"; install wrk; }
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || { echo "== installing nginx"; install nginx-light; }
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

# shellcheck source=benches/router.sh
source benches/router.sh
postgres_core="${POSTGRES_CORE:-}"
# Pins (or, with "all", unpins) every PostgreSQL process; backends forked later inherit it.
pin_postgres() {
    local pid cores=$1
    [[ "$cores" == all ]] && cores="0-$(( $(nproc) - 1 ))"
    for pid in $(pgrep -x postgres || true); do taskset -apc "$cores" "$pid" >/dev/null 2>&1 || true; done
}
cleanup() {
    [[ -n "$postgres_core" ]] && pin_postgres all
    cleanup_router
    [[ -n "${bare_pid:-}" ]] && kill "$bare_pid" 2>/dev/null || true
    [[ -f "$work/nginx.pid" ]] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# ---- nginx: one worker, a static 302 of the same length as the router's ------------------------
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { return 302 "https://casino-alpha.example/register?click_id=01a21d19-0b82-7e6c-a4ff-415137d395cc"; }
    }
}
EOF
taskset -c "$server_core" "$nginx_bin" -c "$work/nginx.conf" -p "$work"
for _ in $(seq 1 50); do [[ -f "$work/nginx.pid" ]] && break; sleep 0.1; done
nginx_master="$(cat "$work/nginx.pid")"

# ---- the floor: a bare hyper server answering a 302 with a fresh UUID (benches/bare_redirect.rs) --
bare_bin="${BARE_BIN:-./target/release/examples/bare_redirect}"
[[ -n "${BARE_BIN:-}" ]] || cargo build --release --quiet --example bare_redirect
taskset -c "$server_core" "$bare_bin" "127.0.0.1:$bare_port" &
bare_pid=$!

# ---- the router: release build, PostgreSQL, three offers -----------------------------------------
[[ -n "$postgres_core" ]] && pin_postgres "$postgres_core"
start_router "$router_port" "$server_core" "$work/router.log"
sleep 0.5
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
router_idle_rss=$(rss_kb "$router_pid")

# Nanoseconds the threads of process $1 have waited on a run queue (runnable, not running).
run_queue_wait() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ n += $2 } END { printf "%d", n }'; }
# CPU ticks of every PostgreSQL process alive now (the router's backends included).
postgres_ticks() {
    local pid total=0
    for pid in $(pgrep -x postgres || true); do
        total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
    done
    echo "$total"
}

# One wrk round; prints "requests non_2xx_3xx rps p50_us p99_us cpu_us_per_request
# postgres_cpu_us_per_request wrk_wait_percent". The last is the share of the round (from its
# first second to one second before its end) that wrk spent runnable but not running: a load
# generator kept off its core by other work (PostgreSQL, on a two-core machine) measures its own
# waiting as the server's latency.
round() {
    local url="$1"; shift
    local before after pg_before pg_after out wrk_pid wait_before wait_after
    before=$(ticks "$@")
    pg_before=$(postgres_ticks)
    taskset -c "$client_core" wrk -t"$threads" -c"$connections" -d"${duration}s" --latency \
        -H "User-Agent: $user_agent" "$url" > "$work/round.out" &
    wrk_pid=$!
    sleep 1
    wait_before=$(run_queue_wait "$wrk_pid")
    sleep $(( duration - 2 ))
    wait_after=$(run_queue_wait "$wrk_pid")
    wait "$wrk_pid"
    after=$(ticks "$@")
    pg_after=$(postgres_ticks)
    out=$(cat "$work/round.out")
    echo "$out" >> "$work/wrk.log"
    local requests bad rps p50 p99
    read -r requests bad rps p50 p99 < <(wrk_figures "$out")
    echo "$requests $bad $rps $p50 $p99 $(cpu_us_per_request $(( after - before )) "$requests")" \
        "$(cpu_us_per_request $(( pg_after - pg_before )) "$requests")" \
        "$(awk -v w=$(( wait_after - wait_before )) -v d="$duration" 'BEGIN { printf "%.1f", w / 1e7 / (d - 2) }')"
}

nginx_pids="$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')"
echo "== $rounds alternating rounds of ${duration}s, wrk -t$threads -c$connections, server on core $server_core, wrk on core $client_core${postgres_core:+, PostgreSQL on core $postgres_core}"
printf '%-8s %6s %12s %10s %10s %10s %12s %12s %10s\n' server round requests "req/s" "p50 us" "p99 us" "cpu us/req" \
    "pg us/req" "wrk wait%"
router_ok=0
declare -a r_rps r_cpu r_pg n_rps n_cpu b_rps b_cpu
for i in $(seq 1 "$rounds"); do
    read -r requests bad rps p50 p99 cpu pg_cpu wait < <(round "http://127.0.0.1:$router_port/click?source=load" "$router_pid")
    router_ok=$(( router_ok + requests - bad ))
    r_rps+=("$rps"); r_cpu+=("$cpu"); r_pg+=("$pg_cpu")
    printf '%-8s %6s %12s %10s %10s %10s %12s %12s %10s\n' router "$i" "$requests" "$rps" "$p50" "$p99" "$cpu" "$pg_cpu" "$wait"
    [[ "$bad" != 0 ]] && echo "   !! $bad responses were not 2xx/3xx"
    # shellcheck disable=SC2086
    read -r requests bad rps p50 p99 cpu pg_cpu wait < <(round "http://127.0.0.1:$nginx_port/click" $nginx_pids)
    n_rps+=("$rps"); n_cpu+=("$cpu")
    printf '%-8s %6s %12s %10s %10s %10s %12s %12s %10s\n' nginx "$i" "$requests" "$rps" "$p50" "$p99" "$cpu" "$pg_cpu" "$wait"
    read -r requests bad rps p50 p99 cpu pg_cpu wait < <(round "http://127.0.0.1:$bare_port/click" "$bare_pid")
    b_rps+=("$rps"); b_cpu+=("$cpu")
    printf '%-8s %6s %12s %10s %10s %10s %12s %12s %10s\n' bare "$i" "$requests" "$rps" "$p50" "$p99" "$cpu" "$pg_cpu" "$wait"
done
router_load_rss=$(rss_kb "$router_pid")

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rr=$(median "${r_rps[@]}"); nr=$(median "${n_rps[@]}"); rc=$(median "${r_cpu[@]}"); nc=$(median "${n_cpu[@]}")
br=$(median "${b_rps[@]}"); bc=$(median "${b_cpu[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "median req/s:        router $rr   nginx $nr   bare $br   router/nginx $(ratio "$rr" "$nr")   router/bare $(ratio "$rr" "$br")"
echo "median CPU us/req:    router $rc   nginx $nc   bare $bc   router/nginx $(ratio "$rc" "$nc")   router/bare $(ratio "$rc" "$bc")"
echo "median PostgreSQL CPU us/click (router rounds): $(median "${r_pg[@]}")"
echo "router RSS:           idle $(( router_idle_rss / 1024 )) MiB, after load $(( router_load_rss / 1024 )) MiB"

echo "== stopping the router gracefully and counting rows"
stop_router
rows=$(psql -At "$router_db_url" -c "SELECT count(*) FROM clicks")
echo "302s counted by wrk: $router_ok   click rows: $rows"
extra=$(( rows - router_ok ))
if (( extra == 0 )); then
    echo "zero loss: every redirected click is stored, once"
elif (( extra > 0 && extra <= connections * rounds )); then
    # wrk stops counting at its deadline; requests in flight then were answered (and stored) anyway.
    echo "zero loss: every counted 302 is stored; $extra more rows are requests in flight when wrk stopped"
else
    echo "MISMATCH: $extra rows more than 302s counted" >&2
    exit 1
fi
