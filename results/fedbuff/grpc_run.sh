#!/usr/bin/env bash
# FedBuff over gRPC (issue 14, "What it must show" 1, second half): the setup of run.sh's
# fedbuff_k10_c20 played by one fedkit-coordinator and 100 fedkit-client processes on loopback,
# and synchronous FedAvg (10 a round) the same way for comparison. Devices are paced to the
# simulator's speeds with fedkit-client --seconds-per-example: 1 ms per example (0.6 s a round),
# and every fifth device (20 of 100) 10 ms (6 s). Wall time, not virtual time: the 100 devices share
# this machine's cores, so a device's round takes the longer of its paced and its real time.
# Each run writes grpc_NAME.jsonl (the coordinator's --metrics-out; elapsed_seconds is wall time
# since the first round started), grpc_NAME.log (its output) and grpc_NAME.devices (start-up and
# exit of the devices); devices' logs go to a temporary directory.
# Usage: bash results/fedbuff/grpc_run.sh [fedbuff|fedavg|fedbuff_secagg]...
#   (default: fedbuff and fedavg)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=results/fedbuff
COORDINATOR=build/bin/fedkit-coordinator
CLIENT=build/bin/fedkit-client
DATA=/usr/share/datasets/fashion-mnist
CLIENTS=100
TRAINING=(--model mlp --local-epochs 1 --batch-size 10 --client-lr 0.1 --server-optimizer sgd
          --server-lr 1 --seed 1)

run() {  # NAME COORDINATOR-FLAGS...
  local name="$1"; shift
  local logs; logs="$(mktemp -d)"
  echo "== grpc_$name: $*" >&2
  "$COORDINATOR" --listen 127.0.0.1:0 --insecure "${TRAINING[@]}" --eval-data "$DATA" \
    --retry-interval 0.5 --linger 10 --metrics-out "$OUT/grpc_$name.jsonl" "$@" \
    > "$OUT/grpc_$name.log" 2>&1 &
  local coordinator=$!
  local port=""
  for _ in $(seq 1 600); do
    port="$(grep -o 'serving on port [0-9]*' "$OUT/grpc_$name.log" | grep -o '[0-9]*$' || true)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "the coordinator did not start" >&2; cat "$OUT/grpc_$name.log" >&2; exit 1; }
  # A device's start-up peak holds the whole dataset before it keeps its shard: 100 starting at
  # once exhaust this machine's 23 GiB (13 were killed by the OOM killer in a first try). They
  # start in waves of 10, each wave once the previous one holds its shards.
  local pids=() started=$SECONDS
  for i in $(seq 0 $((CLIENTS - 1))); do
    local pace=0.001
    [ $((i % 5)) -eq 0 ] && pace=0.01
    "$CLIENT" --server "127.0.0.1:$port" --insecure --num-clients "$CLIENTS" --client-index "$i" \
      --partition dirichlet:0.5 --seed 1 --model mlp --data-dir "$DATA" \
      --seconds-per-example "$pace" > "$logs/client$i.log" 2>&1 &
    pids+=($!)
    if [ $(((i + 1) % 10)) -eq 0 ]; then
      for j in $(seq $((i - 9)) "$i"); do
        for _ in $(seq 1 1200); do
          grep -q ' examples), ' "$logs/client$j.log" 2>/dev/null && break
          sleep 0.1
        done
      done
    fi
  done
  echo "grpc_$name: all $CLIENTS devices started $((SECONDS - started)) s after the coordinator" \
    | tee "$OUT/grpc_$name.devices" >&2
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  wait "$coordinator" || { echo "the coordinator failed" >&2; exit 1; }
  echo "grpc_$name: $failed of $CLIENTS devices exited with an error (logs in $logs)" \
    | tee -a "$OUT/grpc_$name.devices" >&2
}

runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(fedbuff fedavg)
for r in "${runs[@]}"; do
  case "$r" in
    # Both wait for the whole fleet before they start (--min-available 100), so the devices'
    # staggered start-up is not in the times. FedBuff then assigns whichever idle device checks in
    # first when a slot frees; a synchronous round samples 10 of the devices waiting, from all 100
    # when they are there, else from those waiting 2 s after the previous round.
    fedbuff) run fedbuff_k10_c20 --algorithm fedbuff --buffer-size 10 --concurrency 20 \
               --rounds 300 --min-available 100 ;;
    fedavg) run fedavg_k10 --clients-per-round 10 --rounds 60 --min-available 100 \
              --selection-timeout 2 ;;
    # FedBuff under secure aggregation: cohorts of 13 that commit their first 10 masked inputs,
    # three at once (run.sh's fedbuff_k10_c39_overselect0.3_secagg). Not run by default.
    fedbuff_secagg) run fedbuff_k10_c39_overselect0.3_secagg --algorithm fedbuff --buffer-size 10 \
                      --concurrency 39 --over-select 0.3 --secagg secagg --clip-norm 2 \
                      --rounds 300 --min-available 100 ;;
    *) echo "unknown run '$r': fedbuff, fedavg or fedbuff_secagg" >&2; exit 2 ;;
  esac
done
