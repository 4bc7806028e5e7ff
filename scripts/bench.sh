#!/usr/bin/env bash
# Benchmarks outrigger (release build) against direct rdkafka on a local tansu broker.
# Usage: scripts/bench.sh [--quick] [--duration SECS] [--soak MESSAGES] ...  (see --help)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/test-deps.sh" >/dev/null
cd "$root"
cargo build --release --features bench --bins
exec target/release/outrigger-bench "$@"
