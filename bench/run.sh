#!/usr/bin/env bash
# `make bench`: the service against PostgreSQL's own ceiling, on this machine, in one run.
#
# Builds in release mode, starts the services as `make run` does, seeds a dedicated database
# (two organizations with 10,000 files each, one with 1,000,000 file rows), then measures with
# wrk on loopback (-t2 -c32, fixed duration) and replays the exact statements of each request
# with pgbench at the same concurrency (bench/pgbench/*.sql). Prints a Markdown report and
# keeps it in bench/results/. A benchmark, not a test: nothing here is timed by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

source bench/setup.sh
source bench/jobs.sh
source bench/peer.sh

# --- Measure ------------------------------------------------------------------------------
# RESULT: "req/s p50 p99" (wrk) or tps (pgbench); CPU: ms of CPU per request of each kind of
# process in that run ("service postgres rabbitmq other"; other = wrk or pgbench, and the rest).
declare -A RESULT CPU
measure() { # name path cookie script org user keyhash [total]
  local cpu
  log "wrk $2 (after a 2 s warm-up: pool connections, prepared statements)"
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Cookie: $3" "$API$2" >/dev/null
  cpu=$(cpu_split)
  RESULT[$1]=$(wrk_run "$2" "$3")
  CPU[$1]=$(cpu_per "$cpu" "$(cpu_split)" "${RESULT[$1]%% *} * $DURATION")
  log "pgbench $4${8:+ (total=$8)}"
  cpu=$(cpu_split)
  RESULT[$1_ceiling]=$(pgbench_run "$4" "$5" "$6" "$FILE_A" "$7" "${8:-1}")
  CPU[$1_ceiling]=$(cpu_per "$cpu" "$(cpu_split)" "${RESULT[$1_ceiling]%% *} * $DURATION")
}
measure detail "/api/files/$FILE_A" "$COOKIE_A" detail "$ORG_A" "$USER_A" "$KEYHASH_A"
measure list "/api/files?page=1&limit=20" "$COOKIE_A" list "$ORG_A" "$USER_A" "$KEYHASH_A" 0 # ceiling: the page query alone
measure me "/api/auth/me" "$COOKIE_A" me "$ORG_A" "$USER_A" "$KEYHASH_A"
# The peer, right after ours, on the same database, by the same wrk command.
start_peer
peer_measure detail "$PEER_DETAIL" "{\"id\": \"$FILE_A\"}"
peer_measure list "$PEER_LIST" "{\"org\": \"$ORG_A\"}"
kill "$PEER_PID"; wait "$PEER_PID" 2>/dev/null || true

log "wrk list, 1,000,000-file organization"
wrk -t2 -c"$CONNECTIONS" -d2s -H "Cookie: $COOKIE_C" "$API/api/files?page=1&limit=20" >/dev/null
RESULT[list_1m]=$(wrk_run "/api/files?page=1&limit=20" "$COOKIE_C")

# Hashing never stalls reads: detail p99 while 16 logins hash (bcrypt cost 12) all along.
log "detail under 16 concurrent logins"
cat > .dev/bench-login.lua <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench-b@example.com","password":"bench password"}'
LUA
wrk -t1 -c16 -d"$((DURATION + 2))s" -s .dev/bench-login.lua "$API/api/auth/login" >.dev/bench-logins.txt 2>&1 &
LOGINS=$!
sleep 1
RESULT[detail_logins]=$(wrk_run "/api/files/$FILE_A" "$COOKIE_A")
wait $LOGINS || true
LOGIN_RPS=$(awk '/Requests\/sec/ {print $2}' .dev/bench-logins.txt)

# Upload of 1 GiB: service throughput (streamed, hashed, fsynced) vs a plain write of the same
# size to the same disk (dd with fsync), and the server's peak RSS (VmHWM) during it.
log "1 GiB upload vs plain disk write"
BIG=.dev/bench-1GiB.bin
[ -f "$BIG" ] || head -c 1073741824 /dev/urandom >"$BIG"
sync
DD_START=$(date +%s.%N)
dd if="$BIG" of=.dev/bench-dd.bin bs=1M conv=fsync status=none
DD_END=$(date +%s.%N)
rm -f .dev/bench-dd.bin
RSS_BEFORE=$(awk '/VmHWM/ {print $2}' /proc/$SERVICE/status)
RSS_SAMPLES=.dev/bench-rss.txt; : >"$RSS_SAMPLES"
( while kill -0 $SERVICE 2>/dev/null; do awk '/VmRSS/ {print $2}' /proc/$SERVICE/status >>"$RSS_SAMPLES"; sleep 0.05; done ) &
SAMPLER=$!
UPLOAD_SECONDS=$(curl -sf -o /dev/null -w '%{time_total}' -b "$JAR_A" -H "X-CSRF-Token: $CSRF_A" -F "file=@$BIG;filename=big.bin" "$API/api/files/upload")
kill $SAMPLER 2>/dev/null || true
RSS_PEAK_KB=$(sort -n "$RSS_SAMPLES" | tail -n 1)
DD_SECONDS=$(python3 -c "print($DD_END - $DD_START)")

# Worker: 20,000 jobs drained by one worker process (bench/jobs.sh), against a replay of its
# statements; `make bench-worker` adds two processes.
log "20,000 jobs, one worker process, then the pgbench replay"
drain_jobs "${BENCH_JOBS:-20000}" 1
WORKER_CEILING=$(worker_ceiling "$DRAIN_BATCH")

# --- Report -------------------------------------------------------------------------------
python3 - "$REPORT" <<PY
import sys
r = {k: v.split() for k, v in {
    "detail": "${RESULT[detail]}", "list": "${RESULT[list]}", "me": "${RESULT[me]}",
    "list_1m": "${RESULT[list_1m]}", "detail_logins": "${RESULT[detail_logins]}"}.items()}
replay = {k: [float(x) for x in v.split()] for k, v in {
    "detail": "${RESULT[detail_ceiling]}", "list": "${RESULT[list_ceiling]}", "me": "${RESULT[me_ceiling]}"}.items()}
ceil = {k: v[0] for k, v in replay.items()}
target = {"detail": 0.6, "list": 0.5, "me": 0.6}
cpu_ms = {k: [float(x) for x in v.split()] for k, v in {
    "detail": "${CPU[detail]}", "detail_ceiling": "${CPU[detail_ceiling]}", "list": "${CPU[list]}",
    "list_ceiling": "${CPU[list_ceiling]}", "me": "${CPU[me]}", "me_ceiling": "${CPU[me_ceiling]}"}.items()}
lines = []
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip()
lines.append(f"Machine: {cpu}, {__import__('os').cpu_count()} cores; wrk -t2 -c$CONNECTIONS -d${DURATION}s, pgbench -c$CONNECTIONS -j2 -T${DURATION} -M prepared; kernel.sched_autogroup_enabled = $AUTOGROUP_NOW.\n")
lines.append("| request | service req/s | p50 ms | p99 ms | pgbench ceiling tps | ratio | target |")
lines.append("|---|---|---|---|---|---|---|")
labels = [("detail", "GET /api/files/{id}"), ("list", "GET /api/files?page=1&limit=20 (ceiling: page query alone)"), ("me", "GET /api/auth/me")]
for name, label in labels:
    rps, p50, p99 = r[name][:3]
    ratio = float(rps) / ceil[name]
    lines.append(f"| {label} | {rps} | {p50} | {p99} | {ceil[name]:.0f} | {ratio:.2f} | ≥ {target[name]} {'✓' if ratio >= target[name] else '✗'} |")
lines.append("")
lines.append("Tails, per request (wrk --latency and bench/tails.lua) and per transaction of the replay (pgbench -l), ms;")
lines.append("targets (#24): the service's p99 within 3× the replay's, and within 4× its own p50:")
lines.append("")
lines.append("| request | service p50 | p90 | p99 | p99.9 | replay p50 | p99 | p99.9 | p99 ÷ replay p99 | p99 ÷ own p50 |")
lines.append("|---|---|---|---|---|---|---|---|---|---|")
for name, label in labels:
    p50, p99, p90, p999 = (float(r[name][i]) for i in (1, 2, 3, 4))
    _, rp50, rp99, rp999 = replay[name]
    vs_replay, vs_own = p99 / rp99, p99 / p50
    lines.append(f"| {name} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {p999:.2f} | {rp50:.2f} | {rp99:.2f} | {rp999:.2f} | "
                 f"{vs_replay:.1f} {'✓' if vs_replay <= 3 else '✗'} | {vs_own:.1f} {'✓' if vs_own <= 4 else '✗'} |")
lines.append("")
lines.append("CPU ms per request, by process, measured from /proc over each run (the two cores are shared by all):")
lines.append("")
lines.append("| request | run | service | PostgreSQL | wrk or pgbench, and the rest | total | ratio the CPU allows |")
lines.append("|---|---|---|---|---|---|---|")
for name in ("detail", "list", "me"):
    (svc, pg, mq, other), (_, pg_c, mq_c, other_c) = cpu_ms[name], cpu_ms[name + "_ceiling"]
    rest, rest_c = mq + other, mq_c + other_c
    ours, theirs = svc + pg + rest, pg_c + rest_c
    lines.append(f"| {name} | service + wrk | {svc:.3f} | {pg:.3f} | {rest:.3f} | {ours:.3f} | {theirs / ours:.2f} |")
    lines.append(f"| {name} | pgbench replay | – | {pg_c:.3f} | {rest_c:.3f} | {theirs:.3f} | |")
peer = {"detail": "${PEER[detail]}".split(), "list": "${PEER[list]}".split()}
lines.append("")
lines.append("| request | ours req/s | p99 ms | PostGraphile 4.14.1 req/s | p99 ms | ours ÷ peer | target |")
lines.append("|---|---|---|---|---|---|---|")
for name, label, want in [("detail", "file detail", 2), ("list", "list of 20 with total", 3)]:
    ours, theirs = r[name], peer[name]
    ratio = float(ours[0]) / float(theirs[0])
    lines.append(f"| {label} | {ours[0]} | {ours[2]} | {theirs[0]} | {theirs[2]} | {ratio:.2f} | ≥ {want} {'✓' if ratio >= want else '✗'} |")
l10k, l1m = float(r["list"][1]), float(r["list_1m"][1])
lines.append("")
lines.append(f"- List p50 with 1,000,000 files in the organization: {l1m} ms vs {l10k} ms with 10,000 "
             f"({(l1m / l10k - 1) * 100:+.0f}%; target within 25%) — req/s {r['list_1m'][0]} vs {r['list'][0]}.")
idle_p99, busy_p99 = float(r["detail"][2]), float(r["detail_logins"][2])
lines.append(f"- Detail p99 while 16 logins hash (bcrypt cost 12, {float('${LOGIN_RPS}' or 0):.1f} logins/s): {busy_p99} ms vs idle {idle_p99} ms "
             f"(×{busy_p99 / idle_p99:.2f}; target ≤ ×3); req/s {r['detail_logins'][0]}.")
upload_mb_s = 1024 / float("$UPLOAD_SECONDS"); dd_mb_s = 1024 / float("$DD_SECONDS")
lines.append(f"- 1 GiB upload: {upload_mb_s:.0f} MiB/s (hashing and fsync included) vs plain write {dd_mb_s:.0f} MiB/s "
             f"(ratio {upload_mb_s / dd_mb_s:.2f}; target ≥ 0.7); server peak RSS during the upload {int('$RSS_PEAK_KB') / 1024:.0f} MiB "
             f"(target < 100 MiB; VmHWM before it {int('$RSS_BEFORE') / 1024:.0f} MiB).")
wc, rate = float("$WORKER_CEILING"), int("$DRAIN_RATE")
lines.append(f"- Worker: ${BENCH_JOBS:-20000} jobs drained at {rate} jobs/s end to end (relay, queue, validation, outcome) by one worker process, "
             f"$DRAIN_BATCH outcomes per statement on average; pgbench replay of its statements at the same concurrency "
             f"(prefetch ${BENCH_WORKER_PREFETCH:-32}): {wc:.0f} jobs/s (ratio {rate / wc:.2f}; target ≥ 0.5). "
             f"CPU ms per job (worker / PostgreSQL / RabbitMQ / other): {' / '.join('$DRAIN_CPU'.split())}.")
text = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(text)
print(text)
PY
log "report: $REPORT"
