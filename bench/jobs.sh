# Sourced by bench/run.sh and bench/worker.sh, after bench/setup.sh: the worker's throughput
# end to end, and its ceiling.
#
# seed_jobs N: N pending files of organization A (rows, bytes on disk, outbox jobs), as N
#   uploads would leave them, written directly (posting them would take longer than draining).
# drain_jobs N P: seeds N jobs, starts P worker processes, and sets DRAIN_RATE (jobs/s) and
#   DRAIN_BATCH (the mean number of outcomes committed per statement) once the organization's
#   pending counter is back to 0 (relay, queue, validation and outcome included), and
#   DRAIN_CPU: CPU ms per job of the workers, PostgreSQL, RabbitMQ and the rest.
# worker_ceiling B: pgbench replay of the worker's statements at its concurrency (prefetch):
#   per job the re-check read, per B jobs one committed outcome statement of B files; prints
#   jobs/s.

JOB_BODY=.dev/bench-job.txt
python3 -c 'import sys; sys.stdout.write("a small text file the worker validates\n" * 26)' >"$JOB_BODY"

seed_jobs() {
  python3 - "$1" "$UPLOADS/$ORG_A" "$JOB_BODY" >.dev/bench-jobs.csv <<'PY'
import hashlib, os, sys, uuid
count, folder, body = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
os.makedirs(folder, exist_ok=True)
sha = hashlib.sha256(body).hexdigest()
for i in range(count):
    file_id = uuid.uuid4()
    with open(os.path.join(folder, str(file_id)), "wb") as f:
        f.write(body)
    print(f"{file_id},job-{i}.txt,{len(body)},{sha}")
PY
  psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" <<SQL
create temp table jobs (id uuid, filename text, size bigint, sha256 text);
\copy jobs from '.dev/bench-jobs.csv' csv
insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
select id, '$ORG_A', filename, size, sha256, '$USER_A' from jobs;
insert into app.outbox (id, organization_id, file_id, user_id)
select gen_random_uuid(), '$ORG_A', id, '$USER_A' from jobs;
SQL
}

pending_of_a() { psql -X -At "$SUPER/$DB" -c "select files_pending from app.organizations where id = '$ORG_A'"; }

drain_jobs() { # jobs processes
  local jobs=$1 processes=$2 started ended i
  seed_jobs "$jobs"
  local cpu_before cpu_after
  cpu_before=$(cpu_split)
  started=$(date +%s.%N)
  for i in $(seq 1 "$processes"); do
    WORKERS+=" $(METRICS_BIND=127.0.0.1:$((PORT + i)) start_service worker "$i")"
  done
  # The organization's own pending counter (O(1)): a count(*) over the files would take a core
  # away from the workers being measured.
  while [ "$(pending_of_a)" != 0 ]; do sleep 0.2; done
  ended=$(date +%s.%N)
  cpu_after=$(cpu_split)
  DRAIN_BATCH=$(for i in $(seq 1 "$processes"); do curl -sf "http://127.0.0.1:$((PORT + i))/metrics"; done \
    | awk '/^job_outcome_batch_size_sum/ {s += $2} /^job_outcome_batch_size_count/ {c += $2} END {printf "%.1f", c ? s / c : 0}')
  # shellcheck disable=SC2086 # a list of pids
  kill $WORKERS; wait $WORKERS 2>/dev/null || true; WORKERS=
  DRAIN_RATE=$(python3 -c "print(round($jobs / ($ended - $started)))")
  # CPU ms per job: worker processes, PostgreSQL, RabbitMQ, everything else.
  DRAIN_CPU=$(cpu_per "$cpu_before" "$cpu_after" "$jobs")
}

worker_ceiling() { # mean batch size
  local batch clients=${BENCH_WORKER_PREFETCH:-32}
  batch=$(python3 -c "print(max(1, round(float('$1'))))")
  # One pending file to re-check, and each client's own batch of pending files to mark.
  psql -X -q -v ON_ERROR_STOP=1 "$SUPER/$DB" <<SQL
insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
select gen_random_uuid(), '$ORG_A', 'ceiling-' || c || '-' || g || '.txt', 1, repeat('a', 64), '$USER_A'
  from generate_series(1, $clients) c, generate_series(1, $batch) g
union all
select gen_random_uuid(), '$ORG_A'::uuid, 'ceiling-read.txt', 1, repeat('a', 64), '$USER_A'::uuid;
create schema if not exists bench;
grant usage on schema bench to tenant_files_app;
drop table if exists bench.batches;
create table bench.batches as
select (regexp_match(filename, '^ceiling-(\d+)-'))[1]::int - 1 as client,
       array_agg(id order by id) as ids,
       array_agg('ready'::text) as ready,
       array_agg('pending'::text) as pending,
       array_agg('text/plain'::text) as mime_types,
       array_agg(null::text) as errors,
       'pending' as expect_pending,
       'ready' as expect_ready
  from app.files
 where organization_id = '$ORG_A' and filename ~ '^ceiling-\d+-'
 group by 1;
grant select on bench.batches to tenant_files_app;
vacuum analyze app.files;
SQL
  local file
  file=$(psql -X -At "$SUPER/$DB" -c "select id from app.files where filename = 'ceiling-read.txt'")
  # For every 2B re-check reads, one run of worker_write.sql (two outcome statements of B files):
  # jobs/s = script runs/s x 2B / (2B + 1).
  "$PGBENCH" -n -M prepared -c"$clients" -j2 -T"$DURATION" \
    -f "bench/pgbench/worker_read.sql@$((2 * batch))" -f bench/pgbench/worker_write.sql@1 \
    -D org="$ORG_A" -D usr="$USER_A" -D file="$file" "$APP_URL" 2>&1 \
    | python3 -c "import re,sys; out=sys.stdin.read(); m=re.search(r'tps = ([\d.]+)', out); print(round(float(m.group(1)) * 2 * $batch / (2 * $batch + 1)) if m else sys.exit(out))"
}
