#!/usr/bin/env bash
# Installs FedKit's build and run dependencies from Debian 12 packages.
# Idempotent: when every package is already installed it does nothing (no apt-get update).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev
  # LibTorch's matmuls go through libblas.so.3; Debian's default is the unoptimized reference BLAS.
  # OpenBLAS (pthread flavour) registers itself as the libblas.so.3 alternative with higher priority.
  libopenblas0-pthread
  libabsl-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev
  dataset-fashion-mnist
  # TorchScript models are written and checked in Python; python3-torch 1.13 matches libtorch-dev 1.13.
  python3-torch
  # fedkit-plot (scripts/plot.py): metrics files to PNG/SVG curves; fedkit-sim --plot runs it.
  python3-matplotlib
  # fedkit-sim beyond one process: mpirun -np N fedkit-sim (Open MPI).
  libopenmpi-dev openmpi-bin
  # fedkit-coordinator --http and --metrics-listen: the HTTP server of the dashboard (dashboard/) and
  # of /metrics (monitoring/http_endpoint.h), and the browser the dashboard's test drives headless
  # (tests/dashboard_chromium_test.cc; skipped without it).
  libmicrohttpd-dev chromium
  # Clang's -Wthread-safety analysis, a test of the suite (scripts/thread_safety.py): without clang
  # it would be skipped.
  clang-14
  # fedkit-coordinator --metrics-listen (monitoring/); the real Prometheus server, promtool and curl
  # for its test (PrometheusScrapesTheCoordinatorsMetrics) and the Grafana dashboard's check.
  prometheus-cpp-dev prometheus curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
