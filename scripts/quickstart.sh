#!/usr/bin/env bash
# The bindings quickstart in one command: builds outrigger, starts the dev broker
# (tansu on 127.0.0.1:9092, topic `sample`), installs the apps' dependencies and
# runs both apps, each beside its own sidecar, from examples/bindings/dapr.yaml
# (components from components/): the producer starts once the consumer's input
# binding is subscribed (`startAfter`), so the consumer sees every order.
# Ctrl-C stops the apps and the sidecars; the broker keeps running
# (scripts/dev-broker.sh stop stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
cd "$root"

cargo build --release
"$root/scripts/dev-broker.sh" start

# The consumer (node) needs express; the producer (python) needs requests.
if [ ! -d examples/bindings/nodeapp/node_modules ]; then
  (cd examples/bindings/nodeapp && npm install --no-audit --no-fund --loglevel=error)
fi
if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv"
fi
if ! "$tools/venv/bin/python" -c 'import requests' 2>/dev/null; then
  "$tools/venv/bin/pip" install --disable-pip-version-check -q -r examples/bindings/pythonapp/requirements.txt
fi
# The template runs `python3 app.py`: the venv's python3 comes first.
export PATH="$tools/venv/bin:$PATH"

exec "$root/target/release/outrigger" run -f examples/bindings/dapr.yaml
