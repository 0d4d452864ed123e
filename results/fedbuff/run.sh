#!/usr/bin/env bash
# The runs behind results/fedbuff/README.md (issue 14, "What it must show" 1): virtual time to
# 0.80 test accuracy of synchronous FedAvg and of FedBuff on label-skewed Fashion-MNIST when 20%
# of the devices are 10x slower. Each run writes NAME.jsonl (fedkit-sim --metrics-out), NAME.log
# and NAME.err; summarize.py makes the table. Usage: bash results/fedbuff/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/common.sh
OUT=results/fedbuff
SIM=build/bin/fedkit-sim
# The 2NN on 100 clients with Dirichlet(0.5) label skew, 1 local epoch at batch 10. Devices take
# 1 ms per example, 20% of them (a fixed, evenly spread set) 10 ms: about 0.6 s and 6 s a round.
BASE="--dataset fmnist --model mlp --clients 100 --partition dirichlet:0.5 --local-epochs 1
      --batch-size 10 --client-lr 0.1 --server-optimizer sgd --server-lr 1 --seed 1 --threads 2
      --device-speeds two-speed:0.001,0.2,10 --eval-every 2"
run() {  # NAME ARGS...
  local name="$1"; shift
  [ -s "$OUT/$name.jsonl" ] && return 0  # done before
  echo "== $name: $*" >&2
  "$SIM" $BASE "$@" --metrics-out "$OUT/$name.jsonl" > "$OUT/$name.log" 2> "$OUT/$name.err"
}
# Synchronous FedAvg, 10 clients a round: waits for the slowest of the 10.
run fedavg_k10 --clients-per-round 10 --rounds 300
# ... and with 30% over-selection (13 sampled, the first 10 to finish kept).
run fedavg_k10_overselect0.3 --clients-per-round 10 --over-select 0.3 --rounds 300
# FedBuff: 10 uploads a commit, 20 or 30 devices training at once, 1/sqrt(1+s) and no discount.
run fedbuff_k10_c20 --algorithm fedbuff --buffer-size 10 --concurrency 20 --rounds 300
run fedbuff_k10_c30 --algorithm fedbuff --buffer-size 10 --concurrency 30 --rounds 300
run fedbuff_k10_c20_constant --algorithm fedbuff --buffer-size 10 --concurrency 20 \
  --staleness constant --rounds 300
run fedbuff_k5_c20 --algorithm fedbuff --buffer-size 5 --concurrency 20 --rounds 600
# Under secure aggregation (clip norm 2: about the deltas' norm after the first rounds). FedBuff's
# buffers are then cohorts of K chosen together, each arriving with its slowest member; the plain
# FedBuff run with the same clip separates the cohorts' cost from the clipping's.
CLIP="--clip-norm 2"
run fedavg_k10_secagg --clients-per-round 10 --rounds 300 --secagg secagg $CLIP
run fedbuff_k10_c20_clip2 --algorithm fedbuff --buffer-size 10 --concurrency 20 --rounds 300 $CLIP
run fedbuff_k10_c20_secagg --algorithm fedbuff --buffer-size 10 --concurrency 20 --rounds 300 \
  --secagg secagg $CLIP
run fedbuff_k10_c30_secagg --algorithm fedbuff --buffer-size 10 --concurrency 30 --rounds 300 \
  --secagg secagg $CLIP
# ... and over-selected by 30%, the usual remedy for stragglers: synchronous rounds of 13 keep the
# first 10; FedBuff's cohorts of 13 commit their first 10 masked inputs (26 or 39 devices at once:
# two or three cohorts).
run fedavg_k10_overselect0.3_secagg --clients-per-round 10 --over-select 0.3 --rounds 300 \
  --secagg secagg $CLIP
run fedbuff_k10_c26_overselect0.3_secagg --algorithm fedbuff --buffer-size 10 --concurrency 26 \
  --over-select 0.3 --rounds 300 --secagg secagg $CLIP
run fedbuff_k10_c39_overselect0.3_secagg --algorithm fedbuff --buffer-size 10 --concurrency 39 \
  --over-select 0.3 --rounds 300 --secagg secagg $CLIP
