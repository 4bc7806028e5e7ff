#!/usr/bin/env bash
# Builds the Kubernetes control plane the k8s tests and scripts/k8s-dev.sh use:
# kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes) and etcd, from the
# Go module proxy, with the wrapper module in scripts/k8s/. Cached outside the repo under
# ${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}/k8s-<version>/ and linked into .tools/bin/.
# A second run with the cache present only relinks (a few milliseconds).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/scripts/k8s"
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "$mod/go.mod")
cache="${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}/k8s-${version#v}"
[[ -n "$version" ]] || { echo "k8s-deps: no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 1; }
bins=(kube-apiserver kube-controller-manager kubectl etcd)

have_all() {
  for b in "${bins[@]}"; do [[ -x "$cache/bin/$b" ]] || return 1; done
}

if ! have_all; then
  command -v go >/dev/null || { echo "k8s-deps: go is required" >&2; exit 1; }
  mkdir -p "$cache/bin"
  minor=${version#v1.}; minor=${minor%%.*}
  # The version the binaries report (kubectl version, /version); the API server's own
  # compatibility version comes from the source, not from these.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  start=$(date +%s)
  cd "$mod"
  export GOTOOLCHAIN=local CGO_ENABLED=0
  for b in kube-apiserver kube-controller-manager kubectl; do
    [[ -x "$cache/bin/$b" ]] && continue
    echo "k8s-deps: building $b $version (takes long on a small machine)"
    go build -trimpath -ldflags "$ldflags" -o "$cache/bin/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$cache/bin/$b.tmp" "$cache/bin/$b"
  done
  if [[ ! -x "$cache/bin/etcd" ]]; then
    echo "k8s-deps: building etcd"
    go build -trimpath -ldflags "-s -w" -o "$cache/bin/etcd.tmp" ./etcd
    mv "$cache/bin/etcd.tmp" "$cache/bin/etcd"
  fi
  echo "k8s-deps: built in $(( $(date +%s) - start ))s into $cache/bin"
fi

mkdir -p "$root/.tools/bin"
for b in "${bins[@]}"; do ln -sfn "$cache/bin/$b" "$root/.tools/bin/$b"; done
echo "k8s-deps: $version ready in .tools/bin (${bins[*]})"
