#!/usr/bin/env bash
# Benchmark (issue 4, part 2): the memory an open inspector costs the app.
#
#   bash benches/inspector_cost/console_memory.sh
#
# When an inspector is active in a Node.js process (its server is listening, or a session is
# open), every console.log also goes to V8's console, which keeps the most recent messages,
# with their arguments, for inspector clients that attach later (V8ConsoleMessageStorage: up to
# 1000 messages per context group). Without an inspector, console.log only writes.
#
# The app (console_app.js, `node --expose-gc`) waits for SIGUSR2, logs N console.log messages of
# about 1 KiB (to /dev/null), and measures itself after a forced GC (gc() twice): before logging,
# right after ("burst") and after IDLE s of idling ("idle": V8's memory reducer has shrunk the
# young generation by then). Heap used is process.memoryUsage().heapUsed (= v8 used_heap_size),
# RSS is process.memoryUsage().rss. Conditions:
#   i    no inspector: `node --expose-gc console_app.js`
#   ii   `--inspect=127.0.0.1:0`, nothing attached
#   iii  `--inspect=127.0.0.1:0`, nodejs-leak-exporter attached (default 5 s interval)
#   iv   no --inspect (`--inspect-port=0`, so the port is free), the exporter opens the inspector
#        with SIGUSR1 (`--inspector.activate`) and attaches
#   v    no --inspect (`--inspect-port=0`), inspector opened by a plain `kill -USR1`, nothing
#        attached
# Messages: "string" = one fresh ~1 KiB JSON line per console.log; "object" =
# console.log('order %d', id, order) with a fresh object of ~1 KiB of heap. REPS processes per
# condition run side by side (one exporter watches them all); the table shows medians.
#
# Knobs (environment): REPS=3 IDLE=15 CASES="string:5000 object:5000 string:50000".
# About 5 minutes. Prints markdown tables; asserts nothing.
set -Eeuo pipefail

REPS=${REPS:-3}
IDLE=${IDLE:-15}
CASES=${CASES:-"string:5000 object:5000 string:50000"}

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ROOT"
EXPORTER=$RELEASE_BIN
APP=$ROOT/benches/inspector_cost/console_app.js
STOP_GRACE=5 # seconds stop_pids gives a process between TERM and KILL

WORK=$(mktemp -d "${TMPDIR:-/tmp}/console_memory.XXXXXX")
APP_PIDS=()
EXP_PID=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $EXP_PID ]] && stop_pids "$EXP_PID"
    ((${#APP_PIDS[@]})) && stop_pids "${APP_PIDS[@]}"
    ((rc == 0)) || tail_logs 10 "$WORK"/exporter.log "$WORK"/*.err
    rm -rf "$WORK"
    exit "$rc"
}
trap_cleanup

wait_for() { # seconds, description, command...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out waiting for $what"
        sleep 0.1
    done
}
all_files() { local f; for f in "$@"; do [[ -s $f ]] || return 1; done; }
inspectors_listening() { local f; for f in "$@"; do grep -q 'Debugger listening on ws://' "$f" || return 1; done; }
exporter_connected_all() {
    curl -sS --max-time 2 -o "$WORK/exp.prom" "http://127.0.0.1:$EXP_PORT/metrics" 2>/dev/null || return 1
    local p
    for p in "${APP_PIDS[@]}"; do
        grep -q "^nodejs_inspector_connected{.*pid=\"$p\".*} 1\$" "$WORK/exp.prom" || return 1
    done
}

command -v node >/dev/null || die "node is not on PATH"
command -v curl >/dev/null || die "curl is not installed"
build_release

: >"$WORK/results.jsonl"
for case_ in $CASES; do
    mode=${case_%%:*}
    n=${case_##*:}
    for cond in i ii iii iv v; do
        flags=(--expose-gc)
        case $cond in
        ii | iii) flags+=(--inspect=127.0.0.1:0) ;;
        iv | v) flags+=(--inspect-port=0) ;;
        esac
        APP_PIDS=()
        outs=()
        readies=()
        errs=()
        for ((r = 1; r <= REPS; r++)); do
            out=$WORK/$mode-$n-$cond-$r.json
            outs+=("$out")
            readies+=("$out.ready")
            errs+=("$WORK/$mode-$n-$cond-$r.err")
            node "${flags[@]}" "$APP" "$n" "$mode" "$out" "$((IDLE * 1000))" >/dev/null 2>"$WORK/$mode-$n-$cond-$r.err" &
            APP_PIDS+=("$!")
        done
        wait_for 20 "the apps to start" all_files "${readies[@]}"
        case $cond in
        iii | iv)
            printf 'discovery:\n  include: []\n  pids: [%s]\n' "$(IFS=,; echo "${APP_PIDS[*]}")" >"$WORK/exporter.yml"
            EXP_PORT=$(free_port)
            extra=()
            [[ $cond == iv ]] && extra+=(--inspector.activate)
            "$EXPORTER" --config.file="$WORK/exporter.yml" --web.listen-address="127.0.0.1:$EXP_PORT" \
                --discovery.min-age=0s --log.level=warn "${extra[@]}" >"$WORK/exporter.log" 2>&1 &
            EXP_PID=$!
            wait_for 60 "the exporter to attach to every app" exporter_connected_all
            ;;
        v)
            kill -USR1 "${APP_PIDS[@]}"
            wait_for 20 "the inspectors to open" inspectors_listening "${errs[@]}"
            ;;
        esac
        if [[ $cond == iv ]]; then
            inspectors_listening "${errs[@]}" || die "(iv): an app has no inspector listening after the exporter attached"
        fi
        log "$mode x $n, condition $cond: logging"
        kill -USR2 "${APP_PIDS[@]}"
        wait_for $((IDLE + 60)) "the apps to log and measure" all_files "${outs[@]}"
        connected=''
        if [[ -n $EXP_PID ]]; then
            exporter_connected_all && connected=1 || connected=0
            stop_pids "$EXP_PID"
            EXP_PID=''
        fi
        for out in "${outs[@]}"; do
            node -e 'const [f, cond, connected] = process.argv.slice(1); const r = JSON.parse(require("fs").readFileSync(f, "utf8")); r.cond = cond; if (connected) r.connected = connected === "1"; console.log(JSON.stringify(r))' \
                "$out" "$cond" "$connected" >>"$WORK/results.jsonl"
        done
        stop_pids "${APP_PIDS[@]}"
        APP_PIDS=()
    done
done

our_version=$("$EXPORTER" --version 2>/dev/null | head -n 1)
node - "$WORK/results.jsonl" "$REPS" "$IDLE" "$our_version" <<'EOF'
const fs = require('node:fs');
const [file, reps, idle, ours] = process.argv.slice(2);
const rows = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const mib = (b) => `${(b / 1048576).toFixed(2)} MiB`;
const dmib = (b) => `${b >= 0 ? '+' : '−'}${(Math.abs(b) / 1048576).toFixed(2)} MiB`;
const names = {
  i: '(i) no inspector',
  ii: '(ii) `--inspect=127.0.0.1:0`, nothing attached',
  iii: '(iii) `--inspect=127.0.0.1:0`, exporter attached',
  iv: '(iv) opened by the exporter (`--inspector.activate`, SIGUSR1), attached',
  v: '(v) opened by `kill -USR1`, nothing attached',
};
console.log(`Node.js ${process.version}; ${ours}. ${reps} processes per condition, medians; memory after a forced GC; "idle" is ${idle} s after logging, "burst" 0.2 s after.\n`);
const cases = [...new Set(rows.map((r) => `${r.mode}:${r.n}`))];
for (const c of cases) {
  const [mode, n] = c.split(':');
  const what = mode === 'string' ? 'console.log(line), a fresh ~1 KiB string' : "console.log('order %d', id, order), a fresh object of ~1 KiB";
  console.log(`${Number(n).toLocaleString('en-US')} messages, ${what}:\n`);
  console.log('| condition | heap used, idle | Δ heap used by logging, idle | vs (i) | heap total, idle | RSS, idle | Δ RSS by logging, idle | vs (i) | burst: heap total / Δ RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  const base = {};
  for (const cond of ['i', 'ii', 'iii', 'iv', 'v']) {
    const rs = rows.filter((r) => r.mode === mode && String(r.n) === n && r.cond === cond);
    if (!rs.length) continue;
    const m = {
      heap: median(rs.map((r) => r.idle.heapUsed)),
      dheap: median(rs.map((r) => r.idle.heapUsed - r.before.heapUsed)),
      total: median(rs.map((r) => r.idle.heapTotal)),
      rss: median(rs.map((r) => r.idle.rss)),
      drss: median(rs.map((r) => r.idle.rss - r.before.rss)),
      btotal: median(rs.map((r) => r.burst.heapTotal)),
      bdrss: median(rs.map((r) => r.burst.rss - r.before.rss)),
    };
    if (cond === 'i') Object.assign(base, m);
    const lost = rs.some((r) => r.connected === false) ? ' (exporter not connected at the end)' : '';
    const vs = (k) => (cond === 'i' ? '—' : dmib(m[k] - base[k]));
    console.log(`| ${names[cond]}${lost} | ${mib(m.heap)} | ${dmib(m.dheap)} | ${vs('dheap')} | ${mib(m.total)} | ${mib(m.rss)} | ${dmib(m.drss)} | ${vs('drss')} | ${mib(m.btotal)} / ${dmib(m.bdrss)} |`);
  }
  console.log('');
}
EOF
