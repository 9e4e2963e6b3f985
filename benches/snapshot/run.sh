#!/usr/bin/env bash
# Snapshot parsing and diffing, ours beside memlab (npm `memlab`, installed under target/memlab):
# time and peak RSS (/usr/bin/time -v) on three snapshots of benches/snapshot/heap.js.
#   bash benches/snapshot/run.sh [ITEMS]   # 300000 by default (about 250 MiB each); 120000: about 100 MiB
#   KEEP=DIR bash benches/snapshot/run.sh ITEMS  # keeps the snapshots (and outputs) in DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
ITEMS=${1:-300000}
BIN=target/release/nodejs-leak-exporter
[ -x "$BIN" ] || cargo build --release
if [ ! -x target/memlab/node_modules/.bin/memlab ]; then
  mkdir -p target/memlab && (cd target/memlab && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund memlab@2.0.5 >/dev/null)
fi
MEMLAB=target/memlab/node_modules/.bin/memlab
APP=
if [ -n "${KEEP:-}" ]; then
  # A large snapshot takes minutes to make: keep the set to look at again.
  mkdir -p "$KEEP" && DIR=$KEEP
  trap 'kill $APP 2>/dev/null || true' EXIT
else
  DIR=$(mktemp -d)
  trap 'kill $APP 2>/dev/null || true; rm -rf "$DIR"' EXIT
fi
node --max-old-space-size=8192 --inspect=127.0.0.1:0 benches/snapshot/heap.js items="$ITEMS" > "$DIR/app.log" 2>/dev/null &
APP=$!
until grep -q ready "$DIR/app.log"; do sleep 0.5; done
sleep 2
"$BIN" snapshot --pid "$APP" --every 10s --timeout 30m --out "$DIR/a.heapsnapshot" --out "$DIR/b.heapsnapshot" --out "$DIR/c.heapsnapshot" 2>/dev/null
kill $APP
ls -l "$DIR"/*.heapsnapshot
measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -v "$@" > "$DIR/out.txt" 2> "$DIR/time.txt" || { echo "$name failed"; tail -5 "$DIR/time.txt"; return; }
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$DIR/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$DIR/time.txt" | awk '{print $NF}')
  printf '%-48s %10s %10.0f MiB\n' "$name" "$wall" "$(echo "$rss / 1024" | bc -l)"
}
SIZE=$(stat -c %s "$DIR/a.heapsnapshot")
printf 'snapshot size: %.0f MiB each (a), ITEMS=%s\n' "$(echo "$SIZE / 1048576" | bc -l)" "$ITEMS"
printf '%-48s %10s %14s\n' "what" "wall" "peak RSS"
measure "ours: diff A C (shallow)" "$BIN" diff "$DIR/a.heapsnapshot" "$DIR/c.heapsnapshot"
measure "ours: diff A B C (shallow, leaks)" "$BIN" diff "$DIR/a.heapsnapshot" "$DIR/b.heapsnapshot" "$DIR/c.heapsnapshot"
measure "ours: diff --retained A B C" "$BIN" diff --retained "$DIR/a.heapsnapshot" "$DIR/b.heapsnapshot" "$DIR/c.heapsnapshot"
head -40 "$DIR/out.txt" > "$DIR/ours.txt"
measure "memlab find-leaks --baseline A --target B --final C" node --max-old-space-size=16384 "$MEMLAB" find-leaks --baseline "$DIR/a.heapsnapshot" --target "$DIR/b.heapsnapshot" --final "$DIR/c.heapsnapshot"
echo "--- ours (diff --retained A B C), first lines"; cat "$DIR/ours.txt"
echo "--- memlab, first lines"; head -30 "$DIR/out.txt"
