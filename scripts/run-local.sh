#!/usr/bin/env bash
# `make run`: a broker (unless KAFKA_BROKERS is set), the processor and the ingress, with the example configs
# from deploy/, on loopback. Prints how to send a signed demo webhook and watch the events. Ctrl-C stops all.
#
# Environment: KAFKA_BROKERS (use that cluster, start no broker), HOOKLINE_RUN_DIR (state, default
# .hookline-run), HOOKLINE_BROKER_PORT / HOOKLINE_INGRESS_PORT / HOOKLINE_INGRESS_ADMIN_PORT /
# HOOKLINE_ADMIN_PORT (the processor's; defaults 9092 / 8080 / 9190 / 9091; a busy port is replaced by a free
# one).
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${HOOKLINE_BIN_DIR:?set by the Makefile}
run_dir=$(mkdir -p "${HOOKLINE_RUN_DIR:-.hookline-run}" && cd "${HOOKLINE_RUN_DIR:-.hookline-run}" && pwd)
mkdir -p "$run_dir/broker" "$run_dir/processor" "$run_dir/logs"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local want=$1 p
  if port_free "$want"; then echo "$want"; return; fi
  for p in $(seq $((want + 1)) $((want + 200))); do
    if port_free "$p"; then echo "$p"; return; fi
  done
  echo "no free port near $want" >&2
  exit 1
}
wait_for() { # url, name, pid
  local i
  for i in $(seq 1 600); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "$2 exited; see $run_dir/logs/$2.log" >&2; tail -20 "$run_dir/logs/$2.log" >&2; return 1; fi
    sleep 0.1
  done
  echo "$2 not ready after 60 s; see $run_dir/logs/$2.log" >&2
  return 1
}

# Each component runs in its own session (setsid), so Ctrl-C reaches only this script, which then stops them
# once, in order: ingress (drains requests), processor (commits, leaves the group), broker last.
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped (state kept in $run_dir)"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

if [ -n "${KAFKA_BROKERS:-}" ]; then
  brokers=$KAFKA_BROKERS
  echo "using the Kafka cluster at $brokers (KAFKA_BROKERS); no local broker started"
else
  broker_port=$(pick_port "${HOOKLINE_BROKER_PORT:-9092}")
  kafka_home=$(scripts/ensure-kafka.sh)
  # One Apache Kafka node (broker and controller), its data kept in the run folder across runs. It prints its
  # address once it serves.
  rm -f "$run_dir/broker/address"
  HOOKLINE_KAFKA_HOME=$kafka_home setsid "$bin_dir/hookline-kafka" --dir "$run_dir/broker" \
    --port "$broker_port" >"$run_dir/broker/address" 2>"$run_dir/logs/broker.log" &
  pids+=($!)
  brokers=""
  for _ in $(seq 1 3000); do
    brokers=$(head -1 "$run_dir/broker/address" 2>/dev/null || true)
    if [ -n "$brokers" ]; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "Apache Kafka did not start; see $run_dir/logs/broker.log" >&2
      tail -20 "$run_dir/logs/broker.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [ -z "$brokers" ]; then echo "Apache Kafka not ready after 300 s; see $run_dir/logs/broker.log" >&2; exit 1; fi
  echo "broker:    Apache Kafka on $brokers (data in $run_dir/broker, its log in $run_dir/broker/node-1/broker.log)"
fi

admin_port=$(pick_port "${HOOKLINE_ADMIN_PORT:-9091}")
HOOKLINE_KAFKA__BROKERS=$brokers HOOKLINE_SERVER__LISTEN="127.0.0.1:$admin_port" \
  HOOKLINE_STATE__DIR="$run_dir/processor" \
  setsid "$bin_dir/hookline-processor" --config deploy/processor.example.toml >"$run_dir/logs/processor.log" 2>&1 &
pids+=($!)
ingress_port=$(pick_port "${HOOKLINE_INGRESS_PORT:-8080}")
ingress_admin_port=$(pick_port "${HOOKLINE_INGRESS_ADMIN_PORT:-9190}")
HOOKLINE_KAFKA__BROKERS=$brokers HOOKLINE_SERVER__LISTEN="127.0.0.1:$ingress_port" \
  HOOKLINE_SERVER__ADMIN_LISTEN="127.0.0.1:$ingress_admin_port" \
  setsid "$bin_dir/hookline-ingress" --config deploy/ingress.example.toml >"$run_dir/logs/ingress.log" 2>&1 &
pids+=($!)

wait_for "http://127.0.0.1:$ingress_admin_port/readyz" ingress "${pids[-1]}"
wait_for "http://127.0.0.1:$admin_port/readyz" processor "${pids[-2]}"

cat <<EOF
processor: http://127.0.0.1:$admin_port/metrics (state in $run_dir/processor)
ingress:   http://127.0.0.1:$ingress_port/webhooks/demo (metrics: http://127.0.0.1:$ingress_admin_port/metrics)
logs:      $run_dir/logs/

Send a signed demo webhook (HMAC-SHA256 of the body with the demo secret, as a provider would):

  body='{"id":"evt_'\$(date +%s%N)'","type":"order.created","data":{"order_id":"ord_1001","amount":4200}}'; curl -sS -X POST http://127.0.0.1:$ingress_port/webhooks/demo -H 'Content-Type: application/json' -H "X-Signature: sha256=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac demo-secret-change-me | sed 's/^.* //')" -d "\$body"; echo

Watch the normalized events (CloudEvents JSON, one per line):

  $bin_dir/hookline tail hookline.events --brokers $brokers --follow

Ctrl-C stops the broker, the processor and the ingress.
EOF

# Wait until one of them exits or Ctrl-C.
wait -n "${pids[@]}" || true
echo "a component exited; see $run_dir/logs/" >&2
