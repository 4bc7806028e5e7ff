#!/usr/bin/env bash
# System calls, context switches and CPU per gRPC InvokeBinding call of one
# outrigger sidecar, at concurrency 1 (-c 1) and 64 (-c 4 -m 16), 100 B per
# call, driven by h2load: `perf stat` (context switches, task clock) over one
# batch of calls, then `strace -c -f` over another (strace slows the sidecar, so
# its counts are read per call, not its times). BENCHMARKS.md, "CPU per output
# message at c=1".
#
# Usage: scripts/syscalls.sh [BIN] [CALLS_AT_C1]   (default target/release/outrigger, 5000;
#        ten times as many at c=64)
# Env: OUTRIGGER_KAFKA_DIR: a running broker of scripts/kafka.sh (default: one
# started in .tools/kafka-ab and stopped at the end). Needs h2load
# (nghttp2-client), perf and strace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release/outrigger}
calls=${2:-5000}
for tool in perf strace; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
. "$root/scripts/lib/grpc-sidecar.sh"
start_sidecar "$bin" "syscalls-$(date +%s)-$$"
for spec in "1 1 1 $calls" "64 4 16 $((calls * 10))"; do
  read -r conc conns streams n <<<"$spec"
  perf stat -x, -e context-switches,task-clock -p "$sidecar" -o "$work/perf.csv" &
  tracer=$!
  sleep 0.3 # perf writes nothing until it stops; give it time to attach
  ok=$(h2 -n "$n" -t 1 -c "$conns" -m "$streams" | sed -n 's/.* \([0-9]*\) succeeded.*/\1/p')
  kill -INT "$tracer" && wait "$tracer" 2>/dev/null || true
  switches=$(awk -F, '$3 ~ /context-switches/ {print $1}' "$work/perf.csv")
  clock=$(awk -F, '$3 ~ /task-clock/ {print $1}' "$work/perf.csv")
  strace -c -f -p "$sidecar" -o "$work/strace.txt" 2>"$work/strace.err" &
  tracer=$!
  for _ in $(seq 1 200); do grep -q attached "$work/strace.err" && break; sleep 0.01; done
  h2 -n "$n" -t 1 -c "$conns" -m "$streams" >/dev/null
  kill -INT "$tracer" && wait "$tracer" 2>/dev/null || true
  awk -v c="$conc" -v ok="$ok" -v n="$n" -v sw="$switches" -v ms="$clock" '
    BEGIN { printf "c=%d: %d calls, %.1f µs sidecar CPU per call, %.2f context switches per call\n", c, ok, ms * 1000 / ok, sw / ok }
    $NF ~ /^[a-z_0-9]+$/ && $1 ~ /^[0-9.]+$/ && $NF != "total" && $4 / n >= 0.005 {
      printf "  %-14s %6.2f per call\n", $NF, $4 / n }
  ' "$work/strace.txt"
done
