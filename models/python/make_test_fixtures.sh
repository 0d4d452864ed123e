#!/usr/bin/env bash
# Writes the small TorchScript models the C++ tests load: make_test_fixtures.sh PYTHON OUTDIR.
set -euo pipefail
py="$1"; out="$2"; here="$(dirname "${BASH_SOURCE[0]}")"
mkdir -p "$out"
"$py" "$here/make_model.py" 2nn "$out/tiny_2nn.pt" --shape 6 --hidden 8 --classes 3 --seed 1
"$py" "$here/make_model.py" bn-mlp "$out/tiny_bn.pt" --shape 6 --hidden 8 --classes 3 --seed 2
"$py" "$here/make_model.py" own-loss "$out/tiny_own_loss.pt" --shape 6 --hidden 8 --classes 3 --seed 3
"$py" "$here/make_model.py" cnn "$out/tiny_cnn.pt" --shape 1,8,8 --classes 3 --seed 4
"$py" "$here/make_model.py" 2nn "$out/fmnist_small_2nn.pt" --shape 1,28,28 --hidden 16 --classes 10 --seed 5
"$py" "$here/make_model.py" regression "$out/tiny_regression.pt" --shape 6 --hidden 8 --classes 2 --seed 6
