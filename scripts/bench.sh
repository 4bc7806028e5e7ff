#!/usr/bin/env bash
# Benchmarks outrigger (release build) side by side with daprd and a direct
# rdkafka client, on a real Apache Kafka broker that the run starts itself
# (scripts/kafka.sh). Builds what it needs: the release binaries, the broker
# jars, and daprd (scripts/daprd.sh, cached per version) unless --quick or
# --no-daprd. Every other argument goes to outrigger-bench (see --help).
#
# Usage: scripts/bench.sh [--chart] [--quick] [--json PATH] [--duration SECS] ...
#   --chart   also draw bench/side-by-side.svg from this run (scripts/bench-chart.py)
# Without --json the figures go to target/bench/bench-<UTC time>.json.
# Env: OUTRIGGER_BENCH_BIN: an outrigger-bench binary (with outrigger next to
# it) to run as is, without building.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
chart=0 quick=0 nodaprd=0 json=""
args=()
while (($#)); do
  case "$1" in
    --chart) chart=1 ;;
    --quick) quick=1; args+=("$1") ;;
    --no-daprd) nodaprd=1; args+=("$1") ;;
    --json) json="$2"; shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
"$root/scripts/kafka.sh" install >/dev/null
# h2load (nghttp2-client), the independent C load generator of the cross-check
# rows: on two shared cores the bench's own client takes CPU from the sidecar.
if ! command -v h2load >/dev/null && [[ " ${args[*]:-} " != *" --no-h2load "* ]] && ((!quick)); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nghttp2-client >/dev/null \
    || echo "bench: could not install nghttp2-client (h2load); the cross-check rows are skipped" >&2
fi
if ((!quick && !nodaprd)) && [ -z "${OUTRIGGER_DAPRD:-}" ]; then
  "$root/scripts/daprd.sh" >/dev/null
fi
bin=${OUTRIGGER_BENCH_BIN:-}
[ -n "$bin" ] || { cargo build --release --features bench --bins; bin=target/release/outrigger-bench; }
if [ -z "$json" ]; then
  mkdir -p target/bench
  json="target/bench/bench-$(date -u +%Y%m%dT%H%M%SZ).json"
fi
"$bin" "${args[@]}" --json "$json"
if ((chart)); then
  python3 "$root/scripts/bench-chart.py" "$json" "$root/bench/side-by-side.svg"
fi
