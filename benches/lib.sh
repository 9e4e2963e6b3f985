# Helpers shared by the benchmark scripts (benches/procfs_200.sh, benches/soak.sh,
# benches/attribution_cost/run.sh, benches/inspector_cost/{run,console_memory}.sh). Sourced,
# never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"      # from benches/
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"   # from a directory under benches/
#
# It sets ROOT (the repository), RELEASE_BIN and PE, and defines functions; it starts nothing.
# Functions that start or watch processes use the script's WORK (its scratch directory),
# NODE_PIDS (the Node.js processes it started) and STOP_GRACE (seconds a process gets between
# TERM and KILL; 10 unless the script sets it).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELEASE_BIN=$ROOT/target/release/nodejs-leak-exporter
PE=/usr/bin/prometheus-process-exporter # Debian's prometheus-process-exporter

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Runs the script's `cleanup` at exit (Ctrl-C and TERM exit too) and logs which command failed.
trap_cleanup() {
    trap cleanup EXIT
    trap 'log "ERROR: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)"' ERR
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
# On stderr, the last $1 lines of each of the other arguments that is a file not empty: what a
# failed run left in its logs.
tail_logs() {
    local n=$1 f
    shift
    for f in "$@"; do
        [[ -s $f ]] && { echo "--- last lines of $f" >&2; tail -n "$n" "$f" >&2; }
    done
    return 0
}

# ---------------------------------------------------------------------------------------------
# What a benchmark needs.

# Builds the release binary of the working tree (RELEASE_BIN).
build_release() {
    log "building nodejs-leak-exporter (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    [[ -x $RELEASE_BIN ]] || die "$RELEASE_BIN was not built"
}

# Installs Debian packages, with sudo unless root; with --update, refreshes the package lists first.
apt_install() {
    local sudo=''
    ((EUID == 0)) || sudo=sudo
    if [[ $1 == --update ]]; then
        shift
        $sudo apt-get update
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@"
}

# Installs Debian's prometheus-process-exporter (at PE) unless it is there.
install_process_exporter() {
    if ! dpkg-query -W -f='${Status}' prometheus-process-exporter 2>/dev/null | grep -q 'install ok installed' || [[ ! -x $PE ]]; then
        log "installing prometheus-process-exporter"
        apt_install --update prometheus-process-exporter
    fi
}

# The app pinned to CPU 1 and everything else to CPU 0 (taskset) needs two CPUs.
need_two_cpus() {
    command -v taskset >/dev/null || die "taskset (util-linux) is not installed"
    (($(nproc) >= 2)) || die "needs 2 CPUs (the app on CPU 1, the rest on CPU 0)"
}

# ---------------------------------------------------------------------------------------------
# Time.

now() { date +%s.%N; }
# Sleeps until the given unix time (pacing of the measurement, not synchronisation).
sleep_until() {
    local d
    d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
    [[ $d == 0.000 ]] || sleep "$d"
}

# ---------------------------------------------------------------------------------------------
# Reading /proc.

# utime+stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after the
# closing parenthesis of comm, which may contain spaces; all threads, dead ones included); with
# "split", prints "utime stime". Fails when the process is gone.
cpu_ticks() {
    local s f
    s=$(<"/proc/$1/stat") || return 1
    s=${s##*) }
    read -ra f <<<"$s"
    if [[ ${2:-} == split ]]; then echo "${f[11]} ${f[12]}"; else echo $((f[11] + f[12])); fi
}
# Time on CPU of a process in ns: the first field of /proc/PID/task/*/schedstat over its live
# threads.
task_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
# A field of /proc/PID/status in kB.
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
# Busy and total jiffies of the whole machine (all CPUs), from the first line of /proc/stat.
# With an argument (cpu0, cpu1...), the same for that CPU alone.
machine_jiffies() { awk -v c="${1:-cpu}" '$1 == c { t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
# Percentage of the jiffies busy between two machine_jiffies readings.
busy_pct() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'; }
# Node.js processes on the machine.
node_count() { ps -e -o comm= | grep -cx node || true; }

# ---------------------------------------------------------------------------------------------
# Expositions.

# Value of an unlabelled (or exactly labelled) sample in an exposition file.
metric() { awk -v m="$2" '$1 == m { print $2; exit }' "$1"; }
# Distinct pid labels of process_resident_memory_bytes in an exposition file.
# The processes process-exporter counts in the exposition FILE, over all its name groups.
pe_num_procs() { awk '/^namedprocess_namegroup_num_procs\{/ { s += $2 } END { print s + 0 }' "$1"; }

# Waits at most SECONDS until process-exporter at URL counts at least WANT processes, keeping
# its last exposition in FILE; sets pe_procs. Uses the calling script's `scrape URL FILE`.
wait_pe_counts() {
    local url=$1 want=$2 deadline=$((SECONDS + $3)) file=$4 code
    while :; do
        read -r _ _ code < <(scrape "$url" "$file")
        if [[ $code == 200 ]]; then
            pe_procs=$(pe_num_procs "$file")
            ((pe_procs >= want)) && return 0
        fi
        ((SECONDS < deadline)) || die "process-exporter does not see $want node processes (num_procs ${pe_procs:-?})"
        sleep 0.5
    done
}

pids_in() { { grep '^process_resident_memory_bytes{' "$1" || true; } | grep -o 'pid="[0-9]*"' | sort -u | tr -dc '0-9\n' || true; }

# ---------------------------------------------------------------------------------------------
# Processes.

# A loopback port nothing listens on.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        if [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] && ! (: </dev/tcp/127.0.0.1/$p) 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free loopback port found"
}

# Stops the given processes (empty arguments are skipped): TERM, a bounded wait, KILL.
stop_pids() {
    local p pids=()
    for p in "$@"; do
        [[ -z $p ]] || pids+=("$p")
    done
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + ${STOP_GRACE:-10})) left
    while ((SECONDS < deadline)); do
        left=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1 && break; done
        ((left)) || break
        sleep 0.05
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

# Starts $1 Node.js processes (appended to NODE_PIDS), the i-th (from 0) with the arguments that
# `$3 i` puts in APP_ARGS, and waits (at most $2 s) until every one has printed its `ready` line
# (to $WORK/ready) and is named node in /proc.
start_apps() {
    local count=$1 wait=$2 args_of=$3 i first=${#NODE_PIDS[@]} n_ready n_node p
    : >"$WORK/ready"
    for ((i = 0; i < count; i++)); do
        "$args_of" "$i"
        node "${APP_ARGS[@]}" >>"$WORK/ready" 2>>"$WORK/node.err" &
        NODE_PIDS+=("$!")
        # Pace the start a little so a thousand start-ups do not starve the machine.
        ((i % 50 == 49)) && sleep 0.5
    done
    local deadline=$((SECONDS + wait))
    while :; do
        n_ready=$(grep -c '^ready ' "$WORK/ready" || true)
        if ((n_ready >= count)); then
            n_node=0
            for p in "${NODE_PIDS[@]:first}"; do
                [[ $(cat "/proc/$p/comm" 2>/dev/null) == node ]] && n_node=$((n_node + 1))
            done
            ((n_node == count)) && break
        fi
        for p in "${NODE_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || die "node process $p exited during start-up"; done
        ((SECONDS < deadline)) || die "only $n_ready of $count Node.js processes were ready after $wait s"
        sleep 0.2
    done
    for p in "${NODE_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || die "node process $p exited"; done
}

# CPU ticks of NODE_PIDS together (0 for one that is gone).
node_ticks() { local t=0 p; for p in "${NODE_PIDS[@]}"; do t=$((t + $(cpu_ticks "$p" || echo 0))); done; echo "$t"; }
# Waits (at most $1 s) for a second in which NODE_PIDS together use fewer than $2 ticks of CPU,
# so their start-up does not compete with the measurement.
settle() {
    local prev cur deadline=$((SECONDS + $1))
    prev=$(node_ticks)
    while :; do
        sleep 1
        cur=$(node_ticks)
        ((cur - prev < $2)) && break
        ((SECONDS < deadline)) || { log "warning: Node.js processes still busy after $1 s ($((cur - prev)) ticks/s); going on"; break; }
        prev=$cur
    done
}

# Starts benches/inspector_cost/server.js (PROM_CLIENT=$1) with its inspector open, pinned to
# CPU 1, its output in $WORK/server.out and .err; waits until it listens. Sets SERVER_PID, PORT
# (HTTP) and IPORT (the inspector's).
start_app_server() {
    : >"$WORK/server.out"
    : >"$WORK/server.err"
    PROM_CLIENT=$1 taskset -c 1 node --inspect=127.0.0.1:0 "$ROOT/benches/inspector_cost/server.js" >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    local deadline=$((SECONDS + 20))
    PORT=''
    IPORT=''
    while [[ -z $PORT || -z $IPORT ]]; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start-up"
        ((SECONDS < deadline)) || die "server did not start in 20 s"
        sleep 0.05
        PORT=$(awk '$1 == "listening" { print $2; exit }' "$WORK/server.out")
        IPORT=$(sed -n 's|.*ws://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$WORK/server.err" | head -n 1)
    done
}

# Parses wrk's output: "req_per_s p50_ms p90_ms p99_ms errors requests".
parse_wrk() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
        if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
        if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
        return v + 0
    }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "90%" { p90 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Socket errors|Non-2xx/ { err = 1 }
    / requests in / { nreq = $1 }
    END { printf "%s %s %s %s %d %d\n", rps, p50, p90, p99, err, nreq }' "$1"
}
