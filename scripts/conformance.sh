#!/usr/bin/env bash
# Differential conformance suite (tests/conformance/): the same requests and
# events against the real daprd and against outrigger.
#
#   scripts/conformance.sh --record        run every case against daprd (built by
#                                          scripts/daprd.sh) and write
#                                          tests/conformance/golden.json
#   scripts/conformance.sh                 replay against outrigger (target/debug/outrigger,
#                                          built if missing) and print a per-case diff;
#                                          exit 1 when a case differs and COMPAT.md
#                                          does not list it as deliberate
#   scripts/conformance.sh --sidecar daprd replay against daprd (checks the suite is stable)
#
# Other options go to tests/conformance/run.py: --bin PATH, --only REGEX, --out FILE,
# --no-sdk (skip scripts/sdk-check.sh), --golden FILE.
# Kafka: KAFKA_BOOTSTRAP (host:port) if set; otherwise a broker of its own is started
# with scripts/kafka.sh in a temporary folder and stopped at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

record=0
sidecar=outrigger
bin=""
pass=()
while [ $# -gt 0 ]; do
  case $1 in
  --record) record=1; sidecar=daprd; shift ;;
  --sidecar) sidecar=$2; shift 2 ;;
  --sidecar=*) sidecar=${1#--sidecar=}; shift ;;
  --bin) bin=$2; shift 2 ;;
  --bin=*) bin=${1#--bin=}; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) pass+=("$1"); shift ;;
  esac
done

[ -x .tools/venv/bin/python ] || scripts/test-deps.sh >&2
if [ -z "$bin" ]; then
  if [ "$sidecar" = daprd ]; then
    bin=$(scripts/daprd.sh)
  else
    [ -x target/debug/outrigger ] || cargo build --bin outrigger >&2
    bin=$root/target/debug/outrigger
  fi
fi

broker_dir=""
cleanup() {
  if [ -n "$broker_dir" ]; then
    scripts/kafka.sh stop --dir "$broker_dir" >/dev/null 2>&1 || true
    rm -rf "$broker_dir"
  fi
}
trap cleanup EXIT
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  broker_dir=$(mktemp -d "${TMPDIR:-/tmp}/conformance-kafka.XXXXXX")
  scripts/kafka.sh start --dir "$broker_dir" >&2
  KAFKA_BOOTSTRAP=$(sed -n 's/^KAFKA_PLAINTEXT=//p' "$broker_dir/broker.env")
  export KAFKA_BOOTSTRAP
fi

args=(--sidecar "$sidecar" --bin "$bin")
[ "$record" = 1 ] && args+=(--record)
start=$SECONDS
set +e
.tools/venv/bin/python tests/conformance/run.py "${args[@]}" "${pass[@]}"
rc=$?
set -e
echo "conformance.sh: $sidecar run took $((SECONDS - start)) s (broker start excluded)" >&2
exit $rc
