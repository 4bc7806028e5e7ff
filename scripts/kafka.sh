#!/usr/bin/env bash
# A real Apache Kafka broker (single-node KRaft, broker and controller in one JVM)
# on 127.0.0.1 for development, tests and benchmarks, with every listener the
# Kafka binding's auth modes need. Needs Java 17+, Maven, openssl.
#
#   scripts/kafka.sh install                 broker jars into the cache (once per version)
#   scripts/kafka.sh prepare [--dir DIR]     TLS material, config, formatted log dir; no start
#   scripts/kafka.sh start   [--dir DIR]     prepare, start in the background, wait until it answers
#   scripts/kafka.sh run     [--dir DIR]     prepare, write broker.env, then exec the broker in
#                                            the foreground (same pid: the caller owns it, may
#                                            SIGKILL it and run again on the same data and ports)
#   scripts/kafka.sh stop    [--dir DIR]     SIGTERM, SIGKILL after KAFKA_STOP_TIMEOUT
#   scripts/kafka.sh status  [--dir DIR]     exit 0 if it runs and answers, 3 if not
#
# DIR defaults to .tools/kafka-dev. DIR/broker.env (KEY=VALUE, sourceable) names the
# addresses, TLS files, credentials, pid and log; ports are chosen free on first
# prepare and kept across restarts while they stay free (a busy one is replaced,
# and a broker that loses a bind race is started again on new ports).
# Listeners: KAFKA_PLAINTEXT; KAFKA_SASL_PLAINTEXT and KAFKA_SASL_SSL (PLAIN,
# SCRAM-SHA-256, SCRAM-SHA-512); KAFKA_SSL (client certificate requested, not
# required); KAFKA_MTLS (client certificate required).
# Test credentials: PLAIN plainuser/plain-secret; SCRAM (both) scramuser/scram-secret.
# Env: OUTRIGGER_CACHE (default ~/.cache/outrigger), JAVA (default java),
# KAFKA_HEAP (default 512m), KAFKA_JVM_OPTS (replaces the default JVM flags),
# KAFKA_CDS (1: class-data archive, see cds_opts; 0: none),
# KAFKA_START_TIMEOUT (s, default 120), KAFKA_STOP_TIMEOUT (s, default 30).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pom="$root/scripts/kafka/pom.xml"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache=${OUTRIGGER_CACHE:-$HOME/.cache/outrigger}
home="$cache/kafka-$version"
java=${JAVA:-java}
heap=${KAFKA_HEAP:-512m}
start_timeout=${KAFKA_START_TIMEOUT:-120}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}

plain_user=plainuser
plain_password=plain-secret
scram_user=scramuser
scram_password=scram-secret
# Protects the broker's own private key inside DIR; Kafka needs a password for a
# PEM key store file.
key_password=broker-key-secret
port_names="PLAINTEXT SASL_PLAINTEXT SSL SASL_SSL MTLS CONTROLLER"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- install ---------------------------------------------------------------

install() {
  command -v mvn >/dev/null || die "mvn (Maven) is needed to install Kafka"
  local stamp
  stamp=$(sha256sum "$pom" | cut -c1-16)
  if [ "$(cat "$home/.installed" 2>/dev/null)" != "$stamp" ]; then
    mkdir -p "$home"
    (
      flock 8
      if [ "$(cat "$home/.installed" 2>/dev/null)" != "$stamp" ]; then
        echo "installing Apache Kafka $version into $home/libs" >&2
        rm -rf "$home/libs.new"
        if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
          -DincludeScope=runtime -DoutputDirectory="$home/libs.new" >"$home/install.log" 2>&1; then
          cat "$home/install.log" >&2
          die "Maven could not fetch Kafka $version"
        fi
        [ -f "$home/libs.new/kafka_2.13-$version.jar" ] || die "kafka_2.13-$version.jar missing after install"
        rm -rf "$home/libs" "$home/cds"
        mv "$home/libs.new" "$home/libs"
        echo "$version" >"$home/VERSION"
        echo "$stamp" >"$home/.installed"
      fi
    ) 8>"$cache/kafka-$version.lock"
  fi
  mkdir -p "$root/.tools"
  # Several starts may link at once: a lost race leaves the same link.
  [ "$(readlink "$root/.tools/kafka")" = "$home" ] || ln -sfn "$home" "$root/.tools/kafka" 2>/dev/null || true
}

check_java() {
  command -v "$java" >/dev/null || die "Java 17+ is needed ($java not found; set JAVA)"
  local props v
  props=$("$java" -XshowSettings:properties -version 2>&1)
  v=$(sed -n 's/^ *java.specification.version = //p' <<<"$props")
  [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Kafka $version needs Java 17+, $java is ${v:-unknown}"
  java_vm=$(sed -n 's/^ *java.vm.version = //p' <<<"$props" | tr -c 'A-Za-z0-9.\n-' _)
}

# A class-data archive of the broker's classes (Java's AppCDS), written when a
# broker that `start` launched without one is stopped by `stop` (the JVM writes
# it on the way out, 10-20 s once), and used by every later start or run: it
# cuts the broker's CPU to ready from ~4.4 s to ~3.0 s (wall 11.6 s to 8.8 s on
# 2 cores shared with other builds).
cds_archive() {
  echo "$home/cds/broker-$java_vm.jsa"
}

cds_opts() { # record: write the archive at exit if there is none yet
  [ "${KAFKA_CDS:-1}" = 1 ] || return 0
  local a
  a=$(cds_archive)
  rm -f "$dir/cds-pending"
  if [ -f "$a" ]; then
    echo "-XX:SharedArchiveFile=$a -Xlog:cds=off -Xlog:cds+dynamic=off"
  elif [ "${1:-}" = record ]; then
    mkdir -p "$home/cds"
    # One per broker directory; `stop` publishes it once the JVM has exited
    # after SIGTERM (a JVM killed with SIGKILL writes none).
    local tmp
    tmp="$a.$(echo "$dir" | sha256sum | cut -c1-12).tmp"
    rm -f "$tmp"
    echo "$tmp" >"$dir/cds-pending"
    echo "-XX:ArchiveClassesAtExit=$tmp -Xlog:cds=off -Xlog:cds+dynamic=off"
  fi
}

cds_publish() {
  local tmp
  tmp=$(cat "$dir/cds-pending" 2>/dev/null) || return 0
  rm -f "$dir/cds-pending"
  [ -s "$tmp" ] && mv -f "$tmp" "${tmp%.*.tmp}"
  rm -f "$tmp"
}

jvm_opts() { # heap
  # Measured on 2 cores: the serial collector and the C1 compiler alone start the
  # broker faster and lighter than the defaults (G1, tiered C2).
  local defaults="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -XX:+ExitOnOutOfMemoryError"
  # Without its own shutdown hook log4j keeps writing the broker's shutdown to the log.
  echo "-Xmx$1 ${KAFKA_JVM_OPTS:-$defaults} -Djava.awt.headless=true -Dlog4j2.shutdownHookEnabled=false"
}

# --- ports -----------------------------------------------------------------

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
  # A port bound but not (yet) listening refuses connections; binding it is the
  # real test, with SO_REUSEADDR as the JVM's server sockets have it, so closed
  # connections of a broker that just stopped do not count.
  command -v python3 >/dev/null || return 1
  ! python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

pick_port() { # ports already taken by this broker...
  local p _
  for _ in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768+), so no outgoing connection
    # holds it; random, so brokers prepared at the same moment rarely collide
    # (and a lost bind race is retried with new ports).
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    case " $* " in *" $p "*) continue ;; esac
    if ! port_busy "$p"; then
      echo "$p"
      return
    fi
  done
  die "no free port found on 127.0.0.1"
}

# Sets port_<NAME> for every listener: the ones in broker.env while free, new
# ones otherwise (all new when $1 = new).
choose_ports() {
  local mode=${1:-free} name var p taken=""
  for name in $port_names; do
    var="port_$name"
    p=""
    if [ "$mode" != new ] && [ -f "$env_file" ]; then
      if [ "$name" = CONTROLLER ]; then
        p=$(env_get KAFKA_CONTROLLER)
      else
        p=$(env_get "KAFKA_$name")
      fi
      p=${p##*:}
      if [ -n "$p" ] && [ "$mode" = free ] && port_busy "$p"; then
        echo "port $p ($name) is busy; choosing another" >&2
        p=""
      fi
    fi
    # shellcheck disable=SC2086 # one argument per port
    [ -n "$p" ] || p=$(pick_port $taken)
    taken="$taken $p"
    printf -v "$var" %s "$p"
  done
}

env_get() { # KEY -> value from broker.env
  sed -n "s/^$1=//p" "$env_file" 2>/dev/null | tail -n 1
}

# --- TLS -------------------------------------------------------------------

make_tls() {
  local t="$dir/tls"
  [ -f "$t/.done" ] && return
  command -v openssl >/dev/null || die "openssl is needed for the TLS material"
  rm -rf "$t"
  mkdir -p "$t"
  (
    cd "$t"
    umask 077
    ca() { # name subject
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" -days 3650 \
        -subj "$2" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    }
    leaf() { # name ca subject extensions
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$3" 2>/dev/null
      printf '%s\n' "$4" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    ca ca "/CN=outrigger test CA"
    leaf broker ca "/CN=localhost" "$(printf '%s\n' \
      basicConstraints=CA:FALSE keyUsage=digitalSignature \
      extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1,DNS:localhost)"
    leaf client ca "/CN=outrigger-client" "$(printf '%s\n' \
      basicConstraints=CA:FALSE keyUsage=digitalSignature extendedKeyUsage=clientAuth)"
    ca untrusted-ca "/CN=outrigger untrusted CA"
    leaf untrusted-client untrusted-ca "/CN=outrigger-untrusted-client" "$(printf '%s\n' \
      basicConstraints=CA:FALSE keyUsage=digitalSignature extendedKeyUsage=clientAuth)"
    # The broker's PEM key store: encrypted PKCS#8 key, then its chain. Java 17
    # cannot decrypt PBES2 (OpenSSL's default), so the older PKCS#12 scheme.
    openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in broker.key -passout "pass:$key_password" -out broker-keystore.pem
    cat broker.pem ca.pem >>broker-keystore.pem
    rm -f broker.key ./*.srl
    chmod 644 ./*.pem
    touch .done
  )
}

# --- config ----------------------------------------------------------------

# shellcheck disable=SC2154 # port_* are set by choose_ports (printf -v)
write_config() {
  local t="$dir/tls" tmp="$dir/server.properties.tmp"
  local jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$plain_user=\"$plain_password\";"
  local jaas_scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
  cat >"$tmp" <<EOF
# Written by scripts/kafka.sh; rewritten on every start (ports may change).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$port_CONTROLLER
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port_PLAINTEXT,SASL_PLAINTEXT://127.0.0.1:$port_SASL_PLAINTEXT,SSL://127.0.0.1:$port_SSL,SASL_SSL://127.0.0.1:$port_SASL_SSL,MTLS://127.0.0.1:$port_MTLS,CONTROLLER://127.0.0.1:$port_CONTROLLER
advertised.listeners=PLAINTEXT://127.0.0.1:$port_PLAINTEXT,SASL_PLAINTEXT://127.0.0.1:$port_SASL_PLAINTEXT,SSL://127.0.0.1:$port_SSL,SASL_SSL://127.0.0.1:$port_SASL_SSL,MTLS://127.0.0.1:$port_MTLS
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# After a SIGKILL the restarted controller refuses the broker's new registration
# until the old one's session expires (9 s by default).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$jaas_scram
listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas_scram

ssl.keystore.type=PEM
ssl.keystore.location=$t/broker-keystore.pem
ssl.key.password=$key_password
ssl.truststore.type=PEM
ssl.truststore.location=$t/ca.pem
listener.name.ssl.ssl.client.auth=requested
listener.name.mtls.ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
EOF
  mv "$tmp" "$dir/server.properties"
  cat >"$dir/log4j2.properties" <<'EOF'
# Written by scripts/kafka.sh: the broker's log, appended across restarts.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.log.file}
appender.file.filePattern = ${sys:kafka.log.file}.%i
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
EOF
}

write_env() { # pid
  local t="$dir/tls" tmp="$env_file.tmp"
  cat >"$tmp" <<EOF
KAFKA_VERSION=$version
KAFKA_PLAINTEXT=127.0.0.1:$port_PLAINTEXT
KAFKA_SASL_PLAINTEXT=127.0.0.1:$port_SASL_PLAINTEXT
KAFKA_SSL=127.0.0.1:$port_SSL
KAFKA_SASL_SSL=127.0.0.1:$port_SASL_SSL
KAFKA_MTLS=127.0.0.1:$port_MTLS
KAFKA_CONTROLLER=127.0.0.1:$port_CONTROLLER
KAFKA_CA_CERT=$t/ca.pem
KAFKA_CLIENT_CERT=$t/client.pem
KAFKA_CLIENT_KEY=$t/client.key
KAFKA_UNTRUSTED_CA_CERT=$t/untrusted-ca.pem
KAFKA_UNTRUSTED_CLIENT_CERT=$t/untrusted-client.pem
KAFKA_UNTRUSTED_CLIENT_KEY=$t/untrusted-client.key
KAFKA_PLAIN_USER=$plain_user
KAFKA_PLAIN_PASSWORD=$plain_password
KAFKA_SCRAM_USER=$scram_user
KAFKA_SCRAM_PASSWORD=$scram_password
KAFKA_PID=$1
KAFKA_LOG=$dir/broker.log
KAFKA_LOG_DIR=$dir/data
KAFKA_DIR=$dir
EOF
  mv "$tmp" "$env_file"
}

format() {
  [ -f "$dir/data/meta.properties" ] && return
  rm -rf "$dir/data"
  local id
  # A cluster id is 16 random bytes in URL-safe base64 without padding; one
  # that starts with "-" (1 in 64) would be read as an option by the tool.
  id=-
  while [[ $id == -* ]]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  local opts
  read -r -a opts <<<"$(jvm_opts 256m)"
  [ "${KAFKA_CDS:-1}" = 1 ] && [ -f "$(cds_archive)" ] && opts+=("-XX:SharedArchiveFile=$(cds_archive)" -Xlog:cds=off)
  if ! "$java" "${opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -Dkafka.log.file="$dir/broker.log" -cp "$home/libs/*" kafka.tools.StorageTool format \
    -t "$id" -c "$dir/server.properties" \
    --add-scram "SCRAM-SHA-256=[name=$scram_user,password=$scram_password]" \
    --add-scram "SCRAM-SHA-512=[name=$scram_user,password=$scram_password]" \
    >"$dir/format.out" 2>&1; then
    cat "$dir/format.out" >&2
    rm -rf "$dir/data"
    die "formatting $dir/data failed"
  fi
}

# Everything but the broker process; holds the caller's lock.
prepare() { # port mode
  install
  check_java
  mkdir -p "$dir"
  make_tls
  choose_ports "${1:-free}"
  write_config
  format
}

# --- process ---------------------------------------------------------------

broker_cmd() { # record (start) or not (run: writing the archive would slow the caller's stop)
  local opts
  read -r -a opts <<<"$(jvm_opts "$heap") $(cds_opts "${1:-}")"
  cmd=("$java" "${opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties"
    -Dkafka.log.file="$dir/broker.log" -cp "$home/libs/*" kafka.Kafka "$dir/server.properties")
}

# The pid in DIR/broker.pid, if that process is this DIR's broker.
running_pid() {
  local pid
  pid=$(cat "$dir/broker.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$dir/server.properties" &&
    echo "$pid"
}

# Answers whether the broker serves a real request: a Metadata (v4) request on
# the PLAINTEXT listener must come back with our correlation id and node 1 among
# the brokers.
probe() { # port
  local fd out b
  exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
  # size 20 | api_key 3 | version 4 | correlation id "ORGR" | client id "probe" | all topics | no auto-create
  printf '\x00\x00\x00\x14\x00\x03\x00\x04ORGR\x00\x05probe\xff\xff\xff\xff\x00' 1>&"$fd" 2>/dev/null || {
    exec {fd}>&-
    return 1
  }
  out=$(timeout 2 head -c 20 <&"$fd" | od -An -v -tu1 | tr -s ' \n' ' ')
  exec {fd}>&-
  # size(4) correlation(4) throttle(4) broker count(4) first node id(4)
  read -r -a b <<<"$out"
  [ "${#b[@]}" -eq 20 ] && [ "${b[4]} ${b[5]} ${b[6]} ${b[7]}" = "79 82 71 82" ] &&
    [ $((b[12] + b[13] + b[14] + b[15])) -gt 0 ] && [ "${b[16]} ${b[17]} ${b[18]} ${b[19]}" = "0 0 0 1" ]
}

bind_failed() {
  tail -n 200 "$dir/broker.log" "$dir/broker.out" 2>/dev/null | grep -qiE 'address already in use|failed to bind'
}

show() {
  echo "Kafka $version broker (pid ${1:-none}), $dir/broker.env:"
  echo "  PLAINTEXT      $(env_get KAFKA_PLAINTEXT)"
  echo "  SASL_PLAINTEXT $(env_get KAFKA_SASL_PLAINTEXT)  (PLAIN $plain_user/$plain_password, SCRAM-SHA-256/512 $scram_user/$scram_password)"
  echo "  SSL            $(env_get KAFKA_SSL)  (CA $(env_get KAFKA_CA_CERT); client certificate optional)"
  echo "  SASL_SSL       $(env_get KAFKA_SASL_SSL)"
  echo "  MTLS           $(env_get KAFKA_MTLS)  (client certificate required: $(env_get KAFKA_CLIENT_CERT))"
  echo "  log            $(env_get KAFKA_LOG)"
}

start() {
  exec 9>"$dir/.lock"
  flock 9
  local pid attempt mode=free
  if pid=$(running_pid); then
    wait_ready "$pid" || die "broker pid $pid in $dir does not answer"
    show "$pid"
    return
  fi
  local t0=$SECONDS
  for attempt in 1 2 3 4 5; do
    prepare "$mode"
    broker_cmd record
    : >"$dir/broker.out"
    # A session of its own: a terminal's Ctrl-C or a test runner's process group
    # kill does not reach it; the lock's descriptor stays with this script.
    setsid "${cmd[@]}" </dev/null >>"$dir/broker.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$dir/broker.pid"
    write_env "$pid"
    if wait_ready "$pid"; then
      echo "ready in $((SECONDS - t0)) s"
      show "$pid"
      return
    fi
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      tail -n 40 "$dir/broker.log" >&2 || true
      die "broker did not answer within ${start_timeout} s; killed it; log: $dir/broker.log"
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$dir/broker.pid"
    if bind_failed && [ "$attempt" -lt 5 ]; then
      echo "a port was taken meanwhile; trying again on new ports" >&2
      mode=new
      continue
    fi
    echo "--- $dir/broker.out" >&2
    tail -n 20 "$dir/broker.out" >&2 || true
    echo "--- $dir/broker.log" >&2
    tail -n 40 "$dir/broker.log" >&2 || true
    die "broker exited before it was ready"
  done
}

# A broker this shell started stays a zombie after death until it is reaped.
alive() { # pid
  kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}

wait_ready() { # pid
  local port deadline=$((SECONDS + start_timeout))
  port=$(env_get KAFKA_PLAINTEXT)
  port=${port##*:}
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive "$1" || return 1
    probe "$port" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

run() {
  exec 9>"$dir/.lock"
  flock 9
  local pid
  if pid=$(running_pid); then
    die "a broker already runs in $dir (pid $pid)"
  fi
  prepare free
  broker_cmd
  echo $$ >"$dir/broker.pid"
  write_env $$
  echo "exec Kafka $version in the foreground; addresses in $env_file" >&2
  exec 9>&-
  exec "${cmd[@]}"
}

stop() {
  local pid deadline
  # Waits for a start in progress, which would otherwise report the stop as a crash.
  exec 9>"$dir/.lock"
  flock 9
  if ! pid=$(running_pid); then
    echo "no broker running in $dir"
    rm -f "$dir/broker.pid"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  # A broker run in the foreground by a harness stays a zombie until the harness
  # reaps it: gone is enough.
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
  done
  if alive "$pid"; then
    echo "broker pid $pid did not stop within ${stop_timeout} s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.1; done
    rm -f "$dir/cds-pending"
  fi
  cds_publish
  rm -f "$dir/broker.pid"
  if [ -f "$env_file" ]; then
    sed 's/^KAFKA_PID=.*/KAFKA_PID=/' "$env_file" >"$env_file.tmp" && mv "$env_file.tmp" "$env_file"
  fi
  echo "stopped broker pid $pid in $dir"
}

status() {
  local pid port
  [ -f "$env_file" ] || {
    echo "no broker prepared in $dir"
    exit 3
  }
  port=$(env_get KAFKA_PLAINTEXT)
  if pid=$(running_pid) && probe "${port##*:}" 2>/dev/null; then
    echo "running"
    show "$pid"
  elif [ -n "${pid:-}" ]; then
    echo "started but not answering (pid $pid)"
    show "$pid"
    exit 3
  else
    echo "not running"
    show
    exit 3
  fi
}

# --- main ------------------------------------------------------------------

[ $# -ge 1 ] || usage
action=$1
shift
dir="$root/.tools/kafka-dev"
while [ $# -gt 0 ]; do
  case $1 in
  --dir)
    [ $# -ge 2 ] || usage
    dir=$2
    shift 2
    ;;
  --dir=*)
    dir=${1#--dir=}
    shift
    ;;
  *) usage ;;
  esac
done
[ "$action" = install ] || {
  [[ "$dir" =~ ^[-A-Za-z0-9._/+@:,]+$ ]] || die "DIR must be a plain path (letters, digits, . _ / + @ : , -): $dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # broker.env is read by shells and by simple KEY=VALUE parsers: no quoting.
  [[ "$dir" =~ ^[-A-Za-z0-9._/+@:,]+$ ]] || die "DIR must be a plain path (letters, digits, . _ / + @ : , -): $dir"
}
env_file="$dir/broker.env"

case $action in
install) install && echo "Kafka $version in $home/libs (linked from .tools/kafka)" ;;
prepare)
  exec 9>"$dir/.lock"
  flock 9
  if pid=$(running_pid); then
    echo "a broker already runs in $dir; left as it is" >&2
    show "$pid"
  else
    prepare free
    write_env ""
    show
  fi
  ;;
start) start ;;
run | exec) run ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
