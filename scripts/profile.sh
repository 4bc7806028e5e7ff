#!/usr/bin/env bash
# Profiles the gRPC output path at concurrency 64 (100 B) on a real Apache Kafka
# broker: a benchmark run of that row alone (outrigger only), with `perf record`
# (cpu-clock sampling, which works where hardware counters do not) attached for
# a few seconds both to the sidecar and to the bench's load generator, so that
# what is the sidecar's and what is the generator's can be told apart.
# Prints, for each, the share of samples per shared object and the top symbols.
# Usage: scripts/profile.sh [SECONDS]   (needs `perf`; builds like scripts/bench.sh)
# Env: OUTRIGGER_KAFKA_DIR / OUTRIGGER_BENCH_BROKERS as for outrigger-bench;
# OUTRIGGER_BENCH_BIN: an outrigger-bench binary (with outrigger next to it) to use as is, no build;
# PERF_ARGS: more `perf record` flags for the sidecar (e.g. "--call-graph dwarf,16384");
# REPORT_ARGS, REPORT_LINES: more `perf report` flags and lines (e.g. "--no-children -S <symbol> -G").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-8}
cd "$root"
command -v perf >/dev/null || { echo "perf is not installed (apt install linux-perf)" >&2; exit 1; }
"$root/scripts/kafka.sh" install >/dev/null
bin=${OUTRIGGER_BENCH_BIN:-}
[ -n "$bin" ] || { cargo build --release --features bench --bins; bin=target/release/outrigger-bench; }
out=$(mktemp -d)
# The benchmark runs in a process group of its own, with its broker and sidecar:
# the trap stops all of them, whatever happens here.
trap 'kill -- -"$bench" 2>/dev/null || true; rm -rf "$out"' EXIT
setsid "$bin" --no-daprd --no-h2load --starts 1 --transports grpc \
  --concurrency 64 --payloads 100 --input-messages 1000 --duration $((secs + 6)) >"$out/bench.txt" 2>&1 &
bench=$!
pid=""
# The last direct row before the sidecar's: the one sending at once (the bench
# runs two direct producers beside outrigger's adaptive default).
direct_done() { grep -q "^| direct rdkafka linger=0ms | 100 B | 64 |" "$out/bench.txt"; }
for _ in $(seq 1 1500); do
  pid=$(pgrep -P "$bench" -f "outrigger sidecar --app-id bench" | tail -1 || true)
  [ -n "$pid" ] && direct_done && break
  sleep 0.2
done
[ -n "$pid" ] && direct_done || { echo "the benchmark did not get to the gRPC row" >&2; cat "$out/bench.txt" >&2; exit 1; }
sleep 2 # into the gRPC row, past its warm-up
perf record ${PERF_ARGS:-} -e cpu-clock -F 999 -p "$pid" -o "$out/sidecar.data" -- sleep "$secs" 2>/dev/null &
rec=$!
perf record -e cpu-clock -F 999 -p "$bench" -o "$out/generator.data" -- sleep "$secs" 2>/dev/null
wait "$rec" || true
sleep 1
for who in sidecar generator; do
  echo "=== $who ($( [ $who = sidecar ] && echo "outrigger, pid $pid" || echo "outrigger-bench, pid $bench"))"
  perf report -i "$out/$who.data" --sort dso --stdio 2>/dev/null | grep -v -e '^#' -e '^$' | sed -n 1,8p || true
  echo
  perf report -i "$out/$who.data" --sort symbol --stdio ${REPORT_ARGS:-} 2>/dev/null | grep -v -e '^#' -e '^$' | cut -c1-150 | sed -n 1,${REPORT_LINES:-30}p || true
  echo
done
wait "$bench" || true
grep -A4 "^| row " "$out/bench.txt" || true
