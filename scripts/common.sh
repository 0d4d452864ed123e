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

fedkit_setup() {
  bash "$FEDKIT_ROOT/scripts/install-deps.sh"
  local jobs
  jobs="$(nproc)"
  cmake -S "$FEDKIT_ROOT" -B "$FEDKIT_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$FEDKIT_BUILD" -j "$jobs"
}
