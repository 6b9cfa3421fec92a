#!/usr/bin/env bash
# `make profile`: where the CPU goes while wrk drives each benchmarked request, with perf.
#
# Same setup as `make bench` (bench/setup.sh). For each request: a system-wide sample (which
# process takes the cores: the service, PostgreSQL, wrk) and the hottest symbols of the
# service and of PostgreSQL, then a call-graph sample of the service alone for the share of
# its time inside the syscalls that talk to PostgreSQL and to the client. Sampling uses the
# cpu-clock software event, which works on VMs without hardware counters. The text report is
# kept in bench/results/profile-*.txt. Needs root (or perf_event_paranoid <= 0).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
command -v perf >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }

SECONDS_SAMPLED=${PROFILE_SECONDS:-4}
REPORT="$OUT/profile-$(date -u +%Y%m%dT%H%M%SZ).txt"
report() { perf report -i "$1" --stdio --no-children -g none "${@:2}" 2>/dev/null | grep '%' | grep -v '^#'; }

profile() { # name path
  local -; set +o pipefail # `| head` closes perf report's pipe early
  local data=.dev/perf-$1
  log "profile $1 ($2)"
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Cookie: $COOKIE_A" "$API$2" >/dev/null
  wrk -t2 -c"$CONNECTIONS" -d"$((2 * SECONDS_SAMPLED + 3))s" -H "Cookie: $COOKIE_A" "$API$2" >"$data.wrk" &
  local load=$!
  sleep 1
  perf record -q -a -F 499 -e cpu-clock -o "$data.all" -- sleep "$SECONDS_SAMPLED" 2>/dev/null
  perf record -q -p "$SERVICE" -F 499 -e cpu-clock --call-graph dwarf,16384 -o "$data.svc" -- sleep "$SECONDS_SAMPLED" 2>/dev/null
  wait $load
  {
    echo "== $1: GET $2 — $(awk '/Requests\/sec/ {print $2}' "$data.wrk") req/s under the sampling"
    echo "-- CPU by process (100% = both cores busy for the whole sample)"
    report "$data.all" --sort comm | head -n 6
    echo "-- service: hottest symbols (self time)"
    report "$data.all" --comm 'actix-server wo' --sort dso,sym | head -n 15
    echo "-- postgres: hottest symbols (self time)"
    report "$data.all" --comm postgres --sort dso,sym | head -n 15
    echo "-- service: share of its time inside these kernel calls (call graph, inclusive)"
    perf report -i "$data.svc" --stdio --children -g none --sort sym 2>/dev/null \
      | grep -E '\[k\] (__x64_sys_sendto|__x64_sys_recvfrom|__x64_sys_epoll_wait|__x64_sys_writev|__x64_sys_write)$' || true
    echo
  } >>"$REPORT"
}

profile detail "/api/files/$FILE_A"
profile list "/api/files?page=1&limit=20"
profile me "/api/auth/me"
cat "$REPORT"
log "report: $REPORT"
