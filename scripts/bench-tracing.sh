#!/usr/bin/env bash
# `make bench-tracing`: what exporting traces at 100% sampling costs the ingress per webhook, as a ratio
# against the same ingress in the same run without tracing. Open loop at BENCH_FIXED_RATE (default 3000/s) for
# BENCH_FIXED_SECS (default 30) per run, three runs of each, alternating, on one Apache Kafka node: the
# ingress's CPU time per accepted request, and p50/p99. Traced runs export every span (`webhook`, `verify`,
# `kafka.ack`: three per webhook) over OTLP/HTTP to bench-otlp-sink, a local endpoint that answers 200, and the
# sink's count shows they did. The processor's spans are not in this bench.
set -euo pipefail
cd "$(dirname "$0")/.."
fixed_rate=${BENCH_FIXED_RATE:-3000}
fixed_secs=${BENCH_FIXED_SECS:-30}
secret=bench-secret
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cargo build --release --locked -p hookline-ingress -p hookline-bench >&2
start_broker

declare -A result
run_id=$(date +%s)
sink_port=$(free_port)
"$bin/bench-otlp-sink" "127.0.0.1:$sink_port" >>"$work/sink.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$sink_port/stats"
start_traced() { # raw topic
  HOOKLINE_TRACING__OTLP_ENDPOINT="http://127.0.0.1:$sink_port/v1/traces" start_hookline "$1"
}

echo "${fixed_secs}s at ${fixed_rate}/s per run, untraced and traced, three runs each" >&2
echo "  warm-up (not counted)..." >&2
start_traced "bench.tracing.warmup.$run_id"
"$bin/bench-loadgen" closed --url "$(url "$server_port")" --secret "$secret" --duration-secs 10 --connections 64 >/dev/null
stop_server
for n in 1 2 3; do
  fixed_run hookline "$n"
  fixed_run traced "$n"
done
stats=$(curl -fsS "http://127.0.0.1:$sink_port/stats")

args=()
for n in 1 2 3; do args+=("${result[hookline-fixed$n]}" "${result[traced-fixed$n]}"); done
python3 - "${args[@]}" "$stats" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:7]]
sink = json.loads(sys.argv[7])
print()
print(f"ingress, open loop at {runs[0]['offered_per_sec']:.0f} req/s offered, {runs[0]['elapsed_secs']:.0f}s per run, alternating:")
print(f"{'run':<12}{'2xx/s':>8}{'CPU s':>8}{'CPU us/req':>12}{'p50 ms':>8}{'p99 ms':>8}  statuses")
for i, r in enumerate(runs):
    name = f"{'untraced' if i % 2 == 0 else 'traced'} {i // 2 + 1}"
    ok = sum(v for k, v in r['statuses'].items() if k.startswith('2'))
    print(f"{name:<12}{ok / r['elapsed_secs']:>8.0f}{r['cpu_secs']:>8.1f}{r['cpu_us_per_request']:>12.1f}"
          f"{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}  {r['statuses']}")
mu = statistics.median(r['cpu_us_per_request'] for r in runs[0::2])
mt = statistics.median(r['cpu_us_per_request'] for r in runs[1::2])
pu = statistics.median(r['p99_ms'] for r in runs[0::2])
pt = statistics.median(r['p99_ms'] for r in runs[1::2])
print(f"median CPU per request: untraced {mu:.1f} us, traced (100% sampled) {mt:.1f} us: {mt / max(mu, 0.001):.2f}x "
      f"(+{mt - mu:.1f} us); median p99 {pu:.1f} -> {pt:.1f} ms")
print(f"OTLP sink: {sink['requests']} exports, {sink['bytes'] / 1e6:.1f} MB")
if sink['requests'] == 0:
    sys.exit("the traced runs exported nothing")
PY
