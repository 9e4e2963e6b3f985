#!/usr/bin/env bash
# Runs every test: installs the real parts the tests use, then the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --locked --all-targets
