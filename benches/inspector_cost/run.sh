#!/usr/bin/env bash
# Benchmark (issue 4): what nodejs-leak-exporter's inspector collector costs the app it watches,
# with prom-client's collectDefaultMetrics() inside the app as the reference.
#
#   bash benches/inspector_cost/run.sh
#
# Prints a markdown table and asserts nothing. Targets from the issue, for reading the table:
#   - at the default interval (5 s): no difference that the confidence intervals can resolve,
#   - at 250 ms: no more than prom-client's cost when it is scraped every 250 ms.
#
# The app (server.js) is an HTTP server that builds and stringifies a ~1 KiB JSON response per
# request, started as `node --inspect=127.0.0.1:0 server.js` in every condition and pinned to
# CPU 1 (`taskset -c 1`). Everything else runs on CPU 0: wrk, the exporter, the scraper, this
# script. Conditions:
#   a  nothing attached (the inspector is open, nobody uses it)
#   b  nodejs-leak-exporter attached, --sample.interval=5s (the default)
#   c  nodejs-leak-exporter attached, --sample.interval=250ms
#   d  PROM_CLIENT=1: prom-client's collectDefaultMetrics() in the app, /metrics scraped every 5 s
#   e  PROM_CLIENT=1, /metrics scraped every 250 ms
# Why prom-client is scraped: prom-client 15 has no collection timer. collectDefaultMetrics()
# keeps an event-loop delay histogram (10 ms resolution) and a GC PerformanceObserver running
# and does the rest of its work (CPU, memory, heap spaces, fds, handles, ...) when /metrics is
# read. "Collecting without serving" would measure only the always-on part; an app pays the
# collection when it is scraped, so d and e serve /metrics to scraper.js (one keep-alive
# connection, like Prometheus) at the exporter's two intervals: one sample of ours against one
# scrape of theirs.
#
# Part 1, load: RUNS rounds of a b c d e, interleaved (a b c d e a b c d e ...), a fresh server
#   per run. Each run: start the server, warm it up with WARMUP s of load, attach the exporter or
#   the scraper (waits until nodejs_inspector_connected is 1, or a first scrape answered), reset
#   the event-loop delay monitor inside the server (monitorEventLoopDelay, resolution 10 ms),
#   `wrk -t1 -c$CONNS -d${DURATION}s --latency`, read the monitor's percentiles. Reported, as
#   mean and 95% CI over runs and as the difference to (a) paired by round: requests/s, the app's
#   CPU per request (all its threads, /proc/PID/task/*/schedstat, over the load: what the
#   monitoring adds to each request's cost, and less sensitive than requests/s to other processes
#   taking CPU 1 away), event-loop delay p99; also wrk's latency p50/p99. The share of CPU 1 that
#   other processes took (CPU 1 busy in /proc/stat minus the app) is shown per condition, and the
#   verdicts are repeated over the "quiet" rounds, in which no run lost more than QUIET % of it.
# Part 2, idle: the app's CPU per sample. A plain server, idle: IDLE s with nothing attached,
#   IDLE_5S s with the exporter at 5 s, IDLE s with it at 250 ms, IDLE s with nothing again; then
#   the same with a prom-client server, not scraped / scraped every 5 s / every 250 ms. App CPU is
#   read from /proc/PID/task/*/schedstat (ns, all threads) and /proc/PID/stat (utime+stime, 10 ms
#   ticks). (window - baseline) / samples in the window = CPU per sample (per scrape for
#   prom-client); the baseline is the mean of the two empty windows of the same server. Windows
#   start at least SETTLE s after the attach, half an interval after a sample, so they hold
#   exactly window/interval samples and not the attach.
#
# Knobs (environment): RUNS=7 DURATION=10 WARMUP=2 CONNS=32 IDLE=30 IDLE_5S=60 SETTLE=10 QUIET=2.
# About 14 minutes on a 2-core machine (plus installs and the release build if not cached).
set -Eeuo pipefail

RUNS=${RUNS:-7}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
IDLE=${IDLE:-30}
IDLE_5S=${IDLE_5S:-60}
SETTLE=${SETTLE:-10}
QUIET=${QUIET:-2} # % of CPU 1 taken by other processes above which a round is not "quiet"

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HERE=$ROOT/benches/inspector_cost
cd "$ROOT"
EXPORTER=$RELEASE_BIN
TCK=$(getconf CLK_TCK)
STOP_GRACE=5 # seconds stop_pids gives a process between TERM and KILL

# ---------------------------------------------------------------------------------------------
# Cleanup: every process this script started, on normal exit, error, Ctrl-C or TERM.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/inspector_cost.XXXXXX")
SERVER_PID=''
EXP_PID=''
SCRAPER_PID=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "$SCRAPER_PID"
    stop_pids "$EXP_PID"
    stop_pids "$SERVER_PID"
    ((rc == 0)) || tail_logs 20 "$WORK"/server.err "$WORK"/exporter.log "$WORK"/scraper.out "$WORK"/wrk.out
    rm -rf "$WORK"
    exit "$rc"
}
trap_cleanup

# ---------------------------------------------------------------------------------------------
# Helpers.

# App CPU: "ticks ns", utime+stime of /proc/PID/stat and its time on CPU from schedstat.
app_cpu() {
    local ticks
    ticks=$(cpu_ticks "$1") || die "process $1 is gone"
    echo "$ticks $(task_ns "$1")"
}
# Established TCP connections to a local port (inspector sessions when it is an inspector's).
sessions_on() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }

stop_server() { stop_pids "$SERVER_PID"; SERVER_PID=''; }

# Starts the exporter on CPU 0 watching only $SERVER_PID at interval $1, and waits until
# nodejs_inspector_connected is 1 for it (installed and one sample taken). Sets T_ATT to the time
# it first saw it (a sample was taken just before).
start_exporter() {
    printf 'discovery:\n  include: []\n  pids: [%s]\n' "$SERVER_PID" >"$WORK/exporter.yml"
    EXP_PORT=$(free_port)
    taskset -c 0 "$EXPORTER" --config.file="$WORK/exporter.yml" --web.listen-address="127.0.0.1:$EXP_PORT" \
        --sample.interval="$1" --discovery.min-age=0s --log.level=warn >"$WORK/exporter.log" 2>&1 &
    EXP_PID=$!
    local deadline=$((SECONDS + 30))
    while :; do
        kill -0 "$EXP_PID" 2>/dev/null || die "exporter exited"
        if curl -sS --max-time 2 -o "$WORK/exp.prom" "http://127.0.0.1:$EXP_PORT/metrics" 2>/dev/null &&
            grep -q "^nodejs_inspector_connected{.*pid=\"$SERVER_PID\".*} 1\$" "$WORK/exp.prom"; then
            T_ATT=$(now)
            return
        fi
        ((SECONDS < deadline)) || die "exporter not attached to pid $SERVER_PID after 30 s"
        sleep 0.05
    done
}
exporter_connected() {
    curl -sS --max-time 2 -o "$WORK/exp.prom" "http://127.0.0.1:$EXP_PORT/metrics" 2>/dev/null &&
        grep -q "^nodejs_inspector_connected{.*pid=\"$SERVER_PID\".*} 1\$" "$WORK/exp.prom"
}
stop_exporter() { stop_pids "$EXP_PID"; EXP_PID=''; }

# Starts scraper.js on CPU 0 against the server's /metrics every $1 ms; waits for a first answer
# and sets T_ATT to the time it saw it (the scrapes follow every $1 ms from about then).
start_scraper() {
    : >"$WORK/scraper.out"
    taskset -c 0 node "$HERE/scraper.js" "http://127.0.0.1:$PORT/metrics" "$1" >"$WORK/scraper.out" 2>&1 &
    SCRAPER_PID=$!
    local deadline=$((SECONDS + 20))
    until grep -q ' 200 ' "$WORK/scraper.out"; do
        kill -0 "$SCRAPER_PID" 2>/dev/null || die "scraper exited"
        ((SECONDS < deadline)) || die "no scrape answered in 20 s"
        sleep 0.05
    done
    T_ATT=$(now)
}
scrapes_done() { grep -c ' 200 ' "$WORK/scraper.out" || true; }
stop_scraper() { stop_pids "$SCRAPER_PID"; SCRAPER_PID=''; }

# ---------------------------------------------------------------------------------------------
# 1. What the benchmark needs.

command -v node >/dev/null || die "node is not on PATH"
command -v curl >/dev/null || die "curl is not installed"
need_two_cpus
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    apt_install wrk || apt_install --update wrk
fi
if [[ ! -f $HERE/node_modules/prom-client/package.json ]]; then
    log "installing prom-client into $HERE/node_modules"
    (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error)
fi
build_release
others=$(node_count)
((others == 0)) || log "note: $others other Node.js processes run on this machine"

# ---------------------------------------------------------------------------------------------
# 2. Load: RUNS interleaved rounds of a b c d e, a fresh server per run.

CONDS=(a b c d e)
: >"$WORK/load.txt"
total=$((RUNS * ${#CONDS[@]}))
i=0
for ((round = 1; round <= RUNS; round++)); do
    for cond in "${CONDS[@]}"; do
        i=$((i + 1))
        prom=0
        [[ $cond == d || $cond == e ]] && prom=1
        start_app_server "$prom"
        URL="http://127.0.0.1:$PORT/api/orders"
        taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$URL" >/dev/null
        attached=0
        case $cond in
        b) start_exporter 5s ;;
        c) start_exporter 250ms ;;
        d) start_scraper 5000 ;;
        e) start_scraper 250 ;;
        esac
        s0=$(sessions_on "$IPORT")
        sc0=0
        [[ -n $SCRAPER_PID ]] && sc0=$(scrapes_done)
        curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/__reset"
        m0=$(machine_jiffies)
        k0=$(machine_jiffies cpu1)
        a0=$(app_cpu "$SERVER_PID")
        t0=$(now)
        taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$URL" >"$WORK/wrk.out"
        t1=$(now)
        a1=$(app_cpu "$SERVER_PID")
        k1=$(machine_jiffies cpu1)
        m1=$(machine_jiffies)
        curl -sS --max-time 5 -o "$WORK/eld.json" "http://127.0.0.1:$PORT/__stats"
        s1=$(sessions_on "$IPORT")
        sc1=0
        [[ -n $SCRAPER_PID ]] && sc1=$(scrapes_done)
        if [[ -n $EXP_PID ]]; then
            exporter_connected && attached=1
        fi
        read -r rps p50 p90 p99 err nreq < <(parse_wrk "$WORK/wrk.out")
        [[ -n $rps ]] || die "could not read wrk's output"
        read -r eld_p99 eld_max eld_n < <(node -e 'const e = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(e.p99 / 1e6, e.max / 1e6, e.count)' "$WORK/eld.json")
        busy=$(busy_pct "$m0" "$m1")
        # App CPU per request (ns, all its threads), the app's share of CPU 1 and what else ran
        # there (CPU 1 busy minus the app, in ticks), over the measured load.
        read -r us_req share other < <(awk -v a0="$a0" -v a1="$a1" -v k0="$k0" -v k1="$k1" -v t0="$t0" -v t1="$t1" -v n="$nreq" -v tck="$TCK" 'BEGIN {
            split(a0, A, " "); split(a1, B, " "); split(k0, K, " "); split(k1, L, " ")
            ns = B[2] - A[2]; wall = t1 - t0
            printf "%.4f %.2f %.2f\n", ns / n / 1000, 100 * ns / 1e9 / wall, 100 * ((L[1] - K[1]) - (B[1] - A[1])) / tck / wall }')
        echo "$cond $round $rps $p50 $p90 $p99 $eld_p99 $eld_max $eld_n $busy $s0 $s1 $((sc1 - sc0)) $attached $err $us_req $share $other" >>"$WORK/load.txt"
        log "run $i/$total: $cond round $round: $rps req/s, app CPU $us_req us/request (app on CPU 1: $share%, other: $other%), wrk p99 $p99 ms, event-loop delay p99 $eld_p99 ms, machine busy $busy%, inspector sessions $s0/$s1"
        stop_scraper
        stop_exporter
        stop_server
    done
done

# ---------------------------------------------------------------------------------------------
# 3. Idle: the app's CPU per sample.

# Measures $2 s starting at $1 (unix time); prints "wall_s ticks ns scrapes", scrapes being
# those the scraper finished inside the window (0 without a scraper).
window() {
    sleep_until "$1"
    local t0 c0 t1 c1 n0=0 n1=0
    t0=$(now)
    c0=$(app_cpu "$SERVER_PID")
    [[ -n $SCRAPER_PID ]] && n0=$(scrapes_done)
    sleep_until "$(awk -v t="$1" -v d="$2" 'BEGIN { printf "%.6f", t + d }')"
    t1=$(now)
    c1=$(app_cpu "$SERVER_PID")
    [[ -n $SCRAPER_PID ]] && n1=$(scrapes_done)
    awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v n="$((n1 - n0))" 'BEGIN { split(c0, a, " "); split(c1, b, " "); printf "%.3f %d %.0f %d\n", t1 - t0, b[1] - a[1], b[2] - a[2], n }'
}
# Start of a window at least SETTLE s from now, half an interval after a sample at t0 + k*period
# (the attach, the install and the first samples, and the GC work they leave, stay outside).
aligned() { awk -v t0="$1" -v p="$2" -v n="$(now)" -v s="$SETTLE" 'BEGIN { t = t0 + p / 2; while (t < n + s) t += p; printf "%.6f", t }'; }
soon() { awk -v n="$(now)" 'BEGIN { printf "%.6f", n + 0.5 }'; }
# Window length for an interval: IDLE_5S for intervals of a second or more, IDLE otherwise.
span() { awk -v p="$1" -v a="$IDLE" -v b="$IDLE_5S" 'BEGIN { print (p >= 1 ? b : a) }'; }
expected() { awk -v d="$(span "$1")" -v p="$1" 'BEGIN { printf "%d", d / p + 0.5 }'; }

# Lines of idle.txt: name interval_s expected_samples wall_s ticks ns scrapes_counted sessions connected
: >"$WORK/idle.txt"
for kind in exp prom; do
    if [[ $kind == exp ]]; then
        log "idle: plain server: nothing ${IDLE} s, exporter at 5 s ${IDLE_5S} s, at 250 ms ${IDLE} s, nothing ${IDLE} s"
        start_app_server 0
    else
        log "idle: prom-client server: no scrape ${IDLE} s, scraped every 5 s ${IDLE_5S} s, every 250 ms ${IDLE} s, no scrape ${IDLE} s"
        start_app_server 1
    fi
    sleep "$SETTLE" # start-up settles
    read -r w tk ns n < <(window "$(soon)" "$IDLE")
    echo "${kind}base 0 0 $w $tk $ns $n $(sessions_on "$IPORT") 0" >>"$WORK/idle.txt"
    for iv in 5 0.25; do
        if [[ $kind == exp ]]; then
            start_exporter "${iv}s"
        else
            start_scraper "$(awk -v p="$iv" 'BEGIN { print p * 1000 }')"
        fi
        # A sample (scrape) was taken just before T_ATT (within the 50 ms poll); they follow every
        # iv s from there.
        read -r w tk ns n < <(window "$(aligned "$T_ATT" "$iv")" "$(span "$iv")")
        ok=1
        if [[ $kind == exp ]]; then
            exporter_connected || ok=0
        fi
        echo "$kind $iv $(expected "$iv") $w $tk $ns $n $(sessions_on "$IPORT") $ok" >>"$WORK/idle.txt"
        log "idle: $kind every ${iv}s: $(tail -n 1 "$WORK/idle.txt")"
        if [[ $kind == exp ]]; then stop_exporter; else stop_scraper; fi
    done
    sleep "$SETTLE"
    read -r w tk ns n < <(window "$(soon)" "$IDLE")
    echo "${kind}base 1 0 $w $tk $ns $n $(sessions_on "$IPORT") 0" >>"$WORK/idle.txt"
    [[ $kind == prom ]] && prom_bytes=$(awk '$2 == 200 { b = $3 } END { print b + 0 }' "$WORK/scraper.out")
    stop_server
done

# ---------------------------------------------------------------------------------------------
# 4. The tables.

our_version=$("$EXPORTER" --version 2>/dev/null | head -n 1)
if rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    [[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || rev="$rev + uncommitted changes to src/"
    our_version="$our_version (commit $rev)"
fi
prom_version=$(node -p 'require(process.argv[1]).version' "$HERE/node_modules/prom-client/package.json")
wrk_version=$(wrk --version 2>&1 | awk 'NR == 1 { print $2 }' || true)

awk -v quiet="$QUIET" -v runs="$RUNS" -v dur="$DURATION" -v conns="$CONNS" -v idle="$IDLE" -v idle5="$IDLE_5S" -v settle="$SETTLE" -v tck="$TCK" \
    -v nodev="$(node --version)" -v ours="$our_version" -v promv="$prom_version" -v wrkv="$wrk_version" \
    -v ncpu="$(nproc)" -v kernel="$(uname -r)" -v prom_bytes="$prom_bytes" '
# Two-sided 95% Student t quantile for df degrees of freedom.
function tq(df) {
    split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086", T, " ")
    if (df < 1) return 0
    if (df <= 20) return T[df]
    if (df <= 30) return 2.04
    return 1.96
}
function meanof(arr, n,   s, i) { s = 0; for (i = 1; i <= n; i++) s += arr[i]; return n ? s / n : 0 }
function hw(arr, n,   m, s, i) { if (n < 2) return 0; m = meanof(arr, n); s = 0; for (i = 1; i <= n; i++) s += (arr[i] - m) ^ 2; return tq(n - 1) * sqrt(s / (n - 1)) / sqrt(n) }
function f1(x) { return sprintf("%.1f", x) }
function f2(x) { return sprintf("%.2f", x) }
function pm(m, h, fmt) { return sprintf(fmt " ± " fmt, m, h) }
# Paired differences x - y by round for field f; sets DM (mean) and DH (CI half-width).
# With clean set, only over the rounds in which no run had other load on CPU 1 (QUIET %).
function paired(x, y, f, clean,   r, d, n) { n = 0; for (r = 1; r <= runs; r++) if ((x, r) in V && (y, r) in V && !(clean && DIRTY[r])) { split(V[x, r], X, " "); split(V[y, r], Y, " "); d[++n] = X[f] - Y[f] } DM = meanof(d, n); DH = hw(d, n); DN = n }
FNR == 1 { file++ }
file == 1 {
    # 1 cond 2 round 3 rps 4 p50 5 p90 6 p99 7 eld_p99 8 eld_max 9 eld_n 10 busy 11 sessions0
    # 12 sessions1 13 scrapes 14 attached 15 wrk_err 16 us_per_req 17 app_share 18 other_cpu1
    V[$1, $2] = $3 " " $7 " " $16
    N[$1]++
    k = N[$1]
    RPS[$1, k] = $3; P50[$1, k] = $4; P99[$1, k] = $6; ELD[$1, k] = $7; US[$1, k] = $16
    if ($8 > ELDMAX[$1]) ELDMAX[$1] = $8
    BUSY[$1] += $10; SHARE[$1] += $17; OTHER[$1] += $18
    if ($18 > OTHERMAX[$1]) OTHERMAX[$1] = $18
    if ($18 > quiet) DIRTY[$2] = 1
    SC[$1] += $13
    if ($1 == "a" && ($11 > 0 || $12 > 0)) foreign++
    if (($1 == "b" || $1 == "c") && ($11 > 1 || $12 > 1)) foreign++
    if (($1 == "b" || $1 == "c") && !$14) lost++
    if ($15) errs++
    next
}
file == 2 {
    # name interval_s expected_samples wall_s ticks ns scrapes_counted sessions connected
    I[$1 "_" $2] = $0
    next
}
END {
    name["a"] = "(a) nothing attached (inspector open)"
    name["b"] = "(b) exporter attached, 5 s interval (default)"
    name["c"] = "(c) exporter attached, 250 ms interval"
    name["d"] = "(d) prom-client `collectDefaultMetrics()`, /metrics scraped every 5 s"
    name["e"] = "(e) prom-client `collectDefaultMetrics()`, /metrics scraped every 250 ms"
    split("a b c d e", C, " ")
    printf "Node.js %s, %d CPUs, Linux %s. App pinned to CPU 1; wrk %s, the exporter and the scraper on CPU 0.\n", nodev, ncpu, kernel, wrkv
    printf "Ours: %s. Reference: prom-client %s (response of /metrics: %.1f KiB).\n", ours, promv, prom_bytes / 1024
    printf "Load: %d interleaved rounds of a b c d e, a fresh server per run, `wrk -t1 -c%d -d%ds --latency` after a warm-up; 95%% CIs are Student t over the %d runs; differences are paired by round.\n\n", runs, conns, dur, runs
    print "| condition | req/s (mean ± 95% CI) | Δ req/s vs (a), paired | **app CPU per request** (mean ± 95% CI) | Δ CPU per request vs (a), paired | CPU 1 used by the app | other load on CPU 1 (mean, worst run) | machine busy |"
    print "|---|---|---|---|---|---|---|---|"
    ra = meanof2("a", RPS); ua = meanof2("a", US); ea = meanof2("a", ELD)
    for (j = 1; j <= 5; j++) {
        c = C[j]; n = N[c]
        if (!n) continue
        for (k = 1; k <= n; k++) { r[k] = RPS[c, k]; u[k] = US[c, k] }
        if (c == "a") { drps = "—"; dus = "—" }
        else {
            paired(c, "a", 1); drps = sprintf("%+.0f ± %.0f (%+.1f%% ± %.1f%%)", DM, DH, 100 * DM / ra, 100 * DH / ra)
            paired(c, "a", 3); dus = sprintf("%+.2f ± %.2f µs (%+.2f%% ± %.2f%%)", DM, DH, 100 * DM / ua, 100 * DH / ua)
        }
        printf "| %s | %s | %s | %s µs | %s | %.1f%% | %.1f%%, %.1f%% | %.0f%% |\n", name[c], pm(meanof(r, n), hw(r, n), "%.0f"), drps, pm(meanof(u, n), hw(u, n), "%.2f"), dus, SHARE[c] / n, OTHER[c] / n, OTHERMAX[c], BUSY[c] / n
    }
    print ""
    print "| condition | wrk latency p50 / p99 (mean over runs) | event-loop delay p99 (mean ± 95% CI) | Δ event-loop delay p99 vs (a), paired | event-loop delay max (worst run) | samples / scrapes during the load (mean) |"
    print "|---|---|---|---|---|---|"
    for (j = 1; j <= 5; j++) {
        c = C[j]; n = N[c]
        if (!n) continue
        for (k = 1; k <= n; k++) { e[k] = ELD[c, k]; l50[k] = P50[c, k]; l99[k] = P99[c, k] }
        if (c == "a") deld = "—"
        else { paired(c, "a", 2); deld = sprintf("%+.2f ± %.2f ms", DM, DH) }
        if (c == "b") sc = sprintf("%d samples", dur / 5)
        else if (c == "c") sc = sprintf("%d samples", dur / 0.25)
        else if (c == "d" || c == "e") sc = sprintf("%.1f scrapes", SC[c] / n)
        else sc = "—"
        printf "| %s | %.2f / %.2f ms | %s ms | %s | %.1f ms | %s |\n", name[c], meanof(l50, n), meanof(l99, n), pm(meanof(e, n), hw(e, n), "%.2f"), deld, ELDMAX[c], sc
    }
    print ""
    if (foreign) printf "Note: in %d runs another inspector client was connected to the app (another program on the machine): those runs are not clean.\n\n", foreign
    if (lost) printf "Note: in %d runs the exporter was no longer connected at the end of the load.\n\n", lost
    if (errs) printf "Note: wrk reported socket errors or non-2xx answers in %d runs.\n\n", errs

    # Idle CPU. Fields: 1 name, 2 interval, 3 expected samples, 4 wall s, 5 ticks, 6 ns,
    # 7 scrapes counted, 8 inspector sessions, 9 connected.
    for (kk = 1; kk <= 2; kk++) {
        kind = kk == 1 ? "exp" : "prom"
        split(I[kind "base_0"], B1, " "); split(I[kind "base_1"], B2, " ")
        BNS[kind] = (B1[6] + B2[6]) / (B1[4] + B2[4])     # ns of CPU per s of wall
        BTK[kind] = (B1[5] + B2[5]) / (B1[4] + B2[4])
        BLO[kind] = (B1[6] / B1[4] < B2[6] / B2[4]) ? B1[6] / B1[4] : B2[6] / B2[4]
        BHI[kind] = (B1[6] / B1[4] > B2[6] / B2[4]) ? B1[6] / B1[4] : B2[6] / B2[4]
    }
    printf "Idle app, CPU per sample: an idle server, %d s windows (%d s for the 5 s interval) starting at least %d s after the attach, aligned half an interval after a sample. App CPU from `/proc/PID/task/*/schedstat` (ns, all threads); from `/proc/PID/stat` (%d ms ticks) in brackets. Baseline: mean of a window before and one after, same server.\n\n", idle, idle5, settle, 1000 / tck
    print "| idle window | samples (scrapes) in the window | app CPU in the window | minus baseline | **app CPU per sample (scrape)** | app CPU per second |"
    print "|---|---|---|---|---|---|"
    split("expbase exp_5 exp_0.25 prombase prom_5 prom_0.25", W, " ")
    for (j = 1; j <= 6; j++) {
        if (W[j] ~ /base$/) {
            kind = W[j] == "expbase" ? "exp" : "prom"
            what = kind == "exp" ? "plain server, nothing attached (baseline)" : "prom-client server, not scraped (baseline: its event-loop delay histogram and GC observer run)"
            printf "| %s | 0 | %.2f ms per %d s | | | %.3f ms/s (windows: %.3f and %.3f) |\n", what, BNS[kind] * idle / 1e6, idle, BNS[kind] / 1e6, BLO[kind] / 1e6, BHI[kind] / 1e6
            continue
        }
        split(I[W[j]], X, " ")
        prom = (X[1] == "prom"); kind = X[1]
        n = prom ? X[7] : X[3]
        d = X[6] - BNS[kind] * X[4]; dt = X[5] - BTK[kind] * X[4]
        per[W[j]] = (n > 0) ? d / n : 0; pert = (n > 0) ? dt * 1000 / tck / n : 0
        # The spread of the two baseline windows, carried over to the estimate.
        spread[W[j]] = (n > 0) ? (BHI[kind] - BLO[kind]) / 2 * X[4] / n : 0
        iv = X[2] >= 1 ? X[2] " s" : X[2] * 1000 " ms"
        what = prom ? "prom-client, /metrics scraped every " iv : "exporter attached, " iv " interval"
        printf "| %s | %d | %.2f ms [%d ticks] | %.2f ms [%.1f ticks] | **%.3f ms** (± %.3f from the baseline spread) [%.2f ms] | %.3f ms/s |\n", what, n, X[6] / 1e6, X[5], d / 1e6, dt, per[W[j]] / 1e6, spread[W[j]] / 1e6, pert, X[6] / X[4] / 1e6
        if (!prom && !X[9]) printf "| (the exporter was not connected at the end of this window) | | | | | |\n"
        if (!prom && X[8] != 1) printf "| (%d inspector sessions were open at the end of this window, 1 expected) | | | | | |\n", X[8]
        if (prom && X[8] != 0) printf "| (%d inspector sessions were open at the end of this window, 0 expected) | | | | | |\n", X[8]
    }
    printf "\nprom-client always-on cost (its not-scraped baseline minus the plain server'\''s, two processes): %.3f ms of CPU per second.\n\n", (BNS["prom"] - BNS["exp"]) / 1e6

    # Verdicts. A difference x - y is "resolved against x" when its 95% CI excludes 0 on the
    # unfavourable side: fewer req/s, more CPU per request, more event-loop delay.
    print "Targets (issue 4):"
    paired("b", "a", 1); r_m = DM; r_h = DH
    paired("b", "a", 2); e_m = DM; e_h = DH
    paired("b", "a", 3); u_m = DM; u_h = DH
    ok1 = (r_m + r_h >= 0 && e_m - e_h <= 0 && u_m - u_h <= 0)
    pred5 = per["exp_5"] / 5e9 * 100        # % of a core the samples take at 5 s
    printf "- Default interval (5 s), no difference the confidence intervals can resolve: %s. (b) − (a), paired by round, 95%% CI: throughput %+.0f ± %.0f req/s (%+.2f%% ± %.2f%%), app CPU per request %+.3f ± %.3f µs (%+.2f%% ± %.2f%%), event-loop delay p99 %+.2f ± %.2f ms. The idle measurement puts a sample at %.3f ms of app CPU, %.4f%% of a core at one per 5 s: %.0f× smaller than the finest resolution here (CPU per request, ±%.2f%%).\n", (ok1 ? "**met**" : "**missed**"), r_m, r_h, 100 * r_m / ra, 100 * r_h / ra, u_m, u_h, 100 * u_m / ua, 100 * u_h / ua, e_m, e_h, per["exp_5"] / 1e6, pred5, (pred5 > 0 ? (100 * u_h / ua) / pred5 : 0), 100 * u_h / ua
    paired("b", "a", 1, 1); qr_m = DM; qr_h = DH; qn = DN
    paired("b", "a", 3, 1); qu_m = DM; qu_h = DH
    paired("b", "a", 2, 1); qe_m = DM; qe_h = DH
    if (qn >= 2) printf "  Over the %d rounds of %d in which no run saw more than %g%% of CPU 1 taken by other processes: throughput %+.0f ± %.0f req/s (%+.2f%% ± %.2f%%), app CPU per request %+.3f ± %.3f µs (%+.2f%% ± %.2f%%), event-loop delay p99 %+.2f ± %.2f ms.\n", qn, runs, quiet, qr_m, qr_h, 100 * qr_m / ra, 100 * qr_h / ra, qu_m, qu_h, 100 * qu_m / ua, 100 * qu_h / ua, qe_m, qe_h
    paired("c", "e", 1); r_m = DM; r_h = DH
    paired("c", "e", 2); e_m = DM; e_h = DH
    paired("c", "e", 3); u_m = DM; u_h = DH
    paired("c", "a", 3); ca_m = DM; ca_h = DH
    paired("e", "a", 3); ea_m = DM; ea_h = DH
    cpu_ok = (per["exp_0.25"] <= per["prom_0.25"])
    ok2 = (cpu_ok && r_m + r_h >= 0 && e_m - e_h <= 0 && u_m - u_h <= 0)
    printf "- 250 ms, no more than prom-client scraped every 250 ms: %s. Idle app CPU per sample %.3f ms (± %.3f) against %.3f ms (± %.3f) per prom-client scrape (%s). Under load, (c) − (e), paired, 95%% CI: throughput %+.0f ± %.0f req/s, app CPU per request %+.3f ± %.3f µs (%+.2f%% ± %.2f%% of (a)), event-loop delay p99 %+.2f ± %.2f ms. Against (a): CPU per request (c) %+.2f%% ± %.2f%%, (e) %+.2f%% ± %.2f%%.\n", (ok2 ? "**met**" : "**missed**"), per["exp_0.25"] / 1e6, spread["exp_0.25"] / 1e6, per["prom_0.25"] / 1e6, spread["prom_0.25"] / 1e6, (per["exp_0.25"] > 0 ? sprintf("%.1f× less", per["prom_0.25"] / per["exp_0.25"]) : "n/a"), r_m, r_h, u_m, u_h, 100 * u_m / ua, 100 * u_h / ua, e_m, e_h, 100 * ca_m / ua, 100 * ca_h / ua, 100 * ea_m / ua, 100 * ea_h / ua
    paired("c", "e", 1, 1); qr_m = DM; qr_h = DH; qn = DN
    paired("c", "e", 3, 1); qu_m = DM; qu_h = DH
    paired("c", "e", 2, 1); qe_m = DM; qe_h = DH
    if (qn >= 2) printf "  Over the %d quiet rounds, (c) − (e): throughput %+.0f ± %.0f req/s, app CPU per request %+.3f ± %.3f µs (%+.2f%% ± %.2f%%), event-loop delay p99 %+.2f ± %.2f ms.\n", qn, qr_m, qr_h, qu_m, qu_h, 100 * qu_m / ua, 100 * qu_h / ua, qe_m, qe_h
}
function meanof2(c, A,   k, s) { s = 0; for (k = 1; k <= N[c]; k++) s += A[c, k]; return N[c] ? s / N[c] : 0 }
' "$WORK/load.txt" "$WORK/idle.txt"
