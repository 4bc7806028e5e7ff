#!/usr/bin/env bash
# Builds the outrigger image without a daemon and without pulling a base image: buildah
# (Debian's package) assembles it from scratch with the binary, the shared libraries it links,
# CA certificates and a nonroot user, then runs it once (chroot isolation: podman's OCI
# runtime cannot set rlimits in this sandbox) and checks the public health port.
#   scripts/k8s-image.sh [TAG]      default TAG outrigger:latest; binary: $OUTRIGGER_BIN,
#                                   else `cargo build --release`.
# The Dockerfile remains the way to build it where a registry and a daemon are available.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag="${1:-outrigger:latest}"
command -v buildah >/dev/null || { echo "k8s-image: needs buildah (apt-get install buildah)" >&2; exit 1; }
b=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
bin="${OUTRIGGER_BIN:-}"
if [[ -z "$bin" ]]; then
  (cd "$root" && cargo build --release --locked --bin outrigger >&2)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/outrigger"
fi

ctr=$("${b[@]}" from scratch)
trap '"${b[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${b[@]}" mount "$ctr")
install -m 0755 "$bin" "$mnt/outrigger"
# The loader and every library the binary links (ldd), at the paths it looks them up.
for lib in $(ldd "$bin" | awk '$2 == "=>" {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'); do
  mkdir -p "$mnt$(dirname "$lib")"
  cp -L "$lib" "$mnt$lib"
done
mkdir -p "$mnt/etc/ssl/certs" "$mnt/tmp"
chmod 1777 "$mnt/tmp"
cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
echo 'nonroot:x:65532:65532:nonroot:/:/sbin/nologin' >"$mnt/etc/passwd"
echo 'nonroot:x:65532:' >"$mnt/etc/group"
"${b[@]}" config --entrypoint '["/outrigger", "sidecar"]' --cmd '--dapr-listen-addresses 0.0.0.0' \
  --user 65532:65532 --port 3500 --port 50001 --port 3501 "$ctr"

# Run it: the sidecar answers health on the public port, 404 elsewhere there.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api=$(free_port)
public=$(free_port)
log=$(mktemp)
"${b[@]}" run --isolation chroot "$ctr" -- /outrigger sidecar --app-id image-check \
  --dapr-http-port "$api" --dapr-grpc-port 0 --enable-metrics=false \
  --dapr-public-port "$public" --dapr-public-listen-addresses 127.0.0.1 >"$log" 2>&1 &
runner=$!
ok=""
for _ in $(seq 1 100); do
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$public/v1.0/healthz") == 204 ]]; then ok=1; break; fi
  sleep 0.1
done
other=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$public/v1.0/metadata" || true)
curl -s -X POST "http://127.0.0.1:$api/v1.0/shutdown" >/dev/null || true
wait "$runner" || true
if [[ -z "$ok" || "$other" != 404 ]]; then
  echo "k8s-image: the image did not serve health as expected (healthz ok=${ok:-no}, metadata on the public port $other):" >&2
  cat "$log" >&2
  exit 1
fi
"${b[@]}" unmount "$ctr" >/dev/null
"${b[@]}" commit --quiet "$ctr" "$tag" >/dev/null
echo "k8s-image: built $tag ($("${b[@]}" images --format '{{.Size}}' "$tag")); it ran and served /v1.0/healthz on the public port" >&2
