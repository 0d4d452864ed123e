#!/usr/bin/env bash
# Issue 14: SCAFFOLD and FedNova against FedAvg and FedProx, NIID-Bench's four algorithms, on two of
# its label-skew partitions of Fashion-MNIST (labels:2 = "#C=2", dirichlet:0.5), 10 clients all
# participating, with a CNN written in Python (models/python/make_model.py small-cnn, TorchScript).
# Each run writes NAME.jsonl (--metrics-out, every round evaluated), NAME.log (rounds) and NAME.err
# (setup line and /usr/bin/time -v). A run whose .jsonl has every round is not run again.
#   bash results/scaffold_fednova/run.sh [PARTITION...]   (after build/bin/fedkit-sim is built;
#   default both partitions; two invocations with one partition each can run side by side)
#   ROUNDS=20 EPOCHS=1 bash results/scaffold_fednova/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/common.sh
OUT=results/scaffold_fednova
SIM=build/bin/fedkit-sim
ROUNDS="${ROUNDS:-20}"
EPOCHS="${EPOCHS:-1}"
MODEL=/tmp/fedkit_small_cnn.pt
/usr/bin/python3 models/python/make_model.py small-cnn "$MODEL" --seed 1
# NIID-Bench's batch 64 and FedProx mu 0.01, but plain client SGD (lr 0.05, no momentum):
# SCAFFOLD diverged at NIID-Bench's momentum 0.9 (lr 0.01; momentum0.9/ keeps those runs), and
# SCAFFOLD's option II and FedNova's ||a|| = tau are the papers' plain-SGD forms. Fewer rounds
# and epochs than NIID-Bench's 50 x 10, to fit one CPU thread. One thread: another job shares the
# machine, and results do not depend on the thread count.
BASE=(--dataset fmnist --model "$MODEL" --clients 10 --clients-per-round 10 --rounds "$ROUNDS"
      --local-epochs "$EPOCHS" --batch-size 64 --client-lr 0.05 --client-momentum 0
      --server-optimizer sgd --server-lr 1 --seed 1 --eval-every 1 --threads 1 --progress off)
run() {  # NAME ARGS...
  local name="$1"; shift
  if [ -s "$OUT/$name.jsonl" ] && [ "$(wc -l < "$OUT/$name.jsonl")" -ge "$ROUNDS" ]; then
    return 0
  fi
  echo "== $name: $*" >&2
  /usr/bin/time -v "$SIM" "${BASE[@]}" "$@" --metrics-out "$OUT/$name.jsonl" \
    > "$OUT/$name.log" 2> "$OUT/$name.err"
}
PARTITIONS=(labels:2 dirichlet:0.5)
[ $# -gt 0 ] && PARTITIONS=("$@")
for partition in "${PARTITIONS[@]}"; do
  p="${partition//[:.]/_}"
  run "fedavg_$p" --partition "$partition" --algorithm fedavg
  run "fedprox_$p" --partition "$partition" --algorithm fedavg --prox-mu 0.01
  run "scaffold_$p" --partition "$partition" --algorithm scaffold
  run "fednova_$p" --partition "$partition" --algorithm fednova
done
/usr/bin/python3 "$OUT/summarize.py" > "$OUT/table.md"
cat "$OUT/table.md"
