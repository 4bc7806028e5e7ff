#!/usr/bin/env bash
# A Kafka-protocol broker whose data survives its restarts, for development and
# fault drills: tansu on 127.0.0.1:9092 storing topics, records and committed
# offsets in a bucket of a local S3-compatible server (moto, from the test venv)
# on 127.0.0.1:9000. Both run in the background (pid files and logs under
# .tools/). `restart-broker` kills tansu with SIGKILL and starts it again on the
# same storage; the S3 server keeps the data as long as it runs (in memory).
#   scripts/durable-broker.sh start|stop|status|restart-broker
# Env: BROKER_PORT (default 9092), S3_PORT (default 9000), BROKER_TOPICS (default "sample").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
port=${BROKER_PORT:-9092}
s3_port=${S3_PORT:-9000}
topics=${BROKER_TOPICS:-sample}
bucket=tansu
broker_pid="$tools/durable-broker-$port.pid"
broker_log="$tools/durable-broker-$port.log"
s3_pid="$tools/durable-s3-$s3_port.pid"
s3_log="$tools/durable-s3-$s3_port.log"

alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_listening() { # port pidfile log what
  for _ in $(seq 1 300); do
    if listening "$1"; then
      return 0
    fi
    if ! alive "$2"; then
      echo "$4 exited; see $3" >&2
      rm -f "$2"
      exit 1
    fi
    sleep 0.1
  done
  echo "$4 did not listen on 127.0.0.1:$1 within 30 s; see $3" >&2
  exit 1
}

need_tools() {
  if [ ! -x "$tools/bin/tansu" ] || [ ! -x "$tools/venv/bin/moto_server" ]; then
    "$root/scripts/test-deps.sh"
  fi
}

start_s3() {
  if alive "$s3_pid"; then
    return
  fi
  if listening "$s3_port"; then
    echo "something else already listens on 127.0.0.1:$s3_port; set S3_PORT" >&2
    exit 1
  fi
  nohup "$tools/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$s3_log" 2>&1 </dev/null &
  echo $! >"$s3_pid"
  wait_listening "$s3_port" "$s3_pid" "$s3_log" "the S3 server"
  # Creating a bucket that exists is fine (idempotent on moto).
  "$tools/venv/bin/python" - "$s3_port" "$bucket" <<'EOF'
import sys, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT"), timeout=30)
EOF
}

start_tansu() {
  if listening "$port"; then
    echo "something else already listens on 127.0.0.1:$port; set BROKER_PORT" >&2
    exit 1
  fi
  url="tcp://127.0.0.1:$port"
  AWS_ENDPOINT="http://127.0.0.1:$s3_port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_DEFAULT_REGION=us-east-1 AWS_ALLOW_HTTP=true \
    nohup "$tools/bin/tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine "s3://$bucket/" >>"$broker_log" 2>&1 </dev/null &
  echo $! >"$broker_pid"
  wait_listening "$port" "$broker_pid" "$broker_log" "the broker"
}

create_topics() {
  for topic in $topics; do
    # Creating a topic that exists fails; that is fine (idempotent).
    "$tools/bin/tansu" topic create "$topic" --broker "tcp://127.0.0.1:$port" --partitions 1 >/dev/null 2>&1 || true
  done
}

stop_pid() { # pidfile
  if alive "$1"; then
    pid=$(cat "$1")
    kill "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

start() {
  need_tools
  mkdir -p "$tools"
  start_s3
  if ! alive "$broker_pid"; then
    start_tansu
  fi
  create_topics
  echo "durable broker running (pid $(cat "$broker_pid")) on 127.0.0.1:$port, storage s3://$bucket/ on 127.0.0.1:$s3_port (pid $(cat "$s3_pid")); logs: $broker_log $s3_log"
}

restart_broker() {
  if ! alive "$s3_pid"; then
    echo "the S3 server is not running: use start" >&2
    exit 1
  fi
  if alive "$broker_pid"; then
    kill -9 "$(cat "$broker_pid")"
    while alive "$broker_pid"; do sleep 0.05; done
  fi
  rm -f "$broker_pid"
  start_tansu
  echo "broker restarted (pid $(cat "$broker_pid")) on 127.0.0.1:$port"
}

stop() {
  stop_pid "$broker_pid"
  stop_pid "$s3_pid"
  echo "durable broker stopped (its data was in the S3 server's memory: gone)"
}

status() {
  if alive "$broker_pid" && alive "$s3_pid"; then
    echo "durable broker running (pid $(cat "$broker_pid")) on 127.0.0.1:$port, S3 on 127.0.0.1:$s3_port"
  else
    echo "durable broker not running (broker: $(alive "$broker_pid" && echo up || echo down), S3: $(alive "$s3_pid" && echo up || echo down))"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart-broker) restart_broker ;;
  *) echo "usage: $0 start|stop|status|restart-broker" >&2; exit 2 ;;
esac
