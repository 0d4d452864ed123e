#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite except tests labelled "long"
# (run those with: ctest --test-dir build -L long).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fedkit_setup
cd "$FEDKIT_BUILD"
ctest -j "$(nproc)" -LE long --output-on-failure --timeout 900
