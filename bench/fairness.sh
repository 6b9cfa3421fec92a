#!/usr/bin/env bash
# `make bench-fairness`: how long organization B's upload waits for its validation while
# organization A holds a backlog of validation jobs (1k / 10k / 20k: a bulk import, a worker
# restart, a broker outage drained), with the relay's fair share (RELAY_QUEUE_DEPTH, default)
# and without it (RELAY_QUEUE_DEPTH=0: every job goes out at once, oldest first); and the rate
# at which A's backlog drains either way: what the mechanism costs. One worker process, the
# api serving B. Same setup as `make bench` (with a small third organization: its million
# files play no part here). A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

export BENCH_BIG_ORG_FILES=${BENCH_BIG_ORG_FILES:-1000}
source bench/setup.sh
source bench/jobs.sh
REPORT="$OUT/fairness-$(date -u +%Y%m%dT%H%M%SZ).md"
BACKLOGS=${BENCH_BACKLOGS:-1000 10000 20000}
FAIR_DEPTH=${BENCH_RELAY_QUEUE_DEPTH:-1000}
JAR_B=$(mktemp)
CSRF_B=$(login bench-b@example.com "$JAR_B")
B_BODY=.dev/bench-fairness-b.txt
echo "organization B's one file" >"$B_BODY"

# One case: A's backlog of $1 jobs, the relay's depth bound $2. Sets B_SECONDS (B's upload
# sent, a quarter into A's backlog → B's file ready) and DRAIN_RATE (A's jobs/s, the worker started → A's backlog gone).
fairness_case() { # backlog depth
  local jobs=$1 started uploaded id ended
  seed_jobs "$jobs"
  started=$(date +%s.%N)
  WORKERS=$(RELAY_QUEUE_DEPTH=$2 METRICS_BIND=127.0.0.1:$((PORT + 1)) start_service worker fairness)
  # B uploads once a quarter of A's backlog is done: by then a relay without the bound has
  # published all of it (it publishes far faster than a worker validates), so B's job queues
  # behind the rest, as behind any backlog already in the broker.
  while [ "$(pending_of_a)" -gt $((jobs * 3 / 4)) ]; do sleep 0.01; done
  uploaded=$(date +%s.%N)
  id=$(curl -sf -b "$JAR_B" -H "X-CSRF-Token: $CSRF_B" -F "file=@$B_BODY" "$API/api/files/upload" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["file_id"])')
  until curl -sf -b "$JAR_B" "$API/api/files/$id" | grep -q '"status":"ready"'; do sleep 0.01; done
  B_SECONDS=$(python3 -c "print(f'{$(date +%s.%N) - $uploaded:.2f}')")
  while [ "$(pending_of_a)" != 0 ]; do sleep 0.1; done
  ended=$(date +%s.%N)
  kill "$WORKERS"; wait "$WORKERS" 2>/dev/null || true; WORKERS=
  DRAIN_RATE=$(python3 -c "print(round($jobs / ($ended - $started)))")
}

ROWS=""
for jobs in $BACKLOGS; do
  for depth in "$FAIR_DEPTH" 0; do
    log "A's backlog of $jobs jobs, RELAY_QUEUE_DEPTH=$depth"
    fairness_case "$jobs" "$depth"
    ROWS+="$jobs $depth $B_SECONDS $DRAIN_RATE
"
  done
done

python3 - "$REPORT" <<PY
import sys
rows = [line.split() for line in """$ROWS""".strip().splitlines()]
lines = [f"# Fairness run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({'$(nproc)'} cores, one worker process, prefetch ${BENCH_WORKER_PREFETCH:-32})", "",
         "| A's backlog (jobs) | RELAY_QUEUE_DEPTH | B's upload to ready (s) | A's backlog drained (jobs/s) |",
         "|---|---|---|---|"]
lines += [f"| {jobs} | {depth if depth != '0' else '0 (no bound)'} | {seconds} | {rate} |" for jobs, depth, seconds, rate in rows]
fair = [float(s) for _, d, s, _ in rows if d != "0"]
lines += ["", f"- target: B's file ready within 2 s under every backlog with the bound: {'met' if max(fair) <= 2 else 'missed'} (worst {max(fair):.2f} s)"]
for jobs in sorted({r[0] for r in rows}, key=int):
    rates = {d: int(r) for j, d, _, r in rows if j == jobs}
    fair_rate, free_rate = rates["$FAIR_DEPTH"], rates["0"]
    lines.append(f"- {jobs} jobs: the bound drains at {fair_rate} jobs/s against {free_rate} without it ({fair_rate / free_rate - 1:+.0%})")
report = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(report)
print(report)
PY
log "report: $REPORT"
