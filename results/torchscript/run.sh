#!/usr/bin/env bash
# Issue 9's headline comparison: models written in Python (models/python/make_model.py), saved as
# TorchScript, trained by fedkit-sim on the README's headline setup beside the built-in mlp.
#   bash results/torchscript/run.sh [2nn|cnn|small-cnn|all]   (after scripts/demo.sh or scripts/test.sh built build/)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
cd "$FEDKIT_ROOT"
out=results/torchscript
which="${1:-all}"
setup=(--dataset fmnist --clients 1000 --partition dirichlet:0.5 --clients-per-round 100
       --local-epochs 5 --batch-size 10 --client-lr 0.1 --seed 1 --threads 2)
if [ "$which" = 2nn ] || [ "$which" = all ]; then
  /usr/bin/python3 models/python/make_model.py 2nn /tmp/fedkit_2nn.pt --seed 1
  /usr/bin/time -v build/bin/fedkit-sim "${setup[@]}" --rounds 200 --eval-every 10 --model /tmp/fedkit_2nn.pt \
    --metrics-out $out/fmnist_2nn_torchscript_200rounds.jsonl --model-out /tmp/fedkit_2nn_final.pt \
    2>&1 | tee $out/fmnist_2nn_torchscript_200rounds.log
fi
if [ "$which" = cnn ] || [ "$which" = all ]; then
  rounds="${CNN_ROUNDS:-10}"  # the CNN costs ~30x the 2NN per step
  /usr/bin/python3 models/python/make_model.py cnn /tmp/fedkit_cnn.pt --seed 1
  /usr/bin/time -v build/bin/fedkit-sim "${setup[@]}" --rounds "$rounds" --eval-every 1 --model /tmp/fedkit_cnn.pt \
    --metrics-out $out/fmnist_cnn_torchscript_${rounds}rounds.jsonl --model-out /tmp/fedkit_cnn_final.pt \
    2>&1 | tee $out/fmnist_cnn_torchscript_${rounds}rounds.log
fi
if [ "$which" = small-cnn ] || [ "$which" = all ]; then
  # A CNN with 8 and 16 channels (about 4x the 2NN's arithmetic): the headline's 200 rounds.
  /usr/bin/python3 models/python/make_model.py small-cnn /tmp/fedkit_small_cnn.pt --seed 1
  /usr/bin/time -v build/bin/fedkit-sim "${setup[@]}" --rounds 200 --eval-every 10 --model /tmp/fedkit_small_cnn.pt \
    --metrics-out $out/fmnist_small_cnn_torchscript_200rounds.jsonl --model-out /tmp/fedkit_small_cnn_final.pt \
    2>&1 | tee $out/fmnist_small_cnn_torchscript_200rounds.log
fi
