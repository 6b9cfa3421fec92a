#!/usr/bin/env bash
# Webhook deliveries per second (#27), run by bench/events.sh on its database ($DB), whose
# "webhook" rounds left one pending delivery per upload for the endpoint it created. A release
# worker sends them to a loopback receiver that verifies every signature with the Standard
# Webhooks reference library (tests/webhooks/receiver.py); the receiver's own ceiling is
# measured first, on the same machine in the same minutes (the rival explanation of a low
# figure). Prints a Markdown section on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT=${PG_PORT:-54329}
SUPER="postgres://postgres@127.0.0.1:$PG_PORT"
DB=${DB:?the database bench/events.sh prepared}
WINDOW=${BENCH_SECONDS:-20}
log() { printf '[bench] %s\n' "$*" >&2; }

cargo build --release --quiet
make -s test-tools
SECRET="whsec_$(printf 'bench-webhook-secret-32-bytes!!!' | base64)"
RECEIVER_LOG=$(mktemp)
.dev/venv/bin/python tests/webhooks/receiver.py >"$RECEIVER_LOG" &
RECEIVER=$!
WORKER=
cleanup() { kill "$RECEIVER" ${WORKER:+"$WORKER"} 2>/dev/null || true; rm -f "$RECEIVER_LOG"; }
trap cleanup EXIT
until [ -s "$RECEIVER_LOG" ]; do sleep 0.1; done
PORT=$(head -n 1 "$RECEIVER_LOG")
curl -sf -X PUT -d "[\"$SECRET\"]" "http://127.0.0.1:$PORT/_control/secrets" >/dev/null

# The receiver alone: signed-looking POSTs of a delivery's size, 16 at once (wrk).
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
LUA=$(mktemp --suffix=.lua)
cat >"$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["webhook-id"] = "msg_ceiling"
wrk.headers["webhook-timestamp"] = tostring(os.time())
wrk.headers["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
wrk.body = '{"type":"file.uploaded","timestamp":"2026-12-07T08:01:02.123Z","data":{"file_id":"0b7f6c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e","filename":"bench.txt","size":20,"sha256":"4a2c3f0ad1e0e1b5c2c7c5b8b9d1f1f0a3c6e8d9b7a5c4e3f2a1b0c9d8e7f6a5","status":"pending"}}'
LUA
log "the receiver's own ceiling"
ceiling=$(wrk -t2 -c16 -d5s -s "$LUA" "http://127.0.0.1:$PORT/ceiling" | awk '/Requests\/sec/ {printf "%.0f", $2}')
rm -f "$LUA"
curl -sf -X PUT -d '[]' "http://127.0.0.1:$PORT/_control/received" >/dev/null

psql -X -q "$SUPER/$DB" -c "update app.webhooks set url = 'http://127.0.0.1:$PORT/in', enabled = true, failing_since = null"
# Deliveries alone: the rounds' uploads also left a validation job each, which the worker would
# otherwise validate beside (one run measured that mix: the relay then published jobs and
# deliveries in one loop, and each delivery round waited for a batch of jobs).
psql -X -q "$SUPER/$DB" -c "delete from app.outbox"
pending() { psql -X -At "$SUPER/$DB" -c "select count(*) from app.webhook_deliveries where state = 'pending'"; }
delivered() { psql -X -At "$SUPER/$DB" -c "select count(*) from app.webhook_deliveries where state = 'delivered'"; }
total=$(pending)

echo
echo "## Webhook deliveries per second"
echo
echo "$total deliveries pending (one per upload of the webhook rounds). A release worker sends them" \
  "to a loopback receiver (Python, ThreadingHTTPServer) that verifies each with the" \
  "\`standardwebhooks\` library; counted over ${WINDOW}s after a 5 s start, WEBHOOK_CONCURRENCY=32, at each" \
  "WEBHOOK_ENDPOINT_CONCURRENCY in turn (one endpoint: its cap is the bound a slow endpoint may hold)."
echo
echo "| measured | per second |"
echo "|---|---|"
echo "| the receiver alone (wrk, 16 connections, 5 s) | $ceiling |"
for concurrency in ${WEBHOOK_ENDPOINT_CONCURRENCIES:-8 32}; do
  log "deliveries, WEBHOOK_ENDPOINT_CONCURRENCY=$concurrency"
  # The last window's queue and leases are the previous worker's: start from none.
  psql -X -q "$SUPER/$DB" -c "update app.webhook_deliveries set queued = false, attempting = false, due_at = now() where state = 'pending'"
  DATABASE_URL="postgres://tenant_files_app@127.0.0.1:$PG_PORT/$DB" QUEUE_PREFIX="bench_webhooks_$$_$concurrency" \
    WEBHOOK_ALLOW_HTTP=true WEBHOOK_ALLOW_PRIVATE=true WEBHOOK_CONCURRENCY=32 WEBHOOK_ENDPOINT_CONCURRENCY=$concurrency \
    QUEUE_EXPIRES_MS=60000 RUST_LOG=${BENCH_WORKER_LOG:-warn} target/release/tenant-files --mode worker \
    >"${BENCH_WORKER_LOG_DIR:-/tmp}/bench-webhooks-worker-$concurrency.log" 2>&1 &
  WORKER=$!
  sleep 5
  start=$(delivered)
  sleep "$WINDOW"
  end=$(delivered)
  kill "$WORKER"
  wait "$WORKER" 2>/dev/null || true
  WORKER=
  echo "| deliveries, WEBHOOK_ENDPOINT_CONCURRENCY=$concurrency (worker → receiver, recorded delivered) | $(( (end - start) / WINDOW )) |"
done
received=$(curl -sf "http://127.0.0.1:$PORT/_control/received")
verified=$(printf '%s' "$received" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(1 for d in r if d["verified_with"] == [0]), len(r))')
echo
echo "Received ${verified#* }, of which ${verified% *} verified by the reference library; $(pending) still pending at the end."
