#!/usr/bin/env bash
# Profiles the sidecar's hot path: a benchmark run of gRPC output at concurrency 64
# (100 B), with `perf record` attached to the sidecar process for a few seconds.
# Prints the share of samples per shared object and the top symbols.
# Usage: scripts/profile.sh [SECONDS]   (needs `perf`; run scripts/bench.sh once first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-8}
cd "$root"
command -v perf >/dev/null || { echo "perf is not installed (apt install linux-perf)" >&2; exit 1; }
[ -x target/release/outrigger-bench ] || cargo build --release --features bench --bins
out=$(mktemp -d)
# The benchmark runs in a process group of its own, with its broker and sidecars:
# the trap stops all of them, whatever happens here.
trap 'kill -- -"$bench" 2>/dev/null || true; rm -rf "$out"' EXIT
setsid target/release/outrigger-bench --starts 1 --transports grpc --concurrency 64 --payloads 100 \
  --input-messages 1000 --duration $((secs + 8)) >"$out/bench.txt" 2>&1 &
bench=$!
# The output sidecar is the one started with --app-id bench and no app port.
pid=""
direct_done() { grep -q "^| direct rdkafka | 100 B | 64" "$out/bench.txt"; }
for _ in $(seq 1 600); do
  pid=$(pgrep -P "$bench" -f "outrigger sidecar --app-id bench" | tail -1 || true)
  [ -n "$pid" ] && direct_done && break
  sleep 0.2
done
[ -n "$pid" ] && direct_done || { echo "the benchmark did not get to the gRPC row" >&2; cat "$out/bench.txt" >&2; exit 1; }
sleep 2 # let the gRPC row's load start after the direct producer's row
perf record -F 999 -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2>/dev/null
perf report -i "$out/perf.data" --sort dso --stdio 2>/dev/null | grep -v -e '^#' -e '^$' | sed -n 1,8p || true
echo
perf report -i "$out/perf.data" --sort symbol --stdio 2>/dev/null | grep -v -e '^#' -e '^$' | cut -c1-140 | sed -n 1,30p || true
wait "$bench" || true
grep -A6 "^| transport" "$out/bench.txt" || true
