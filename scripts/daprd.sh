#!/usr/bin/env bash
# Builds the real Dapr sidecar, daprd, as the behaviour reference for outrigger:
# the version pinned in scripts/daprd/go.mod, from the Go module proxy, with the
# stable components only (they include bindings.kafka and bindings.cron), into
# ${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}/daprd-<version>/daprd (built once
# per version), linked as .tools/bin/daprd. Prints the binary's path.
#
# Why a wrapper module: `go install pkg@version` refuses a module whose go.mod
# has replace directives, and dapr's has; scripts/daprd/go.mod repeats them.
#
# Starting it for tests (self-hosted, loopback only, no placement or
# scheduler so it waits on neither, no mDNS: see scripts/daprd/config.yaml;
# ports are picked free by the caller; COMPONENTS holds a bindings.kafka
# component):
#
#   .tools/bin/daprd --mode standalone --app-id outrigger-ref \
#     --config scripts/daprd/config.yaml --resources-path "$COMPONENTS" \
#     --dapr-listen-addresses 127.0.0.1 \
#     --dapr-http-port "$HTTP" --dapr-grpc-port "$GRPC" \
#     --dapr-internal-grpc-port "$INTERNAL" --dapr-internal-grpc-listen-address 127.0.0.1 \
#     --metrics-port "$METRICS" --metrics-listen-address 127.0.0.1 \
#     --app-port "$APP" --app-protocol http \
#     --placement-host-address "" --scheduler-host-address "" \
#     --log-level info
#
# (`--app-port`/`--app-protocol` only when an app receives input bindings;
# `--app-protocol grpc` for an AppCallback app.) Ready when
# `GET http://127.0.0.1:$HTTP/v1.0/healthz` answers 204 (0.3 s here); with
# --app-port it answers 500 until the app's port accepts (`/v1.0/healthz/outbound`
# does not wait for the app). Checked: it then listens on those four loopback
# ports only, with no UDP socket. daprd refuses a bindings.kafka component
# without `authType` (write `authType: none`), and exits when one fails to init.
#
# Usage: scripts/daprd.sh            build if needed, link, print the path
#        scripts/daprd.sh --version  the pinned version (no build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/scripts/daprd"
version=$(awk '$1 == "github.com/dapr/dapr" { print $2; exit }' "$mod/go.mod")
[ -n "$version" ] || { echo "no github.com/dapr/dapr requirement in $mod/go.mod" >&2; exit 1; }
if [ "${1:-}" = "--version" ]; then echo "${version#v}"; exit 0; fi

cache="${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}"
out="$cache/daprd-${version#v}"
bin="$out/daprd"

if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "go is required to build daprd" >&2; exit 1; }
  mkdir -p "$out"
  cd "$mod"
  # Only the modules the stable build imports are fetched (not every
  # component's), so this is the download step alone.
  t0=$(date +%s)
  go list -mod=readonly -tags stablecomponents -deps github.com/dapr/dapr/cmd/daprd >/dev/null
  t1=$(date +%s)
  echo "daprd ${version}: modules downloaded in $((t1 - t0)) s" >&2
  # The ldflags dapr's Makefile sets, so `daprd --version` prints the release.
  info="$(go env GOMODCACHE)/cache/download/github.com/dapr/dapr/@v/${version}.info"
  commit=$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$info" 2>/dev/null || true)
  ld="-s -w"
  ld+=" -X github.com/dapr/dapr/pkg/buildinfo.gitcommit=${commit:-unknown}"
  ld+=" -X github.com/dapr/dapr/pkg/buildinfo.gitversion=${version}"
  ld+=" -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}"
  ld+=" -X github.com/dapr/kit/logger.DaprVersion=${version#v}"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -tags stablecomponents \
    -ldflags "$ld" -o "$bin.tmp.$$" github.com/dapr/dapr/cmd/daprd
  mv -f "$bin.tmp.$$" "$bin"
  t2=$(date +%s)
  echo "daprd ${version}: built in $((t2 - t1)) s" >&2
fi

mkdir -p "$root/.tools/bin"
ln -sfn "$bin" "$root/.tools/bin/daprd"
echo "$bin"
