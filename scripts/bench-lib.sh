# Shared by the `make bench` scripts (sourced, after `cd` to the repository root): a scratch folder, the
# processes to stop on exit, and one local Apache Kafka node for the whole run, so that hookline and its
# baseline always meet the same broker (each run writes topics of its own). With KAFKA_BROKERS set, that
# cluster is used instead.
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/hookline-bench.XXXXXX")
broker_pid=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # The broker runner stops its JVM and deletes its data folder on SIGTERM (and takes the JVM with it if killed).
  if [ -n "$broker_pid" ]; then kill -TERM "$broker_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

# Builds the broker runner and sets $brokers: a local Apache Kafka node (512 MB heap), or KAFKA_BROKERS.
start_broker() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then brokers=$KAFKA_BROKERS; return; fi
  cargo build --release --locked -p hookline-e2e --bin hookline-kafka >&2
  local kafka_home
  kafka_home=$(scripts/ensure-kafka.sh)
  HOOKLINE_KAFKA_HOME=$kafka_home "$bin/hookline-kafka" --heap-mb 512 >"$work/brokers" 2>"$work/kafka.log" &
  broker_pid=$!
  brokers=""
  for _ in $(seq 1 3000); do
    brokers=$(head -1 "$work/brokers" 2>/dev/null || true)
    [ -n "$brokers" ] && break
    kill -0 "$broker_pid" 2>/dev/null || { echo "Apache Kafka did not start:" >&2; tail -20 "$work/kafka.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$brokers" ] || { echo "Apache Kafka not ready after 300 s" >&2; exit 1; }
  echo "Apache Kafka on $brokers" >&2
}

# Samples the resident memory of pid $1 every 0.2 s into file $2 (peak, in KB) until it exits, and the CPU
# time it has used into $2.cpu (clock ticks, at most 0.2 s old when it exits).
sample_rss() {
  ( peak=0
    while kill -0 "$1" 2>/dev/null; do
      kb=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
      if [ "${kb:-0}" -gt "$peak" ]; then peak=$kb; echo "$peak" >"$2"; fi
      ticks=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true)
      [ -n "$ticks" ] && echo "$ticks" >"$2.cpu"
      sleep 0.2
    done ) &
}

# CPU ticks the local broker's JVM has used so far (0 with KAFKA_BROKERS: not ours to measure).
broker_ticks() {
  local jvm
  jvm=$( [ -n "$broker_pid" ] && pgrep -P "$broker_pid" java | head -1 || true)
  if [ -n "$jvm" ]; then cpu_ticks "$jvm"; else echo 0; fi
}

# CPU ticks the local broker's JIT compiler threads have used so far (0 with KAFKA_BROKERS). The runner starts
# the JVM with a fixed set of compiler threads, so none that worked has gone.
broker_jit_ticks() {
  local jvm stat d t=0
  jvm=$( [ -n "$broker_pid" ] && pgrep -P "$broker_pid" java | head -1 || true)
  for d in ${jvm:+/proc/$jvm/task/*}; do
    stat=$(cat "$d/stat" 2>/dev/null) || continue
    case $stat in
      # After "(name) ": state is field 1, utime 12 and stime 13.
      *"(C1 CompilerThre) "* | *"(C2 CompilerThre) "*) set -- ${stat##*) }; t=$((t + ${12} + ${13})) ;;
    esac
  done
  echo "$t"
}

# CPU time (user + system) pid $1 has used so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Sets Kafka's produce quota of client id $1 to $2 bytes/s on the local broker (ConfigCommand, as
# `kafka-configs.sh` runs it). Fails with KAFKA_BROKERS set: a quota on somebody else's cluster is not ours to set.
kafka_quota() {
  [ -z "${KAFKA_BROKERS:-}" ] || return 1
  local kafka_home
  kafka_home=$(scripts/ensure-kafka.sh)
  java -cp "$kafka_home/libs/*" -Dlog4j2.configurationFile="$kafka_home/log4j2.properties" kafka.admin.ConfigCommand \
    --bootstrap-server "$brokers" --alter --add-config "producer_byte_rate=$2" --entity-type clients \
    --entity-name "$1" 2>&1 | grep -v ' INFO ' >&2
}

# The ingress benches' webhook URL on port $1 (source `bench`, which bench-loadgen signs for).
url() { echo "http://127.0.0.1:$1/webhooks/bench"; }

# Starts hookline's ingress on a raw topic of its own (Kafka client id $client_id, if set); sets $server_pid,
# $server_port (webhooks) and $admin_port (/metrics, /readyz).
start_hookline() { # raw topic
  server_port=$(free_port)
  admin_port=$(free_port)
  cat >"$work/ingress.toml" <<TOML
[server]
listen = "127.0.0.1:$server_port"
admin_listen = "127.0.0.1:$admin_port"
[kafka]
brokers = "$brokers"
[kafka.client]
"client.id" = "${client_id:-hookline-bench}"
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
  server_pid=$!
  pids+=("$server_pid")
  wait_http "http://127.0.0.1:$admin_port/readyz"
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# Open loop at the fixed rate; adds the process's CPU time per accepted request to the loadgen's JSON.
fixed_run() { # server (start_SERVER starts it: baseline, hookline...), run number
  "start_$1" "bench.$1.fixed$2.$run_id"
  echo "  $1, $fixed_rate req/s offered, ${fixed_secs}s..." >&2
  local before after out
  before=$(cpu_ticks "$server_pid")
  out=$("$bin/bench-loadgen" open --url "$(url "$server_port")" --secret "$secret" \
    --duration-secs "$fixed_secs" --rate "$fixed_rate" --timeout-ms 5000)
  after=$(cpu_ticks "$server_pid")
  result[$1-fixed$2]=$(python3 - "$out" "$before" "$after" <<'PY'
import json, os, sys
r = json.loads(sys.argv[1])
ok = sum(v for k, v in r['statuses'].items() if k.startswith('2'))
r['cpu_secs'] = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf('SC_CLK_TCK')
r['cpu_us_per_request'] = r['cpu_secs'] * 1e6 / max(ok, 1)
print(json.dumps(r))
PY
)
  stop_server
}
