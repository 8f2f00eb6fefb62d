#!/usr/bin/env bash
# Provisions and starts paysys's local infrastructure, idempotently, with all state
# under .run/: PostgreSQL, Redis, Kafka (KRaft), FerretDB (MongoDB wire protocol),
# Mailpit (an SMTP mail catcher), Prometheus and Alertmanager. A component whose URL is given in the
# environment (DATABASE_URL, REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, MONGODB_URL,
# SMTP_HOST) is an external server: nothing local is started for it.
#
#   infra/stack.sh install            install what is missing (packages, jars, binaries)
#   infra/stack.sh up [component...]  install, then start (already running: reused)
#   infra/stack.sh down [component...] stop what this script started
#   infra/stack.sh status             print which components run
#   infra/stack.sh env                print the environment the services should use
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${PAYSYS_RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN/logs"

# One up, down or install at a time per state folder: two at once (tests started beside
# `make chaos`, which stops and starts servers under them) both found a port closed and
# both started its server, the second rewriting the pid file, so `down` left the first
# running. flock keeps the lock in its own process (-o: the servers started do not
# inherit it); nested calls are already inside it.
case "${1:-up}" in
  up | down | install)
    if [ -z "${PAYSYS_STACK_LOCKED:-}" ]; then
      PAYSYS_STACK_LOCKED=1 exec flock -o "$RUN/stack.lock" bash "${BASH_SOURCE[0]}" "$@"
    fi
    ;;
esac

# Every port sits below the kernel's ephemeral range (32768-60999): a port inside it can
# be taken by some client's outgoing connection just as a server wants to bind it
# (Prometheus once failed to start on 59090 that way).
PG_PORT="${PAYSYS_PG_PORT:-15432}"
REDIS_PORT="${PAYSYS_REDIS_PORT:-16379}"
KAFKA_PORT="${PAYSYS_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${PAYSYS_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_SECURE_PORT="${PAYSYS_KAFKA_SECURE_PORT:-19095}"
# Local default, marked so: the local broker's TLS+SASL listener's only user.
KAFKA_SASL_USER=paysys
KAFKA_SASL_PASSWORD=local-dev-only-kafka-password
MONGO_PORT="${PAYSYS_MONGO_PORT:-17017}"
SMTP_PORT_LOCAL="${PAYSYS_SMTP_PORT:-11025}"
MAILPIT_PORT="${PAYSYS_MAILPIT_PORT:-18025}"
PROM_PORT="${PAYSYS_PROMETHEUS_PORT:-19090}"
AM_PORT="${PAYSYS_ALERTMANAGER_PORT:-19094}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
PY="$ROOT/.venv/bin/python"
ALL=(postgres redis kafka mongodb smtp prometheus alertmanager)

log() { printf '[infra] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # seconds name what command...: polls the command every 0.1 s until it succeeds
  local seconds=$1 name=$2 what=$3 i
  shift 3
  for ((i = 0; i < seconds * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  log "$name: $what, not within $seconds s; see $RUN/logs/$name.log"
  tail -n 30 "$RUN/logs/$name.log" >&2 || true
  return 1
}

wait_port() { wait_for "$2" "$3" "port $1 open" port_open "$1"; } # port seconds name

redis_pong() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

already_up() { # name port pidfile: true when the port answers; says so if it is not ours
  port_open "$2" || return 1
  pid_alive "$3" || log "$1: port $2 is served by a process this checkout did not start; reusing it"
  return 0
}

external() { # component -> 0 when an external server is configured for it
  case "$1" in
    postgres) [ -n "${DATABASE_URL:-}" ] ;;
    redis) [ -n "${REDIS_URL:-}" ] ;;
    kafka) [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] ;;
    mongodb) [ -n "${MONGODB_URL:-}" ] ;;
    smtp) [ -n "${SMTP_HOST:-}" ] ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------- install

apt_updated=0
apt_install() {
  local missing=()
  local p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$RUN/logs/apt.log" 2>&1
}

install_python() {
  if ! command -v uv >/dev/null 2>&1; then
    log "installing uv"
    python3 -m pip install -q uv >/dev/null 2>&1
  fi
  if [ ! -x "$PY" ] || [ "$ROOT/uv.lock" -nt "$ROOT/.venv/.synced" ]; then
    log "uv sync (locked dependencies)"
    (cd "$ROOT" && UV_PYTHON_DOWNLOADS=never uv sync --frozen -q --compile-bytecode)
    touch "$ROOT/.venv/.synced" "$ROOT/.venv/.compiled"
  fi
  # Every process starts from bytecode, written here once. Where PYTHONDONTWRITEBYTECODE
  # is set (as on the machines we test on), Python never writes it and compiles every
  # module again at each start: 6 s before a service could serve, 2.5 s from bytecode.
  if [ ! -f "$ROOT/.venv/.compiled" ]; then
    log "compiling the dependencies' bytecode"
    "$PY" -m compileall -q -j 0 "$ROOT/.venv/lib" >/dev/null 2>&1 || true
    touch "$ROOT/.venv/.compiled"
  fi
  "$PY" -m compileall -q -j 0 "$ROOT/src" "$ROOT/bench" "$ROOT/tests" >/dev/null 2>&1 || true
}

install_kafka() {
  local libs="$RUN/kafka/libs"
  if [ ! -f "$RUN/kafka/.resolved" ] || [ "$ROOT/infra/kafka/pom.xml" -nt "$RUN/kafka/.resolved" ]; then
    command -v mvn >/dev/null || apt_install maven
    log "resolving the Kafka broker jars from Maven Central"
    rm -rf "$libs"
    mvn -q -B -f "$ROOT/infra/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >"$RUN/logs/maven.log" 2>&1
    touch "$RUN/kafka/.resolved"
  fi
}

install_ferretdb() { go_build ferretdb ferretdb; } # first time: a few minutes

# Mailpit, the mail catcher developers know: SMTP in, a web inbox and an HTTP API out.
# Built from its Go module: the module holds the sources of its web UI but not the
# bundle, so the bundle is built with npm from those sources first (first time: about
# five minutes, most of it compiling its pure-Go SQLite).
MAILPIT_VERSION=v1.33.1
install_smtp() {
  local bin="$RUN/bin/mailpit" src="$RUN/src/mailpit-$MAILPIT_VERSION"
  [ -x "$bin" ] && [ "$(cat "$RUN/bin/.mailpit-version" 2>/dev/null)" = "$MAILPIT_VERSION" ] && return 0
  command -v npm >/dev/null || apt_install npm
  log "building Mailpit $MAILPIT_VERSION (first time: about five minutes)"
  mkdir -p "$RUN/bin" "$RUN/src"
  (
    set -e
    dir="$(cd "$ROOT/infra" && go mod download -json "github.com/axllent/mailpit@$MAILPIT_VERSION" |
      "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src" && cd "$src"
    # The registry here serves neither its locked sass-embedded 1.108.1 nor rapidoc 12
    # (which draws only its API docs page): resolved afresh, with the newest rapidoc 9.
    npm pkg set dependencies.rapidoc=^9.3.8
    npm install --ignore-scripts --no-package-lock --no-audit --no-fund --loglevel=error
    MINIFY=true node esbuild.config.mjs
    go build -trimpath -ldflags "-s -w -X github.com/axllent/mailpit/config.Version=$MAILPIT_VERSION" -o "$bin" .
  ) >"$RUN/logs/mailpit-build.log" 2>&1 || { log "Mailpit build failed; see $RUN/logs/mailpit-build.log"; return 1; }
  echo "$MAILPIT_VERSION" >"$RUN/bin/.mailpit-version"
}

go_build() { # <name> <folder under infra/>: builds $RUN/bin/<name> when missing or older than its source
  local bin="$RUN/bin/$1" src="$ROOT/infra/$2"
  if [ ! -x "$bin" ] || [ "$src/main.go" -nt "$bin" ] || [ "$src/go.sum" -nt "$bin" ]; then
    log "building $1"
    mkdir -p "$RUN/bin"
    (cd "$src" && go build -o "$bin" .) >"$RUN/logs/$1-build.log" 2>&1
  fi
}

install_web() { # the gateway's static assets (Swagger UI) and axe-core, from the lockfile
  local web="$ROOT/web"
  if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
    command -v npm >/dev/null || apt_install npm
    log "npm ci (web assets, locked)"
    # --ignore-scripts: no install hook runs (swagger-ui-dist pulls in a telemetry one)
    (cd "$web" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >"$RUN/logs/npm.log" 2>&1
  fi
}

cmd_install_browser() { # Debian's Chromium, for the console's browser tests
  mkdir -p "$RUN/logs"
  command -v chromium >/dev/null || apt_install chromium
}

cmd_install() {
  local pkgs=()
  [ -n "$PG_BIN" ] || pkgs+=(postgresql)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  command -v prometheus >/dev/null || pkgs+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || pkgs+=(prometheus-alertmanager)
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v haproxy >/dev/null || pkgs+=(haproxy)  # PAYSYS_INSTANCES=N
  command -v pdftotext >/dev/null || pkgs+=(poppler-utils)  # statements' PDF, in tests
  command -v pgbouncer >/dev/null || pkgs+=(pgbouncer)  # tests of the services behind it
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  install_python
  install_web
  external kafka || install_kafka
  external mongodb || install_ferretdb
  external smtp || install_smtp
}

# ---------------------------------------------------------------- components

start_postgres() {
  local data="$RUN/pg/data"
  if port_open "$PG_PORT"; then return 0; fi
  mkdir -p "$RUN/pg"
  chown postgres:postgres "$RUN/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initdb"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
      >"$RUN/logs/postgres-init.log" 2>&1
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN/pg'
max_connections = 300
shared_buffers = 256MB
fsync = on
log_min_messages = warning
EOF
  fi
  touch "$RUN/logs/postgres.log"
  chown postgres:postgres "$RUN/logs/postgres.log"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$RUN/logs/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null
  wait_port "$PG_PORT" 30 postgres
  local psql=("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
  local db
  for db in paysys ferretdb; do
    if [ "$("${psql[@]}" -d postgres -c "select 1 from pg_database where datname='$db'")" != 1 ]; then
      "${psql[@]}" -d postgres -c "create database $db"
    fi
  done
}

stop_postgres() {
  [ -f "$RUN/pg/data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$RUN/pg/data" -m fast -w stop >/dev/null 2>&1 || true
}

start_redis() {
  if already_up redis "$REDIS_PORT" "$RUN/redis/redis.pid"; then return 0; fi
  mkdir -p "$RUN/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" --daemonize yes \
    --pidfile "$RUN/redis/redis.pid" --logfile "$RUN/logs/redis.log" --save "" --appendonly yes --appendfsync everysec
  # Open is not ready: while it loads its append-only file Redis answers LOADING, and
  # the gateway (failing closed) would answer 503 to whoever comes first.
  wait_for 20 redis "PING answered PONG" redis_pong
}

stop_redis() { stop_pidfile "$RUN/redis/redis.pid"; }

start_kafka() {
  local dir="$RUN/kafka"
  if already_up kafka "$KAFKA_PORT" "$dir/kafka.pid"; then return 0; fi
  mkdir -p "$dir/data"
  # A second listener with TLS and SASL PLAIN, as a production cluster would have it:
  # the services use the plain one; tests of Kafka security use this one. Its
  # certificate comes from the local CA (.run/tls, as `make run TLS=1`'s), its one user
  # and password are local defaults (KAFKA_SASL_* in `infra/stack.sh env`).
  "$PY" -c 'import sys; from pathlib import Path; from paysys.kit.tls import local_tls
t = local_tls(Path(sys.argv[1])); sys.stdout.write(t.key_file.read_text() + t.cert_file.read_text())' \
    "$RUN/tls" >"$dir/keystore.pem"
  chmod 600 "$dir/keystore.pem"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/keystore.pem
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
  local java_cmd=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$ROOT/infra/kafka/log4j2.properties"
    "-Dkafka.logs.dir=$RUN/logs" -cp "$dir/libs/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "formatting Kafka storage (KRaft)"
    local cid
    cid="$("${java_cmd[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    "${java_cmd[@]}" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
      >"$RUN/logs/kafka-format.log" 2>&1
  fi
  nohup "${java_cmd[@]}" kafka.Kafka "$dir/server.properties" >"$RUN/logs/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  wait_port "$KAFKA_PORT" 90 kafka
}

stop_kafka() { stop_pidfile "$RUN/kafka/kafka.pid" 30; }

start_mongodb() {
  if already_up mongodb "$MONGO_PORT" "$RUN/ferretdb/ferretdb.pid"; then return 0; fi
  mkdir -p "$RUN/ferretdb"
  nohup "$RUN/bin/ferretdb" -listen-addr "127.0.0.1:$MONGO_PORT" \
    -postgresql-url "postgres://postgres@127.0.0.1:$PG_PORT/ferretdb" >"$RUN/logs/mongodb.log" 2>&1 &
  echo $! >"$RUN/ferretdb/ferretdb.pid"
  wait_port "$MONGO_PORT" 30 mongodb
}

stop_mongodb() { stop_pidfile "$RUN/ferretdb/ferretdb.pid"; }

start_smtp() { # Mailpit: SMTP on $SMTP_PORT_LOCAL, its inbox and API on $MAILPIT_PORT
  if already_up smtp "$SMTP_PORT_LOCAL" "$RUN/smtp/smtp.pid"; then return 0; fi
  mkdir -p "$RUN/smtp"
  # --max: the newest 100,000 messages kept, more than a chaos run causes (it reads back
  # each one); with every message kept (--max 0) a developer's Mailpit grew with each
  # run, and its cost per message with it (1.1 GB: 1.29 ms a transfer, then 0.87 empty);
  # --enable-chaos: its SMTP failure triggers, for people trying retries by hand.
  nohup "$RUN/bin/mailpit" --smtp "127.0.0.1:$SMTP_PORT_LOCAL" --listen "127.0.0.1:$MAILPIT_PORT" \
    --database "$RUN/smtp/mailpit.db" --max 100000 --smtp-auth-accept-any --smtp-auth-allow-insecure \
    --smtp-disable-rdns --disable-version-check --enable-chaos --label paysys \
    >"$RUN/logs/smtp.log" 2>&1 &
  echo $! >"$RUN/smtp/smtp.pid"
  wait_port "$SMTP_PORT_LOCAL" 30 smtp
  wait_port "$MAILPIT_PORT" 30 smtp
}

stop_smtp() { stop_pidfile "$RUN/smtp/smtp.pid"; }

start_prometheus() {
  if already_up prometheus "$PROM_PORT" "$RUN/prometheus/prometheus.pid"; then return 0; fi
  mkdir -p "$RUN/prometheus/data"
  "$PY" "$ROOT/infra/prometheus/render.py" "$RUN/prometheus/prometheus.yml" \
    --alertmanager "127.0.0.1:$AM_PORT"
  nohup prometheus --config.file="$RUN/prometheus/prometheus.yml" \
    --storage.tsdb.path="$RUN/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.enable-lifecycle >"$RUN/logs/prometheus.log" 2>&1 &
  echo $! >"$RUN/prometheus/prometheus.pid"
  wait_port "$PROM_PORT" 30 prometheus
}

stop_prometheus() { stop_pidfile "$RUN/prometheus/prometheus.pid"; }

start_alertmanager() {
  if already_up alertmanager "$AM_PORT" "$RUN/alertmanager/alertmanager.pid"; then return 0; fi
  mkdir -p "$RUN/alertmanager/data"
  local smtp="${SMTP_HOST:-127.0.0.1}:${SMTP_PORT:-$SMTP_PORT_LOCAL}"
  sed -e "s/__SMTP__/$smtp/" "$ROOT/infra/alertmanager/alertmanager.yml" >"$RUN/alertmanager/alertmanager.yml"
  nohup prometheus-alertmanager --config.file="$RUN/alertmanager/alertmanager.yml" \
    --storage.path="$RUN/alertmanager/data" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address="" >"$RUN/logs/alertmanager.log" 2>&1 &
  echo $! >"$RUN/alertmanager/alertmanager.pid"
  wait_port "$AM_PORT" 30 alertmanager
}

stop_alertmanager() { stop_pidfile "$RUN/alertmanager/alertmanager.pid"; }

stop_pidfile() { # pidfile [seconds]
  local f="$1" t="${2:-10}" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

component_list() { if [ $# -eq 0 ]; then echo "${ALL[@]}"; else echo "$@"; fi; }

cmd_up() {
  cmd_install
  local c
  for c in $(component_list "$@"); do
    if external "$c"; then log "$c: external, not started"; continue; fi
    "start_$c"
  done
  log "infrastructure up"
}

cmd_down() {
  local c list
  list="$(component_list "$@")"
  # reverse order: dependants first (FerretDB before PostgreSQL)
  for c in $(echo "$list" | tr ' ' '\n' | tac); do "stop_$c" || true; done
}

cmd_status() {
  local c p
  for c in "${ALL[@]}"; do
    case $c in
      postgres) p=$PG_PORT ;; redis) p=$REDIS_PORT ;; kafka) p=$KAFKA_PORT ;;
      mongodb) p=$MONGO_PORT ;; smtp) p=$SMTP_PORT_LOCAL ;; prometheus) p=$PROM_PORT ;;
      alertmanager) p=$AM_PORT ;;
    esac
    if port_open "$p"; then echo "$c up :$p"; else echo "$c down :$p"; fi
  done
}

cmd_env() {
  echo "DATABASE_URL=${DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/paysys}"
  echo "REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
  echo "KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
  if ! external kafka; then # the local broker's TLS+SASL listener (tests of Kafka security)
    echo "KAFKA_SASL_SSL_SERVERS=127.0.0.1:$KAFKA_SECURE_PORT"
    echo "KAFKA_SASL_USER=$KAFKA_SASL_USER"
    echo "KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD"
    echo "KAFKA_CA_FILE=$RUN/tls/ca.pem"
  fi
  echo "MONGODB_URL=${MONGODB_URL:-mongodb://127.0.0.1:$MONGO_PORT/}"
  echo "SMTP_HOST=${SMTP_HOST:-127.0.0.1}"
  echo "SMTP_PORT=${SMTP_PORT:-$SMTP_PORT_LOCAL}"
  echo "PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT"
  echo "ALERTMANAGER_URL=http://127.0.0.1:$AM_PORT"
  echo "MAIL_INBOX=${MAIL_INBOX:-http://127.0.0.1:$MAILPIT_PORT}"
}

case "${1:-up}" in
  install) cmd_install ;;
  install-browser) cmd_install_browser ;;
  up) shift || true; cmd_up "$@" ;;
  down) shift || true; cmd_down "$@" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 install|install-browser|up|down|status|env [component...]" >&2; exit 2 ;;
esac
