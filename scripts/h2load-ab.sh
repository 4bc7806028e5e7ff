#!/usr/bin/env bash
# A/B of outrigger builds (or component settings) on the gRPC output path, with
# h2load as the load generator: each contender in turn, ROUNDS times, against
# one running Apache Kafka broker, at concurrency 1 (-c 1) and 64 (-c 4 -m 16),
# 100 B per call, SECS seconds each. Prints msgs/s and the sidecar's CPU per
# message (utime+stime from /proc) per row, so that builds are compared in one
# sitting on a noisy machine (BENCHMARKS.md, "What changed").
#
# Usage: scripts/h2load-ab.sh BIN[:EXTRA] BIN[:EXTRA] ... [-- ROUNDS [SECS]]
#   BIN    an outrigger binary (e.g. a copy of target/release/outrigger per build)
#   EXTRA  more component metadata, as name=value[,name=value], e.g. producerLinger=0ms
# Env: OUTRIGGER_KAFKA_DIR: a running broker of scripts/kafka.sh (default: one
# started in .tools/kafka-ab and stopped at the end). Needs h2load (nghttp2-client).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
contenders=()
while (($#)) && [ "$1" != "--" ]; do contenders+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
rounds=${1:-2} secs=${2:-5}
((${#contenders[@]})) || { sed -n 2,15p "$0" >&2; exit 64; }
. "$root/scripts/lib/grpc-sidecar.sh"
topic="ab-$(date +%s)-$$"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for ((round = 1; round <= rounds; round++)); do
  for c in "${contenders[@]}"; do
    bin=${c%%:*} extra=""
    [ "$c" != "$bin" ] && extra=${c#*:}
    start_sidecar "$bin" "$topic" "$extra"
    for spec in "1 1 1" "64 4 16"; do
      read -r conc conns streams <<<"$spec"
      c0=$(cpu "$sidecar")
      out=$(h2 -D "$secs" -t 1 -c "$conns" -m "$streams")
      c1=$(cpu "$sidecar")
      ok=$(sed -n 's/.* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
      awk -v r="$round" -v c="$c" -v n="$conc" -v ok="$ok" -v s="$secs" -v t=$((c1 - c0)) -v hz="$hz" \
        'BEGIN { printf "round %d  %-40s c=%-3d %8.0f msgs/s  %7.1f µs sidecar CPU/msg\n", r, c, n, ok / s, (ok ? t / hz / ok * 1e6 : 0) }'
    done
    stop_sidecar
  done
done
