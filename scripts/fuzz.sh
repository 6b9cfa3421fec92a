#!/usr/bin/env bash
# Property-based fuzzing of the running service against its own OpenAPI document (schemathesis).
#
#   scripts/fuzz.sh            what `make fuzz` runs; FUZZ_MAX_EXAMPLES (default 50) bounds it
#
# Starts PostgreSQL/RabbitMQ (dev-services), migrates, starts the service (api + worker) on a
# port of its own, signs a fresh user in with a personal API token, and lets schemathesis loose
# on every operation. Fails on any 500, any response that violates the document, or a crash.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PORT=${FUZZ_PORT:-5055}
API="http://127.0.0.1:$PORT"
VENV=.dev/venv
EXAMPLES=${FUZZ_MAX_EXAMPLES:-50}

scripts/dev-services.sh start
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'schemathesis>=4,<5'
fi
cargo build --quiet
BIN=${CARGO_TARGET_DIR:-target}/debug/tenant-files
"$BIN" --mode migrate

rm -rf .dev/fuzz-uploads
BIND=127.0.0.1:$PORT UPLOAD_DIR=.dev/fuzz-uploads BCRYPT_COST=4 LOGIN_MAX_FAILURES=100000 \
  QUEUE_PREFIX=tenant_files_fuzz "$BIN" --mode all >.dev/fuzz.log 2>&1 &
SERVICE=$!
trap 'kill $SERVICE 2>/dev/null || true; wait $SERVICE 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "$API/healthz" >/dev/null && break
  sleep 0.1
done

jar=$(mktemp)
suffix=$(date +%s%N)
csrf=$(curl -sf -c "$jar" -b "$jar" "$API/api/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"fuzz-$suffix@example.com\",\"password\":\"fuzzing password\",\"organization_name\":\"fuzz $suffix\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
token=$(curl -sf -b "$jar" -H "X-CSRF-Token: $csrf" -H 'content-type: application/json' \
  -d '{"name":"fuzz","expires_in_days":1}' "$API/api/tokens" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
rm -f "$jar"

PYTHONPATH=scripts SCHEMATHESIS_HOOKS=fuzz_hooks "$VENV/bin/schemathesis" run "$API/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "$EXAMPLES" \
  `# One worker: hypothesis parses lambdas' source with ast in each worker thread, and on` \
  `# CPython 3.11 two threads doing so at once can fail with "AST constructor recursion depth` \
  `# mismatch", an error of the fuzzer, not of the service.` \
  --workers 1 \
  --suppress-health-check all
