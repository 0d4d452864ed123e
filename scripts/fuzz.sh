#!/usr/bin/env bash
# Long fuzz runs: builds the libFuzzer targets of fuzz/ in build-fuzz/ (clang-14, FEDKIT_FUZZ=ON:
# the LibTorch-free libraries instrumented with ASan + UBSan) and runs each target, or the ones
# named, one after another, until it has done RUNS executions or run SECONDS, whichever comes
# first, at nice 5. Each target starts from its committed seeds (fuzz/corpus/TARGET) plus what
# earlier runs found (build-fuzz/corpus/TARGET, where new inputs go); crashes land in
# build-fuzz/crashes/TARGET/ and the run stops there with status 1. Logs: build-fuzz/logs/.
# Usage: scripts/fuzz.sh [-n RUNS] [-t SECONDS] [TARGET...]   (defaults: 1000000 runs, 1800 s)
# Targets: round_coordinator secagg_server secagg_client checkpoint idx yaml_config artifact
# privacy_ledger tokens assigned_artifact upload_stream compression model_stream.
# A crash input replays with: build-fuzz/fuzz/fedkit_fuzz_TARGET FILE (see results/fuzzing.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FEDKIT_FUZZ_BUILD:-$ROOT/build-fuzz}"
RUNS=1000000
SECONDS_EACH=1800
while getopts "n:t:" opt; do
  case "$opt" in
    n) RUNS="$OPTARG" ;;
    t) SECONDS_EACH="$OPTARG" ;;
    *) echo "usage: $0 [-n RUNS] [-t SECONDS] [TARGET...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(round_coordinator secagg_server secagg_client checkpoint idx
  yaml_config artifact privacy_ledger tokens assigned_artifact upload_stream compression model_stream)

if ! command -v clang++-14 >/dev/null; then
  echo "fuzz: needs clang-14 (apt-get install clang-14 libfuzzer-14-dev)" >&2
  exit 2
fi
if [ ! -f "$BUILD/build.ninja" ]; then
  launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  CC=clang-14 CXX=clang++-14 cmake -S "$ROOT" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFEDKIT_FUZZ=ON -DFEDKIT_BUILD_TESTS=OFF "${launcher[@]}" \
    >/dev/null
fi
cmake --build "$BUILD" -j "${JOBS:-2}" --target "${TARGETS[@]/#/fedkit_fuzz_}"

# The file targets (checkpoint, idx, yaml_config) write each input to a file: in memory if possible.
if [ -z "${FEDKIT_FUZZ_TMPDIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    FEDKIT_FUZZ_TMPDIR="/dev/shm/fedkit-fuzz-$(id -u)"
  else
    FEDKIT_FUZZ_TMPDIR="$BUILD/tmp"
  fi
fi
export FEDKIT_FUZZ_TMPDIR
mkdir -p "$BUILD/logs" "$FEDKIT_FUZZ_TMPDIR"
status=0
for target in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$target"
  crashes="$BUILD/crashes/$target"
  mkdir -p "$corpus" "$crashes"
  seeds=()
  [ -d "$ROOT/fuzz/corpus/$target" ] && seeds=("$ROOT/fuzz/corpus/$target")
  log="$BUILD/logs/$target.log"
  echo "fuzz: $target (up to $RUNS runs or $SECONDS_EACH s; log $log)"
  if ! nice -n 5 "$BUILD/fuzz/fedkit_fuzz_$target" -runs="$RUNS" -max_total_time="$SECONDS_EACH" \
      -max_len=4096 -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    echo "fuzz: $target FAILED: see $log and $crashes/" >&2
    status=1
  fi
  grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec" "$log" | tr '\n' ' '
  echo
done
exit "$status"
