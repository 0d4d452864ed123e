#!/usr/bin/env bash
# The run behind results/client_eval/README.md (issue 14, "Per-client evaluation"): every 10
# rounds, the global model's accuracy on each client's own held-out 20% (each client trains on the
# other 80%) and after 5 local SGD steps from it, on label-skewed Fashion-MNIST. Writes
# fmnist_mlp_dirichlet0.5.jsonl (fedkit-sim --metrics-out), .log, .err and the fedkit-plot picture
# fmnist_mlp_dirichlet0.5.png. Usage: bash results/client_eval/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/common.sh
OUT=results/client_eval
NAME=fmnist_mlp_dirichlet0.5
# The 2NN on 100 clients with Dirichlet(0.5) label skew, 20 per round, 1 local epoch, 100 rounds.
build/bin/fedkit-sim --dataset fmnist --model mlp --clients 100 --partition dirichlet:0.5 \
  --clients-per-round 20 --rounds 100 --local-epochs 1 --batch-size 10 --client-lr 0.1 \
  --server-optimizer sgd --server-lr 1 --seed 1 --eval-every 10 --threads 2 \
  --eval-clients-local --local-eval-fraction 0.2 --eval-finetune-steps 5 \
  --metrics-out "$OUT/$NAME.jsonl" > "$OUT/$NAME.log" 2> "$OUT/$NAME.err"
build/bin/fedkit-plot "$OUT/$NAME.jsonl" -o "$OUT/$NAME.png" \
  --title "Fashion-MNIST 2NN, 100 clients (Dirichlet 0.5), 20 per round: per-client evaluation"
