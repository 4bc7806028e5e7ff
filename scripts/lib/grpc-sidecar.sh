# Sourced by scripts/h2load-ab.sh and scripts/syscalls.sh: a broker, one
# outrigger sidecar with a bindings.kafka output named "bench", and h2load
# calling its gRPC InvokeBinding with 100 B. Expects `root` (the repository)
# and `set -euo pipefail` in the caller; sets `work`, `brokers`, `sidecar`,
# `url`, and removes what it started on exit.
#
# Env: OUTRIGGER_KAFKA_DIR: a running broker of scripts/kafka.sh (default: one
# started in .tools/kafka-ab and stopped at the end).

command -v h2load >/dev/null || { echo "h2load is not installed (apt install nghttp2-client)" >&2; exit 1; }
work=$(mktemp -d)
sidecar=""
url=""
cleanup() {
  stop_sidecar
  [ -z "${OUTRIGGER_KAFKA_DIR:-}" ] && "$root/scripts/kafka.sh" stop --dir "$root/.tools/kafka-ab" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
kafka_dir=${OUTRIGGER_KAFKA_DIR:-}
if [ -z "$kafka_dir" ]; then
  kafka_dir="$root/.tools/kafka-ab"
  "$root/scripts/kafka.sh" start --dir "$kafka_dir" >/dev/null
fi
brokers=$(sed -n 's/^KAFKA_PLAINTEXT=//p' "$kafka_dir/broker.env")

# The InvokeBinding request: name "bench", 100 B of data, operation "create", gRPC-framed.
python3 - "$work/call.bin" <<'PY'
import struct, sys
field = lambda n, b: bytes([n << 3 | 2, len(b)]) + b
msg = field(1, b"bench") + field(2, b"x" * 100) + field(4, b"create")
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY

# start_sidecar BIN TOPIC [NAME=VALUE,...]: the sidecar on free loopback ports,
# with the "bench" component writing to TOPIC (plus the extra metadata);
# returns once its gRPC port is known, after a warm-up of 500 calls.
start_sidecar() {
  local bin=$1 topic=$2 extra=${3:-} res="$work/res" kv items
  rm -rf "$res" && mkdir -p "$res"
  {
    printf 'apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bench\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n'
    printf '  - name: brokers\n    value: "%s"\n  - name: publishTopic\n    value: "%s"\n  - name: authType\n    value: "none"\n' "$brokers" "$topic"
    IFS=, read -r -a items <<<"$extra"
    for kv in "${items[@]}"; do printf '  - name: %s\n    value: "%s"\n' "${kv%%=*}" "${kv#*=}"; done
  } >"$res/bench.yaml"
  "$bin" sidecar --app-id bench --log-level info --dapr-http-port 0 --dapr-grpc-port 0 \
    --dapr-listen-addresses 127.0.0.1 --metrics-port 0 --resources-path "$res" >"$work/sidecar.log" 2>&1 &
  sidecar=$!
  local port=""
  for _ in $(seq 1 500); do
    port=$(sed -n 's/.*API listening.*grpc=\[127\.0\.0\.1:\([0-9]*\)\].*/\1/p' "$work/sidecar.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.02
  done
  [ -n "$port" ] || { cat "$work/sidecar.log" >&2; exit 1; }
  url="http://127.0.0.1:$port/dapr.proto.runtime.v1.Dapr/InvokeBinding"
  h2 -n 500 -c 1 >/dev/null # warm-up: connections, topic metadata
}

stop_sidecar() {
  if [ -n "$sidecar" ]; then
    kill "$sidecar" 2>/dev/null && wait "$sidecar" 2>/dev/null || true
    sidecar=""
  fi
}

# h2 [h2load flags]: the InvokeBinding call against the running sidecar.
h2() { h2load "$@" -H content-type:application/grpc -H te:trailers -d "$work/call.bin" "$url"; }
