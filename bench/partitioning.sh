#!/usr/bin/env bash
# Is hash-partitioning by organization worth keeping by default (#28, docs/scaling.md)? Two
# databases with the same rows — BENCH_ORGS organizations (10,000) with BENCH_FILES_PER_ORG
# files each (100) — one as migrated, one converted by sql/rehearsal/ into BENCH_PARTITIONS (8)
# partitions. For each: the files table's and its indexes' size, a VACUUM after 5% of the files
# were deleted (the whole table's, and on the partitioned one each partition's: what one
# autovacuum worker holds at a time), and a tenant's detail + list page through the app role
# under generic plans (pgbench, random organization per transaction), with p50/p99, in rounds
# that alternate between the two databases.
# Writes bench/results/partitioning-<time>.md. No service is started: this is PostgreSQL alone.
set -euo pipefail
cd "$(dirname "$0")/.."

ORGS=${BENCH_ORGS:-10000}
PER_ORG=${BENCH_FILES_PER_ORG:-100}
PARTITIONS=${BENCH_PARTITIONS:-8}
SECONDS_EACH=${BENCH_SECONDS:-20}
PG_PORT=${PG_PORT:-54329}
SUPER="postgres://postgres@127.0.0.1:$PG_PORT"
OUT=bench/results
mkdir -p "$OUT"
REPORT="$OUT/partitioning-$(date -u +%Y%m%dT%H%M%SZ).md"
PGBENCH=$(ls -d /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -n 1)
log() { printf '[bench] %s\n' "$*" >&2; }

scripts/dev-services.sh start >/dev/null
cargo build --quiet
# As the other benches: the kernel's autogroup off for the run (docs/performance.md, "Where the
# tail came from"), restored at exit; BENCH_AUTOGROUP=1 keeps it.
AUTOGROUP_WAS=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo)
if [ -n "$AUTOGROUP_WAS" ] && [ "${BENCH_AUTOGROUP:-0}" != 1 ]; then
  echo 0 >/proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || log "cannot turn the autogroup off (not root?)"
  trap 'echo "$AUTOGROUP_WAS" >/proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || true' EXIT
fi

prepare() { # database partitions(0 = none)
  local db=$1 url="postgres://tenant_files_owner@127.0.0.1:$PG_PORT/$1"
  psql -X -q "$SUPER/postgres" -c "drop database if exists $db" -c "create database $db owner tenant_files_owner"
  target/debug/tenant-files --mode migrate --migration-database-url "$url" >/dev/null 2>&1
  if [ "$2" -gt 0 ]; then
    psql -X -q -v ON_ERROR_STOP=1 "$url" -c "set rehearsal.partitions = $2" -f sql/rehearsal/partition_by_organization.sql 2>/dev/null
  fi
  log "$db: loading $ORGS organizations x $PER_ORG files"
  # Rows written directly (triggers and foreign keys off: the derived tables stay empty, which
  # both databases share); each organization's files spread over a year of upload times.
  psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$db" <<SQL
set session_replication_role = replica;
insert into app.organizations (id, name)
  select ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'org ' || n from generate_series(1, $ORGS) n;
insert into app.users (id, organization_id, email, password_hash, role)
  select ('00000000-0000-4000-9000-' || lpad(to_hex(n), 12, '0'))::uuid,
         ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'u' || n || '@example.com', 'x', 'owner'
    from generate_series(1, $ORGS) n;
insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by, uploaded_at, status)
  select gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'file-' || f || '.txt', 1024,
         repeat('a', 64), ('00000000-0000-4000-9000-' || lpad(to_hex(n), 12, '0'))::uuid,
         now() - (f * interval '1 hour') - (n * interval '1 second'), 'ready'
    from generate_series(1, $ORGS) n, generate_series(1, $PER_ORG) f;
create schema bench;
create table bench.picks as
  select row_number() over (order by o.id) as n, o.id as org, u.id as usr,
         (select f.id from app.files f where f.organization_id = o.id limit 1) as file
    from app.organizations o join app.users u on u.organization_id = o.id;
create unique index on bench.picks (n);
grant usage on schema bench to tenant_files_app;
grant select on bench.picks to tenant_files_app;
vacuum analyze;
SQL
  # No autovacuum during the measurements: the VACUUM below is the one measured.
  for leaf in $(psql -X -At "$SUPER/$db" -c "$LEAVES"); do
    psql -X -q "$SUPER/$db" -c "alter table $leaf set (autovacuum_enabled = false)"
  done
}

# The tables holding the files' rows: app.files itself, or its partitions.
LEAVES="select c.oid::regclass as relid from pg_class c where c.oid = 'app.files'::regclass and c.relkind = 'r'
        union all select relid from pg_partition_tree('app.files') where isleaf"

sizes() { # database -> "table MB | indexes MB"
  psql -X -At -F ' | ' "$SUPER/$1" -c "
    select round(sum(pg_table_size(relid)) / 1048576.0, 1), round(sum(pg_indexes_size(relid)) / 1048576.0, 1)
      from ($LEAVES) leaves"
}

vacuum_after_deletes() { # database -> "whole s | longest partition s"
  local db=$1
  # Soft deletes, as the service makes them: each leaves a dead row version behind.
  psql -X -q "$SUPER/$db" -c "set session_replication_role = replica;
    update app.files set deleted_at = now() where abs(hashtext(id::text)) % 20 = 0" >/dev/null
  local leaves
  leaves=$(psql -X -At "$SUPER/$db" -c "$LEAVES")
  local longest=0 total=0
  for leaf in $leaves; do
    local start end took
    start=$(date +%s.%N)
    psql -X -q "$SUPER/$db" -c "vacuum $leaf" >/dev/null
    end=$(date +%s.%N)
    took=$(echo "$end - $start" | bc)
    total=$(echo "$total + $took" | bc)
    if (( $(echo "$took > $longest" | bc) )); then longest=$took; fi
  done
  printf '%.2f | %.2f' "$total" "$longest"
}

latency() { # database -> "tps | p50 ms | p99 ms"
  local db=$1 script log_dir
  script=$(mktemp) log_dir=$(mktemp -d)
  cat >"$script" <<'PGB'
\set n random(1, :orgs)
begin;
select set_config('app.org_id', p.org::text, true), set_config('app.user_id', p.usr::text, true) from bench.picks p where p.n = :n;
select f.id, f.filename, f.file_size_bytes from app.files f where f.id = (select p.file from bench.picks p where p.n = :n);
select f.id, f.filename from app.files f where f.deleted_at is null order by f.uploaded_at desc, f.id desc limit 50;
commit;
PGB
  (cd "$log_dir" && PGOPTIONS='-c plan_cache_mode=force_generic_plan' "$PGBENCH" -n -M prepared -c 8 -j 2 \
    -T "$SECONDS_EACH" -D orgs="$ORGS" -f "$script" -l \
    "postgres://tenant_files_app@127.0.0.1:$PG_PORT/$db" >"$log_dir/summary" 2>&1)
  local tps
  tps=$(awk '/^tps/ {printf "%.0f", $3}' "$log_dir/summary")
  cat "$log_dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -n | awk -v tps="$tps" '
    { v[NR] = $1 } END { printf "%s | %.2f | %.2f", tps, v[int(NR * 0.5)], v[int(NR * 0.99)] }'
  rm -rf "$script" "$log_dir"
}

{
  echo "# Hash-partitioning by organization: worth keeping by default? ($(date -u +%FT%TZ))"
  echo
  echo "$ORGS organizations x $PER_ORG files ($((ORGS * PER_ORG)) rows); $PARTITIONS partitions;" \
    "pgbench -c 8 -j 2 for ${SECONDS_EACH}s per round, generic plans, rounds alternating between the" \
    "databases (whole, partitioned, whole, partitioned);" \
    "kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?')."
  echo
} >"$REPORT"

DATABASES="tf_bench_whole tf_bench_partitioned"
prepare tf_bench_whole 0
prepare tf_bench_partitioned "$PARTITIONS"
# Run-to-run spread on this machine is ±15-20% (docs/scaling.md): the two databases take turns,
# so that a slower minute costs both.
echo "| round | database | detail+page tps | p50 ms | p99 ms |" >>"$REPORT"
echo "|---|---|---|---|---|" >>"$REPORT"
for round in 1 2; do
  for db in $DATABASES; do
    log "$db: latency, round $round"
    echo "| $round | $db | $(latency "$db") |" >>"$REPORT"
  done
done
{
  echo
  echo "| database | files table MB | its indexes MB | VACUUM after 5% deleted: all s | longest one table s |"
  echo "|---|---|---|---|---|"
} >>"$REPORT"
for db in $DATABASES; do
  log "$db: vacuum after deletes"
  echo "| $db | $(sizes "$db") | $(vacuum_after_deletes "$db") |" >>"$REPORT"
  psql -X -q "$SUPER/postgres" -c "drop database $db"
done
cat "$REPORT"
log "report: $REPORT"
