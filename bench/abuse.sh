#!/usr/bin/env bash
# `make bench-abuse`: one account's stalled resumable uploads against the process's memory
# (docs/performance.md, "Stalled uploads"). ABUSE_CONNECTIONS (default 500) tus uploads of one
# freshly registered account each get one PATCH that sends ABUSE_BYTES (default 8 MiB - 1) of an
# 8 MiB body and then stalls; meanwhile another organization's file detail is read with wrk.
# Reports the api's RSS before, at its peak (VmHWM) and after, the other organization's req/s
# and tail, and how the stalled PATCHes ended (429 for those beyond the organization's upload
# slots, at once; 408 after the idle timeout for those receiving). Same setup as
# `make bench`, with a small seed. A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

export BENCH_BIG_ORG_FILES=${BENCH_BIG_ORG_FILES:-10000}
source bench/setup.sh
REPORT="$OUT/abuse-$(date -u +%Y%m%dT%H%M%SZ).md"
STALLED=${ABUSE_CONNECTIONS:-500}
BODY_BYTES=$((8 * 1024 * 1024))
SENT_BYTES=${ABUSE_BYTES:-$((BODY_BYTES - 1))}

# Quota for every upload's declared length. Its upload slots stay the default (8 receiving at
# once) unless ABUSE_SLOTS raises them: with room for all 500, only the process's memory budget
# and the idle timeout stand between them and the process (the rival measurement).
SLOTS=${ABUSE_SLOTS:-8}
psql -X -q "$SUPER/$DB" -c "update app.organizations set max_concurrent_uploads = $SLOTS, storage_quota_mb = 1000000 where id = '$ORG_A'"
TOKEN=$(curl -sf -b "$JAR_A" -H "X-CSRF-Token: $CSRF_A" -H 'content-type: application/json' \
  -d '{"name":"abuse","expires_in_days":1}' "$API/api/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
FILE_C=$(psql -X -At "$SUPER/$DB" -c "select id from app.files where organization_id = '$ORG_C' limit 1")

rss_kib() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$SERVICE/status"; }
RSS_BEFORE=$(rss_kib VmRSS)

log "$STALLED stalled PATCHes of $SENT_BYTES bytes each, from one account"
python3 - "$PORT" "$TOKEN" "$STALLED" "$BODY_BYTES" "$SENT_BYTES" >.dev/bench-abuse-clients.txt <<'PY' &
import asyncio, base64, collections, http.client, sys
port, token, count, length, sent = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
paths = []
conn = http.client.HTTPConnection("127.0.0.1", port)
for n in range(count):
    name = base64.b64encode(f"stalled-{n}.bin".encode()).decode()
    conn.request("POST", "/api/files/tus", headers={**auth, "Upload-Length": str(length), "Upload-Metadata": f"filename {name}"})
    created = conn.getresponse()
    created.read()
    assert created.status == 201, created.status
    paths.append("/api/" + created.getheader("Location").split("/api/", 1)[1])

async def stall(path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n")
    writer.write(head.encode())
    # The answer may come before the body is sent (429 at once): read it meanwhile.
    answer = asyncio.ensure_future(reader.readline())
    piece, left = b"x" * 65536, sent
    try:
        while left > 0 and not answer.done():
            writer.write(piece[:min(left, len(piece))])
            left -= min(left, len(piece))
            await writer.drain()
        # Stalled: the last byte never comes. The server's answer (or its closing) ends it.
        status = await asyncio.wait_for(answer, timeout=120)
        return status.split(b" ")[1].decode() if status else "closed"
    except (ConnectionError, asyncio.TimeoutError) as e:
        if answer.done() and not answer.cancelled() and answer.exception() is None and answer.result():
            return answer.result().split(b" ")[1].decode()
        return type(e).__name__
    finally:
        writer.close()

async def main():
    ended = await asyncio.gather(*(stall(p) for p in paths))
    print(" ".join(f"{k}:{v}" for k, v in sorted(collections.Counter(ended).items())))
asyncio.run(main())
PY
CLIENTS=$!
# Let the bodies pile up before measuring the other organization.
sleep 5
log "another organization's file detail while they stall"
read -r DETAIL_RPS DETAIL_P50 DETAIL_P99 _ < <(wrk_run "/api/files/$FILE_C" "$COOKIE_C")
RSS_DURING=$(rss_kib VmRSS)
THREADS_DURING=$(rss_kib Threads)
wait "$CLIENTS"
RSS_PEAK=$(rss_kib VmHWM)
RSS_AFTER=$(rss_kib VmRSS)
ENDED=$(cat .dev/bench-abuse-clients.txt)
STORED=$(psql -X -At "$SUPER/$DB" -c "select coalesce(sum(upload_offset), 0) from app.tus_uploads where organization_id = '$ORG_A'")

python3 - "$REPORT" <<PY
import sys
mib = lambda kib: int(kib) / 1024
lines = [f"# Stalled uploads run {'$(date -u +%Y-%m-%dT%H:%MZ)'} ({'$(nproc)'} cores)", "",
         f"- {$STALLED} PATCHes from one account (upload slots: $SLOTS), each {$SENT_BYTES} bytes of an 8 MiB body, then stalled",
         f"- api RSS: before {mib($RSS_BEFORE):.0f} MiB, during {mib($RSS_DURING):.0f} MiB, peak {mib($RSS_PEAK):.0f} MiB, after {mib($RSS_AFTER):.0f} MiB (target: under 256 MiB); {$THREADS_DURING} threads during",
         f"- another organization's file detail meanwhile: {$DETAIL_RPS} req/s, p50 {$DETAIL_P50} ms, p99 {$DETAIL_P99} ms (-c$CONNECTIONS, ${DURATION}s)",
         f"- how the stalled PATCHes ended: $ENDED",
         f"- bytes they left stored as chunks (kept, resumable): {int('$STORED') / 1048576:.0f} MiB"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "report: $REPORT"
