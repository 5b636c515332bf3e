#!/usr/bin/env bash
# `make bench`: hookline's ingress against a minimal baseline (bench/src/bin/baseline.rs), at 64 and 256
# connections, then a surge at 3x hookline's measured capacity.
#
# Every run gets a fresh broker (same Tansu binary and settings, empty storage): Tansu's SQLite storage slows
# down as it fills, so runs sharing one broker would favour whichever ran first. With KAFKA_BROKERS set, that
# cluster is used for every run instead.
#
# Environment: BENCH_SECS (each closed-loop run, default 15), BENCH_SURGE_SECS (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-15}
surge_secs=${BENCH_SURGE_SECS:-60}
secret=bench-secret
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cargo build --release --locked -p hookline-ingress -p hookline-bench >&2
find_broker

declare -A result
run_id=$(date +%s)

baseline_run() { # name, connections, extra baseline args
  fresh_broker
  local port
  port=$(free_port)
  "$bin/bench-baseline" "127.0.0.1:$port" "$brokers" "bench.$1.$run_id" "$secret" ${3:-} >"$work/$1.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  echo "  $1, $2 connections..." >&2
  result[$1-$2]=$("$bin/bench-loadgen" closed --url "http://127.0.0.1:$port/webhooks/bench" --secret "$secret" \
    --duration-secs "$secs" --connections "$2")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

ingress_port=""
ingress_pid=""
start_hookline() { # raw topic
  ingress_port=$(free_port)
  cat >"$work/ingress.toml" <<TOML
[server]
listen = "127.0.0.1:$ingress_port"
[kafka]
brokers = "$brokers"
[topics]
raw = "$1"
raw_partitions = 12
[producer]
# The surge's senders give up after 1 s: answer them within it, 503 when Kafka is slower.
ack_timeout_ms = 900
[sources.bench]
dedup_key = { json_pointer = "/id" }
ordering_key = { json_pointer = "/order" }
content_types = ["application/json"]
rate_limit = { per_second = 1000000 }
[sources.bench.verify]
scheme = "hmac"
header = "X-Signature"
prefix = "sha256="
secrets = [{ value = "old-rotated-out", id = "old" }, { value = "$secret", id = "current" }]
TOML
  HOOKLINE_LOG=warn "$bin/hookline-ingress" --config "$work/ingress.toml" >>"$work/ingress.log" 2>&1 &
  ingress_pid=$!
  pids+=($ingress_pid)
  wait_http "http://127.0.0.1:$ingress_port/readyz"
}

hookline_run() { # connections
  fresh_broker
  start_hookline "bench.raw.$run_id.$1"
  echo "  hookline, $1 connections..." >&2
  result[hookline-$1]=$("$bin/bench-loadgen" closed --url "http://127.0.0.1:$ingress_port/webhooks/bench" \
    --secret "$secret" --duration-secs "$secs" --connections "$1")
  kill -TERM "$ingress_pid"
  wait "$ingress_pid" 2>/dev/null || true
}

echo "${secs}s per closed-loop run, ${surge_secs}s surge, a fresh broker for each" >&2
for c in 64 256; do
  baseline_run baseline "$c"
  baseline_run baseline_meta "$c" --meta-header
  hookline_run "$c"
done

# Surge: 3x the capacity hookline showed at 256 connections, a 1 s deadline on every request.
capacity=$(json "${result[hookline-256]}" "['accepted_per_sec']")
rate=$(python3 -c "print(round(3 * $capacity))")
fresh_broker
raw="bench.surge.$run_id"
start_hookline "$raw"
echo "surge: offering $rate req/s (3 x $capacity) for ${surge_secs}s..." >&2
sample_rss "$ingress_pid" "$work/rss_peak_kb"
sampler=$!
surge=$("$bin/bench-loadgen" open --url "http://127.0.0.1:$ingress_port/webhooks/bench" --secret "$secret" \
  --duration-secs "$surge_secs" --rate "$rate" --timeout-ms 1000 --accepted-out "$work/accepted.txt")
metrics=$(curl -fsS "http://127.0.0.1:$ingress_port/metrics" | grep -E '^hookline_ingress_(requests_total|admission_limit)' || true)
kill -TERM "$ingress_pid"
wait "$ingress_pid" 2>/dev/null || true
kill "$sampler" 2>/dev/null || true
rss_kb=$(cat "$work/rss_peak_kb" 2>/dev/null || echo 0)
verify=$("$bin/bench-loadgen" verify --brokers "$brokers" --topic "$raw" --accepted "$work/accepted.txt")
echo "$metrics" >&2

python3 - "${result[baseline-64]}" "${result[baseline-256]}" "${result[baseline_meta-64]}" "${result[baseline_meta-256]}" \
  "${result[hookline-64]}" "${result[hookline-256]}" "$surge" "$verify" "$rss_kb" <<'PY'
import json, sys
b64, b256, m64, m256, h64, h256, surge, verify = (json.loads(a) for a in sys.argv[1:9])
rss_mb = int(sys.argv[9]) / 1024
print()
print(f"{'run':<34}{'conns':>6}{'202/s':>9}{'p50 ms':>9}{'p99 ms':>9}  statuses")
rows = [("baseline", b64), ("baseline + metadata header", m64), ("hookline", h64),
        ("baseline", b256), ("baseline + metadata header", m256), ("hookline", h256)]
for name, r in rows:
    print(f"{name:<34}{r['connections']:>6}{r['accepted_per_sec']:>9.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}  {r['statuses']}")
print()
for c, b, m, h in [(64, b64, m64, h64), (256, b256, m256, h256)]:
    print(f"{c:>3} connections: hookline / baseline: throughput {h['accepted_per_sec'] / b['accepted_per_sec']:.2f}x, "
          f"p99 {h['p99_ms'] / max(b['p99_ms'], 0.001):.2f}x; "
          f"hookline / baseline + metadata header: throughput {h['accepted_per_sec'] / m['accepted_per_sec']:.2f}x, "
          f"p99 {h['p99_ms'] / max(m['p99_ms'], 0.001):.2f}x")
tp = h256['accepted_per_sec'] / b256['accepted_per_sec']
p99 = h256['p99_ms'] / max(b256['p99_ms'], 0.001)
print(f"target at 256 (vs baseline): throughput >= 0.90x: {'met' if tp >= 0.9 else 'MISSED'} ({tp:.2f}x); "
      f"p99 <= 1.5x: {'met' if p99 <= 1.5 else 'MISSED'} ({p99:.2f}x)")
print()
st = surge['statuses']
other = {k: v for k, v in st.items() if k not in ('202', '429', '503')}
print(f"surge: offered {surge['offered_per_sec']:.0f}/s for {surge['elapsed_secs']:.0f}s: {surge['requests']} requests, "
      f"statuses {st}, p50 {surge['p50_ms']:.1f} ms, p99 {surge['p99_ms']:.1f} ms, max {surge['max_ms']:.1f} ms")
within = not other and surge['max_ms'] <= 1000
print(f"surge: every answer 202/429/503 within 1 s: {'met' if within else 'MISSED ' + str(other)}")
print(f"surge: peak RSS {rss_mb:.0f} MB (< 256 MB: {'met' if rss_mb < 256 else 'MISSED'})")
lost = verify['accepted'] - verify['found_on_topic']
print(f"surge: {verify['accepted']} accepted, {verify['found_on_topic']} found on the raw topic, lost {lost}"
      f"{'' if lost == 0 else ' e.g. ' + str(verify['missing_examples'])}")
sys.exit(1 if lost else 0)
PY
