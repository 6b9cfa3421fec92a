#!/usr/bin/env bash
# `make bench-uploads`: many small uploads (docs/performance.md, "Small uploads"). 4 KB files
# posted by wrk at -c32 (multipart, a session with its CSRF token), against two ceilings of the
# same work on this machine: a pgbench replay of the upload's own statements
# (bench/pgbench/upload.sql), and a plain write + fsync of 4 KB files by 32 threads. Same setup
# as `make bench`. A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
REPORT="$OUT/uploads-$(date -u +%Y%m%dT%H%M%SZ).md"
# Room for 32 uploads in flight at once (the default allows 8 per organization).
psql -X -q "$SUPER/$DB" -c "update app.organizations set max_concurrent_uploads = 1000 where id = '$ORG_A'"

cat > .dev/bench-upload.lua <<LUA
wrk.method = "POST"
wrk.headers["Cookie"] = "$COOKIE_A"
wrk.headers["X-CSRF-Token"] = "$CSRF_A"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=BENCHBOUNDARY"
wrk.body = "--BENCHBOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"small.txt\"\r\nContent-Type: text/plain\r\n\r\n" .. string.rep("x", 4096) .. "\r\n--BENCHBOUNDARY--\r\n"
LUA
log "4 KB uploads, wrk -c$CONNECTIONS"
wrk -t2 -c"$CONNECTIONS" -d2s -s .dev/bench-upload.lua "$API/api/files/upload" >/dev/null
read -r UPLOAD_RPS UPLOAD_P50 UPLOAD_P99 _ < <(wrk_run /api/files/upload "$COOKIE_A" -s .dev/bench-upload.lua)

log "pgbench replay of the upload's statements"
read -r PGBENCH_TPS REPLAY_P50 REPLAY_P99 REPLAY_P999 < <(pgbench_run upload "$ORG_A" "$USER_A" "$FILE_A" "$KEYHASH_A")

log "plain write + fsync of 4 KB files, $CONNECTIONS threads"
FSYNC_OPS=$(python3 - "$CONNECTIONS" "$DURATION" <<'PY'
import os, sys, tempfile, threading, time
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
root = tempfile.mkdtemp(dir=".dev", prefix="bench-fsync-")
payload, counts, stop = b"x" * 4096, [0] * threads, time.monotonic() + seconds
def work(t):
    n = 0
    while time.monotonic() < stop:
        fd = os.open(os.path.join(root, f"{t}-{n}"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        n += 1
    counts[t] = n
workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(round(sum(counts) / seconds))
PY
)
rm -rf .dev/bench-fsync-*

python3 - "$REPORT" <<PY
import sys
rps, p50, p99 = int("$UPLOAD_RPS"), float("$UPLOAD_P50"), float("$UPLOAD_P99")
rp50, rp99, rp999 = float("$REPLAY_P50"), float("$REPLAY_P99"), float("$REPLAY_P999")
db, disk = int("$PGBENCH_TPS"), int("$FSYNC_OPS")
binding, ceiling = ("the database (pgbench replay)", db) if db <= disk else ("the disk (write + fsync)", disk)
lines = [f"# Small uploads run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({'$(nproc)'} cores, 4 KB files, -c$CONNECTIONS, ${DURATION}s)", "",
         f"- POST /api/files/upload: {rps} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms",
         f"- pgbench replay of its statements (per transaction, -l): p50 {rp50:.2f} ms, p99 {rp99:.2f} ms, p99.9 {rp999:.2f} ms; "
         f"the service's p99 is {p99 / rp99:.1f}x the replay's (the bytes' write and fsync are the service's alone)",
         f"- ceilings: pgbench replay of its statements {db} tps; plain write + fsync {disk} files/s",
         f"- ratio to the lower ceiling, {binding}: {rps / ceiling:.2f} (target >= 0.5)"]
report = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(report)
print(report)
PY
