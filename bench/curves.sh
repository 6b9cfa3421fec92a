#!/usr/bin/env bash
# `make bench-curves`: curves instead of points (docs/performance.md, "Curves"), in one run on
# the `make bench` setup:
# - file detail and the list page at 32, 128 and 512 concurrent connections: req/s, p99, errors,
#   and the api process's peak memory at 512;
# - the list page's latency with 10,000, 100,000 and 1,000,000 files in the organization;
# - the list page's latency (a 10,000-file organization) as the tables fill with the files of
#   100 and then 10,000 organizations;
# - the worker with one and with two processes (as `make bench-worker`).
# A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
source bench/jobs.sh
REPORT="$OUT/curves-$(date -u +%Y%m%dT%H%M%SZ).md"
ulimit -n 4096 2>/dev/null || true

# wrk at C connections: prints "req/s p50_ms p99_ms errors" (socket errors + non-2xx answers).
wrk_at() { # connections path cookie
  wrk -t2 -c"$1" -d2s -H "Cookie: $3" "$API$2" >/dev/null
  set -- $(wrk -t2 -c"$1" -d"${DURATION}s" --latency -H "Cookie: $3" "$API$2" | wrk_summary)
  echo "$1 $2 $3 $(($4 + $5))"
}

# --- Connections ----------------------------------------------------------------------------
declare -A AT
RSS_SAMPLES=.dev/bench-rss-512.txt; : >"$RSS_SAMPLES"
for c in 32 128 512; do
  if [ "$c" = 512 ]; then
    ( while kill -0 "$SERVICE" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$SERVICE/status" >>"$RSS_SAMPLES"; sleep 0.1; done ) &
    SAMPLER=$!
  fi
  log "detail and list at $c connections"
  AT[detail_$c]=$(wrk_at "$c" "/api/files/$FILE_A" "$COOKIE_A")
  AT[list_$c]=$(wrk_at "$c" "/api/files?page=1&limit=20" "$COOKIE_A")
done
kill "$SAMPLER" 2>/dev/null || true
RSS_512_MB=$(sort -n "$RSS_SAMPLES" | tail -n 1 | awk '{printf "%.0f", $1 / 1024}')

# --- Files in the organization: 10,000 (A), 100,000 (a new one), 1,000,000 (C) -------------
seed_org() { # name files -> "org_id user_id" (rows only, triggers bypassed, counters set)
  local org user
  read -r org user < <(register "$1@example.com" "$1")
  psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" >/dev/null <<SQL
set session_replication_role = replica;
insert into app.files (id, organization_id, filename, file_size_bytes, mime_type, sha256, status,
                       uploaded_by, uploaded_at, processed_at)
select gen_random_uuid(), '$org', 'file-' || g || '.txt', 1000, 'text/plain', repeat('a', 64), 'ready',
       '$user', now() - g * interval '1 second', now()
  from generate_series(1, $2) g;
update app.organizations set files_ready = $2, storage_used_bytes = $2 * 1000, storage_quota_mb = 100000
 where id = '$org';
SQL
  echo "$org $user"
}
log "an organization with 100,000 files"
read -r ORG_D _ < <(seed_org bench-d 100000)
psql -X -q "$SUPER/$DB" -c "vacuum analyze app.files"
JAR_D=$(mktemp)
login bench-d@example.com "$JAR_D" >/dev/null
COOKIE_D=$(cookie_of "$JAR_D")
declare -A SIZE
SIZE[10k]=$(wrk_at "$CONNECTIONS" "/api/files?page=1&limit=20" "$COOKIE_A")
SIZE[100k]=$(wrk_at "$CONNECTIONS" "/api/files?page=1&limit=20" "$COOKIE_D")
SIZE[1m]=$(wrk_at "$CONNECTIONS" "/api/files?page=1&limit=20" "$COOKIE_C")

# --- Organizations sharing the tables ----------------------------------------------------------
orgs_now() { psql -X -At "$SUPER/$DB" -c "select count(*) from app.organizations"; }
add_orgs() { # how many, files each (rows only, as above)
  psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" <<SQL
set session_replication_role = replica;
create temp table new_orgs as
select gen_random_uuid() as org, gen_random_uuid() as usr, g from generate_series(1, $1) g;
insert into app.organizations (id, name, storage_quota_mb, files_ready, storage_used_bytes)
select org, 'Filler ' || org, 100000, $2, $2 * 1000 from new_orgs;
insert into app.users (id, organization_id, email, password_hash, role)
select usr, org, 'filler-' || org || '@example.com', 'not a hash', 'owner' from new_orgs;
insert into app.files (id, organization_id, filename, file_size_bytes, mime_type, sha256, status,
                       uploaded_by, uploaded_at, processed_at)
select gen_random_uuid(), org, 'file-' || f || '.txt', 1000, 'text/plain', repeat('a', 64), 'ready',
       usr, now() - f * interval '1 second', now()
  from new_orgs, generate_series(1, $2) f;
SQL
  psql -X -q "$SUPER/$DB" -c "vacuum analyze app.organizations, app.users, app.files"
}
declare -A ORGS
ORGS[first]="$(orgs_now) $(wrk_at "$CONNECTIONS" "/api/files?page=1&limit=20" "$COOKIE_A")"
log "organizations: up to 100 (1,000 files each)"
add_orgs $((100 - $(orgs_now))) 1000
ORGS[100]="$(orgs_now) $(wrk_at "$CONNECTIONS" "/api/files?page=1&limit=20" "$COOKIE_A")"
log "organizations: up to 10,000 (100 files each for the new ones)"
add_orgs $((10000 - $(orgs_now))) 100
ORGS[10000]="$(orgs_now) $(wrk_at "$CONNECTIONS" "/api/files?page=1&limit=20" "$COOKIE_A")"
ROWS=$(psql -X -At "$SUPER/$DB" -c "select count(*) from app.files")

# --- Worker processes -------------------------------------------------------------------------
kill "$SERVICE"; wait "$SERVICE" 2>/dev/null || true
log "worker: ${BENCH_JOBS:-20000} jobs, one process, then two"
drain_jobs "${BENCH_JOBS:-20000}" 1; ONE="$DRAIN_RATE $DRAIN_BATCH"
drain_jobs "${BENCH_JOBS:-20000}" 2; TWO="$DRAIN_RATE $DRAIN_BATCH"

# --- Report -----------------------------------------------------------------------------------
python3 - "$REPORT" <<PY
import sys
at = {k: v.split() for k, v in {
    "detail_32": "${AT[detail_32]}", "detail_128": "${AT[detail_128]}", "detail_512": "${AT[detail_512]}",
    "list_32": "${AT[list_32]}", "list_128": "${AT[list_128]}", "list_512": "${AT[list_512]}"}.items()}
size = {k: v.split() for k, v in {"10,000": "${SIZE[10k]}", "100,000": "${SIZE[100k]}", "1,000,000": "${SIZE[1m]}"}.items()}
orgs = ["${ORGS[first]}".split(), "${ORGS[100]}".split(), "${ORGS[10000]}".split()]
one, two = "$ONE".split(), "$TWO".split()
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip()
lines = [f"# Curves run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({cpu}, {__import__('os').cpu_count()} cores; wrk -t2 -d${DURATION}s, DB_POOL_SIZE ${BENCH_POOL:-32})", "",
         "| connections | detail req/s | p99 ms | errors | list req/s | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
for c in (32, 128, 512):
    d, l = at[f"detail_{c}"], at[f"list_{c}"]
    lines.append(f"| {c} | {d[0]} | {d[2]} | {d[3]} | {l[0]} | {l[2]} | {l[3]} |")
lines += ["", f"- api process peak RSS during the 512-connection runs: $RSS_512_MB MiB", "",
          "| files in the organization | list req/s | p50 ms | p99 ms |", "|---|---|---|---|"]
for n, (rps, p50, p99, _) in size.items():
    lines.append(f"| {n} | {rps} | {p50} | {p99} |")
lines += ["", "| organizations sharing the tables | list req/s (10,000-file organization) | p50 ms | p99 ms |", "|---|---|---|---|"]
for count, rps, p50, p99, _ in orgs:
    lines.append(f"| {int(count):,} | {rps} | {p50} | {p99} |")
lines += [f"", f"(file rows in the end: {int('$ROWS'):,})", "",
          "| worker processes | jobs/s | outcomes per statement |", "|---|---|---|",
          f"| 1 | {one[0]} | {one[1]} |", f"| 2 | {two[0]} | {two[1]} |"]
report = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(report)
print(report)
PY
log "report: $REPORT"
