#!/usr/bin/env bash
# `make bench-scaling`: what scaling out costs and gives, on this machine, in one run
# (docs/scaling.md). Same setup as `make bench` (release build, seeded database, wrk on loopback).
#
#   1. file detail req/s from one api process, then from two api processes of the same binary
#      against the same database (two wrk runs at once, half the connections each);
#   2. a 1 GiB upload and its download, with local storage and with S3 (the dev SeaweedFS),
#      in MiB/s, and the api's peak RSS during each upload.
# A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
REPORT="$OUT/scaling-$(date -u +%Y%m%dT%H%M%SZ).md"

# A second api on the next port with the first one's settings, and one on S3 after it.
start_api() { # port extra-env...
  local port=$1; shift
  env DATABASE_URL=$APP_URL BIND=127.0.0.1:$port UPLOAD_DIR=$UPLOADS RUST_LOG=warn DB_POOL_SIZE=${BENCH_POOL:-32} \
    MAX_FILE_SIZE_MB=2048 QUEUE_PREFIX=tenant_files_bench "$@" "$BIN" --mode api >".dev/bench-api-$port.log" 2>&1 &
  echo $!
}
SESSION_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
# Sessions must be readable by every api: restart the first one with a shared key, sign in again.
kill "$SERVICE"; wait "$SERVICE" 2>/dev/null || true
SERVICE=$(start_api "$PORT" SESSION_KEY="$SESSION_KEY")
SECOND=$(start_api "$((PORT + 1))" SESSION_KEY="$SESSION_KEY")
S3_API=$(start_api "$((PORT + 2))" SESSION_KEY="$SESSION_KEY" STORAGE=s3 S3_ENDPOINT=http://127.0.0.1:38333 \
  S3_BUCKET=tenant-files S3_PREFIX=bench AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench)
trap 'kill $SERVICE $SECOND $S3_API 2>/dev/null || true; set_autogroup "$AUTOGROUP_WAS"' EXIT
for port in "$PORT" "$((PORT + 1))" "$((PORT + 2))"; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done
CSRF_A=$(login bench-a@example.com "$JAR_A")
COOKIE_A=$(cookie_of "$JAR_A")

rps() { python3 -c 'import re,sys; print(round(float(re.search(r"Requests/sec:\s+([\d.]+)", sys.stdin.read()).group(1))))'; }
DETAIL="/api/files/$FILE_A"
log "detail, one api process (-c$CONNECTIONS)"
wrk -t2 -c"$CONNECTIONS" -d2s -H "Cookie: $COOKIE_A" "$API$DETAIL" >/dev/null
ONE=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Cookie: $COOKIE_A" "$API$DETAIL" | rps)
log "detail, two api processes (-c$((CONNECTIONS / 2)) each, at once)"
SECOND_API="http://127.0.0.1:$((PORT + 1))"
wrk -t1 -c"$((CONNECTIONS / 2))" -d2s -H "Cookie: $COOKIE_A" "$SECOND_API$DETAIL" >/dev/null
wrk -t1 -c"$((CONNECTIONS / 2))" -d"${DURATION}s" -H "Cookie: $COOKIE_A" "$API$DETAIL" >.dev/bench-two-1.txt &
wrk -t1 -c"$((CONNECTIONS / 2))" -d"${DURATION}s" -H "Cookie: $COOKIE_A" "$SECOND_API$DETAIL" >.dev/bench-two-2.txt
wait
TWO=$(( $(rps <.dev/bench-two-1.txt) + $(rps <.dev/bench-two-2.txt) ))

BIG=.dev/bench-1gib.bin
[ -f "$BIG" ] || head -c 1073741824 /dev/urandom >"$BIG"
declare -A UP DOWN PEAK
for store in local s3; do
  case $store in local) port=$PORT pid=$SERVICE ;; s3) port=$((PORT + 2)) pid=$S3_API ;; esac
  log "1 GiB upload and download, $store storage"
  samples=.dev/bench-rss-$store.txt; : >"$samples"
  ( while kill -0 "$pid" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$pid/status" >>"$samples"; sleep 0.05; done ) &
  sampler=$!
  answer=$(curl -sf -b "$JAR_A" -H "X-CSRF-Token: $CSRF_A" -F "file=@$BIG;filename=big.bin" \
    -w '\n%{time_total}' "http://127.0.0.1:$port/api/files/upload")
  kill $sampler
  UP[$store]=$(tail -n 1 <<<"$answer")
  PEAK[$store]=$(sort -n "$samples" | tail -n 1)
  id=$(head -n 1 <<<"$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["file_id"])')
  # No worker runs here: the file is marked ready directly (its bytes were hashed on upload).
  psql -X -q "$SUPER/$DB" -c "update app.files set status = 'ready', mime_type = 'application/octet-stream', processed_at = now() where id = '$id'"
  DOWN[$store]=$(curl -sf -o /dev/null -b "$JAR_A" -w '%{time_total}' "http://127.0.0.1:$port/api/files/$id/download")
done

python3 - "$REPORT" <<PY
import sys
one, two = int("$ONE"), int("$TWO")
lines = [f"# Scaling run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({'$(nproc)'} cores)", "",
         f"- detail req/s, one api process: {one}; two api processes: {two} (×{two / one:.2f})"]
for store in ("local", "s3"):
    up = {"local": float("${UP[local]}"), "s3": float("${UP[s3]}")}[store]
    down = {"local": float("${DOWN[local]}"), "s3": float("${DOWN[s3]}")}[store]
    peak = {"local": int("${PEAK[local]}"), "s3": int("${PEAK[s3]}")}[store]
    lines.append(f"- 1 GiB, {store} storage: upload {1024 / up:.0f} MiB/s (api peak RSS {peak / 1024:.0f} MiB), "
                 f"download {1024 / down:.0f} MiB/s")
report = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(report)
print(report)
PY
