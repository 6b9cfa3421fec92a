#!/usr/bin/env bash
# `make bench-tails` (#24): where the service's tail comes from. For detail, list and me at
# -c8 and -c32: wrk's percentiles through the service beside the pgbench replay of the same
# statements (before and after the service's runs, so the machine's drift shows), and beside
# the service's own view of the same requests (http_request_duration_seconds, from the
# middleware's first poll to the answer: what happens before it — the socket waiting for a
# worker thread, the request's parsing — is wrk's figure minus this one). Each hypothesis is
# a variant the service is restarted with (BENCH_TAIL_VARIANTS: "name=ENV=value,..." entries
# separated by spaces, an underscore in a value standing for a space, e.g.
# "pool8=BENCH_POOL=8 nice=BENCH_WRAP=nice_-n_-10"; AUTOGROUP=0/1 sets the kernel's autogroup
# for that variant instead). By default: the kernel's autogroup on, then off (bench/setup.sh).
# A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
export BENCH_BIG_ORG_FILES=${BENCH_BIG_ORG_FILES:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source bench/setup.sh
REPORT="$OUT/tails-$(date -u +%Y%m%dT%H%M%SZ).md"
VARIANTS=${BENCH_TAIL_VARIANTS:-"autogroup-on=AUTOGROUP=1 autogroup-off=AUTOGROUP=0"}

# The service's own p50 and p99 of one route between two scrapes, from the histogram's buckets
# (linear within a bucket: as coarse as the buckets, 2.5/5/10/25/50 ms around the tails).
inside() { # before-scrape after-scrape route
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
def buckets(path, route):
    out = {}
    for line in open(path):
        m = re.match(r'http_request_duration_seconds_bucket\{(.*)\} (\d+)', line)
        if m and f'route="{route}"' in m.group(1) and 'status="200"' in m.group(1) and 'method="GET"' in m.group(1):
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            out[float("inf") if le == "+Inf" else float(le)] = int(m.group(2))
    return out
before, after = buckets(sys.argv[1], sys.argv[3]), buckets(sys.argv[2], sys.argv[3])
edges = sorted(after)
counts = [after[e] - before.get(e, 0) for e in edges]
total = counts[-1]
def pick(q):
    want, low, seen = q * total, 0.0, 0
    for edge, cumulative in zip(edges, counts):
        if cumulative >= want:
            inside = (want - seen) / max(1, cumulative - seen)
            return 1000 * (low + (edge - low) * inside) if edge != float("inf") else 1000 * low
        low, seen = edge, cumulative
print(f"{pick(0.5):.2f} {pick(0.99):.2f}")
PY
}

restart() { # variant settings: "NAME=value,..." (underscores in a value stand for spaces)
  local setting value env=()
  IFS=, read -ra settings <<<"$1"
  for setting in "${settings[@]}"; do
    value=${setting#*=}
    case ${setting%%=*} in
      AUTOGROUP) set_autogroup "$value" ;;
      *) env+=("${setting%%=*}=${value//_/ }") ;;
    esac
  done
  restart_service "${env[@]}"
}

declare -A ROUTE=([detail]="/api/files/{id}" [list]="/api/files" [me]="/api/auth/me")
declare -A URL=([detail]="/api/files/$FILE_A" [list]="/api/files?page=1&limit=20" [me]="/api/auth/me")
ROWS=.dev/bench-tails-rows.txt
: >"$ROWS"
replays() { # label
  local name c
  for c in 8 32; do
    for name in detail list me; do
      log "replay $name -c$c ($1)"
      # The list's replay is its page query alone (total=0), as in `make bench`.
      echo "replay-$1 $name $c $(CONNECTIONS=$c pgbench_run "$name" "$ORG_A" "$USER_A" "$FILE_A" "$KEYHASH_A" \
        "$([ "$name" = list ] && echo 0 || echo 1)")" >>"$ROWS"
    done
  done
}

for variant in $VARIANTS; do
  label=${variant%%=*}
  settings=${variant#"$label"}; settings=${settings#=}
  restart "$settings"
  for c in 8 32; do
    CONNECTIONS=$c
    for name in detail list me; do
      log "$label: wrk $name -c$c"
      wrk -t2 -c"$c" -d2s -H "Cookie: $COOKIE_A" "$API${URL[$name]}" >/dev/null
      curl -sf "$API/metrics" >.dev/bench-tails-before.txt
      read -r rps p50 p99 p90 p999 < <(wrk_run "${URL[$name]}" "$COOKIE_A")
      curl -sf "$API/metrics" >.dev/bench-tails-after.txt
      echo "service-$label $name $c $rps $p50 $p99 $p999 $(inside .dev/bench-tails-before.txt .dev/bench-tails-after.txt "${ROUTE[$name]}")" >>"$ROWS"
    done
  done
  # The replay in the same minutes and with the same settings of the machine.
  replays "$label"
done

python3 - "$ROWS" "$REPORT" "$VARIANTS" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
replay = {(kind[7:], name, c): [float(v) for v in values] for kind, name, c, *values in rows if kind.startswith("replay-")}
lines = ["Tails (#24): wrk through the service beside the pgbench replay of the same statements "
         "(run right after the service's, with the same settings of the machine), ms. `inside` is the service's own histogram "
         "(http_request_duration_seconds, interpolated in its buckets) for the same requests.",
         f"Variants: {sys.argv[3]}", "",
         "| variant | request | -c | req/s | p50 | p99 | p99.9 | inside p50 | inside p99 | replay tps | replay p50 | replay p99 | p99 ÷ replay p99 | p99 ÷ own p50 |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for kind, name, c, *values in rows:
    if not kind.startswith("service-"):
        continue
    rps, p50, p99, p999, in50, in99 = (float(v) for v in values)
    tps, rp50, rp99, _ = replay[(kind[8:], name, c)]
    lines.append(f"| {kind[8:]} | {name} | {c} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {p999:.2f} | {in50:.2f} | {in99:.2f} | "
                 f"{tps:.0f} | {rp50:.2f} | {rp99:.2f} | "
                 f"{p99 / rp99:.1f} {'✓' if p99 / rp99 <= 3 else '✗'} | {p99 / p50:.1f} {'✓' if p99 / p50 <= 4 else '✗'} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
log "report: $REPORT"
