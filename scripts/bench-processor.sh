#!/usr/bin/env bash
# `make bench` (processor part): hookline's processor against a bare rdkafka consume -> produce loop
# (bench/src/bin/processor.rs), on the same preloaded raw records, then a state restore.
#
# 1. Preload N raw records (1 KB, 10% re-deliveries, 10,000 ordering keys, 12 partitions) on one Apache Kafka
#    node, run the bare loop over them, then hookline over the same topic (another group): both start behind
#    the whole backlog. Records/s from the first record consumed to the last output acknowledged, each
#    process's peak resident memory, and CPU time per record of each process and of the broker meanwhile
#    (on a machine the broker shares, its CPU is part of the ceiling).
# 2. Restore: a second processor with an empty data folder takes over hookline's group and rebuilds the dedup
#    state of every distinct webhook from the compacted state changelog. Timed from its start (startup, group
#    join, then all 12 partitions restored in parallel).
# 3. Latency: a processor on an empty raw topic, raw records written at a fixed rate (BENCH_LATENCY_RATE,
#    default 500/s, for 20 s): per webhook, the time from Kafka acknowledging its raw record (the ingress's
#    202) to its event being visible to a read_committed consumer, at the default commit interval.
# 4. Restart: that processor killed -9 and started again on its data folder: how long each partition's
#    restore takes once assigned (it reads only what was committed since its cache's position).
#
# Before the measured runs, both run unmeasured over a smaller backlog (BENCH_PROCESSOR_WARMUP_RECORDS, default
# 300000; a hookline pass twice), so the broker's JIT has compiled what either uses: a fresh broker spends up
# to half its CPU compiling for the first minute, which the processes measured then pay for on a shared
# machine. The broker's CPU spent compiling during each measured run is printed to show it settled.
#
# Environment: BENCH_PROCESSOR_RECORDS (default 1000000), BENCH_PROCESSOR_WARMUP_RECORDS (default 300000).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${BENCH_PROCESSOR_RECORDS:-1000000}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cargo build --release --locked -p hookline-processor -p hookline-bench >&2
start_broker
run_id=$(date +%s)

preload() { # topic records -> JSON
  echo "  preloading $2 raw records..." >&2
  "$bin/bench-processor" preload --brokers "$brokers" --topic "$1" --records "$2"
}

# The bare loop over $raw ($1 records, group $2): its JSON in $work/bare.json, its peak RSS and CPU in
# $work/bare_rss_kb(.cpu), the broker's CPU meanwhile in $bare_broker, of which JIT compiling $bare_jit (ticks).
run_bare() {
  local broker_before jit_before
  broker_before=$(broker_ticks); jit_before=$(broker_jit_ticks)
  "$bin/bench-processor" bare --brokers "$brokers" --topic "$raw" --out "$raw.copy.$2" --group "$2" \
    --records "$1" >"$work/bare.json" &
  bare_pid=$!
  pids+=($bare_pid)
  sample_rss "$bare_pid" "$work/bare_rss_kb"
  wait "$bare_pid"
  bare_broker=$(( $(broker_ticks) - broker_before )); bare_jit=$(( $(broker_jit_ticks) - jit_before ))
}

start_processor() { # name [group] [prefix of its output topics] -> sets $proc_pid, $proc_port
  proc_port=$(free_port)
  cat >"$work/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$proc_port"
[kafka]
brokers = "$brokers"
[topics]
raw = "$raw"
events = "${3:-$raw}.events"
dlq = "${3:-$raw}.dlq"
state = "${3:-$raw}.state"
[consumer]
group_id = "${2:-hookline.$run_id}"
[state]
dir = "$work/$1-state"
[sources.bench]
event_type = { json_pointer = "/type" }
TOML
  HOOKLINE_LOG=warn "$bin/hookline-processor" --config "$work/$1.toml" >>"$work/$1.log" 2>&1 &
  proc_pid=$!
  pids+=($proc_pid)
}

# hookline over $raw (named $1, group $2, $3 distinct webhooks expected, output topics prefixed $4): its JSON
# in $hook, its peak RSS and CPU in $work/$1_rss_kb(.cpu), the broker's CPU meanwhile in $hook_broker, of
# which JIT compiling $hook_jit.
run_hookline() {
  local broker_before jit_before
  broker_before=$(broker_ticks); jit_before=$(broker_jit_ticks)
  start_processor "$1" "$2" "${4:-}"
  sample_rss "$proc_pid" "$work/$1_rss_kb"
  hook=$("$bin/bench-processor" watch --metrics "http://127.0.0.1:$proc_port/metrics" --expect "$3")
  hook_broker=$(( $(broker_ticks) - broker_before )); hook_jit=$(( $(broker_jit_ticks) - jit_before ))
  sleep 0.3 # the sampler's last CPU reading
  kill -TERM "$proc_pid"
  wait "$proc_pid" 2>/dev/null || true
}

raw="bench.proc.warmup.$run_id"
warm=$(preload "$raw" "${BENCH_PROCESSOR_WARMUP_RECORDS:-300000}")
echo "  warming the broker up (unmeasured)..." >&2
run_bare "$(json "$warm" "['records']")" "bare.warmup.$run_id"
for pass in 1 2; do
  run_hookline "warmup$pass" "hookline.warmup$pass.$run_id" "$(json "$warm" "['unique']")" "$raw.$pass"
done

raw="bench.proc.raw.$run_id"
loaded=$(preload "$raw" "$records")
unique=$(json "$loaded" "['unique']")

echo "  bare consume -> produce loop..." >&2
run_bare "$records" "bare.$run_id"
bare=$(cat "$work/bare.json")

echo "  hookline-processor ($unique distinct webhooks)..." >&2
run_hookline hookline "hookline.$run_id" "$unique"

# Restore: an empty data folder, the same group.
echo "  restore into an empty data folder..." >&2
restore_started=$(date +%s.%N)
start_processor restore
restore=""
for _ in $(seq 1 1200); do
  m=$(curl -fsS "http://127.0.0.1:$proc_port/metrics" 2>/dev/null || true)
  if grep -qE '^hookline_processor_restore_duration_seconds_count 12$' <<<"$m"; then
    restore_secs=$(python3 -c "import time; print(time.time() - $restore_started)")
    restore="$(grep -E '^hookline_processor_restored_entries_total' <<<"$m")
restore_wall_seconds $restore_secs"
    break
  fi
  sleep 0.1
done
kill -TERM "$proc_pid"
wait "$proc_pid" 2>/dev/null || true
[ -n "$restore" ] || { echo "the restore did not finish; log:" >&2; tail -50 "$work/restore.log" >&2; exit 1; }

echo "  latency from 202 to visible..." >&2
raw="bench.proc.latency.$run_id"
start_processor latency
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$proc_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
latency=$("$bin/bench-processor" latency --brokers "$brokers" --topic "$raw" --events "$raw.events" \
  --rate "${BENCH_LATENCY_RATE:-500}" --secs 20)

# 4. Restart after kill -9 with the data folder intact: how long each partition's restore takes once assigned.
echo "  kill -9 and restart on the same data folder..." >&2
kill -KILL "$proc_pid"
wait "$proc_pid" 2>/dev/null || true
HOOKLINE_LOG=info "$bin/hookline-processor" --config "$work/latency.toml" >"$work/restart.log" 2>&1 &
proc_pid=$!
pids+=($proc_pid)
for _ in $(seq 1 300); do
  [ "$(grep -c 'partition restored' "$work/restart.log")" -ge 12 ] && break
  sleep 0.1
done
restart=$(python3 - "$work/restart.log" <<'PY'
import re, sys
text = re.sub(r'\x1b\[[0-9;]*m', '', open(sys.argv[1]).read())
secs = [float(m) for m in re.findall(r'partition restored .*?seconds=([0-9.]+)', text)]
print(f"{len(secs)} {max(secs) if secs else -1:.3f}")
PY
)
kill -TERM "$proc_pid"
wait "$proc_pid" 2>/dev/null || true

cpu="$(cat "$work/bare_rss_kb.cpu") $bare_broker $(cat "$work/hookline_rss_kb.cpu") $hook_broker $(getconf CLK_TCK) $bare_jit $hook_jit"
python3 - "$loaded" "$bare" "$hook" "$(cat "$work/bare_rss_kb")" "$(cat "$work/hookline_rss_kb")" "$restore" "$latency" "$restart" "$cpu" <<'PY'
import json, sys
loaded, bare, hook = (json.loads(a) for a in sys.argv[1:4])
bare_mb, hook_mb = int(sys.argv[4]) / 1024, int(sys.argv[5]) / 1024
restore = {l.split()[0].split('{')[0]: float(l.split()[-1]) for l in sys.argv[6].splitlines() if l.strip()}
restore_entries = sum(float(l.split()[-1]) for l in sys.argv[6].splitlines() if 'restored_entries' in l)
print()
print(f"processor: {loaded['records']} raw records preloaded ({loaded['unique']} distinct, 1 KB, 12 partitions) "
      f"at {loaded['per_sec']:.0f}/s")
print(f"{'run':<34}{'records':>9}{'secs':>8}{'records/s':>11}{'peak RSS MB':>13}")
print(f"{'bare consume -> produce loop':<34}{bare['records']:>9.0f}{bare['secs']:>8.1f}{bare['per_sec']:>11.0f}{bare_mb:>13.0f}")
print(f"{'hookline-processor':<34}{hook['records']:>9.0f}{hook['secs']:>8.1f}{hook['per_sec']:>11.0f}{hook_mb:>13.0f}")
ratio = hook['per_sec'] / bare['per_sec']
print(f"hookline / bare: throughput {ratio:.2f}x (target >= 0.80x: {'met' if ratio >= 0.8 else 'MISSED'}); "
      f"{hook['events']:.0f} events, {hook['duplicates']:.0f} duplicates dropped, {hook['dlq']:.0f} DLQ")
bare_cpu, bare_broker, hook_cpu, hook_broker, tick, bare_jit, hook_jit = (int(x) for x in sys.argv[9].split())
us = lambda ticks, n: ticks / tick / n * 1e6
print(f"CPU per record (user + system): bare loop {us(bare_cpu, bare['records']):.1f} us + broker "
      f"{us(bare_broker, bare['records']):.1f} us; hookline {us(hook_cpu, hook['records']):.1f} us + broker "
      f"{us(hook_broker, hook['records']):.1f} us (the processes' whole runs, startup included; broker 0 with "
      f"KAFKA_BROKERS); of the broker's, JIT compiling: {us(bare_jit, bare['records']):.2f} us and "
      f"{us(hook_jit, hook['records']):.2f} us")
secs = restore.get('restore_wall_seconds', 0)
print(f"restore: {restore_entries:.0f} dedup entries into an empty data folder in {secs:.1f} s from its start "
      f"(target < 30 s: {'met' if secs < 30 else 'MISSED'})")
lat = json.loads(sys.argv[7])
print(f"latency, 202 -> visible to read_committed at {lat['rate']}/s: p50 {lat['p50_ms']:.0f} ms, "
      f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms ({lat['visible']} of {lat['webhooks']} seen)")
n, slowest = sys.argv[8].split()
print(f"restart after kill -9, data folder intact: {n} partitions restored, slowest in {float(slowest):.2f} s "
      f"after assignment (target < 2 s: {'met' if 0 <= float(slowest) < 2 else 'MISSED'})")
PY
