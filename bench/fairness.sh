#!/usr/bin/env bash
# `make bench-fairness`, in three parts (BENCH_FAIRNESS="jobs connections uploads" by default):
#
# jobs: how long organization B's upload waits for its validation while organization A holds
#   a backlog of validation jobs (1k / 10k / 20k: a bulk import, a worker restart, a broker
#   outage drained), with the relay's fair share (RELAY_QUEUE_DEPTH, default) and without it
#   (RELAY_QUEUE_DEPTH=0: every job goes out at once); and the rate at which A's backlog
#   drains either way: what the mechanism costs. One worker process, the api serving B.
# connections: B's file-detail latency (wrk -c8) idle and while the organization with
#   1,000,000 files runs 64 concurrent searches of a common term, for each DB_POOL_ORG_SHARE
#   in BENCH_SHARES (100: no bound).
# uploads: B's 4 KB uploads (wrk -c4) idle and while A sends 32 concurrent 8 MiB uploads
#   without pause, for each UPLOAD_MEMORY_ORG_SHARE in BENCH_MEMORY_SHARES (100: no share of
#   the process's upload memory, UPLOAD_MEMORY_MB at its default).
#
# Same setup as `make bench`. A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PARTS=${BENCH_FAIRNESS:-jobs connections uploads}
case " $PARTS " in *" connections "*) ;; *) export BENCH_BIG_ORG_FILES=${BENCH_BIG_ORG_FILES:-1000} ;; esac
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
case " $PARTS " in *" jobs "*)
  for jobs in $BACKLOGS; do
    for depth in "$FAIR_DEPTH" 0; do
      log "A's backlog of $jobs jobs, RELAY_QUEUE_DEPTH=$depth"
      fairness_case "$jobs" "$depth"
      ROWS+="$jobs $depth $B_SECONDS $DRAIN_RATE
"
    done
  done ;;
esac

COOKIE_B=$(cookie_of "$JAR_B")
FILE_B=$(psql -X -At "$SUPER/$DB" -c "select id from app.files where organization_id = '$ORG_B' limit 1")
FLOOD_PATH="/api/files?q=file-1&limit=20"
b_detail() { # -> wrk_summary of B's file detail at -c8
  wrk -t1 -c8 -d"${DURATION}s" --latency -s bench/tails.lua -H "Cookie: $COOKIE_B" "$API/api/files/$FILE_B" | wrk_summary
}
# One case: the api restarted with DB_POOL_ORG_SHARE=$1. Appends "share idle_p50 idle_p99
# flood_p50 flood_p99 flood_rps flood_refused_share" to SHARE_ROWS.
SHARE_ROWS=""
connections_case() { # share
  local idle loaded flood
  restart_service DB_POOL_ORG_SHARE="$1"
  b_detail >/dev/null # warm-up: connections, prepared statements
  idle=$(b_detail)
  wrk -t1 -c64 -d"$((DURATION + 4))s" -H "Cookie: $COOKIE_C" "$API$FLOOD_PATH" >.dev/bench-fairness-flood.txt &
  local flood_pid=$!
  sleep 2
  loaded=$(b_detail)
  wait "$flood_pid"
  flood=$(python3 -c '
import re, sys
out = open(".dev/bench-fairness-flood.txt").read()
total = int(re.search(r"(\d+) requests in", out).group(1))
refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
print(f"{rps:.0f} {int(refused.group(1)) / total if refused else 0:.2f}")')
  set -- "$1" $idle
  local share=$1 idle_p50=$3 idle_p99=$4
  set -- $loaded
  SHARE_ROWS+="$share $idle_p50 $idle_p99 $2 $3 $flood
"
}
case " $PARTS " in *" connections "*)
  for share in ${BENCH_SHARES:-100 50 12}; do
    log "B's detail idle and under 64 searches of the 1,000,000-file organization, DB_POOL_ORG_SHARE=$share"
    connections_case "$share"
  done ;;
esac

multipart_lua() { # cookie csrf bytes filename -> a wrk script posting one file of that size
  cat <<LUA
wrk.method = "POST"
wrk.headers["Cookie"] = "$1"
wrk.headers["X-CSRF-Token"] = "$2"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=BENCHBOUNDARY"
wrk.body = "--BENCHBOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"$4\"\r\nContent-Type: application/octet-stream\r\n\r\n" .. string.rep("x", $3) .. "\r\n--BENCHBOUNDARY--\r\n"
LUA
}
b_uploads() { # -> wrk_summary of B's 4 KB uploads at -c4
  wrk -t1 -c4 -d"${DURATION}s" --latency -s .dev/bench-fairness-b-upload.lua "$API/api/files/upload" | wrk_summary
}
# One case: UPLOAD_MEMORY_ORG_SHARE=$1. Appends "share idle_p50 idle_p99 flood_p50 flood_p99
# b_non2xx flood_rps" to MEMORY_ROWS.
MEMORY_ROWS=""
uploads_case() { # share
  local idle loaded flood_rps
  restart_service UPLOAD_MEMORY_ORG_SHARE="$1"
  b_uploads >/dev/null # warm-up
  idle=$(b_uploads)
  wrk -t1 -c32 -d"$((DURATION + 4))s" -s .dev/bench-fairness-a-upload.lua "$API/api/files/upload" >.dev/bench-fairness-upload-flood.txt &
  local flood_pid=$!
  sleep 2
  loaded=$(b_uploads)
  wait "$flood_pid"
  flood_rps=$(python3 -c 'import re; print(re.search(r"Requests/sec:\s+([\d.]+)", open(".dev/bench-fairness-upload-flood.txt").read()).group(1))')
  set -- "$1" $idle
  local share=$1 idle_p50=$3 idle_p99=$4
  set -- $loaded
  MEMORY_ROWS+="$share $idle_p50 $idle_p99 $2 $3 $5 $flood_rps
"
  # The flood's bytes are not read again (their rows stay): keep the disk for the next case.
  find "$UPLOADS" -type f -size +1M -delete 2>/dev/null || true
}
case " $PARTS " in *" uploads "*)
  # Room for every upload in flight at once: what is shared here is the memory, not the slots.
  psql -X -q "$SUPER/$DB" -c "update app.organizations set max_concurrent_uploads = 1000, storage_quota_mb = 10000000 where id in ('$ORG_A', '$ORG_B')"
  multipart_lua "$COOKIE_A" "$CSRF_A" $((8 * 1024 * 1024)) flood.bin >.dev/bench-fairness-a-upload.lua
  multipart_lua "$COOKIE_B" "$CSRF_B" 4096 small.txt >.dev/bench-fairness-b-upload.lua
  cat bench/tails.lua >>.dev/bench-fairness-b-upload.lua
  for share in ${BENCH_MEMORY_SHARES:-100 50}; do
    log "B's 4 KB uploads idle and under A's 32 concurrent 8 MiB uploads, UPLOAD_MEMORY_ORG_SHARE=$share"
    uploads_case "$share"
  done ;;
esac

python3 - "$REPORT" <<PY
import sys
rows = [line.split() for line in """$ROWS""".strip().splitlines()]
shares = [line.split() for line in """$SHARE_ROWS""".strip().splitlines()]
memory = [line.split() for line in """$MEMORY_ROWS""".strip().splitlines()]
lines = [f"# Fairness run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({'$(nproc)'} cores, one worker process, prefetch ${BENCH_WORKER_PREFETCH:-32}, api pool ${BENCH_POOL:-32})", ""]
if rows:
    lines += ["| A's backlog (jobs) | RELAY_QUEUE_DEPTH | B's upload to ready (s) | A's backlog drained (jobs/s) |",
              "|---|---|---|---|"]
    lines += [f"| {jobs} | {depth if depth != '0' else '0 (no bound)'} | {seconds} | {rate} |" for jobs, depth, seconds, rate in rows]
    fair = [float(s) for _, d, s, _ in rows if d != "0"]
    lines += ["", f"- target: B's file ready within 2 s under every backlog with the bound: {'met' if max(fair) <= 2 else 'missed'} (worst {max(fair):.2f} s)"]
    for jobs in sorted({r[0] for r in rows}, key=int):
        rates = {d: int(r) for j, d, _, r in rows if j == jobs}
        fair_rate, free_rate = rates["$FAIR_DEPTH"], rates["0"]
        lines.append(f"- {jobs} jobs: the bound drains at {fair_rate} jobs/s against {free_rate} without it ({fair_rate / free_rate - 1:+.0%})")
    lines.append("")
if shares:
    lines += ["B's file detail (wrk -c8, ms) idle and while the 1,000,000-file organization sends 64 concurrent $FLOOD_PATH:", "",
              "| DB_POOL_ORG_SHARE | B idle p50 | B idle p99 | B under the flood p50 | p99 | p99 ÷ idle p99 (target ≤ 3) | flood req/s | flood answered 429 |",
              "|---|---|---|---|---|---|---|---|"]
    for share, ip50, ip99, fp50, fp99, frps, refused in shares:
        ratio = float(fp99) / float(ip99)
        lines.append(f"| {share}{' (no bound)' if share == '100' else ''} | {ip50} | {ip99} | {fp50} | {fp99} | {ratio:.1f} {'✓' if ratio <= 3 else '✗'} | {frps} | {float(refused):.0%} |")
if memory:
    lines += ["", "B's 4 KB uploads (wrk -c4, ms) idle and while A sends 32 concurrent 8 MiB uploads (UPLOAD_MEMORY_MB at its default):", "",
              "| UPLOAD_MEMORY_ORG_SHARE | B idle p50 | B idle p99 | B under the flood p50 | p99 | p99 ÷ idle p99 | B non-2xx | A's flood uploads/s |",
              "|---|---|---|---|---|---|---|---|"]
    for share, ip50, ip99, fp50, fp99, refused, frps in memory:
        lines.append(f"| {share}{' (no share)' if share == '100' else ''} | {ip50} | {ip99} | {fp50} | {fp99} | {float(fp99) / float(ip99):.1f} | {refused} | {float(frps):.1f} |")
report = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(report)
print(report)
PY
log "report: $REPORT"
