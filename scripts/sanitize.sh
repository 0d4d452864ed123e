#!/usr/bin/env bash
# Builds and runs the test suite (all but the tests labelled "long") under sanitizers, each in a
# build directory of its own (never build/):
#   asan  build-asan/  AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer
#   tsan  build-tsan/  ThreadSanitizer: the server, client and end-to-end tests only
# Usage: scripts/sanitize.sh [asan] [tsan]   (no argument: both). Extra ctest arguments can be given
# in CTEST_ARGS, e.g. CTEST_ARGS="-R Grpc" scripts/sanitize.sh tsan. Exits non-zero if any report
# or test failure occurred.
#
# Suppressions: tests/sanitizers/tsan.supp, for libraries that are not built with TSan (gRPC,
# Abseil, OpenSSL), and tests/sanitizers/lsan.supp, for leaks inside OpenSSL; each entry says why.
# Under ASan, the MPI ranks mpirun starts run without leak detection (see lsan.supp). Reports from
# FedKit's own code are never suppressed. TSan builds also link
# tests/sanitizers/absl_tsan_annotations.cc (see CMakeLists.txt), which tells TSan how the system's
# uninstrumented absl::Mutex synchronizes.
# Tests write temporary files under <build dir>/tmp (TEST_TMPDIR), so a run does not collide with
# another build's tests in /tmp. Sanitizers make every process several times slower, so the tests'
# waits for their child processes (and the round deadlines they give them) are stretched by
# FEDKIT_TEST_TIME_SCALE (tests/subprocess.h): 3 under ASan, 8 under TSan unless set. The lint
# test (clang's -Wthread-safety over the sources) runs no instrumented code and is left to the
# plain suite.
# CI (.ci/run) runs the asan configuration after the plain suite.
# Under ASan the round-engine matrix (RoundEngineMatrixTest: the coordinator, eight devices and the
# simulator's replay per configuration, about 2.5 minutes each under ASan) runs three of its
# thirteen configurations: plain FedAvg, distributed DP under SecAgg+ and random-k under SecAgg+,
# which between them go through the plain, masked, noised and compressed upload paths of the
# coordinator and the device. The other ten compare the same code's results bit for bit in other
# combinations; the plain suite runs all thirteen, and the server and client unit tests run every
# upload path under ASan. This keeps CI's 90 minutes: the suite had reached 87.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # fedkit_configure, the BLAS environment
ROOT="$FEDKIT_ROOT"
JOBS="${JOBS:-2}"

# The tsan configuration covers the server, client and end-to-end tests (ctest labels server,
# client, e2e) and builds only their binaries.
TSAN_TARGETS=(fedkit_server_test fedkit_coordinator_grpc_test fedkit_coordinator_in_process_test
  fedkit_artifact_policy_test fedkit_training_test fedkit_federated_client_test
  fedkit_grpc_channel_test fedkit_coordinator_e2e_test)

run() {  # run NAME SANITIZE TIME_SCALE LABELS TARGETS ENV...  (LABELS, TARGETS: "" = all)
  local name="$1" sanitize="$2" scale="${FEDKIT_TEST_TIME_SCALE:-$3}" labels="$4" targets="$5"
  shift 5
  local dir="$ROOT/build-$name"
  # -O1, as the sanitizers' documentation suggests: compiling instrumented code at -O2 took a third
  # longer (server/round_coordinator.cc under ASan), and the tests' time goes to LibTorch, OpenSSL
  # and gRPC, which are not instrumented and keep their own optimisation.
  FEDKIT_OPT_FLAGS="-O1 -g1 -DNDEBUG" \
    fedkit_configure "$dir" -DFEDKIT_SANITIZE="$sanitize" -DFEDKIT_BUILD_BENCHMARKS=OFF
  # shellcheck disable=SC2086
  cmake --build "$dir" -j "$JOBS" ${targets:+--target $targets}
  mkdir -p "$dir/tmp"
  # shellcheck disable=SC2086
  (cd "$dir" && env TEST_TMPDIR="$dir/tmp" FEDKIT_TEST_TIME_SCALE="$scale" "$@" \
    ctest -j "$JOBS" -LE 'long|lint' ${labels:+-L "$labels"} --output-on-failure --timeout 3600 \
    ${CTEST_ARGS:-})
}

bash "$ROOT/scripts/install-deps.sh"  # nothing to do when scripts/test.sh ran first

configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(asan tsan)
for config in "${configs[@]}"; do
  case "$config" in
    asan)
      CTEST_ARGS="-E ^RoundEngineMatrixTest\.(MedianAggregator|CentralDp|CentralDpUnderSecAggPlus|SecAggPlus|QuantizeRotateCompression|TopKCompressionWithErrorFeedback|RandKCompressionUnderCentralDp|Quantize8Downloads|QuantizeRotateUnderSecAggPlus|AdaptiveClipping)\$ ${CTEST_ARGS:-}" \
        run asan address,undefined 3 "" "" \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp" \
        OMPI_MCA_mca_base_env_list="ASAN_OPTIONS=detect_leaks=0:abort_on_error=0" \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      ;;
    tsan)
      run tsan thread 8 'server|client|e2e' "${TSAN_TARGETS[*]}" \
        TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$ROOT/tests/sanitizers/tsan.supp"
      ;;
    *)
      echo "usage: $0 [asan] [tsan]" >&2
      exit 2
      ;;
  esac
done
