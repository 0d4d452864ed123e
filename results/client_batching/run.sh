#!/usr/bin/env bash
# Cross-client batching (fedkit-sim --client-batching N), measured:
#   bench     the throughput bench's batching rows in one run, 1 thread, interleaved repetitions:
#             bare per-client LibTorch loop vs the simulator vs the simulator with groups of 10 and
#             40 clients, for logreg, mlp (2NN) and cnn at batch 10, and the BLAS-only floor of
#             logreg and mlp (BM_KernelFloorOf) -> bench.txt
#   headline  the README's headline run (Fashion-MNIST 2NN, 1000 clients, Dirichlet 0.5, 100 per
#             round, 200 rounds, 2 threads) with --client-batching 50 -> headline_batched.jsonl,
#             and its wall time beside the same run without batching -> headline.txt
# Usage: bash results/client_batching/run.sh [bench] [headline]   (no argument: both)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
source "$ROOT/scripts/common.sh"  # the BLAS environment; build/ must be built (scripts/bench.sh)
BIN="$FEDKIT_BUILD/bin"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(bench headline)
for part in "${parts[@]}"; do
  case "$part" in
    bench)
      "$BIN/fedkit_throughput_bench" --benchmark_filter='BM_(BareLoopOf|SimulatorOf|KernelFloorOf)' \
        --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true --benchmark_color=false \
        2>&1 | tee "$HERE/bench.txt"
      ;;
    headline)
      flags=(--dataset fmnist --model mlp --clients 1000 --partition dirichlet:0.5
        --clients-per-round 100 --rounds 200 --local-epochs 5 --batch-size 10 --client-lr 0.1
        --seed 1 --threads 2 --eval-every 10 --progress off)
      : >"$HERE/headline.txt"
      for batching in 0 50; do
        start=$(date +%s.%N)
        "$BIN/fedkit-sim" "${flags[@]}" --client-batching "$batching" \
          --metrics-out "$HERE/headline_batching$batching.jsonl" >"$HERE/headline_batching$batching.log" 2>&1
        end=$(date +%s.%N)
        printf 'client-batching %s: %.1f s wall, %s\n' "$batching" "$(echo "$end - $start" | bc)" \
          "$(grep -o 'round 200.*' "$HERE/headline_batching$batching.log" | tail -1)" | tee -a "$HERE/headline.txt"
      done
      ;;
    *)
      echo "usage: $0 [bench] [headline]" >&2
      exit 2
      ;;
  esac
done
