#!/usr/bin/env bash
# What events cost an upload (#27): the service's small-upload replay (bench/pgbench/upload.sql:
# the session load, the reservation, then the file row with its job, release and audit entry)
# with events on, written but numbered from a plain sequence (the rival explanation: the insert,
# not the organization row's update), with one webhook endpoint taking them (the fan-out into a
# delivery row), and off, in alternating rounds on the same database. PostgreSQL alone (the
# service adds the same work to each side). Then the deliveries those rounds queued are sent by
# a release worker to a loopback receiver that verifies each (bench/webhooks.sh): deliveries per
# second. Writes bench/results/events-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${BENCH_CONNECTIONS:-32}
SECONDS_EACH=${BENCH_SECONDS:-20}
PG_PORT=${PG_PORT:-54329}
SUPER="postgres://postgres@127.0.0.1:$PG_PORT"
DB=tf_bench_events
OUT=bench/results
mkdir -p "$OUT"
REPORT="$OUT/events-$(date -u +%Y%m%dT%H%M%SZ).md"
PGBENCH=$(ls -d /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -n 1)
log() { printf '[bench] %s\n' "$*" >&2; }

scripts/dev-services.sh start >/dev/null
cargo build --quiet
AUTOGROUP_WAS=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo)
if [ -n "$AUTOGROUP_WAS" ] && [ "${BENCH_AUTOGROUP:-0}" != 1 ]; then
  echo 0 >/proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || log "cannot turn the autogroup off (not root?)"
  trap 'echo "$AUTOGROUP_WAS" >/proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || true' EXIT
fi

ORG=00000000-0000-4000-8000-0000000000e1
USR=00000000-0000-4000-9000-0000000000e1
KEYHASH='\x'$(printf 'bench-events' | sha256sum | cut -d' ' -f1)
psql -X -q "$SUPER/postgres" -c "drop database if exists $DB" -c "create database $DB owner tenant_files_owner"
target/debug/tenant-files --mode migrate --migration-database-url "postgres://tenant_files_owner@127.0.0.1:$PG_PORT/$DB" >/dev/null 2>&1
psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" <<SQL
insert into app.organizations (id, name, storage_quota_mb, max_concurrent_uploads) values ('$ORG', 'events bench', 1000000, 1000);
insert into app.users (id, organization_id, email, password_hash, role) values ('$USR', '$ORG', 'bench@example.com', 'x', 'owner');
insert into app.sessions (key_hash, organization_id, user_id, state, expires_at) values ('$KEYHASH', '$ORG', '$USR', '{}', now() + interval '1 day');
-- One endpoint taking file.uploaded, enabled only in the "webhook" rounds (its URL is set when
-- its deliveries are sent, below).
insert into app.webhooks (organization_id, id, url, events, secret, created_by, enabled)
values ('$ORG', '00000000-0000-4000-a000-0000000000e1', 'http://127.0.0.1:9/', '{file.uploaded}',
        decode('$(printf 'bench-webhook-secret-32-bytes!!!' | xxd -p | tr -d '\n')', 'hex'), '$USR', false);
SQL

round() { # label -> "tps | p50 ms | p99 ms"
  local dir
  dir=$(mktemp -d)
  (cd "$dir" && "$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -l \
    -D org="$ORG" -D usr="$USR" -D keyhash="$KEYHASH" -f "$OLDPWD/bench/pgbench/upload.sql" \
    "postgres://tenant_files_app@127.0.0.1:$PG_PORT/$DB" >"$dir/summary" 2>&1) || { grep -m3 -i error "$dir/summary" >&2; exit 1; }
  local tps
  tps=$(awk '/^tps/ {printf "%.0f", $3}' "$dir/summary")
  cat "$dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -n | awk -v tps="$tps" '
    { v[NR] = $1 } END { printf "%s | %.2f | %.2f", tps, v[int(NR * 0.5)], v[int(NR * 0.99)] }'
  rm -rf "$dir"
}

{
  echo "# What events cost an upload ($(date -u +%FT%TZ))"
  echo
  echo "bench/pgbench/upload.sql (the service's small-upload statements), one organization, $CLIENTS clients," \
    "${SECONDS_EACH}s rounds: events on, with a webhook (each event fanned out to a delivery row), unnumbered" \
    "(the insert alone), off, off, unnumbered, webhook, on;" \
    "kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?')."
  echo
  echo "| round | events | uploads/s | p50 ms | p99 ms |"
  echo "|---|---|---|---|---|"
} >"$REPORT"
# The rival explanations of the cost, side by side: "on" (the event and its number, a second
# update of the organization's row), "unnumbered" (the event alone, numbered from a plain
# sequence instead: its insert without the row update) and "off".
psql -X -q "$SUPER/$DB" -c "create sequence bench_events_seq start 1000000000" -c "grant usage on sequence bench_events_seq to tenant_files_app"
configure() { # on | webhook | unnumbered | off
  local hook=false
  [ "$1" = webhook ] && hook=true
  psql -X -q "$SUPER/$DB" -c "update app.webhooks set enabled = $hook"
  case $1 in
    on | webhook) sql="alter table app.files enable trigger files_emit_events;
             alter table app.events enable trigger events_number; alter table app.events alter column seq drop default" ;;
    unnumbered) sql="alter table app.files enable trigger files_emit_events;
             alter table app.events disable trigger events_number;
             alter table app.events alter column seq set default nextval('bench_events_seq')" ;;
    off) sql="alter table app.files disable trigger files_emit_events" ;;
  esac
  psql -X -q "$SUPER/$DB" -c "$sql" -c "vacuum analyze"
}
# A first round warms the caches and the new tables and is not reported (it was the slowest of
# every run, whichever side it measured). Then on, unnumbered, off, off, unnumbered, on: a drift
# over the run weighs on every side alike; each round starts from a vacuumed database (the
# reservations' dead index entries otherwise pile up).
configure on
log "warm-up round"
round warm-up >/dev/null
n=0
for state in on webhook unnumbered off off unnumbered webhook on; do
  n=$((n + 1))
  configure "$state"
  log "round $n, events $state"
  echo "| $n | $state | $(round "$state") |" >>"$REPORT"
done
echo >>"$REPORT"
echo "Events written: $(psql -X -At "$SUPER/$DB" -c 'select count(*) from app.events')." >>"$REPORT"
DB=$DB bench/webhooks.sh >>"$REPORT"
psql -X -q "$SUPER/postgres" -c "drop database $DB"
cat "$REPORT"
log "report: $REPORT"
