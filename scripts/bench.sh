#!/usr/bin/env bash
# `make bench`: hookline's ingress against a minimal baseline (bench/src/bin/baseline.rs) on the same local
# broker, at 64 and 256 connections, then a surge at 3x hookline's measured capacity.
#
# Environment: BENCH_SECS (each closed-loop run, default 15), BENCH_SURGE_SECS (default 60),
# KAFKA_BROKERS (use that cluster instead of a local Tansu).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$CARGO_TARGET_DIR/release"
secs=${BENCH_SECS:-15}
surge_secs=${BENCH_SURGE_SECS:-60}
secret=bench-secret
work=$(mktemp -d "${TMPDIR:-/tmp}/hookline-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

cargo build --release --locked -p hookline-ingress -p hookline-bench >&2

if [ -n "${KAFKA_BROKERS:-}" ]; then
  brokers=$KAFKA_BROKERS
else
  tansu=$(scripts/ensure-tansu.sh)
  port=$(free_port)
  brokers="127.0.0.1:$port"
  mkdir -p "$work/broker"
  (cd "$work/broker" && exec "$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine sqlite://tansu.db) >"$work/broker.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
fi
run_id=$(date +%s)
echo "broker: $brokers; ${secs}s per closed-loop run, ${surge_secs}s surge" >&2

declare -A result
closed_runs() { # name url
  for c in 64 256; do
    echo "  $1, $c connections..." >&2
    result[$1-$c]=$("$bin/bench-loadgen" closed --url "$2" --secret "$secret" --duration-secs "$secs" --connections "$c")
  done
}

# (a) the baseline
base_port=$(free_port)
"$bin/bench-baseline" "127.0.0.1:$base_port" "$brokers" "bench.baseline.$run_id" "$secret" >"$work/baseline.log" 2>&1 &
base_pid=$!
pids+=($base_pid)
sleep 1
echo "baseline:" >&2
closed_runs baseline "http://127.0.0.1:$base_port/webhooks/bench"
kill -TERM "$base_pid"

# (b) hookline, full verification, limits and metrics on
ing_port=$(free_port)
raw="bench.raw.$run_id"
cat >"$work/ingress.toml" <<TOML
[server]
listen = "127.0.0.1:$ing_port"
max_in_flight = 4096
[kafka]
brokers = "$brokers"
[topics]
raw = "$raw"
raw_partitions = 12
[producer]
ack_timeout_ms = 5000
[sources.bench]
dedup_key = { json_pointer = "/id" }
ordering_key = { json_pointer = "/order" }
content_types = ["application/json"]
max_in_flight = 4096
rate_limit = { per_second = 1000000 }
[sources.bench.verify]
scheme = "hmac"
header = "X-Signature"
prefix = "sha256="
secrets = [{ value = "old-rotated-out", id = "old" }, { value = "$secret", id = "current" }]
TOML
HOOKLINE_LOG=warn "$bin/hookline-ingress" --config "$work/ingress.toml" >"$work/ingress.log" 2>&1 &
ing_pid=$!
pids+=($ing_pid)
wait_http "http://127.0.0.1:$ing_port/readyz"
echo "hookline:" >&2
closed_runs hookline "http://127.0.0.1:$ing_port/webhooks/bench"

# Surge: 3x the capacity hookline just showed, with a 1 s deadline per request.
capacity=$(json "${result[hookline-256]}" "['accepted_per_sec']")
rate=$(python3 -c "print(round(3 * $capacity))")
echo "surge: offering $rate req/s (3 x $capacity) for ${surge_secs}s..." >&2
( peak=0; while kill -0 "$ing_pid" 2>/dev/null; do
    kb=$(awk '/VmRSS/ {print $2}' "/proc/$ing_pid/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$peak" ] && peak=$kb && echo "$peak" >"$work/rss_peak_kb"
    sleep 0.2
  done ) &
sampler=$!
surge=$("$bin/bench-loadgen" open --url "http://127.0.0.1:$ing_port/webhooks/bench" --secret "$secret" \
  --duration-secs "$surge_secs" --rate "$rate" --timeout-ms 1000 --accepted-out "$work/accepted.txt")
sleep 1
rss_kb=$(cat "$work/rss_peak_kb" 2>/dev/null || echo 0)
kill "$sampler" 2>/dev/null || true
verify=$("$bin/bench-loadgen" verify --brokers "$brokers" --topic "$raw" --accepted "$work/accepted.txt")

python3 - "${result[baseline-64]}" "${result[baseline-256]}" "${result[hookline-64]}" "${result[hookline-256]}" \
  "$surge" "$verify" "$rss_kb" <<'PY'
import json, sys
b64, b256, h64, h256, surge, verify = (json.loads(a) for a in sys.argv[1:7])
rss_mb = int(sys.argv[7]) / 1024
print()
print(f"{'run':<22}{'conns':>6}{'202/s':>10}{'p50 ms':>9}{'p99 ms':>9}  statuses")
for name, r in [("baseline", b64), ("baseline", b256), ("hookline", h64), ("hookline", h256)]:
    print(f"{name:<22}{r['connections']:>6}{r['accepted_per_sec']:>10.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}  {r['statuses']}")
print()
for c, b, h in [(64, b64, h64), (256, b256, h256)]:
    print(f"ratio at {c:>3} connections: throughput {h['accepted_per_sec'] / b['accepted_per_sec']:.2f}x, "
          f"p99 {h['p99_ms'] / max(b['p99_ms'], 0.001):.2f}x")
tp = h256['accepted_per_sec'] / b256['accepted_per_sec']
p99 = h256['p99_ms'] / max(b256['p99_ms'], 0.001)
print(f"target at 256: throughput >= 0.90x: {'met' if tp >= 0.9 else 'MISSED'} ({tp:.2f}x); "
      f"p99 <= 1.5x: {'met' if p99 <= 1.5 else 'MISSED'} ({p99:.2f}x)")
print()
st = surge['statuses']
allowed = {k: v for k, v in st.items() if k in ('202', '429', '503')}
other = {k: v for k, v in st.items() if k not in allowed}
print(f"surge: offered {surge['offered_per_sec']:.0f}/s for {surge['elapsed_secs']:.0f}s: {surge['requests']} requests, "
      f"statuses {st}, p50 {surge['p50_ms']:.1f} ms, p99 {surge['p99_ms']:.1f} ms, max {surge['max_ms']:.1f} ms")
print(f"surge: every answer 202/429/503 within 1 s: {'met' if not other and surge['max_ms'] <= 1000 else 'MISSED ' + str(other)}")
print(f"surge: peak RSS {rss_mb:.0f} MB (< 256 MB: {'met' if rss_mb < 256 else 'MISSED'})")
lost = verify['accepted'] - verify['found_on_topic']
print(f"surge: {verify['accepted']} accepted, {verify['found_on_topic']} on the raw topic, lost {lost}"
      f"{'' if lost == 0 else ' e.g. ' + str(verify['missing_examples'])}")
sys.exit(1 if lost else 0)
PY
