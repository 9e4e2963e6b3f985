#!/usr/bin/env bash
# Benchmark (issue 12): what V8's sampling heap profiler, started by `nodejs-leak-exporter
# profile` (or the attribution collector), costs a loaded Node.js HTTP server.
#
#   bash benches/attribution_cost/run.sh
#
# Prints a markdown table and asserts nothing. Measured as benches/inspector_cost/run.sh does:
# the app (benches/inspector_cost/server.js, ~1 KiB of JSON built per request) is started as
# `node --inspect=127.0.0.1:0 server.js` and pinned to CPU 1; wrk, the profiler and this script
# run on CPU 0. Conditions, interleaved by round (a b c a b c ...), a fresh server per run:
#   a  nothing attached (the inspector is open, nobody uses it)
#   b  sampling at the default interval (128 KiB), a profile every 5 s
#   c  sampling at 32 KiB (V8's default), a profile every 5 s
# Each run: start the server, WARMUP s of load, start the profiler (b, c) and wait until it
# samples, then `wrk -t1 -c$CONNS -d${DURATION}s --latency`. Reported as mean and 95% CI over
# runs and as the difference to (a) paired by round: requests/s, the app's CPU per request (all
# its threads, /proc/PID/task/*/schedstat), wrk's latency p99.
#
# Knobs (environment): RUNS=6 DURATION=10 WARMUP=2 CONNS=32. About 4 minutes.
set -Eeuo pipefail

RUNS=${RUNS:-6}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
EXPORTER=$RELEASE_BIN

WORK=$(mktemp -d "${TMPDIR:-/tmp}/attribution_cost.XXXXXX")
SERVER_PID=''
PROF_PID=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "$PROF_PID"
    stop_pids "$SERVER_PID"
    ((rc == 0)) || tail_logs 20 "$WORK"/server.err "$WORK"/profile.err "$WORK"/wrk.out
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts the profiler on CPU 0 at interval $1 and waits until it samples.
start_profiler() {
    : >"$WORK/profile.err"
    RUST_LOG=info taskset -c 0 "$EXPORTER" profile --pid "$SERVER_PID" --duration 10m --every 5s --interval "$1" \
        --output json --out "$WORK/profile.json" 2>"$WORK/profile.err" &
    PROF_PID=$!
    local deadline=$((SECONDS + 20))
    until grep -q 'sampling live allocations' "$WORK/profile.err"; do
        kill -0 "$PROF_PID" 2>/dev/null || die "profiler exited"
        ((SECONDS < deadline)) || die "profiler did not start sampling in 20 s"
        sleep 0.05
    done
}

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
need_two_cpus
build_release

CONDS=(a b c)
: >"$WORK/load.txt"
for ((round = 1; round <= RUNS; round++)); do
    for cond in "${CONDS[@]}"; do
        start_app_server 0
        URL="http://127.0.0.1:$PORT/api/orders"
        taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$URL" >/dev/null
        case $cond in
        b) start_profiler 131072 ;;
        c) start_profiler 32768 ;;
        esac
        a0=$(task_ns "$SERVER_PID")
        taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$URL" >"$WORK/wrk.out"
        a1=$(task_ns "$SERVER_PID")
        read -r rps _ _ p99 _ nreq < <(parse_wrk "$WORK/wrk.out")
        us=$(awk -v a="$a0" -v b="$a1" -v n="$nreq" 'BEGIN { printf "%.4f", (b - a) / n / 1000 }')
        stop_pids "$PROF_PID"
        PROF_PID=''
        profiles=0
        [[ $cond != a ]] && profiles=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1])).profiles' "$WORK/profile.json" 2>/dev/null || echo 0)
        echo "$cond $round $rps $us $p99 $profiles" >>"$WORK/load.txt"
        log "$cond round $round: $rps req/s, app CPU $us us/request, p99 $p99 ms, profiles $profiles"
        stop_pids "$SERVER_PID"
        SERVER_PID=''
    done
done

awk -v runs="$RUNS" -v dur="$DURATION" -v conns="$CONNS" -v nodev="$(node --version)" -v ncpu="$(nproc)" '
function tq(df) {
    split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086", T, " ")
    return df < 1 ? 0 : (df <= 20 ? T[df] : 1.96)
}
function meanof(a, n,   s, i) { s = 0; for (i = 1; i <= n; i++) s += a[i]; return n ? s / n : 0 }
function hw(a, n,   m, s, i) { if (n < 2) return 0; m = meanof(a, n); s = 0; for (i = 1; i <= n; i++) s += (a[i] - m) ^ 2; return tq(n - 1) * sqrt(s / (n - 1)) / sqrt(n) }
{ V[$1, $2] = $0; N[$1]++; k = N[$1]; RPS[$1, k] = $3; US[$1, k] = $4; P99[$1, k] = $5 }
END {
    printf "Node.js %s, %d CPUs, %d rounds of %d s, wrk -c%d; mean ± 95%% CI over runs; differences to (a) paired by round.\n\n", nodev, ncpu, runs, dur, conns
    print "| condition | requests/s | app CPU per request (µs) | p99 (ms) | Δ CPU per request vs a | Δ requests/s vs a |"
    print "|---|---|---|---|---|---|"
    split("a b c", C, " ")
    name["a"] = "a: nothing attached"; name["b"] = "b: sampling at 128 KiB (default)"; name["c"] = "c: sampling at 32 KiB"
    for (ci = 1; ci <= 3; ci++) {
        c = C[ci]; n = N[c]
        for (i = 1; i <= n; i++) { r[i] = RPS[c, i]; u[i] = US[c, i]; p[i] = P99[c, i] }
        dcpu = "—"; drps = "—"
        if (c != "a") {
            m = 0
            for (round = 1; round <= runs; round++) if ((c, round) in V && ("a", round) in V) {
                split(V[c, round], X, " "); split(V["a", round], Y, " "); m++
                du[m] = 100 * (X[4] - Y[4]) / Y[4]; dr[m] = 100 * (X[3] - Y[3]) / Y[3]
            }
            dcpu = sprintf("%+.1f%% ± %.1f%%", meanof(du, m), hw(du, m))
            drps = sprintf("%+.1f%% ± %.1f%%", meanof(dr, m), hw(dr, m))
        }
        printf "| %s | %.0f ± %.0f | %.2f ± %.2f | %.2f ± %.2f | %s | %s |\n", name[c], meanof(r, n), hw(r, n), meanof(u, n), hw(u, n), meanof(p, n), hw(p, n), dcpu, drps
    }
}' "$WORK/load.txt"
