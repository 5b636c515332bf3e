# Shared by the `make bench` scripts (sourced, after `cd` to the repository root): a scratch folder, the
# processes to kill on exit, and a fresh local broker per run (Tansu's SQLite storage slows down as it fills,
# so runs sharing a broker would favour whichever ran first). With KAFKA_BROKERS set, that cluster is used.
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/hookline-bench.XXXXXX")
broker_pid=""
pids=()
cleanup() {
  for p in "${pids[@]}" $broker_pid; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

# Sets $tansu unless an external cluster is given.
find_broker() {
  tansu=""
  if [ -z "${KAFKA_BROKERS:-}" ]; then tansu=$(scripts/ensure-tansu.sh); fi
}

# Sets $brokers to a broker with empty storage.
fresh_broker() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then brokers=$KAFKA_BROKERS; return; fi
  if [ -n "$broker_pid" ]; then kill -KILL "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  local port dir
  port=$(free_port)
  dir=$(mktemp -d "$work/broker.XXXXXX")
  brokers="127.0.0.1:$port"
  (cd "$dir" && exec "$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine sqlite://tansu.db) >"$dir/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  scripts/tansu-index.py "$dir/tansu.db"
}

# Samples the resident memory of pid $1 every 0.2 s into file $2 (peak, in KB) until it exits.
sample_rss() {
  ( peak=0
    while kill -0 "$1" 2>/dev/null; do
      kb=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
      if [ "${kb:-0}" -gt "$peak" ]; then peak=$kb; echo "$peak" >"$2"; fi
      sleep 0.2
    done ) &
}
