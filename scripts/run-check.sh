#!/usr/bin/env bash
# `make stop && make run` back to back, as a newcomer (or an operator restarting) would: the
# services stop, `make run` starts them again, migrates and serves; the check passes once the
# service answers /readyz (database and file store reachable), then stops it. Run by .ci/run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PORT=${RUN_CHECK_PORT:-5000}
LOG=.dev/run-check.log
mkdir -p .dev

make stop
# Its own process group, so the check can stop `make`, cargo and the service together.
BIND="127.0.0.1:$PORT" setsid make run >"$LOG" 2>&1 &
RUN=$!
trap 'kill -- -$RUN 2>/dev/null || true; wait $RUN 2>/dev/null || true' EXIT

# Generous: the first `make run` on a machine installs and builds.
for _ in $(seq 1 1800); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" 2>/dev/null)" = 200 ]; then
    echo "run-check: make stop && make run serves /readyz on $PORT"
    exit 0
  fi
  kill -0 "$RUN" 2>/dev/null || break
  sleep 0.5
done
echo "run-check: make run did not become ready; its log:" >&2
tail -n 40 "$LOG" >&2
exit 1
