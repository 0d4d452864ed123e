#!/usr/bin/env bash
# Installs FedKit from a build tree, builds examples/device_app against the installed package, and
# runs the app for one round against that build's fedkit-coordinator on 127.0.0.1.
#
#   tests/install_example_test.sh BUILD_DIR [SOURCE_DIR] [COORDINATOR_BINARY]
set -u
build_dir=$(realpath "${1:?usage: $0 BUILD_DIR [SOURCE_DIR] [COORDINATOR_BINARY]}")
source_dir=$(realpath "${2:-$(dirname "$0")/..}")
coordinator_bin=${3:-$build_dir/bin/fedkit-coordinator}

work=$(mktemp -d "${TMPDIR:-/tmp}/fedkit_install_test.XXXXXX")
coordinator_pid=""
cleanup() {
  if [[ -n $coordinator_pid ]] && kill -0 "$coordinator_pid" 2>/dev/null; then
    kill "$coordinator_pid" 2>/dev/null
    wait "$coordinator_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() {  # check NAME COMMAND...: runs the command, counts and reports the result
  local name=$1
  shift
  if "$@"; then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    failed=$((failed + 1))
  fi
}
show() {  # prints a log file, indented, after a failure
  sed 's/^/    /' "$1"
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit $?
}

prefix=$work/prefix
app_build=$work/app

# (a) Install.
install_ok() { cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" 2>&1 || { show "$work/install.log"; return 1; }; }
check "cmake --install $build_dir --prefix <tmp>" install_ok
check "installed package files" test -f "$prefix/lib/cmake/FedKit/FedKitConfig.cmake" \
  -a -f "$prefix/lib/cmake/FedKit/FedKitTargets.cmake" \
  -a -f "$prefix/lib/cmake/FedKit/FedKitConfigVersion.cmake" \
  -a -f "$prefix/include/client/federated_client.h" -a -f "$prefix/lib/libfedkit_client.a"
[[ $failed -eq 0 ]] || finish

# (b) Configure and build the example against the installed package only.
configure_ok() {
  cmake -S "$source_dir/examples/device_app" -B "$app_build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log" 2>&1 ||
    { show "$work/configure.log"; return 1; }
}
build_ok() {
  cmake --build "$app_build" -j2 >"$work/build.log" 2>&1 || { show "$work/build.log"; return 1; }
}
check "configure examples/device_app with -DCMAKE_PREFIX_PATH=<tmp>" configure_ok
[[ $failed -eq 0 ]] || finish
check "the example builds against FedKit from <tmp>, not the source tree" \
  grep -q "FedKit_DIR:PATH=$prefix/lib/cmake/FedKit" "$app_build/CMakeCache.txt"
check "build examples/device_app" build_ok
[[ $failed -eq 0 ]] || finish

# (c) A one-round run: the coordinator on an ephemeral loopback port, the example app as its device.
coordinator_log=$work/coordinator.log
"$coordinator_bin" --insecure --listen 127.0.0.1:0 --model seed --rounds 1 --clients-per-round 1 \
  --retry-interval 0.2 --linger 1 >"$coordinator_log" 2>&1 &
coordinator_pid=$!
port=""
deadline=$((SECONDS + 60))  # safety net only: the loop ends as soon as the port is printed
while [[ -z $port ]] && ((SECONDS < deadline)) && kill -0 "$coordinator_pid" 2>/dev/null; do
  port=$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$coordinator_log" | head -n 1)
  [[ -n $port ]] || sleep 0.1
done
[[ -n $port ]] || port=$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$coordinator_log" | head -n 1)
check "coordinator prints 'serving on port N'" test -n "$port"
if [[ -z $port ]]; then show "$coordinator_log"; finish; fi

app_log=$work/app.log
timeout --kill-after=10 180 "$app_build/app" --server "127.0.0.1:$port" --insecure \
  >"$app_log" 2>&1
app_rc=$?
check "app exits 0 (got $app_rc)" test "$app_rc" -eq 0
check "app contributed to 1 round" grep -q "contributed to 1 rounds" "$app_log"

# The coordinator ends by itself after its round (and --linger 1): wait for it, bounded.
deadline=$((SECONDS + 60))
while kill -0 "$coordinator_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
if kill -0 "$coordinator_pid" 2>/dev/null; then
  coordinator_rc="still running after 60 s"
else
  wait "$coordinator_pid"
  coordinator_rc=$?
  coordinator_pid=""
fi
check "coordinator exits 0 after its round (got $coordinator_rc)" test "$coordinator_rc" = 0
if [[ $failed -ne 0 ]]; then
  echo "--- coordinator log"; show "$coordinator_log"
  echo "--- app log"; show "$app_log"
fi
finish
