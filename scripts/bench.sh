#!/usr/bin/env bash
# Sets everything up, then runs the simulator-vs-bare-LibTorch throughput benchmark and prints the
# ratios. Extra arguments go to Google Benchmark (e.g. --benchmark_min_time=10).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fedkit_setup
exec "$FEDKIT_BUILD/bin/fedkit_throughput_bench" --benchmark_repetitions=5 \
  --benchmark_enable_random_interleaving=true "$@"
