# Shared by the scripts: install dependencies, configure and build into build/ (incremental).
# Source it; it defines fedkit_setup and the BLAS environment.

FEDKIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FEDKIT_BUILD="${FEDKIT_BUILD:-$FEDKIT_ROOT/build}"

# OpenBLAS 0.3.21 (Debian 12) does not recognise recent Intel/AMD models and falls back to its
# generic "Prescott" kernels; naming the kernel family the CPU supports made the MLP simulation about
# 1.4x faster here (see README). An explicit OPENBLAS_CORETYPE from the caller always wins.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ]; then
  if grep -qw avx512f /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi

# Configures DIR (default: build/) as every script does, extra cmake arguments after it, with
# FEDKIT_OPT_FLAGS (default "-O2 -g1 -DNDEBUG") as RelWithDebInfo's flags. The scripts build with
# -g1 (line tables only) instead of CMake's -g: stack traces, sanitizer reports and perf still name
# file and line, and LibTorch's and gRPC's templates no longer make most of the compile time (a
# third to a half less per file, timed on simulation/scaffold.cc and server/round_coordinator.cc).
# A build configured by hand keeps CMake's -g.
fedkit_configure() {
  local dir="${1:-$FEDKIT_BUILD}"
  local flags="${FEDKIT_OPT_FLAGS:--O2 -g1 -DNDEBUG}"
  [ $# -gt 0 ] && shift
  cmake -S "$FEDKIT_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$flags" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$flags" "$@" \
    >/dev/null
}

fedkit_setup() {
  bash "$FEDKIT_ROOT/scripts/install-deps.sh"
  local jobs
  jobs="$(nproc)"
  fedkit_configure
  cmake --build "$FEDKIT_BUILD" -j "$jobs"
}
