#!/usr/bin/env bash
# The runs behind results/robust/README.md (issue 14, "What it must show" 2): accuracy after 100
# rounds with 0%, 10% and 20% attackers of each kind, for FedAvg and each robust aggregator, on
# label-skewed Fashion-MNIST. Each run writes NAME.jsonl (fedkit-sim --metrics-out), NAME.log and
# NAME.err. Usage: bash results/robust/run.sh [AGGREGATOR...]   (default: all of them)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/common.sh
OUT=results/robust
SIM=build/bin/fedkit-sim
# The 2NN on 100 clients with Dirichlet(0.5) label skew, 20 per round, 1 local epoch, 100 rounds.
BASE="--dataset fmnist --model mlp --clients 100 --partition dirichlet:0.5 --clients-per-round 20
      --rounds 100 --local-epochs 1 --batch-size 10 --client-lr 0.1 --server-optimizer sgd
      --server-lr 1 --seed 1 --eval-every 10 --threads 2"
# F = 5 of 20 per round covers 20% attackers in expectation (n >= 2F + 3 = 13 holds with 20).
AGGREGATORS=("mean" "median" "trimmed-mean:0.2" "krum:5" "multi-krum:5,10" "norm-bound:1")
[ $# -gt 0 ] && AGGREGATORS=("$@")
ATTACKS=("sign-flip" "scale:10" "label-flip" "noise:1")
run() {  # NAME ARGS...
  local name="$1"; shift
  [ -s "$OUT/$name.jsonl" ] && return 0  # done before
  echo "== $name: $*" >&2
  "$SIM" $BASE "$@" --metrics-out "$OUT/$name.jsonl" > "$OUT/$name.log" 2> "$OUT/$name.err"
}
for agg in "${AGGREGATORS[@]}"; do
  a="${agg//[:,]/_}"
  run "${a}_none_0" --aggregator "$agg"
  for attack in "${ATTACKS[@]}"; do
    for p in 0.1 0.2; do
      run "${a}_${attack//:/_}_${p}" --aggregator "$agg" --attack "$attack" --attack-fraction "$p"
    done
  done
done
