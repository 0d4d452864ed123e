#!/usr/bin/env bash
# Sets everything up, then runs the simulator-vs-bare-LibTorch throughput benchmark and prints the
# ratios. Extra arguments go to Google Benchmark (e.g. --benchmark_min_time=10).
#
# scripts/bench.sh secagg [flags]: instead builds only fedkit_secagg_bench and runs the secure
# aggregation grid (SecAgg and SecAgg+, n = 100/500/1000, d = 10K/100K, 0/10/30% dropout; tens of
# minutes on one core), regenerating results/secagg_bench.md and results/secagg_bench.json.
# Extra flags go to the bench (e.g. --n 100,500 --repetitions 3); see its --help.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ "${1:-}" = "secagg" ]; then
  shift
  bash "$FEDKIT_ROOT/scripts/install-deps.sh"
  fedkit_configure
  cmake --build "$FEDKIT_BUILD" --target fedkit_secagg_bench -j "$(nproc)"
  mkdir -p "$FEDKIT_ROOT/results"
  exec "$FEDKIT_BUILD/bin/fedkit_secagg_bench" --out-md "$FEDKIT_ROOT/results/secagg_bench.md" \
    --out-json "$FEDKIT_ROOT/results/secagg_bench.json" "$@"
fi
fedkit_setup
exec "$FEDKIT_BUILD/bin/fedkit_throughput_bench" --benchmark_repetitions=5 \
  --benchmark_enable_random_interleaving=true "$@"
