#!/usr/bin/env bash
# `make bench-worker`: the worker's throughput with one and with two worker processes, against
# a pgbench replay of its statements (bench/jobs.sh). Same setup as `make bench`. A benchmark,
# not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
source bench/jobs.sh
REPORT="$OUT/worker-$(date -u +%Y%m%dT%H%M%SZ).md"
JOBS=${BENCH_JOBS:-20000}
# The api is not needed while the workers drain: its process would only take CPU time.
kill "$SERVICE"; wait "$SERVICE" 2>/dev/null || true

log "$JOBS jobs, one worker process"
drain_jobs "$JOBS" 1; ONE_RATE=$DRAIN_RATE ONE_BATCH=$DRAIN_BATCH ONE_CPU=$DRAIN_CPU
log "$JOBS jobs, two worker processes"
drain_jobs "$JOBS" 2; TWO_RATE=$DRAIN_RATE TWO_BATCH=$DRAIN_BATCH TWO_CPU=$DRAIN_CPU
log "pgbench replay (batches of $ONE_BATCH)"
CEILING=$(worker_ceiling "$ONE_BATCH")

python3 - "$REPORT" <<PY
import sys
one, two, ceiling = int("$ONE_RATE"), int("$TWO_RATE"), int("$CEILING")
lines = [f"# Worker run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({'$(nproc)'} cores, $JOBS jobs per drain, prefetch ${BENCH_WORKER_PREFETCH:-32} per process)", "",
         "| worker processes | jobs/s | mean outcomes per statement | ratio to the pgbench ceiling | CPU ms per job: workers / PostgreSQL / RabbitMQ / other |",
         "|---|---|---|---|---|",
         f"| 1 | {one} | $ONE_BATCH | {one / ceiling:.2f} | {' / '.join('$ONE_CPU'.split())} |",
         f"| 2 | {two} | $TWO_BATCH | {two / ceiling:.2f} | {' / '.join('$TWO_CPU'.split())} |", "",
         f"- ceiling: pgbench replay of the worker's statements (a re-check read per job, one outcome statement per $ONE_BATCH jobs) at -c${BENCH_WORKER_PREFETCH:-32}: {ceiling} jobs/s (target: one process >= 0.5 of it)"]
report = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(report)
print(report)
PY
log "report: $REPORT"
