#!/usr/bin/env bash
# results/edge_export.md: the global 2NN (mlp) and CNN (cnn) trained by fedkit-sim on Fashion-MNIST,
# exported by fedkit-export as frozen, 8-bit and pruned (50% and 90%) TorchScript files, each one
# re-evaluated on the test set.
#   bash results/edge_export/run.sh [mlp|cnn|all]   (after a build of fedkit-sim; models go to $WORK)
# SKIP_TRAINING=1 exports the models a previous run left in $WORK (fedkit-sim's runs are seeded).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
cd "$FEDKIT_ROOT"
out=results/edge_export
work="${WORK:-/tmp/fedkit_edge_export}"
which="${1:-all}"
mkdir -p "$work"
uptime | tee "$out/uptime_start.txt"

export_all() {  # NAME MODEL RUNS
  local name="$1" model="$2" runs="$3"
  nice build/bin/fedkit-export "$work/${name}_final.pt" --model "$model" \
    --frozen "$work/${name}_frozen.pt" --int8 "$work/${name}_int8.pt" \
    --pruned "$work/${name}_pruned50.pt" --pruned-int8 "$work/${name}_pruned50_int8.pt" --sparsity 0.5 \
    --calibration-examples 2000 --latency-runs "$runs" --report "$out/${name}_sparsity0.5.md"
  nice build/bin/fedkit-export "$work/${name}_final.pt" --model "$model" \
    --pruned "$work/${name}_pruned90.pt" --pruned-int8 "$work/${name}_pruned90_int8.pt" --sparsity 0.9 \
    --calibration-examples 2000 --latency-runs "$runs" --report "$out/${name}_sparsity0.9.md"
}

if [ "$which" = mlp ] || [ "$which" = all ]; then
  # The README's demo config (15 rounds of the 2NN on label-skewed clients).
  [ -n "${SKIP_TRAINING:-}" ] || /usr/bin/time -v nice build/bin/fedkit-sim --config configs/fmnist_mlp_demo.yaml --threads 2 \
    --progress off --metrics-out "$out/mlp_train.jsonl" --model-out "$work/mlp_final.pt" \
    2>&1 | tail -n 30 > "$out/mlp_train.log"
  export_all mlp mlp 200
  # The same 8-bit export run on QNNPACK (the ARM-oriented engine) instead of oneDNN.
  nice build/bin/fedkit-export "$work/mlp_final.pt" --model mlp --int8 "$work/mlp_int8_qnnpack.pt" \
    --engine qnnpack --latency-runs 200 --report "$out/mlp_int8_qnnpack.md"
fi
if [ "$which" = cnn ] || [ "$which" = all ]; then
  # A short CNN run: 100 IID clients, 10 per round, one local epoch, 10 rounds.
  [ -n "${SKIP_TRAINING:-}" ] || /usr/bin/time -v nice build/bin/fedkit-sim --dataset fmnist --model cnn --clients 100 --partition iid \
    --clients-per-round 10 --rounds 10 --local-epochs 1 --batch-size 32 --client-lr 0.05 --seed 1 \
    --threads 2 --eval-every 1 --progress off --metrics-out "$out/cnn_train.jsonl" \
    --model-out "$work/cnn_final.pt" 2>&1 | tail -n 30 > "$out/cnn_train.log"
  export_all cnn cnn 50
  nice build/bin/fedkit-export "$work/cnn_final.pt" --model cnn --int8 "$work/cnn_int8_qnnpack.pt" \
    --engine qnnpack --calibration-examples 2000 --latency-runs 50 --report "$out/cnn_int8_qnnpack.md"
fi
uptime | tee "$out/uptime_end.txt"
