#!/usr/bin/env bash
# `make bench` (ingress part): hookline's ingress against a minimal baseline (bench/src/bin/baseline.rs: hyper,
# an HMAC-SHA256 check and one produce awaiting its delivery report), both on the same Apache Kafka node:
#
# 1. closed loop at 16, 64, 256 and 1024 connections: accepted req/s, p50/p99;
# 2. open loop at a fixed offered rate (BENCH_FIXED_RATE, default 3000/s) for both, three times each,
#    alternating: CPU time per accepted request (user + system time of the process over the run, divided by
#    the 2xx count), p50/p99; the median of the three is compared;
# 3. a surge at 3x hookline's capacity, a 1 s deadline on every request: every answer 202/429/503 in time,
#    the ingress's peak RSS, and every 202'd webhook found on the raw topic. The surge's capacity is Kafka's:
#    the broker's produce quota for the ingress's client id (BENCH_SURGE_QUOTA_BYTES per second, default
#    131072, compressed bytes, as a shared cluster's quota would) caps how fast records are stored, and the
#    capacity is what the ingress accepts at 256 connections under it. (Without a cap the ingress's capacity
#    is the CPU of this 2-core machine, which the load generator shares, so it could not offer 3x of it; and
#    no server answers three times the requests its CPU can parse.)
#
# Before any measured run, both servers run once unmeasured, so the broker's JIT is warm for either.
#
# Environment: BENCH_SECS (each closed-loop run, default 15), BENCH_FIXED_SECS (default 30),
# BENCH_SURGE_SECS (default 60), KAFKA_BROKERS (use that cluster instead of a local node).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-15}
fixed_rate=${BENCH_FIXED_RATE:-3000}
fixed_secs=${BENCH_FIXED_SECS:-30}
surge_secs=${BENCH_SURGE_SECS:-60}
surge_quota=${BENCH_SURGE_QUOTA_BYTES:-131072}
secret=bench-secret
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cargo build --release --locked -p hookline-ingress -p hookline-bench >&2
start_broker

declare -A result
run_id=$(date +%s)

# Starts the baseline on a topic of its own; sets $server_pid and $server_port.
start_baseline() { # topic
  server_port=$(free_port)
  "$bin/bench-baseline" "127.0.0.1:$server_port" "$brokers" "$1" "$secret" >>"$work/baseline.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$server_port") 2>/dev/null && break; sleep 0.1; done
}

closed_run() { # baseline|hookline, connections
  "start_$1" "bench.$1.c$2.$run_id"
  echo "  $1, $2 connections, ${secs}s..." >&2
  result[$1-$2]=$("$bin/bench-loadgen" closed --url "$(url "$server_port")" --secret "$secret" \
    --duration-secs "$secs" --connections "$2")
  stop_server
}

echo "${secs}s per closed-loop run, ${fixed_secs}s at ${fixed_rate}/s (x3), ${surge_secs}s surge" >&2
echo "  warm-up (not counted)..." >&2
for server in baseline hookline; do
  "start_$server" "bench.$server.warmup.$run_id"
  "$bin/bench-loadgen" closed --url "$(url "$server_port")" --secret "$secret" --duration-secs 10 \
    --connections 64 >/dev/null
  stop_server
done
for c in 16 64 256 1024; do
  closed_run baseline "$c"
  closed_run hookline "$c"
done
for n in 1 2 3; do
  fixed_run baseline "$n"
  fixed_run hookline "$n"
done

# Surge: 3x the capacity hookline shows at 256 connections under Kafka's produce quota, a 1 s deadline on
# every request.
client_id="hookline-surge-$run_id"
limited="Kafka quota of $surge_quota bytes/s"
kafka_quota "$client_id" "$surge_quota" || limited="no Kafka quota (KAFKA_BROKERS is not ours to change)"
start_hookline "bench.capacity.$run_id"
echo "  hookline ($limited), 256 connections, ${secs}s (surge capacity)..." >&2
capacity_run=$("$bin/bench-loadgen" closed --url "$(url "$server_port")" --secret "$secret" \
  --duration-secs "$secs" --connections 256)
stop_server
capacity=$(json "$capacity_run" "['accepted_per_sec']")
rate=$(python3 -c "print(round(3 * $capacity))")
raw="bench.surge.$run_id"
start_hookline "$raw"
echo "surge: offering $rate req/s (3 x $capacity, $limited) for ${surge_secs}s..." >&2
sample_rss "$server_pid" "$work/rss_peak_kb"
sampler=$!
surge=$("$bin/bench-loadgen" open --url "$(url "$server_port")" --secret "$secret" \
  --duration-secs "$surge_secs" --rate "$rate" --timeout-ms 1000 --accepted-out "$work/accepted.txt")
metrics=$(curl -fsS "http://127.0.0.1:$admin_port/metrics" | grep -E '^hookline_ingress_(requests_total|admission_limit)' || true)
stop_server
kill "$sampler" 2>/dev/null || true
rss_kb=$(cat "$work/rss_peak_kb" 2>/dev/null || echo 0)
verify=$("$bin/bench-loadgen" verify --brokers "$brokers" --topic "$raw" --accepted "$work/accepted.txt")
echo "$metrics" >&2

args=()
for c in 16 64 256 1024; do args+=("${result[baseline-$c]}" "${result[hookline-$c]}"); done
for n in 1 2 3; do args+=("${result[baseline-fixed$n]}" "${result[hookline-fixed$n]}"); done
python3 - "${args[@]}" "$surge" "$verify" "$rss_kb" "$limited" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:9]]
fixed = [json.loads(a) for a in sys.argv[9:15]]
surge, verify = (json.loads(a) for a in sys.argv[15:17])
rss_mb = int(sys.argv[17]) / 1024
limited = sys.argv[18]
def verdict(ok): return 'met' if ok else 'MISSED'
print()
print("ingress, closed loop (Apache Kafka, one node):")
print(f"{'conns':>6}  {'baseline 202/s':>14}{'p50 ms':>8}{'p99 ms':>8}  {'hookline 202/s':>14}{'p50 ms':>8}{'p99 ms':>8}"
      f"  {'req/s ratio':>11}{'p99 ratio':>10}  hookline statuses")
for i in range(4):
    b, h = runs[2 * i], runs[2 * i + 1]
    print(f"{h['connections']:>6}  {b['accepted_per_sec']:>14.0f}{b['p50_ms']:>8.1f}{b['p99_ms']:>8.1f}"
          f"  {h['accepted_per_sec']:>14.0f}{h['p50_ms']:>8.1f}{h['p99_ms']:>8.1f}"
          f"  {h['accepted_per_sec'] / max(b['accepted_per_sec'], 0.001):>10.2f}x"
          f"{h['p99_ms'] / max(b['p99_ms'], 0.001):>9.2f}x  {h['statuses']}")
b256, h256, h16 = runs[4], runs[5], runs[1]
tp = h256['accepted_per_sec'] / max(b256['accepted_per_sec'], 0.001)
p99 = h256['p99_ms'] / max(b256['p99_ms'], 0.001)
print(f"target at 256: req/s >= 0.90x baseline: {verdict(tp >= 0.9)} ({tp:.2f}x); p99 <= 1.5x baseline: "
      f"{verdict(p99 <= 1.5)} ({p99:.2f}x); at 16: p50 <= 3 ms: {verdict(h16['p50_ms'] <= 3)} ({h16['p50_ms']:.1f} ms)")
print()
print(f"ingress, open loop at {fixed[0]['offered_per_sec']:.0f} req/s offered, {fixed[0]['elapsed_secs']:.0f}s per run, "
      "three runs each, alternating:")
print(f"{'run':<12}{'2xx/s':>8}{'CPU s':>8}{'CPU us/req':>12}{'p50 ms':>8}{'p99 ms':>8}  statuses")
for i, r in enumerate(fixed):
    name = f"{'baseline' if i % 2 == 0 else 'hookline'} {i // 2 + 1}"
    ok = sum(v for k, v in r['statuses'].items() if k.startswith('2'))
    print(f"{name:<12}{ok / r['elapsed_secs']:>8.0f}{r['cpu_secs']:>8.1f}{r['cpu_us_per_request']:>12.1f}"
          f"{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}  {r['statuses']}")
mb = statistics.median(r['cpu_us_per_request'] for r in fixed[0::2])
mh = statistics.median(r['cpu_us_per_request'] for r in fixed[1::2])
cpu = mh / max(mb, 0.001)
print(f"median CPU per request: baseline {mb:.1f} us, hookline {mh:.1f} us; target <= 1.2x: {verdict(cpu <= 1.2)} ({cpu:.2f}x)")
print()
st = surge['statuses']
other = {k: v for k, v in st.items() if k not in ('202', '429', '503')}
print(f"surge: {surge['offered_per_sec']:.0f}/s offered (3 x the ingress's capacity, {limited}), "
      f"{surge['sent_per_sec']:.0f}/s sent for {surge['elapsed_secs']:.0f}s ({surge['not_sent']} not sent: the load "
      f"generator's own limit of unanswered requests): {surge['requests']} requests, statuses {st}, "
      f"p50 {surge['p50_ms']:.1f} ms, p99 {surge['p99_ms']:.1f} ms, max {surge['max_ms']:.1f} ms")
within = not other and surge['max_ms'] <= 1000
print(f"surge: every answer 202/429/503 within 1 s: {verdict(within)}{'' if within else ' ' + str(other)}")
print(f"surge: peak RSS {rss_mb:.0f} MB (< 256 MB: {verdict(rss_mb < 256)})")
lost = verify['accepted'] - verify['found_on_topic']
print(f"surge: {verify['accepted']} accepted, {verify['found_on_topic']} found on the raw topic, lost {lost}"
      f"{'' if lost == 0 else ' e.g. ' + str(verify['missing_examples'])}")
sys.exit(1 if lost else 0)
PY
