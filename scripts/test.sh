#!/usr/bin/env bash
# The test command: installs the test dependencies (idempotent), then runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/test-deps.sh"
cd "$root"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --features bench --no-fail-fast "$@"
else
  cargo test --workspace --features bench --no-fail-fast "$@"
fi
