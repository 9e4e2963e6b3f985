#!/usr/bin/env bash
# Soak benchmark (issue 11): nodejs-leak-exporter for half an hour under process churn and
# concurrent scrapes, then its sample cost per target at 10, 100, 500 and 1,000 targets, side by
# side with Debian's prometheus-process-exporter. A script, not a CI job.
#
#   bash benches/soak.sh            # about 45 minutes: 30 min soak, then the cost per target
#   bash benches/soak.sh --middle   # about 20 minutes: a 10 min soak at the same churn rate
#   bash benches/soak.sh --quick    # about 6 minutes: 3 min, 20 steady + 200 churned, sizes 10 and 100
#
# It prints markdown tables on stdout (progress on stderr) and asserts nothing.
#
# Phase A, the soak. STEADY processes of benches/soak/app.js run for the whole phase (one in
# INSPECT_EVERY with `--inspect=127.0.0.1:0`, so the exporter holds inspector sessions, and as
# many others serving HTTP to themselves); nodejs-leak-exporter runs with its defaults except
# `--discovery.min-age=1s` (so nearly every churned process becomes a target and goes again);
# benches/soak/churn.js starts CHURN more processes evenly over the phase, each living 3-60 s (a
# tenth with an inspector, a quarter serving HTTP); benches/soak/scrapers.js runs 5 scrapers, each GETting /metrics once a
# second over its own keep-alive connection, and records every latency. Every MONITOR seconds
# the script reads the exporter's VmRSS/VmHWM, open fds (/proc/PID/fd), threads and CPU (ticks of
# /proc/PID/stat, and ns per thread from /proc/PID/task/*/schedstat), and scrapes its own
# nodejs_leak_exporter_* metrics. process-exporter runs beside it on the same processes, scraped
# once per MONITOR seconds (at 5 s, the cadence of our samples). At the end the exporter's own RSS
# and fd series go through `nodejs-leak-exporter analyze` — the same analysis the exporter runs
# on Node.js processes — which must say "no leak".
#
# Phase B, cost per target. For each size in SIZES, that many idle app.js processes (started
# incrementally), a fresh pair of exporters, a warm-up, then WINDOW seconds at one cycle per 5 s:
# ours samples on its own timer and is scraped once between two samples (as Prometheus would);
# process-exporter, which reads /proc inside each scrape, is scraped once every 5 s. CPU is
# utime+stime of /proc/PID/stat (10 ms ticks, every thread, exited ones too), with the ns of
# /proc/PID/task/*/schedstat of the threads alive at both ends beside it (and of the sampler
# thread alone), read by this script for both. A size is skipped, and said so, when MemAvailable cannot hold its
# processes (an idle node needs ~7 MiB of its own memory; the rest of its RSS is shared).
#
# Knobs (environment, after the mode): STEADY, INSPECT_EVERY, CHURN, DURATION, MONITOR,
# SCRAPERS, SCRAPE_PERIOD_MS, CHURN_MIN, CHURN_MAX, SIZES, WINDOW, PHASES (a, b or ab),
# SOAK_KEEP (a directory to copy the raw data to), SOAK_BUILD=head or a commit (build that commit,
# not the working tree).
set -euo pipefail

MODE=full
for arg in "$@"; do
    case $arg in
    --quick) MODE=quick ;;
    --middle) MODE=middle ;;
    --full) MODE=full ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $arg (try --help)" >&2
        exit 2
        ;;
    esac
done
case $MODE in
full) d_steady=200 d_churn=2000 d_duration=1800 d_sizes="10 100 500 1000" d_window=90 ;;
middle) d_steady=200 d_churn=667 d_duration=600 d_sizes="10 100 500 1000" d_window=60 ;;
quick) d_steady=20 d_churn=200 d_duration=180 d_sizes="10 100" d_window=30 ;;
esac
STEADY=${STEADY:-$d_steady}
INSPECT_EVERY=${INSPECT_EVERY:-10}
CHURN=${CHURN:-$d_churn}
DURATION=${DURATION:-$d_duration}
MONITOR=${MONITOR:-5}
SCRAPERS=${SCRAPERS:-5}
SCRAPE_PERIOD_MS=${SCRAPE_PERIOD_MS:-1000}
CHURN_MIN=${CHURN_MIN:-3}
CHURN_MAX=${CHURN_MAX:-60}
SIZES=${SIZES:-$d_sizes}
WINDOW=${WINDOW:-$d_window}
PHASES=${PHASES:-ab}
INTERVAL=5            # seconds: our --sample.interval (the default) and process-exporter's scrape period in phase B
MIB_PER_NODE=12       # memory reserved per idle node process when checking MemAvailable (it needs ~7)
MEM_HEADROOM_MIB=3072 # left for the other work on the machine

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
HELPERS=$ROOT/benches/soak
TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Cleanup: every process this script started, on normal exit, error, Ctrl-C or TERM.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
EXPORTER=$WORK/bin/nodejs-leak-exporter
NODE_PIDS=()
OUR_PID=''
PE_PID=''
CHURN_PID=''
SCRAPERS_PID=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The churn driver first: it kills its own children on TERM.
    stop_pids "$CHURN_PID"
    stop_pids "$SCRAPERS_PID" "$OUR_PID" "$PE_PID" "${NODE_PIDS[@]}"
    ((rc == 0)) || tail_logs 20 "$WORK"/our*.log "$WORK"/pe*.log "$WORK"/node.err "$WORK"/churn.err "$WORK"/scrapers.err
    if [[ -n ${SOAK_KEEP:-} ]]; then
        mkdir -p "$SOAK_KEEP" && cp -r "$WORK"/. "$SOAK_KEEP"/ && log "raw data copied to $SOAK_KEEP"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap_cleanup

# ---------------------------------------------------------------------------------------------
# Helpers.

# CPU of a process in ns from the schedstat of each live thread: prints "all_threads sampler
# threads" (sampler: the thread named `sampler`, ours only; 0 elsewhere). A thread that exits
# takes its time with it: the ticks of cpu_ticks are the check.
cpu_ns() {
    local t all=0 sampler=0 n=0 c v
    for t in /proc/"$1"/task/*; do
        read -r v _ <"$t/schedstat" 2>/dev/null || continue
        read -r c <"$t/comm" 2>/dev/null || c=''
        all=$((all + v))
        n=$((n + 1))
        [[ $c == sampler ]] && sampler=$((sampler + v))
    done
    echo "$all $sampler $n"
}
# The same per thread, to a file: "tid ns comm" lines. cpu_delta FILE0 FILE1 prints the CPU of the
# window between two of them in ns, "all_threads sampler exited": a thread alive at the end
# counts from its value at the start (0 if born in the window); a thread that exited in the
# window is left out (its time in the window is lost; the ticks are the check), and counted.
cpu_snap() {
    local t v c
    for t in /proc/"$1"/task/*; do
        read -r v _ <"$t/schedstat" 2>/dev/null || continue
        read -r c <"$t/comm" 2>/dev/null || c=''
        echo "${t##*/} $v $c"
    done >"$2"
}
cpu_delta() {
    awk 'NR == FNR { s[$1] = $2; next }
         { d = $2 - ($1 in s ? s[$1] : 0); all += d; if ($3 == "sampler") smp += d; seen[$1] = 1 }
         END { for (t in s) if (!(t in seen)) gone++; printf "%.0f %.0f %d\n", all, smp, gone }' "$1" "$2"
}
fd_count() { local f=(/proc/"$1"/fd/*); echo "${#f[@]}"; }
scrape() { curl -sS --max-time 20 -o "$2" -w '%{time_total} %{size_download} %{http_code}\n' "$1" 2>/dev/null || echo "0 0 000"; }
mem_available_mib() { awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo; }

# Starts COUNT app.js processes, every EVERY_INSPECT-th with an inspector and every EVERY_HTTP-th
# serving HTTP (0: none), and waits until every one is up.
start_soak_apps() {
    local every_inspect=$2 every_http=$3
    start_apps "$1" $((60 + $1 / 5)) soak_app_args
}
soak_app_args() { # the i-th app's arguments, with start_soak_apps's every_inspect and every_http
    APP_ARGS=()
    ((every_inspect > 0 && $1 % every_inspect == every_inspect - 1)) && APP_ARGS+=(--inspect=127.0.0.1:0)
    APP_ARGS+=("$HELPERS/app.js")
    ((every_http > 0 && $1 % every_http == every_http / 2 - 1)) && APP_ARGS+=(--http)
    return 0
}
# Waits (bounded) for a second in which our Node.js processes together use < 2 ticks of CPU
# (more with many of them).
soak_settle() { settle 90 $((2 + ${#NODE_PIDS[@]} / 200)); }

# Starts a server in the background on a free loopback port, retrying on another port when the
# one picked was taken in between (an inspector on port 0 may take it); waits until it answers.
# $1: log file; the rest: the command, with PORT standing for the port. Sets SERVER_PID SERVER_PORT.
start_server() {
    local logf=$1 try a cmd
    shift
    for try in 1 2 3 4 5; do
        SERVER_PORT=$(free_port)
        cmd=()
        for a in "$@"; do cmd+=("${a//PORT/$SERVER_PORT}"); done
        "${cmd[@]}" >"$logf" 2>&1 &
        SERVER_PID=$!
        local deadline=$((SECONDS + 10))
        while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS < deadline)); do
            curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$SERVER_PORT/" && return 0
            sleep 0.2
        done
        stop_pids "$SERVER_PID"
        grep -q 'address already in use\|Address already in use\|AddrInUse' "$logf" ||
            die "$1 did not start: $(tail -n 3 "$logf")"
        log "port $SERVER_PORT was taken; trying another"
    done
    die "no port for $1 after 5 tries"
}

# Starts ours and process-exporter; sets OUR_PID OUR_URL PE_PID PE_URL. $1: a tag for the logs.
start_exporters() {
    start_server "$WORK/our_$1.log" "$EXPORTER" --web.listen-address=127.0.0.1:PORT --discovery.min-age=1s --log.level=warn
    OUR_PID=$SERVER_PID
    OUR_URL="http://127.0.0.1:$SERVER_PORT/metrics"
    printf 'process_names:\n  - comm:\n    - node\n' >"$WORK/pe.yml"
    start_server "$WORK/pe_$1.log" "$PE" -threads=false -gather-smaps=false -web.listen-address=127.0.0.1:PORT \
        -config.path "$WORK/pe.yml"
    PE_PID=$SERVER_PID
    PE_URL="http://127.0.0.1:$SERVER_PORT/metrics"
}
stop_exporters() {
    stop_pids "$OUR_PID" "$PE_PID"
    OUR_PID=''
    PE_PID=''
}

# Waits until ours has taken $1 more samples and exports every pid in $WORK/want_pids, and
# process-exporter counts at least as many processes.
warm_up() {
    local min_samples=$1 s='' missing='' code pe_procs='' deadline=$((SECONDS + 120))
    local want
    want=$(wc -l <"$WORK/want_pids")
    while :; do
        kill -0 "$OUR_PID" 2>/dev/null || die "nodejs-leak-exporter exited"
        kill -0 "$PE_PID" 2>/dev/null || die "process-exporter exited"
        read -r _ _ code < <(scrape "$OUR_URL" "$WORK/warm.prom")
        if [[ $code == 200 ]]; then
            s=$(metric "$WORK/warm.prom" nodejs_leak_exporter_samples_total)
            missing=$(pids_in "$WORK/warm.prom" | comm -13 - "$WORK/want_pids" | wc -l)
            ((${s:-0} >= min_samples && missing == 0)) && break
        fi
        ((SECONDS < deadline)) || die "nodejs-leak-exporter not warmed up after 120 s (samples ${s:-?}, missing pids ${missing:-?})"
        sleep 0.5
    done
    wait_pe_counts "$PE_URL" "$want" 60 "$WORK/pe_warm.prom"
}

# The numbers of ours that the report uses, from one exposition file, in a fixed order.
OUR_FIELDS='samples sample_dur targets_active targets_warming targets_exited discovered scanned own_rss own_fds insp_connected errors history_points'
our_fields() {
    awk '
    $1 == "nodejs_leak_exporter_samples_total" { v["samples"] = $2 }
    $1 == "nodejs_leak_exporter_sample_duration_seconds" { v["sample_dur"] = $2 }
    $1 == "nodejs_leak_exporter_targets{state=\"active\"}" { v["targets_active"] = $2 }
    $1 == "nodejs_leak_exporter_targets{state=\"warming\"}" { v["targets_warming"] = $2 }
    $1 == "nodejs_leak_exporter_targets{state=\"exited\"}" { v["targets_exited"] = $2 }
    $1 == "nodejs_leak_exporter_discovered_processes_total" { v["discovered"] = $2 }
    $1 == "nodejs_leak_exporter_scanned_processes" { v["scanned"] = $2 }
    $1 == "nodejs_leak_exporter_process_resident_memory_bytes" { v["own_rss"] = $2 }
    $1 == "nodejs_leak_exporter_process_open_fds" { v["own_fds"] = $2 }
    $1 == "nodejs_leak_exporter_history_points" { v["history_points"] = $2 }
    /^nodejs_inspector_connected\{/ { v["insp_connected"] += $2 }
    /^nodejs_leak_exporter_collector_errors_total\{/ { v["errors"] += $2 }
    END {
        n = split("'"$OUR_FIELDS"'", k, " ")
        for (i = 1; i <= n; i++) printf "%s%s", (k[i] in v ? v[k[i]] : "nan"), (i < n ? "\t" : "\n")
    }' "$1"
}

# ---------------------------------------------------------------------------------------------
# 1. What the benchmark needs.

install_process_exporter
for c in node curl python3 ss; do command -v "$c" >/dev/null || die "$c is not installed"; done
# The working tree, as the other benchmarks do; with SOAK_BUILD=head (or a commit), or when the
# working tree does not build (someone is in the middle of a change), the last commit, exported to a temporary
# directory and built in target/soak-head. The binary is copied, so a build during the run (phase
# B restarts the exporter) cannot swap it.
log "building nodejs-leak-exporter (release)"
build=${SOAK_BUILD:-worktree}
[[ $build == head ]] && build=HEAD
if [[ $build == worktree ]]; then
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
else
    rev=$(git -C "$ROOT" rev-parse --short "$build^{commit}") || die "SOAK_BUILD=$build is not a commit"
fi
if [[ $build == worktree ]] && cargo build --release --quiet 2>"$WORK/build.err"; then
    built=$ROOT/target/release/nodejs-leak-exporter
    [[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || rev="$rev + uncommitted changes to src/"
else
    [[ $build != worktree ]] ||
        log "the working tree does not build ($(grep -m1 '^error' "$WORK/build.err" || echo 'see cargo')); building commit $rev instead"
    # A fixed place for the sources (with the commit's file times), so cargo's cache holds for the
    # same commit; for another commit the files are touched, since an older commit's times would
    # look older than the last build's outputs.
    last=$(cat "$ROOT/target/soak-head/built-rev" 2>/dev/null || true)
    rm -rf "$ROOT/target/soak-head/src" "$ROOT/target/soak-head/built-rev"
    mkdir -p "$ROOT/target/soak-head/src"
    git -C "$ROOT" archive --format=tar "$rev" | tar -x -C "$ROOT/target/soak-head/src"
    [[ $last == "$rev" ]] || find "$ROOT/target/soak-head/src" -type f -exec touch {} +
    CARGO_TARGET_DIR=$ROOT/target/soak-head cargo build --release --quiet --manifest-path "$ROOT/target/soak-head/src/Cargo.toml"
    echo "$rev" >"$ROOT/target/soak-head/built-rev"
    built=$ROOT/target/soak-head/release/nodejs-leak-exporter
fi
[[ -x $built ]] || die "$built was not built"
mkdir -p "$WORK/bin"
cp "$built" "$EXPORTER"
our_version="$("$EXPORTER" --version 2>/dev/null | head -n 1) (commit $rev)"
{
    echo "mode=$MODE"
    echo "steady=$STEADY"
    echo "inspect_every=$INSPECT_EVERY"
    echo "churn=$CHURN"
    echo "duration=$DURATION"
    echo "monitor=$MONITOR"
    echo "scrapers=$SCRAPERS"
    echo "scrape_period_ms=$SCRAPE_PERIOD_MS"
    echo "churn_min=$CHURN_MIN"
    echo "churn_max=$CHURN_MAX"
    echo "window=$WINDOW"
    echo "interval=$INTERVAL"
    echo "tck=$TCK"
    echo "our_version=$our_version"
    echo "pe_version=process-exporter $(dpkg-query -W -f='${Version}' prometheus-process-exporter)"
    echo "node_version=$(node --version)"
    echo "ncpu=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "mem_total_gib=$(awk '$1 == "MemTotal:" { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
    echo "started=$(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$WORK/meta"

# ---------------------------------------------------------------------------------------------
# 2. Phase A: the soak.

if [[ $PHASES == *a* ]]; then
    log "phase A: starting $STEADY steady Node.js processes (every ${INSPECT_EVERY}th with an inspector)"
    start_soak_apps "$STEADY" "$INSPECT_EVERY" "$INSPECT_EVERY"
    soak_settle
    printf '%s\n' "${NODE_PIDS[@]}" | sort -u >"$WORK/want_pids"
    n_inspect=0
    ((INSPECT_EVERY > 0)) && n_inspect=$((STEADY / INSPECT_EVERY))
    echo "steady_inspect=$n_inspect" >>"$WORK/meta"
    echo "others_at_start=$(($(node_count) - STEADY))" >>"$WORK/meta"

    start_exporters a
    log "nodejs-leak-exporter pid $OUR_PID, process-exporter pid $PE_PID"
    warm_up 2
    # Wait (bounded) for the inspector sessions of the steady processes.
    deadline=$((SECONDS + 60))
    while :; do
        read -r _ _ code < <(scrape "$OUR_URL" "$WORK/warm.prom")
        connected=$(awk '/^nodejs_inspector_connected\{/ && $2 == 1 { n++ } END { print n + 0 }' "$WORK/warm.prom")
        ((connected >= n_inspect)) && break
        ((SECONDS < deadline)) || { log "warning: only $connected inspector sessions after 60 s (want $n_inspect)"; break; }
        sleep 1
    done
    log "warmed up: $(pids_in "$WORK/warm.prom" | wc -l) pids exported, $connected inspector sessions"

    : >"$WORK/churn.log"
    : >"$WORK/scrapes.txt"
    t_start=$(now)
    echo "t_start=$t_start" >>"$WORK/meta"
    node "$HELPERS/churn.js" "$CHURN" "$DURATION" "$CHURN_MIN" "$CHURN_MAX" "$WORK/churn.log" 2>"$WORK/churn.err" &
    CHURN_PID=$!
    node "$HELPERS/scrapers.js" "$SCRAPERS" "$SCRAPE_PERIOD_MS" "$OUR_URL" "$WORK/scrapes.txt" 2>"$WORK/scrapers.err" &
    SCRAPERS_PID=$!
    log "phase A: $DURATION s, $CHURN processes started and stopped, $SCRAPERS scrapers every ${SCRAPE_PERIOD_MS} ms"

    printf 't\tour_rss_kb\tour_hwm_kb\tour_fds\tour_threads\tour_ticks\tour_ns\tour_sampler_ns\tour_scrape_s\t%s\tnodes\tpe_rss_kb\tpe_hwm_kb\tpe_fds\tpe_threads\tpe_ticks\tpe_ns\tpe_scrape_s\tpe_procs\n' \
        "$(tr ' ' '\t' <<<"$OUR_FIELDS")" >"$WORK/monitor.tsv"
    k=0
    next_log=$((SECONDS + 60))
    while :; do
        t_tick=$(awk -v t="$t_start" -v k="$k" -v m="$MONITOR" 'BEGIN { printf "%.6f", t + k * m }')
        sleep_until "$t_tick"
        kill -0 "$OUR_PID" 2>/dev/null || die "nodejs-leak-exporter exited during the soak"
        kill -0 "$PE_PID" 2>/dev/null || die "process-exporter exited during the soak"
        t=$(now)
        read -r our_ns our_sampler_ns our_threads < <(cpu_ns "$OUR_PID")
        our_row="$(status_kb "$OUR_PID" VmRSS)\t$(status_kb "$OUR_PID" VmHWM)\t$(fd_count "$OUR_PID")\t$our_threads\t$(cpu_ticks "$OUR_PID")\t$our_ns\t$our_sampler_ns"
        read -r lat _ code < <(scrape "$OUR_URL" "$WORK/mon.prom")
        [[ $code == 200 ]] || log "warning: monitor scrape of ours answered $code"
        fields=$(our_fields "$WORK/mon.prom")
        nodes=$(node_count)
        read -r pe_ns _ pe_threads < <(cpu_ns "$PE_PID")
        pe_row="$(status_kb "$PE_PID" VmRSS)\t$(status_kb "$PE_PID" VmHWM)\t$(fd_count "$PE_PID")\t$pe_threads\t$(cpu_ticks "$PE_PID")\t$pe_ns"
        read -r pe_lat _ code < <(scrape "$PE_URL" "$WORK/pe_mon.prom")
        [[ $code == 200 ]] || log "warning: monitor scrape of process-exporter answered $code"
        pe_procs=$(pe_num_procs "$WORK/pe_mon.prom")
        printf "%s\t$our_row\t%s\t%s\t%s\t$pe_row\t%s\t%s\n" "$t" "$lat" "$fields" "$nodes" "$pe_lat" "$pe_procs" >>"$WORK/monitor.tsv"
        if ((SECONDS >= next_log)); then
            log "  +$(awk -v t="$t" -v s="$t_start" 'BEGIN { printf "%d", t - s }') s: $nodes node processes, our RSS $(status_kb "$OUR_PID" VmRSS) kB, fds $(fd_count "$OUR_PID"), $(wc -l <"$WORK/scrapes.txt") scrapes"
            next_log=$((SECONDS + 60))
        fi
        k=$((k + 1))
        ((k * MONITOR <= DURATION)) || break
    done
    t_end=$(now)
    echo "t_end=$t_end" >>"$WORK/meta"
    stop_pids "$SCRAPERS_PID"
    SCRAPERS_PID=''
    stop_pids "$CHURN_PID"
    CHURN_PID=''
    # What is left of ours after the churn stopped.
    echo "our_threads_end=$(cpu_ns "$OUR_PID" | cut -d' ' -f3)" >>"$WORK/meta"
    stop_exporters
    stop_pids "${NODE_PIDS[@]}"
    NODE_PIDS=()

    # The exporter's own series through its own analysis.
    awk -F'\t' 'NR > 1 { printf "%.3f,%d,%d\n", $1, $2 * 1024, $4 }' "$WORK/monitor.tsv" |
        { echo 'time,rss,open_fds'; cat; } >"$WORK/self.csv"
    awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { printf "%.3f,%d,%d\n", $1, $c["pe_rss_kb"] * 1024, $c["pe_fds"] }' "$WORK/monitor.tsv" |
        { echo 'time,rss,open_fds'; cat; } >"$WORK/pe_self.csv"
    "$EXPORTER" analyze "$WORK/self.csv" >"$WORK/analyze_default.txt" 2>&1 || log "warning: analyze failed"
    "$EXPORTER" analyze "$WORK/pe_self.csv" >"$WORK/analyze_pe_default.txt" 2>&1 || log "warning: analyze failed"
    # Shorter windows, so more of the soak is judged (a quick run is too short for the defaults).
    # The grace covers the ramp-up of the churn: a churned process lives up to CHURN_MAX seconds
    # and its series stay for --discovery.exit-retention (1m) after it exits.
    if ((DURATION >= 1200)); then
        short=(--leak.window=5m --leak.window=15m --leak.grace-period=3m)
    elif ((DURATION >= 480)); then
        short=(--leak.window=2m --leak.window=5m --leak.grace-period=3m)
    else
        short=(--leak.window=90s --leak.grace-period=1m)
    fi
    echo "short_windows=${short[*]}" >>"$WORK/meta"
    "$EXPORTER" analyze "$WORK/self.csv" "${short[@]}" >"$WORK/analyze_short.txt" 2>&1 || log "warning: analyze failed"
    "$EXPORTER" analyze "$WORK/pe_self.csv" "${short[@]}" >"$WORK/analyze_pe_short.txt" 2>&1 || log "warning: analyze failed"
    log "phase A done"
fi

# ---------------------------------------------------------------------------------------------
# 3. Phase B: cost per target.

if [[ $PHASES == *b* ]]; then
    printf 'size\tstatus\tnodes\tour_targets\tour_samples\tour_scrapes\tour_ns\tour_sampler_ns\tour_ticks\tsample_dur_mean\tour_rss_kb\tpe_procs\tpe_scrapes\tpe_ns\tpe_ticks\tpe_scrape_p50\tpe_rss_kb\tbusy_pct\tour_threads_gone\tpe_threads_gone\tscanned\n' >"$WORK/phaseb.tsv"
    for size in $SIZES; do
        add=$((size - ${#NODE_PIDS[@]}))
        if ((add > 0)); then
            need=$((add * MIB_PER_NODE + MEM_HEADROOM_MIB))
            avail=$(mem_available_mib)
            if ((avail < need)); then
                log "phase B: skipping $size targets: $avail MiB available, $need MiB wanted"
                printf '%s\tskipped: %s MiB available, %s MiB wanted\n' "$size" "$avail" "$need" >>"$WORK/phaseb.tsv"
                continue
            fi
            log "phase B: $size targets: starting $add more idle Node.js processes ($avail MiB available)"
            start_soak_apps "$add" 0 0
            soak_settle
        fi
        printf '%s\n' "${NODE_PIDS[@]}" | sort -u >"$WORK/want_pids"
        start_exporters "b$size"
        warm_up 3
        # One cycle per 5 s: ours is scraped half an interval after each of its samples,
        # process-exporter a quarter of an interval after.
        T=$(metric "$WORK/warm.prom" nodejs_leak_exporter_last_sample_timestamp_seconds)
        T=$(awk -v t="$T" -v n="$(now)" -v i="$INTERVAL" 'BEGIN { t += i; while (t < n) t += i; printf "%.6f", t }')
        K=$((WINDOW / INTERVAL))
        : >"$WORK/b_dur"
        : >"$WORK/b_pe_lat"
        mach0=$(machine_jiffies)
        for ((k = 0; k <= K; k++)); do
            if ((k < K)); then
                sleep_until "$(awk -v t="$T" -v k="$k" -v i="$INTERVAL" 'BEGIN { printf "%.6f", t + k * i + i / 4 }')"
                if ((k == 0)); then
                    cpu_snap "$PE_PID" "$WORK/pe_cpu0"
                    pe_t0=$(cpu_ticks "$PE_PID")
                fi
                read -r lat _ code < <(scrape "$PE_URL" "$WORK/pe_b.prom")
                [[ $code == 200 ]] || die "process-exporter answered $code"
                echo "$lat" >>"$WORK/b_pe_lat"
                if ((k == K - 1)); then
                    cpu_snap "$PE_PID" "$WORK/pe_cpu1"
                    pe_t1=$(cpu_ticks "$PE_PID")
                fi
            fi
            sleep_until "$(awk -v t="$T" -v k="$k" -v i="$INTERVAL" 'BEGIN { printf "%.6f", t + k * i + i / 2 }')"
            if ((k == K)); then
                cpu_snap "$OUR_PID" "$WORK/our_cpu1"
                our_t1=$(cpu_ticks "$OUR_PID")
            fi
            read -r _ _ code < <(scrape "$OUR_URL" "$WORK/our_b.prom")
            [[ $code == 200 ]] || die "nodejs-leak-exporter answered $code"
            if ((k == 0)); then
                cpu_snap "$OUR_PID" "$WORK/our_cpu0"
                our_t0=$(cpu_ticks "$OUR_PID")
                s0=$(metric "$WORK/our_b.prom" nodejs_leak_exporter_samples_total)
            else
                metric "$WORK/our_b.prom" nodejs_leak_exporter_sample_duration_seconds >>"$WORK/b_dur"
            fi
            s1=$(metric "$WORK/our_b.prom" nodejs_leak_exporter_samples_total)
        done
        mach1=$(machine_jiffies)
        busy=$(busy_pct "$mach0" "$mach1")
        targets=$(metric "$WORK/our_b.prom" 'nodejs_leak_exporter_targets{state="active"}')
        scanned=$(metric "$WORK/our_b.prom" nodejs_leak_exporter_scanned_processes)
        pe_procs=$(pe_num_procs "$WORK/pe_b.prom")
        pe_p50=$(sort -g "$WORK/b_pe_lat" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
        dur_mean=$(awk '{ s += $1; n++ } END { if (n) printf "%.9g", s / n; else print "nan" }' "$WORK/b_dur")
        read -r our_ns our_s_ns our_gone < <(cpu_delta "$WORK/our_cpu0" "$WORK/our_cpu1")
        read -r pe_ns _ pe_gone < <(cpu_delta "$WORK/pe_cpu0" "$WORK/pe_cpu1")
        # Scrapes of ours between the two CPU readings: k = 1 .. K-1.
        printf '%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$size" "$(node_count)" "$targets" "$((s1 - s0))" "$((K - 1))" "$our_ns" "$our_s_ns" \
            "$((our_t1 - our_t0))" "$dur_mean" "$(status_kb "$OUR_PID" VmRSS)" "$pe_procs" "$K" "$pe_ns" \
            "$((pe_t1 - pe_t0))" "$pe_p50" "$(status_kb "$PE_PID" VmRSS)" "$busy" "$our_gone" "$pe_gone" "$scanned" >>"$WORK/phaseb.tsv"
        log "phase B: $size targets measured ($targets active targets, $((s1 - s0)) samples, process-exporter $pe_procs processes)"
        stop_exporters
    done
    stop_pids "${NODE_PIDS[@]}"
    NODE_PIDS=()
fi

# ---------------------------------------------------------------------------------------------
# 4. The tables.

python3 "$HELPERS/report.py" "$WORK"
