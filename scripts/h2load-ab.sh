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
command -v h2load >/dev/null || { echo "h2load is not installed (apt install nghttp2-client)" >&2; exit 1; }
work=$(mktemp -d)
dir=${OUTRIGGER_KAFKA_DIR:-}
sidecar=""
cleanup() {
  [ -n "$sidecar" ] && kill "$sidecar" 2>/dev/null && wait "$sidecar" 2>/dev/null
  [ -z "${OUTRIGGER_KAFKA_DIR:-}" ] && "$root/scripts/kafka.sh" stop --dir "$root/.tools/kafka-ab" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "$dir" ]; then
  dir="$root/.tools/kafka-ab"
  "$root/scripts/kafka.sh" start --dir "$dir" >/dev/null
fi
brokers=$(sed -n 's/^KAFKA_PLAINTEXT=//p' "$dir/broker.env")
topic="ab-$(date +%s)-$$"
# The InvokeBinding request: name "bench", 100 B of data, operation "create", gRPC-framed.
python3 - "$work/call.bin" <<'EOF'
import struct, sys
field = lambda n, b: bytes([n << 3 | 2, len(b)]) + b
msg = field(1, b"bench") + field(2, b"x" * 100) + field(4, b"create")
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
EOF
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for ((round = 1; round <= rounds; round++)); do
  for c in "${contenders[@]}"; do
    bin=${c%%:*} extra=""
    [ "$c" != "$bin" ] && extra=${c#*:}
    res="$work/res-$round"
    rm -rf "$res" && mkdir -p "$res"
    {
      printf 'apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bench\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n'
      printf '  - name: brokers\n    value: "%s"\n  - name: publishTopic\n    value: "%s"\n  - name: authType\n    value: "none"\n' "$brokers" "$topic"
      IFS=, read -r -a items <<<"$extra"
      for kv in "${items[@]}"; do printf '  - name: %s\n    value: "%s"\n' "${kv%%=*}" "${kv#*=}"; done
    } >"$res/bench.yaml"
    "$bin" sidecar --app-id ab --log-level info --dapr-http-port 0 --dapr-grpc-port 0 \
      --dapr-listen-addresses 127.0.0.1 --metrics-port 0 --resources-path "$res" >"$work/sidecar.log" 2>&1 &
    sidecar=$!
    port=""
    for _ in $(seq 1 500); do
      port=$(sed -n 's/.*API listening.*grpc=\[127\.0\.0\.1:\([0-9]*\)\].*/\1/p' "$work/sidecar.log" | head -1)
      [ -n "$port" ] && break
      sleep 0.02
    done
    [ -n "$port" ] || { cat "$work/sidecar.log" >&2; exit 1; }
    url="http://127.0.0.1:$port/dapr.proto.runtime.v1.Dapr/InvokeBinding"
    h2() { h2load "$@" -H content-type:application/grpc -H te:trailers -d "$work/call.bin" "$url"; }
    h2 -n 500 -c 1 >/dev/null # warm-up: connections, topic metadata
    for spec in "1 1 1" "64 4 16"; do
      read -r conc conns streams <<<"$spec"
      c0=$(cpu "$sidecar")
      out=$(h2 -D "$secs" -t 1 -c "$conns" -m "$streams")
      c1=$(cpu "$sidecar")
      ok=$(sed -n 's/.* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
      awk -v r="$round" -v c="$c" -v n="$conc" -v ok="$ok" -v s="$secs" -v t=$((c1 - c0)) -v hz="$hz" \
        'BEGIN { printf "round %d  %-40s c=%-3d %8.0f msgs/s  %7.1f µs sidecar CPU/msg\n", r, c, n, ok / s, (ok ? t / hz / ok * 1e6 : 0) }'
    done
    kill "$sidecar" && wait "$sidecar" 2>/dev/null || true
    sidecar=""
  done
done
