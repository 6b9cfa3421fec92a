# Sourced by bench/run.sh and bench/profile.sh: builds in release mode, starts the services as
# `make run` does, seeds a dedicated database (two organizations with 10,000 files each, one with
# 1,000,000 file rows), starts the API and signs in. Leaves SERVICE, API, COOKIE_A/C, JAR_A,
# CSRF_A, ORG_A/B/C, USER_A/B/C, FILE_A and KEYHASH_A/C for the caller.
DURATION=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
PORT=${BENCH_PORT:-5077}
# Files of the large organization (fewer make a quick run while working on one benchmark).
BIG_ORG_FILES=${BENCH_BIG_ORG_FILES:-1000000}
API="http://127.0.0.1:$PORT"
PG_PORT=${PG_PORT:-54329}
DB=tenant_files_bench
SUPER="postgres://postgres@127.0.0.1:$PG_PORT"
OWNER_URL="postgres://tenant_files_owner@127.0.0.1:$PG_PORT/$DB"
APP_URL="postgres://tenant_files_app@127.0.0.1:$PG_PORT/$DB"
OUT=bench/results
mkdir -p "$OUT" .dev
REPORT="$OUT/$(date -u +%Y%m%dT%H%M%SZ).md"
BIN=${CARGO_TARGET_DIR:-target}/release/tenant-files

log() { printf '[bench] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

command -v wrk >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
scripts/dev-services.sh start
PGBENCH=$(ls -d /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -n 1)

log "building (release)"
cargo build --release --quiet

log "fresh database $DB"
psql -X -q "$SUPER/postgres" -c "drop database if exists $DB with (force)" -c "create database $DB owner tenant_files_owner"
MIGRATION_DATABASE_URL=$OWNER_URL $BIN --mode migrate 2>/dev/null
psql -X -q "$SUPER/$DB" -c "create extension if not exists pg_stat_statements"

# One key for every start of the service, so that sessions and cursors outlive a restart
# (restart_service).
export SESSION_KEY=${SESSION_KEY:-bench-session-key-bench-session-key-bench-session-key-bench-sess}

# BENCH_WRAP: a command to run the service under (e.g. "heaptrack -o /tmp/ht" for a heap profile).
# The request budget is on, at a rate no benchmark reaches (its cost is measured, never a 429);
# BENCH_ORG_REQUESTS_PER_MINUTE sets another.
UPLOADS=.dev/bench-uploads
rm -rf "$UPLOADS"
start_service() { # mode [instance name] (more settings through the environment)
  DATABASE_URL=$APP_URL BIND=127.0.0.1:$PORT UPLOAD_DIR=$UPLOADS RUST_LOG=warn DB_POOL_SIZE=${BENCH_POOL:-32} \
    MAX_FILE_SIZE_MB=2048 QUEUE_PREFIX=tenant_files_bench LOGIN_MAX_FAILURES=1000000 \
    AUTH_RATE_PER_MINUTE=1000000 AUTH_RATE_BURST=1000000 \
    ORG_REQUESTS_PER_MINUTE=${BENCH_ORG_REQUESTS_PER_MINUTE:-1000000000} \
    WORKER_PREFETCH=${BENCH_WORKER_PREFETCH:-32} \
    ${BENCH_WRAP:-} "$BIN" --mode "$1" >".dev/bench-$1${2:+-$2}.log" 2>&1 &
  echo $!
}
# Linux's autogroup (kernel.sched_autogroup_enabled, on by default in Debian's kernels) shares
# the CPU equally between sessions, and every PostgreSQL backend is a session of its own (it
# calls setsid): with eight busy backends the service's whole process is one group of nine,
# and its requests waited in their sockets for 90-530 ms at the p99 (docs/performance.md, "Where the tail
# came from"). The bench runs as a host that PostgreSQL shares should be set up: autogroup off
# (BENCH_AUTOGROUP=1 measures with it on), the kernel's setting restored at exit.
AUTOGROUP_FILE=/proc/sys/kernel/sched_autogroup_enabled
AUTOGROUP_WAS=$(cat "$AUTOGROUP_FILE" 2>/dev/null || true)
set_autogroup() { # 0 or 1
  [ -z "$AUTOGROUP_WAS" ] || as_root sh -c "echo $1 > $AUTOGROUP_FILE" 2>/dev/null || log "autogroup: cannot set it to $1"
}
set_autogroup "${BENCH_AUTOGROUP:-0}"
AUTOGROUP_NOW=$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo "not in this kernel")
SERVICE=$(start_service api)
WORKERS=
# shellcheck disable=SC2086 # WORKERS: a list of pids
trap 'kill $SERVICE ${PEER_PID:-} 2>/dev/null || true; [ -n "$WORKERS" ] && kill $WORKERS 2>/dev/null || true; set_autogroup "$AUTOGROUP_WAS"' EXIT
# Waits until the api answers (10 s at most).
await_service() {
  for _ in $(seq 1 100); do curl -sf "$API/healthz" >/dev/null && return 0; sleep 0.1; done
  log "the api did not start: see .dev/bench-api.log"
  return 1
}
# The api started again with other settings ("NAME=value" arguments, for this start only) once
# the old process has exited (so its port is free), and ready to serve.
restart_service() {
  kill "$SERVICE" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVICE" 2>/dev/null || break; sleep 0.1; done
  SERVICE=$(
    for setting in "$@"; do export "${setting?}"; done
    start_service api
  )
  await_service
}
await_service

# --- Seed ---------------------------------------------------------------------------------
register() { # email org -> "org_id user_id"
  curl -sf "$API/api/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"bench password\",\"organization_name\":\"$2\"}" \
    | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["organization_id"], b["user_id"])'
}
read -r ORG_A USER_A < <(register bench-a@example.com "Bench A")
read -r ORG_B USER_B < <(register bench-b@example.com "Bench B")
read -r ORG_C USER_C < <(register bench-c@example.com "Bench C")
log "seeding 10,000 + 10,000 + 1,000,000 file rows"
psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" <<SQL
-- Seeding bypasses the triggers (superuser, replica role) and sets the counters once.
set session_replication_role = replica;
insert into app.files (id, organization_id, filename, file_size_bytes, mime_type, sha256, status,
                       uploaded_by, uploaded_at, processed_at)
select gen_random_uuid(), o.org, 'file-' || g || '.txt', 1000, 'text/plain', repeat('a', 64), 'ready',
       o.usr, now() - g * interval '1 second', now()
  from (values ('$ORG_A'::uuid, '$USER_A'::uuid, 10000), ('$ORG_B'::uuid, '$USER_B'::uuid, 10000),
               ('$ORG_C'::uuid, '$USER_C'::uuid, $BIG_ORG_FILES)) as o (org, usr, n),
       generate_series(1, o.n) as g;
update app.organizations o
   set files_ready = c.n, storage_used_bytes = c.n * 1000, storage_quota_mb = 100000
  from (select organization_id, count(*) as n from app.files group by organization_id) c
 where c.organization_id = o.id;
reset session_replication_role;
vacuum analyze;
SQL

login() { # email jar -> csrf
  curl -sf -c "$2" -b "$2" "$API/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"bench password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])'
}
JAR_A=$(mktemp); JAR_C=$(mktemp)
CSRF_A=$(login bench-a@example.com "$JAR_A")
login bench-c@example.com "$JAR_C" >/dev/null
cookie_of() { awk '$6 ~ /tf_session/ {print $6"="$7}' "$1"; }
COOKIE_A=$(cookie_of "$JAR_A"); COOKIE_C=$(cookie_of "$JAR_C")
FILE_A=$(psql -X -At "$SUPER/$DB" -c "select id from app.files where organization_id = '$ORG_A' order by uploaded_at desc limit 1 offset 500")
KEYHASH_A=$(psql -X -At "$SUPER/$DB" -c "select '\\x' || encode(key_hash, 'hex') from app.sessions where user_id = '$USER_A' order by created_at desc limit 1")
KEYHASH_C=$(psql -X -At "$SUPER/$DB" -c "select '\\x' || encode(key_hash, 'hex') from app.sessions where user_id = '$USER_C' order by created_at desc limit 1")

# wrk's report on stdin -> "req/s p50_ms p99_ms socket_errors non_2xx p90_ms p999_ms" (the
# last two from bench/tails.lua's line)
wrk_summary() {
  python3 -c '
import re, sys
out = sys.stdin.read()
def ms(label):
    m = re.search(r"^\s+" + label + r"%\s+([\d.]+)(us|ms|s)", out, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000.0 if unit == "us" else (v * 1000.0 if unit == "s" else v)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
sockets = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
p50, p99 = ms("50"), ms("99")
tails = re.search(r"^TAILS (\d+) (\d+) (\d+) (\d+)$", out, re.M)
p90, p999 = (int(tails.group(2)) / 1000.0, int(tails.group(4)) / 1000.0) if tails else (float("nan"), float("nan"))
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {sockets} {non2xx.group(1) if non2xx else 0} {p90:.2f} {p999:.2f}")'
}

# wrk at the bench's concurrency: prints "req/s p50_ms p99_ms p90_ms p999_ms"; fails on any
# non-2xx answer. bench/tails.lua is appended to the run's script (or is its script).
wrk_run() { # path cookie [more wrk options, e.g. -s script.lua]
  local path=$1 cookie=$2 summary script=.dev/bench-wrk-tails.lua args=()
  shift 2
  cp bench/tails.lua "$script"
  while [ $# -gt 0 ]; do
    if [ "$1" = -s ]; then cat "$2" bench/tails.lua >"$script"; shift 2; else args+=("$1"); shift; fi
  done
  summary=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" -H "Cookie: $cookie" "${args[@]}" "$API$path" | wrk_summary)
  set -- $summary
  [ "$5" = 0 ] || { log "$path: $5 non-2xx answers"; return 1; }
  echo "$1 $2 $3 $6 $7"
}

# CPU time used so far, in ms, by each kind of process: "service postgres rabbitmq other"
# (utime + stime from /proc, plus cutime + cstime: what exited children used, such as the
# backends of pgbench's connections once the postmaster reaped them, or wrk once this shell
# did; the difference of two samples is where a run's CPU went).
cpu_split() {
  python3 - <<'PY'
import os
hz, totals = os.sysconf("SC_CLK_TCK"), {"service": 0, "postgres": 0, "rabbitmq": 0, "other": 0}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
    ticks = sum(int(f) for f in fields[11:15])
    kind = ("service" if name.startswith("tenant-files") else "postgres" if name in ("postgres", "postmaster")
            else "rabbitmq" if name in ("beam.smp", "erl_child_setup", "epmd") else "other")
    totals[kind] += ticks
print(" ".join(str(totals[k] * 1000 // hz) for k in ("service", "postgres", "rabbitmq", "other")))
PY
}

# CPU ms per unit of work between two cpu_split samples: "service postgres rabbitmq other".
cpu_per() { # before after units
  python3 -c "
before, after = '$1'.split(), '$2'.split()
print(' '.join(f'{(int(a) - int(b)) / float($3):.3f}' for a, b in zip(after, before)))"
}

# pgbench: prints "tps p50_ms p99_ms p999_ms", the percentiles from its per-transaction log
# (-l: one line per transaction, its latency in µs the third field), as wrk's are per request.
pgbench_run() { # script org user file keyhash [total: 0 replays the list page without its total]
  rm -f .dev/pgbench-log.*
  "$PGBENCH" -n -M prepared -c"$CONNECTIONS" -j2 -T"$DURATION" -l --log-prefix=.dev/pgbench-log -f "bench/pgbench/$1.sql" \
    -D org="$2" -D usr="$3" -D file="$4" -D keyhash="$5" -D total="${6:-1}" "$APP_URL" 2>&1 \
    | python3 -c '
import glob, re, sys
out = sys.stdin.read()
m = re.search(r"tps = ([\d.]+)", out)
if not m:
    sys.exit(out)
latencies = sorted(int(line.split()[2]) for path in glob.glob(".dev/pgbench-log.*") for line in open(path))
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000.0
print(f"{float(m.group(1)):.0f} {pick(0.5):.2f} {pick(0.99):.2f} {pick(0.999):.2f}")'
}
