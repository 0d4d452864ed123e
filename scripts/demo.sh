#!/usr/bin/env bash
# Sets everything up, then runs a short federated simulation on Fashion-MNIST printing accuracy per
# round. Extra arguments are passed to fedkit-sim (e.g. --rounds 50).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fedkit_setup
exec "$FEDKIT_BUILD/bin/fedkit-sim" --config "$FEDKIT_ROOT/configs/fmnist_mlp_demo.yaml" "$@"
