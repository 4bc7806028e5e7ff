#!/usr/bin/env bash
# Runs every SDK program of tests/go and tests/java against a Dapr sidecar and
# prints one JSON line per program, so that the same run against daprd and
# against outrigger shows whether they serve each SDK the same way. Random
# parts (topic names, timestamps, trace ids) are replaced by placeholders, so
# the two outputs can be compared with diff.
#
#   scripts/sdk-check.sh run --sidecar daprd|outrigger --brokers HOST:PORT
#       Starts everything itself: for each app flavour (grpc, http) the Go app,
#       then the sidecar with --app-port (as `dapr run` orders them), produces
#       one record to the input topic and reports the event the app got; the
#       clients (Go InvokeBinding, Java invokeBinding) run against the second
#       sidecar and each record they wrote is read back. Stops what it started.
#   scripts/sdk-check.sh client --grpc-port G --http-port H --binding NAME --brokers B --topic T
#       Only the clients, against a running sidecar whose output binding NAME
#       writes to topic T (read from the beginning: give a fresh topic).
#       `--name daprd` sets the "sidecar" field of the lines (here and in `app`).
#   scripts/sdk-check.sh app grpc|http --app-port P --binding NAME --brokers B --topic T
#       Only one Go app, on port P, for a running sidecar started with
#       --app-port P and that app protocol, whose input binding NAME reads T.
#
# Exits 1 when a program failed or what it did was not seen (its line says
# "ok": false), 2 on wrong usage.
#
# Needs the SDK programs (scripts/sdk-deps.sh, run by itself when they are
# missing), scripts/test-deps.sh (the
# Python venv with confluent-kafka, the client that produces and reads back),
# and for `run`: scripts/daprd.sh, or OUTRIGGER_BIN (default target/release,
# then target/debug).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
py="$root/.tools/venv/bin/python"
[ -x "$py" ] || { echo "missing $py: run scripts/test-deps.sh" >&2; exit 1; }
for p in sdk-go-invoke sdk-go-grpcapp sdk-go-httpapp sdk-java-invoke.jar; do
  [ -e "$bin/$p" ] || { "$root/scripts/sdk-deps.sh" >&2; break; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The Kafka side, with a client independent of both sidecars.
kafka() {
  "$py" - "$@" <<'EOF'
import json, socket, sys, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "free-port":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
elif cmd == "create":
    brokers, topic = args
    admin = AdminClient({"bootstrap.servers": brokers})  # kept alive until the results
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(30)
elif cmd == "produce":
    brokers, topic, key, value, hk, hv = args
    p = Producer({"bootstrap.servers": brokers, "acks": "all"})
    errs = []
    p.produce(topic, value=value.encode(), key=key.encode(), headers=[(hk, hv.encode())],
              on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    if errs != [None]:
        sys.exit(f"produce failed: {errs}")
elif cmd == "read":
    # Prints record N-1 (0-based) of a one-partition topic read from the start.
    brokers, topic, n = args[0], args[1], int(args[2])
    c = Consumer({"bootstrap.servers": brokers, "group.id": "sdk-check-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
    c.close()
    if len(got) < n:
        print(json.dumps({"error": f"read {len(got)} of {n} records"})); sys.exit(0)
    m = got[n - 1]
    t = lambda b: None if b is None else b.decode("utf-8", "replace")
    print(json.dumps({"key": t(m.key()), "value": t(m.value()),
                      "headers": {k: t(v) for k, v in (m.headers() or [])}}, sort_keys=True))
EOF
}

# One result line: the SDK's own output and what reached Kafka or the app,
# with the random parts replaced. Also kept in $work/results for the exit code.
report() { # CHECK SIDECAR SDK-LINE OBSERVED-LINE TOPIC
  "$py" - "$@" <<'EOF' | tee -a "$work/results"
import json, re, sys
check, sidecar, sdk, seen, topic = sys.argv[1:6]
def load(s):
    try:
        return json.loads(s)
    except ValueError:
        return {"unparsed": s}
def scrub(v):
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            lk = k.lower()
            if lk == "__timestamp" and isinstance(x, str) and x.isdigit():
                x = "<ms>"
            elif lk in ("traceparent", "grpc-trace-bin", "date", "dapr-authority", "x-forwarded-for"):
                x = "<" + lk + ">"
            out[k] = scrub(x)
        return out
    if isinstance(v, list):
        return [scrub(x) for x in v]
    if isinstance(v, str) and topic:
        return v.replace(topic, "<topic>")
    return v
sdk, seen = scrub(load(sdk)), scrub(load(seen))
ok = sdk.get("result", "ok") == "ok" and "error" not in seen and "unparsed" not in seen
print(json.dumps({"check": check, "sidecar": sidecar, "ok": ok, "sdk": sdk, "observed": seen},
                 sort_keys=True))
EOF
}

last_json() { grep '^{' "$1" | tail -n 1 || true; }

check_clients() { # SIDECAR-NAME GRPC HTTP BINDING BROKERS TOPIC
  local name=$1 grpc=$2 http=$3 binding=$4 brokers=$5 topic=$6 out
  local env=(env -u DAPR_GRPC_ENDPOINT -u DAPR_HTTP_ENDPOINT -u DAPR_API_TOKEN
    DAPR_SIDECAR_IP=127.0.0.1 DAPR_GRPC_PORT="$grpc" DAPR_HTTP_PORT="$http")
  out="$work/go-invoke.out"
  "${env[@]}" "$bin/sdk-go-invoke" "$binding" create '{"orderId":1}' \
    '{"partitionKey":"k1","traceTag":"go-sdk"}' >"$out" 2>"$work/go-invoke.err" || true
  report go-invoke "$name" "$(last_json "$out")" "$(kafka read "$brokers" "$topic" 1)" "$topic"
  out="$work/java-invoke.out"
  "${env[@]}" java -jar "$bin/sdk-java-invoke.jar" "$binding" create '{"orderId":2}' \
    '{"partitionKey":"k2","traceTag":"java-sdk"}' >"$out" 2>"$work/java-invoke.err" || true
  report java-invoke "$name" "$(last_json "$out")" "$(kafka read "$brokers" "$topic" 2)" "$topic"
}

# Starts the Go app of FLAVOUR on PORT in the background; waits for "started".
start_app() { # FLAVOUR PORT BINDING
  local out="$work/$1app.out" i
  env -u DAPR_GRPC_ENDPOINT -u DAPR_HTTP_ENDPOINT -u APP_API_TOKEN \
    "$bin/sdk-go-$1app" -port "$2" "$3" >"$out" 2>"$work/$1app.err" &
  pids+=($!)
  for ((i = 0; i < 300; i++)); do
    grep -q '"event":"started"' "$out" 2>/dev/null && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "the Go $1 app did not start: $(cat "$out" "$work/$1app.err")" >&2
  return 1
}

# Produces one record to TOPIC, waits for the app's event line, reports it.
check_app() { # SIDECAR-NAME FLAVOUR BROKERS TOPIC
  local name=$1 flavour=$2 brokers=$3 topic=$4 out="$work/${2}app.out" i event=""
  kafka produce "$brokers" "$topic" k3 '{"n":3}' traceTag app-check
  for ((i = 0; i < 600; i++)); do
    event=$(grep '"event":"binding"' "$out" | head -n 1 || true)
    [ -n "$event" ] && break
    sleep 0.1
  done
  [ -n "$event" ] || event='{"error":"no event within 60 s"}'
  report "go-${flavour}app" "$name" '{"result":"ok"}' "$event" "$topic"
}

# Starts SIDECAR (daprd or outrigger) with COMPONENTS and the app on APP_PORT;
# sets sidecar_grpc and sidecar_http; waits until healthz answers 204.
start_sidecar() { # SIDECAR COMPONENTS APP_PORT FLAVOUR
  local kind=$1 comps=$2 app=$3 flavour=$4 i code log="$work/sidecar-$4.log"
  sidecar_http=$(kafka free-port); sidecar_grpc=$(kafka free-port)
  case $kind in
    daprd)
      # The command line of scripts/daprd.sh's header.
      "$bin/daprd" --mode standalone --app-id sdk-check \
        --config "$root/scripts/daprd/config.yaml" --resources-path "$comps" \
        --dapr-listen-addresses 127.0.0.1 \
        --dapr-http-port "$sidecar_http" --dapr-grpc-port "$sidecar_grpc" \
        --dapr-internal-grpc-port "$(kafka free-port)" \
        --dapr-internal-grpc-listen-address 127.0.0.1 \
        --metrics-port "$(kafka free-port)" --metrics-listen-address 127.0.0.1 \
        --app-port "$app" --app-protocol "$flavour" \
        --placement-host-address "" --scheduler-host-address "" --log-level warn \
        >"$log" 2>&1 &
      ;;
    outrigger)
      local exe=${OUTRIGGER_BIN:-}
      [ -n "$exe" ] || for exe in "$root/target/release/outrigger" "$root/target/debug/outrigger"; do
        [ -x "$exe" ] && break
      done
      "$exe" sidecar --app-id sdk-check --resources-path "$comps" \
        --dapr-http-port "$sidecar_http" --dapr-grpc-port "$sidecar_grpc" \
        --metrics-port "$(kafka free-port)" \
        --app-port "$app" --app-protocol "$flavour" --log-level warn >"$log" 2>&1 &
      ;;
    *) echo "--sidecar daprd or outrigger" >&2; exit 2 ;;
  esac
  pids+=($!)
  for ((i = 0; i < 600; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sidecar_http/v1.0/healthz" || true)
    [ "$code" = 204 ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$kind did not become healthy: $(tail -n 20 "$log")" >&2
  return 1
}

stop_last() { # stops the most recently started process (sidecar or app)
  local p=${pids[-1]}
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset 'pids[-1]'
}

component() { # NAME BROKERS KEY=VALUE...
  local name=$1 brokers=$2
  shift 2
  printf 'apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: "%s"\n  - name: authType\n    value: "none"\n' "$name" "$brokers"
  local kv
  for kv in "$@"; do
    printf '  - name: %s\n    value: "%s"\n' "${kv%%=*}" "${kv#*=}"
  done
}

opt() { # NAME [DEFAULT]: the value of --NAME in the saved arguments
  local i
  for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[i]}" = "--$1" ]; then echo "${args[i + 1]}"; return 0; fi
  done
  if [ $# -gt 1 ]; then echo "$2"; return 0; fi
  echo "missing --$1" >&2
  exit 2
}

mode=${1:-}
shift || true
args=("$@")
case $mode in
  client)
    check_clients "$(opt name sidecar)" "$(opt grpc-port)" "$(opt http-port)" \
      "$(opt binding)" "$(opt brokers)" "$(opt topic)"
    ;;
  app)
    flavour=${args[0]:-}
    [ "$flavour" = grpc ] || [ "$flavour" = http ] || { echo "app grpc|http ..." >&2; exit 2; }
    start_app "$flavour" "$(opt app-port)" "$(opt binding)"
    check_app "$(opt name sidecar)" "$flavour" "$(opt brokers)" "$(opt topic)"
    ;;
  run)
    kind=$(opt sidecar)
    brokers=$(opt brokers)
    [ "$kind" != daprd ] || [ -x "$bin/daprd" ] || "$root/scripts/daprd.sh" >/dev/null
    stamp="sdk-check-$$-$(date +%s)"
    for flavour in grpc http; do
      in_topic="$stamp-$flavour-in"
      kafka create "$brokers" "$in_topic"
      comps="$work/components-$flavour"
      mkdir -p "$comps"
      component in-binding "$brokers" "topics=$in_topic" "consumerGroup=$stamp-$flavour" \
        initialOffset=oldest >"$comps/in.yaml"
      if [ "$flavour" = http ]; then
        out_topic="$stamp-out"
        kafka create "$brokers" "$out_topic"
        component out-binding "$brokers" "publishTopic=$out_topic" >"$comps/out.yaml"
      fi
      app_port=$(kafka free-port)
      start_app "$flavour" "$app_port" in-binding
      start_sidecar "$kind" "$comps" "$app_port" "$flavour"
      check_app "$kind" "$flavour" "$brokers" "$in_topic"
      if [ "$flavour" = http ]; then
        check_clients "$kind" "$sidecar_grpc" "$sidecar_http" out-binding "$brokers" "$out_topic"
      fi
      stop_last # the sidecar
      stop_last # the app
    done
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
# Exit 1 when a program failed or its effect was not seen.
if grep -q '"ok": false' "$work/results" 2>/dev/null; then exit 1; fi
