#!/bin/bash
# Reproduces results/dp_fmnist: user-level DP-FedAvg on Fashion-MNIST, 10,000 iid clients
# (6 examples each), 100 per round (q = 0.01), delta = 1e-5. Usage:
#   FEDKIT_SIM=build-dpsim/bin/fedkit-sim bash results/dp_fmnist/run.sh [run names...]
# Each run writes NAME.jsonl (metrics per evaluated round), NAME.log (stdout), NAME.err (stderr).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh
SIM="${FEDKIT_SIM:-build/bin/fedkit-sim}"
OUT=results/dp_fmnist

COMMON="--dataset fmnist --partition iid --clients 10000 --clients-per-round 100 --rounds 500
  --model logreg --local-epochs 5 --batch-size 6 --client-lr 0.1
  --server-optimizer sgd --server-lr 1 --server-momentum 0.5 --eval-every 10 --threads 2"
# Adaptive clipping to the median update norm (Andrew et al.), starting at 0.5.
DP="--clip-norm 0.5 --adaptive-clip-quantile 0.5 --delta 1e-5"

declare -A RUNS=(
  [nodp_seed0]="--dp none --seed 0"
  [central_z0_seed0]="--dp central $DP --noise-multiplier 0 --seed 0"
  [central_z0.5_seed0]="--dp central $DP --noise-multiplier 0.5 --seed 0"
  [central_z0.7_seed0]="--dp central $DP --noise-multiplier 0.7 --seed 0"
  [central_z1.0_seed0]="--dp central $DP --noise-multiplier 1.0 --seed 0"
  [central_z1.0_seed1]="--dp central $DP --noise-multiplier 1.0 --seed 1"
  [central_z1.0_seed2]="--dp central $DP --noise-multiplier 1.0 --seed 2"
  [central_z1.5_seed0]="--dp central $DP --noise-multiplier 1.5 --seed 0"
  [central_z2.0_seed0]="--dp central $DP --noise-multiplier 2.0 --seed 0"
  [central_fixedclip_z1.0_seed0]="--dp central --clip-norm 0.5 --delta 1e-5 --noise-multiplier 1.0 --seed 0"
  [distributed_secaggplus_z1.0_seed0]="--dp distributed --secagg secagg+ $DP --noise-multiplier 1.0 --seed 0"
  [distributed_secaggplus_z1.0_seed1]="--dp distributed --secagg secagg+ $DP --noise-multiplier 1.0 --seed 1"
  [distributed_secaggplus_z1.0_seed2]="--dp distributed --secagg secagg+ $DP --noise-multiplier 1.0 --seed 2"
  [distributed_secaggplus_z1.0_dropout0.1_seed0]="--dp distributed --secagg secagg+ $DP --noise-multiplier 1.0 --dropout 0.1 --seed 0"
  [central_z1.0_target1.5_seed0]="--dp central $DP --noise-multiplier 1.0 --target-epsilon 1.5 --rounds 1000 --seed 0 --model-out $OUT/central_z1.0_target1.5_seed0.pt"
)

names=("$@")
if [ ${#names[@]} -eq 0 ]; then names=("${!RUNS[@]}"); fi
for name in "${names[@]}"; do
  args="${RUNS[$name]:?unknown run $name}"
  echo "== $name: $SIM $(echo $COMMON) $args --metrics-out $OUT/$name.jsonl"
  # shellcheck disable=SC2086
  "$SIM" $COMMON $args --metrics-out "$OUT/$name.jsonl" > "$OUT/$name.log" 2> "$OUT/$name.err"
  tail -n 2 "$OUT/$name.log"
done
