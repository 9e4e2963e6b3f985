#!/usr/bin/env bash
# Benchmark (issue 3): the /proc collector of nodejs-leak-exporter against Debian's
# prometheus-process-exporter, both watching the same 200 idle Node.js processes.
#
#   bash benches/procfs_200.sh
#
# It prints a markdown table and asserts nothing. Targets from the issue, for reading the table:
#   - our CPU per sample <= 1/10 of process-exporter's CPU per scrape,
#   - our RSS < 20 MiB with only the /proc collector,
#   - our /metrics answered in < 10 ms.
#
# How it measures (both exporters run side by side, in the same run):
#   warm-up  200 `node benches/fixtures/idle.js` are started and waited for; both exporters are
#            started; we wait until ours has taken WARMUP_SAMPLES samples (the first one scans the
#            node binary for its version) and exports all 200 pids.
#   phase A  DURATION seconds of steady state at one cycle per 5 s: ours samples on its own timer
#            (--sample.interval=5s) and is scraped once between two samples, to read
#            nodejs_leak_exporter_sample_duration_seconds after each sample; process-exporter,
#            which does its /proc work inside each scrape, is scraped once every 5 s too.
#   phase B  SCRAPES back-to-back scrapes of each exporter: latency p50/p99 and CPU per scrape.
# CPU is utime+stime of the exporter's process from /proc/PID/stat (all threads), read by this
# script for both exporters. Our CPU per sample removes the cost of the phase-A scrapes using
# the per-scrape cost of phase B (two equations, two unknowns). Memory is VmRSS (mean over
# phase A) and VmHWM (peak, at the end) from /proc/PID/status.
#
# Knobs (environment): NODES=200 DURATION=60 SCRAPES=200 WARMUP_SAMPLES=2.
# Runs in about 2-3 minutes on a 2-core machine (plus the release build if it is not cached).
set -euo pipefail

NODES=${NODES:-200}
DURATION=${DURATION:-60}
SCRAPES=${SCRAPES:-200}
WARMUP_SAMPLES=${WARMUP_SAMPLES:-2}
INTERVAL=5 # seconds; --sample.interval of ours and the scrape period of process-exporter in phase A

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
FIXTURE=$ROOT/benches/fixtures/idle.js
EXPORTER=$RELEASE_BIN
TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Cleanup: every process this script started, on normal exit, error, Ctrl-C or TERM.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/procfs_200.XXXXXX")
NODE_PIDS=()
OUR_PID=''
PE_PID=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "$OUR_PID" "$PE_PID" "${NODE_PIDS[@]}"
    ((rc == 0)) || tail_logs 20 "$WORK"/our.log "$WORK"/pe.log "$WORK"/node.err
    rm -rf "$WORK"
    exit "$rc"
}
trap_cleanup

# ---------------------------------------------------------------------------------------------
# Helpers.

# One scrape: body to $2, prints "time_total_seconds size_bytes http_code".
scrape() { curl -sS --max-time 10 -o "$2" -w '%{time_total} %{size_download} %{http_code}\n' "$1" || echo "0 0 000"; }
# Nearest-rank percentile of the numbers in a file.
percentile() { sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int(p * NR + 0.999999); if (i < 1) i = 1; print v[i] }'; }
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.9g", s / n; else print "nan" }' "$1"; }
maxof() { sort -g "$1" | tail -n 1; }

# ---------------------------------------------------------------------------------------------
# 1. What the benchmark needs.

install_process_exporter
command -v node >/dev/null || die "node is not on PATH"
command -v curl >/dev/null || die "curl is not installed"
build_release

# ---------------------------------------------------------------------------------------------
# 2. 200 idle Node.js processes.

log "starting $NODES idle Node.js processes"
idle_args() { APP_ARGS=("$FIXTURE"); }
start_apps "$NODES" 120 idle_args
log "all $NODES Node.js processes are running"
# Let their start-up CPU settle: wait (bounded) for a second in which all of them together use
# less than 2 ticks of CPU, so the start-up does not compete with the measurement.
settle 60 2
others=$(($(node_count) - NODES))
((others == 0)) || log "note: $others other Node.js processes run on this machine; both exporters watch them too"

# ---------------------------------------------------------------------------------------------
# 3. Both exporters, side by side.

OUR_PORT=$(free_port)
"$EXPORTER" --web.listen-address="127.0.0.1:$OUR_PORT" --no-collector.cgroup --no-collector.inspector \
    --sample.interval="${INTERVAL}s" --discovery.min-age=0s --log.level=warn >"$WORK/our.log" 2>&1 &
OUR_PID=$!
OUR_URL="http://127.0.0.1:$OUR_PORT/metrics"

PE_PORT=$(free_port)
while [[ $PE_PORT == "$OUR_PORT" ]]; do PE_PORT=$(free_port); done
printf 'process_names:\n  - comm:\n    - node\n' >"$WORK/pe.yml"
# -recheck is left off (its default): process-exporter reads /proc for every tracked process at
# every scrape either way; -recheck only re-matches names of processes it already knows.
"$PE" -threads=false -gather-smaps=false -web.listen-address="127.0.0.1:$PE_PORT" \
    -config.path "$WORK/pe.yml" >"$WORK/pe.log" 2>&1 &
PE_PID=$!
PE_URL="http://127.0.0.1:$PE_PORT/metrics"

log "nodejs-leak-exporter pid $OUR_PID on :$OUR_PORT, process-exporter pid $PE_PID on :$PE_PORT"

# Warm-up: ours has taken WARMUP_SAMPLES samples and exports every one of our pids;
# process-exporter counts them all.
printf '%s\n' "${NODE_PIDS[@]}" | sort -u >"$WORK/node_pids"
deadline=$((SECONDS + 90))
while :; do
    kill -0 "$OUR_PID" 2>/dev/null || die "nodejs-leak-exporter exited"
    kill -0 "$PE_PID" 2>/dev/null || die "process-exporter exited"
    read -r _ _ code < <(scrape "$OUR_URL" "$WORK/warm.prom")
    if [[ $code == 200 ]]; then
        s=$(metric "$WORK/warm.prom" nodejs_leak_exporter_samples_total)
        missing=$(pids_in "$WORK/warm.prom" | comm -13 - "$WORK/node_pids" | wc -l)
        ((${s:-0} >= WARMUP_SAMPLES + 1 && missing == 0)) && break
    fi
    ((SECONDS < deadline)) || die "nodejs-leak-exporter not warmed up after 90 s (samples ${s:-?}, missing pids ${missing:-?})"
    sleep 0.5
done
wait_pe_counts "$PE_URL" "$NODES" 30 "$WORK/pe_warm.prom"
log "warmed up: ours has $(pids_in "$WORK/warm.prom" | wc -l) pids in process_resident_memory_bytes, process-exporter num_procs $pe_procs"

# ---------------------------------------------------------------------------------------------
# 4a. Phase A: steady state, one cycle every INTERVAL seconds.

K=$((DURATION / INTERVAL))
T=$(metric "$WORK/warm.prom" nodejs_leak_exporter_last_sample_timestamp_seconds)
# Align on the next sample after the warm-up scrape.
T=$(awk -v t="$T" -v n="$(now)" -v i="$INTERVAL" 'BEGIN { while (t < n) t += i; printf "%.6f", t }')
log "phase A: $DURATION s of steady state ($K samples of ours, $K scrapes of process-exporter)"
: >"$WORK/a_dur"
: >"$WORK/a_coll"
: >"$WORK/a_our_rss"
: >"$WORK/a_pe_rss"
: >"$WORK/a_pids"
mach_a0=$(machine_jiffies)
for ((k = 0; k <= K; k++)); do
    if ((k < K)); then
        sleep_until "$(awk -v t="$T" -v k="$k" -v i="$INTERVAL" 'BEGIN { printf "%.6f", t + k * i + i / 4 }')"
        ((k == 0)) && { read -r pe_u0 pe_s0 < <(cpu_ticks "$PE_PID" split) && pe_a0=$((pe_u0 + pe_s0)); }
        read -r _ _ code < <(scrape "$PE_URL" "$WORK/pe_a.prom")
        [[ $code == 200 ]] || die "process-exporter answered $code"
        ((k == K - 1)) && { read -r pe_u1 pe_s1 < <(cpu_ticks "$PE_PID" split) && pe_a1=$((pe_u1 + pe_s1)); }
        status_kb "$PE_PID" VmRSS >>"$WORK/a_pe_rss"
    fi
    sleep_until "$(awk -v t="$T" -v k="$k" -v i="$INTERVAL" 'BEGIN { printf "%.6f", t + k * i + i / 2 }')"
    ((k == K)) && { read -r our_u1 our_s1 < <(cpu_ticks "$OUR_PID" split) && our_a1=$((our_u1 + our_s1)); }
    read -r _ _ code < <(scrape "$OUR_URL" "$WORK/our_a.prom")
    [[ $code == 200 ]] || die "nodejs-leak-exporter answered $code"
    ((k == 0)) && { read -r our_u0 our_s0 < <(cpu_ticks "$OUR_PID" split) && our_a0=$((our_u0 + our_s0)); }
    s=$(metric "$WORK/our_a.prom" nodejs_leak_exporter_samples_total)
    if ((k == 0)); then
        s_a0=$s
    else
        metric "$WORK/our_a.prom" nodejs_leak_exporter_sample_duration_seconds >>"$WORK/a_dur"
        metric "$WORK/our_a.prom" 'nodejs_leak_exporter_collector_duration_seconds{collector="procfs"}' >>"$WORK/a_coll"
        pids_in "$WORK/our_a.prom" | wc -l >>"$WORK/a_pids"
    fi
    s_a1=$s
    status_kb "$OUR_PID" VmRSS >>"$WORK/a_our_rss"
done
mach_a1=$(machine_jiffies)
pe_a_scrapes=$K
our_a_samples=$((s_a1 - s_a0))
our_a_scrapes=$((K - 1)) # scrapes 1..K-1 lie between the two CPU readings
((our_a_samples > 0)) || die "nodejs-leak-exporter took no sample in phase A"

# ---------------------------------------------------------------------------------------------
# 4b. Phase B: back-to-back scrapes, latency and CPU per scrape.

log "phase B: $SCRAPES back-to-back scrapes of each exporter"
: >"$WORK/b_our_lat"
: >"$WORK/b_pe_lat"
mach_b0=$(machine_jiffies)
our_b0=$(cpu_ticks "$OUR_PID")
for ((i = 0; i < SCRAPES; i++)); do
    read -r t size code < <(scrape "$OUR_URL" "$WORK/our_b.prom")
    [[ $code == 200 ]] || die "nodejs-leak-exporter answered $code"
    echo "$t" >>"$WORK/b_our_lat"
    if ((i == 0)); then
        s_b0=$(metric "$WORK/our_b.prom" nodejs_leak_exporter_samples_total)
        missing=$(pids_in "$WORK/our_b.prom" | comm -13 - "$WORK/node_pids" | wc -l)
        ((missing == 0)) || die "$missing of our Node.js pids are missing from process_resident_memory_bytes"
    fi
done
our_b1=$(cpu_ticks "$OUR_PID")
s_b1=$(metric "$WORK/our_b.prom" nodejs_leak_exporter_samples_total)
our_size=$size
our_pids=$(pids_in "$WORK/our_b.prom" | wc -l)
our_b_samples=$((s_b1 - s_b0))

pe_b0=$(cpu_ticks "$PE_PID")
for ((i = 0; i < SCRAPES; i++)); do
    read -r t size code < <(scrape "$PE_URL" "$WORK/pe_b.prom")
    [[ $code == 200 ]] || die "process-exporter answered $code"
    echo "$t" >>"$WORK/b_pe_lat"
done
pe_b1=$(cpu_ticks "$PE_PID")
mach_b1=$(machine_jiffies)
pe_size=$size
pe_procs=$(pe_num_procs "$WORK/pe_b.prom")

our_rss_end=$(status_kb "$OUR_PID" VmRSS)
our_hwm=$(status_kb "$OUR_PID" VmHWM)
pe_rss_end=$(status_kb "$PE_PID" VmRSS)
pe_hwm=$(status_kb "$PE_PID" VmHWM)

# ---------------------------------------------------------------------------------------------
# 5. The table.

our_version=$("$EXPORTER" --version 2>/dev/null | head -n 1)
# The numbers are those of the source the binary was built from: name it.
if rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    [[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || rev="$rev + uncommitted changes to src/"
    our_version="$our_version (commit $rev)"
fi
pe_version="process-exporter $(dpkg-query -W -f='${Version}' prometheus-process-exporter)"
# Open fds per Node.js process, as ours exports them: the /proc work per process grows with them.
fds_mean=$(awk '/^process_open_fds\{/ { s += $2; n++ } END { if (n) printf "%.1f", s / n; else print "?" }' "$WORK/our_b.prom")

awk \
    -v tck="$TCK" -v nodes="$NODES" -v dur="$DURATION" -v scrapes="$SCRAPES" \
    -v oa="$((our_a1 - our_a0))" -v sa="$our_a_samples" -v na="$our_a_scrapes" \
    -v ob="$((our_b1 - our_b0))" -v sb="$our_b_samples" \
    -v pa="$((pe_a1 - pe_a0))" -v pna="$pe_a_scrapes" \
    -v pb="$((pe_b1 - pe_b0))" \
    -v sdur_mean="$(mean "$WORK/a_dur")" -v sdur_max="$(maxof "$WORK/a_dur")" \
    -v coll_mean="$(mean "$WORK/a_coll")" \
    -v our_rss="$(mean "$WORK/a_our_rss")" -v our_rss_end="$our_rss_end" -v our_hwm="$our_hwm" \
    -v pe_rss="$(mean "$WORK/a_pe_rss")" -v pe_rss_end="$pe_rss_end" -v pe_hwm="$pe_hwm" \
    -v our_p50="$(percentile "$WORK/b_our_lat" 0.50)" -v our_p99="$(percentile "$WORK/b_our_lat" 0.99)" \
    -v pe_p50="$(percentile "$WORK/b_pe_lat" 0.50)" -v pe_p99="$(percentile "$WORK/b_pe_lat" 0.99)" \
    -v our_size="$our_size" -v pe_size="$pe_size" -v our_pids="$our_pids" -v pe_procs="$pe_procs" \
    -v our_pids_min="$(sort -n "$WORK/a_pids" | head -n 1)" \
    -v our_version="$our_version" -v pe_version="$pe_version" \
    -v our_u="$((our_u1 - our_u0))" -v our_s="$((our_s1 - our_s0))" -v pe_u="$((pe_u1 - pe_u0))" -v pe_s="$((pe_s1 - pe_s0))" \
    -v busy_a="$(busy_pct "$mach_a0" "$mach_a1")%" -v busy_b="$(busy_pct "$mach_b0" "$mach_b1")%" \
    -v fds="$fds_mean" -v ncpu="$(nproc)" -v kernel="$(uname -r)" -v nodev="$(node --version)" '
function ms(sec) { return sprintf("%.2f ms", sec * 1000) }
function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
function ratio(a, b) { return (b > 0) ? sprintf("%.1f×", a / b) : "n/a" }
function verdict(ok) { return ok ? "met" : "**missed**" }
BEGIN {
    # CPU in seconds. Ours, phase A: oa = sa*x + na*y; phase B: ob = sb*x + scrapes*y.
    oa /= tck; ob /= tck; pa /= tck; pb /= tck
    det = sa * scrapes - sb * na
    x = (oa * scrapes - ob * na) / det           # ours, per sample, scrapes removed
    y = (ob - sb * x) / scrapes                  # ours, per scrape
    if (y < 0) { y = 0; x = oa / sa }
    raw = oa / sa                                # ours, per sample incl. the phase-A scrapes
    pea = pa / pna                               # process-exporter, per scrape, 1 scrape / 5 s
    peb = pb / scrapes                           # process-exporter, per scrape, back-to-back
    printf "%d idle Node.js processes (node %s, %s open fds each), %d CPUs, Linux %s, clock %d ticks/s.\n", nodes, nodev, fds, ncpu, kernel, tck
    printf "Ours: %s, `--no-collector.cgroup --no-collector.inspector --sample.interval=5s --discovery.min-age=0s`. Theirs: %s, `-threads=false -gather-smaps=false`, config `comm: node`.\n", our_version, pe_version
    printf "Phase A: %d s, ours %d samples (+%d scrapes), process-exporter %d scrapes, one every 5 s. Phase B: %d back-to-back scrapes of each.\n", dur, sa, na, pna, scrapes
    printf "Whole machine busy (all processes, this script and curl included): %s of its CPUs in phase A, %s in phase B.\n\n", busy_a, busy_b
    print "| | nodejs-leak-exporter (/proc collector) | process-exporter | process-exporter / ours |"
    print "|---|---|---|---|"
    printf "| Node.js processes in the output | %d pids in `process_resident_memory_bytes` | %d (`num_procs`) | |\n", our_pids, pe_procs
    printf "| **CPU per /proc pass** (ours: per sample, phase A, scrapes removed; theirs: per scrape, phase A) | %s | %s | **%s** |\n", ms(x), ms(pea), ratio(pea, x)
    printf "| CPU per sample incl. one scrape (phase A, raw: %d ticks / %d samples) | %s | | %s |\n", oa * tck, sa, ms(raw), ratio(pea, raw)
    printf "| CPU user / system (phase A) | %d%% / %d%% | %d%% / %d%% | |\n", 100 * our_u / (our_u + our_s), 100 * our_s / (our_u + our_s), 100 * pe_u / (pe_u + pe_s), 100 * pe_s / (pe_u + pe_s)
    printf "| CPU per /metrics scrape (phase B, back-to-back) | %s | %s | %s |\n", ms(y), ms(peb), ratio(peb, y)
    printf "| CPU per second at one cycle per 5 s | %.2f%% of a core | %.2f%% of a core | %s |\n", (x + y) / 5 * 100, pea / 5 * 100, ratio(pea, x + y)
    printf "| Wall time of a /proc pass (ours: mean `sample_duration_seconds`, max; theirs: scrape p50) | %s (max %s) | %s | %s |\n", ms(sdur_mean), ms(sdur_max), ms(pe_p50), ratio(pe_p50, sdur_mean)
    printf "| `collector_duration_seconds{collector=\"procfs\"}`, mean | %s | | |\n", ms(coll_mean)
    printf "| RSS, steady state (mean VmRSS in phase A) | %s | %s | %s |\n", mib(our_rss), mib(pe_rss), ratio(pe_rss, our_rss)
    printf "| RSS at the end / peak (VmRSS / VmHWM) | %s / %s | %s / %s | |\n", mib(our_rss_end), mib(our_hwm), mib(pe_rss_end), mib(pe_hwm)
    printf "| Scrape latency p50 (phase B) | %s | %s | %s |\n", ms(our_p50), ms(pe_p50), ratio(pe_p50, our_p50)
    printf "| Scrape latency p99 (phase B) | %s | %s | %s |\n", ms(our_p99), ms(pe_p99), ratio(pe_p99, our_p99)
    printf "| Response size | %.1f KiB | %.1f KiB | |\n", our_size / 1024, pe_size / 1024
    print ""
    print "Targets (issue 3):"
    printf "- CPU per sample <= 1/10 of process-exporter CPU per scrape: %s (ratio %s, needs >= 10×)\n", verdict(pea >= 10 * x), ratio(pea, x)
    printf "- RSS < 20 MiB with only the /proc collector: %s (steady %s, peak %s)\n", verdict(our_rss < 20 * 1024 && our_hwm < 20 * 1024), mib(our_rss), mib(our_hwm)
    printf "- Scrape answered in < 10 ms: %s (p50 %s, p99 %s)\n", verdict(our_p99 < 0.010), ms(our_p50), ms(our_p99)
    if (our_pids_min < nodes) printf "- note: a phase-A scrape showed only %d pids\n", our_pids_min
}'
