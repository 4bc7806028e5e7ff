#!/usr/bin/env bash
# The test command: installs the test dependencies (idempotent), starts the
# Apache Kafka broker every test shares (stopped again at the end), then runs
# every test. Tests that kill or restart a broker start their own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/test-deps.sh"
cd "$root"
export OUTRIGGER_KAFKA_DIR="$root/.tools/kafka-test"
started=$(date +%s)
"$root/scripts/kafka.sh" start --dir "$OUTRIGGER_KAFKA_DIR" >/dev/null
echo "shared Apache Kafka broker ready in $(( $(date +%s) - started )) s ($OUTRIGGER_KAFKA_DIR/broker.env)"
trap '"$root/scripts/kafka.sh" stop --dir "$OUTRIGGER_KAFKA_DIR" >/dev/null 2>&1 || true' EXIT
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --features bench --no-fail-fast "$@"
else
  cargo test --workspace --features bench --no-fail-fast "$@"
fi
