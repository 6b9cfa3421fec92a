#!/usr/bin/env bash
# `make bench-listing`: search, sort and cursor pages of GET /api/files in an organization with
# 1,000,000 files, against the plain newest-first page of the same organization, on this
# machine, in one run (docs/performance.md, "Search, sort and cursors at 1M files"). Same setup
# as `make bench` (release build, seeded database, wrk on loopback, -c32). A benchmark, not a
# test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
REPORT="$OUT/listing-$(date -u +%Y%m%dT%H%M%SZ).md"

# The seed bypasses triggers; index the names for search as files_index_name does per upload.
log "indexing the seeded names for search (app.file_name_suffixes)"
psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" \
  -c "insert into app.file_name_suffixes (organization_id, suffix, file_id)
      select f.organization_id, s, f.id from app.files f, unnest(app.name_suffixes(f.filename)) s
       where f.deleted_at is null" \
  -c "vacuum analyze app.file_name_suffixes"

# A cursor from the middle of the organization (500,000 files in), for a deep keyset page.
MIDDLE=$(psql -X -At "$SUPER/$DB" -c "select to_char(uploaded_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || ' ' || id
  from app.files where organization_id = '$ORG_C' order by uploaded_at desc, id desc offset 500000 limit 1")
CURSOR=$(python3 -c 'import json,sys; k,i=sys.argv[1].split(); print(json.dumps({"sort":"uploaded_at","order":"desc","key":k,"id":i}, separators=(",",":")).encode().hex())' "$MIDDLE")

declare -a NAMES QUERIES
add() { NAMES+=("$1"); QUERIES+=("$2"); }
add "newest first (today's list)" "?page=1&limit=20"
add "sort=filename" "?sort=filename&limit=20"
add "sort=size&order=asc" "?sort=size&order=asc&limit=20"
add "sort=filename, page 1,000 by number" "?sort=filename&limit=20&page=1000"
add "cursor 500,000 files deep" "?limit=20&cursor=$CURSOR"
add "status=failed (none), sort=filename" "?status=failed&sort=filename&limit=20"
add "status=ready (all), sort=size" "?status=ready&sort=size&limit=20"
add "q matching 1 file" "?q=file-123456.&limit=20"
add "q matching 11 files" "?q=file-12345&limit=20"
add "q matching every file" "?q=file&limit=20"
add "q matching every file, sort=filename" "?q=file&sort=filename&limit=20"

declare -a RESULTS
for n in "${!QUERIES[@]}"; do
  log "wrk ${NAMES[$n]}"
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Cookie: $COOKIE_C" "$API/api/files${QUERIES[$n]}" >/dev/null
  RESULTS[$n]=$(wrk_run "/api/files${QUERIES[$n]}" "$COOKIE_C")
done

{
  echo "# Listing run $(date -u +%Y-%m-%dT%H:%MZ) ($(nproc) cores, 1,000,000 files in the organization, -c$CONNECTIONS, ${DURATION}s each)"
  echo
  echo "| page | req/s | p50 ms | p99 ms |"
  echo "|---|---|---|---|"
  for n in "${!QUERIES[@]}"; do
    read -r rps p50 p99 _ <<<"${RESULTS[$n]}"
    echo "| ${NAMES[$n]} | $rps | $p50 | $p99 |"
  done
} | tee "$REPORT"
