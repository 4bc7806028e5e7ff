#!/usr/bin/env bash
# A local Kubernetes control plane with outrigger installed, on loopback, without nodes:
#   scripts/k8s-dev.sh up     etcd, kube-apiserver and kube-controller-manager with generated
#                             certificates, deploy/install.yaml applied, `outrigger injector`
#                             running as a local process behind the webhook (a url to
#                             127.0.0.1); prints `export KUBECONFIG=...`
#   scripts/k8s-dev.sh down   stops everything `up` started
#   scripts/k8s-dev.sh env    prints the export line again
# Pods are created (Deployments make them, the injector adds the sidecar) but stay Pending:
# no kubelet runs them. State lives in $K8S_DEV_DIR (default .tools/k8s-dev); several
# control planes can run at once with different directories (every port is picked free).
# The binaries come from scripts/k8s-deps.sh; the outrigger binary from $OUTRIGGER_BIN, else
# it is built with cargo.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="${K8S_DEV_DIR:-$root/.tools/k8s-dev}"
bin="$root/.tools/bin"
cmd="${1:-}"

log() { echo "k8s-dev: $*" >&2; }

stop_all() {
  [[ -f "$dir/pids" ]] || return 0
  # Newest first: the injector and controller manager before the API server, etcd last.
  tac "$dir/pids" | while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name ($pid)"
    fi
  done
  rm -f "$dir/pids"
}

case "$cmd" in
  down)
    stop_all
    exit 0
    ;;
  env)
    echo "export KUBECONFIG=$dir/admin.kubeconfig"
    exit 0
    ;;
  up) ;;
  *)
    echo "usage: $0 up|down|env" >&2
    exit 2
    ;;
esac

if [[ -f "$dir/pids" ]]; then
  log "already up in $dir (run '$0 down' first)"
  echo "export KUBECONFIG=$dir/admin.kubeconfig"
  exit 0
fi
"$root/scripts/k8s-deps.sh" >&2
started=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - started) / 1000000)); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }
mkdir -p "$dir"
rm -rf "$dir/etcd" "$dir"/*.log
: >"$dir/pids"
trap 'log "failed; logs in $dir"; stop_all' ERR

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts "$@" in the background, logging to $dir/$name.log, and records its pid.
spawn() {
  local name=$1
  shift
  "$@" >"$dir/$name.log" 2>&1 &
  echo "$! $name" >>"$dir/pids"
}

# Waits until "$@" succeeds (up to $timeout seconds); fails with the log of $name.
wait_for() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    local pid
    pid=$(awk -v n="$name" '$2 == n {print $1}' "$dir/pids" | tail -1)
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited:"; tail -30 "$dir/$name.log" >&2; return 1
    fi
    if (($(date +%s) > deadline)); then
      log "$name not ready after ${timeout}s:"; tail -30 "$dir/$name.log" >&2; return 1
    fi
    sleep 0.2
  done
}

# --- certificates -----------------------------------------------------------------------
pki="$dir/pki"
if [[ ! -f "$pki/ca.crt" ]]; then
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=outrigger-dev-ca" 2>/dev/null
    sign() { # name subject [san]; always X.509 v3 (rustls refuses v1 certificates)
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [[ -n "${3:-}" ]] && echo "subjectAltName=$3"
      } >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
        -days 3650 -extfile "$1.ext" 2>/dev/null
    }
    sign apiserver "/CN=kube-apiserver" \
      "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sign admin "/O=system:masters/CN=outrigger-dev-admin"
    # With its own credentials for every controller: the simplest grant is system:masters.
    sign controller-manager "/O=system:masters/CN=system:kube-controller-manager"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
fi

kubeconfig() { # file user cert key
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$3.crt
    client-key: $pki/$3.key
contexts:
- name: dev
  context: {cluster: dev, user: $2, namespace: default}
current-context: dev
EOF
}

# --- etcd -------------------------------------------------------------------------------
for attempt in 1 2 3; do
  etcd_port=$(free_port)
  peer_port=$(free_port)
  spawn etcd "$bin/etcd" --name dev --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "dev=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  if wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"; then break; fi
  ((attempt < 3)) || exit 1
  sed -i '$d' "$dir/pids"
  rm -rf "$dir/etcd"
done

# --- kube-apiserver ---------------------------------------------------------------------
for attempt in 1 2 3; do
  api_port=$(free_port)
  spawn kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --authorization-mode RBAC \
    --allow-privileged=true --profiling=false --v=1
  kubeconfig "$dir/admin.kubeconfig" admin admin
  if wait_for kube-apiserver 120 "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz; then break; fi
  ((attempt < 3)) || exit 1
  sed -i '$d' "$dir/pids"
done
export KUBECONFIG="$dir/admin.kubeconfig"
k() { "$bin/kubectl" "$@"; }
log "API server ready on 127.0.0.1:$api_port after $(elapsed)"

# --- kube-controller-manager (Deployments → ReplicaSets → Pods; service accounts, tokens) ---
kubeconfig "$dir/controller-manager.kubeconfig" controller-manager controller-manager
spawn kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=false --controllers '*' --v=1

# --- outrigger: install manifest, then the injector as a local process -------------------
k apply -f "$root/deploy/install.yaml" >&2
wait_for kube-apiserver 60 k wait --for condition=established --timeout=5s crd/components.dapr.io
outrigger="${OUTRIGGER_BIN:-}"
if [[ -z "$outrigger" ]]; then
  target="${CARGO_TARGET_DIR:-$root/target}"
  (cd "$root" && cargo build --bin outrigger >&2)
  outrigger="$target/debug/outrigger"
fi
# The webhook must name the port before the injector starts: a port picked free may be
# taken meanwhile, so a start whose injector exits is tried again on a new port.
for attempt in 1 2 3; do
  webhook_port=$(free_port)
  # The manifest's webhook points at the in-cluster Service; here the injector is a local process.
  k patch mutatingwebhookconfiguration outrigger-sidecar-injector --type json -p \
    "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig\",\"value\":{\"url\":\"https://127.0.0.1:$webhook_port/mutate\"}}]" >&2
  spawn injector "$outrigger" injector --listen-address 127.0.0.1 --port "$webhook_port" \
    --tls-san 127.0.0.1 --webhook-config outrigger-sidecar-injector \
    --sidecar-image "${OUTRIGGER_IMAGE:-outrigger:latest}" --kubeconfig "$dir/admin.kubeconfig" \
    --ca-out-file "$dir/injector-ca.crt"
  if wait_for injector 60 grep -q "injector listening" "$dir/injector.log"; then break; fi
  ((attempt < 3)) || exit 1
  sed -i '$d' "$dir/pids"
done

# Ready when the API server really injects: a server-side dry run of an annotated pod.
probe_pod() {
  k create --dry-run=server -o jsonpath='{.spec.initContainers[0].name}' -f - <<'EOF' | grep -qx daprd
apiVersion: v1
kind: Pod
metadata:
  name: outrigger-dev-probe
  namespace: default
  annotations: {dapr.io/enabled: "true", dapr.io/app-id: probe}
spec:
  containers: [{name: app, image: probe}]
EOF
}
# The ServiceAccount admission needs the `default` service account, which the controller
# manager creates.
wait_for kube-controller-manager 60 k get serviceaccount default -n default
wait_for injector 60 probe_pod
trap - ERR
log "up in $(elapsed) (state and logs in $dir)"
echo "export KUBECONFIG=$dir/admin.kubeconfig"
