# Sourced by bench/run.sh after bench/setup.sh: PostGraphile 4.14.1 (npm; bench/peer/) serving
# the bench database as the app role, RLS on, the tenant set per transaction from request
# headers (bench/peer/server.js). peer_measure NAME QUERY VARIABLES sets PEER[NAME] to
# "req/s p50 p99" from the same wrk command as ours.
PEER_PORT=$((PORT + 11))
PEER_DIR=bench/peer
command -v npm >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
[ -d "$PEER_DIR/node_modules/postgraphile" ] || (cd "$PEER_DIR" && npm ci --no-audit --no-fund --loglevel=error)

declare -A PEER
start_peer() {
  (cd "$PEER_DIR" && PORT=$PEER_PORT DATABASE_URL=$APP_URL POOL=${BENCH_POOL:-32} exec node server.js) >.dev/bench-peer.log 2>&1 &
  PEER_PID=$!
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$PEER_PORT/graphql" -H 'content-type: application/json' \
      -d '{"query":"{ __typename }"}' && return
    sleep 0.2
  done
  log "the peer did not start:"; cat .dev/bench-peer.log >&2; return 1
}

peer_measure() { # name query variables-json
  python3 - "$2" "$3" "$ORG_A" "$USER_A" >.dev/bench-peer.lua <<'PY'
import json, sys
query, variables, org, user = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
body = json.dumps({"query": query, "variables": variables})
print('wrk.method = "POST"')
print('wrk.headers["Content-Type"] = "application/json"')
print(f'wrk.headers["X-Org-Id"] = "{org}"')
print(f'wrk.headers["X-User-Id"] = "{user}"')
print(f"wrk.body = {json.dumps(body)}")
PY
  local answer
  answer=$(curl -sf -X POST "http://127.0.0.1:$PEER_PORT/graphql" -H 'content-type: application/json' \
    -H "X-Org-Id: $ORG_A" -H "X-User-Id: $USER_A" -d "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "variables": json.loads(sys.argv[2])}))' "$2" "$3")")
  case $answer in *'"errors"'*|'') log "the peer answered: $answer"; return 1 ;; esac
  log "wrk peer $1"
  wrk -t2 -c"$CONNECTIONS" -d2s -s .dev/bench-peer.lua "http://127.0.0.1:$PEER_PORT/graphql" >/dev/null
  PEER[$1]=$(API="http://127.0.0.1:$PEER_PORT" wrk_run /graphql none -s .dev/bench-peer.lua)
}

# What our GET /api/files/{id} and GET /api/files?page=1&limit=20 answer, asked of the peer.
PEER_DETAIL='query($id: UUID!) { fileById(id: $id) { id filename fileSizeBytes mimeType sha256 status errorMessage uploadedAt processedAt userByOrganizationIdAndUploadedBy { email } } }'
# The list names its organization as a condition, as a PostGraphile deployment over RLS would
# (and as our own statements do, as a courtesy to the planner): with the tenant only in the
# policy, PostgreSQL plans the page and its totalCount without knowing the organization's
# share of the rows, and with one organization of 1,000,000 files it counts by a parallel
# sequential scan of the whole table (94 ms each; 3 ms by the organization's index with the
# condition). docs/performance.md, "A fair peer list".
PEER_LIST='query($org: UUID!) { allFiles(first: 20, orderBy: [UPLOADED_AT_DESC, ID_DESC], condition: {deletedAt: null, organizationId: $org}) { totalCount nodes { id filename fileSizeBytes mimeType sha256 status errorMessage uploadedAt processedAt } } }'
