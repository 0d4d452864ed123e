#!/usr/bin/env bash
# The container image and the compose demo, for real, with Debian 12's podman (rootful, vfs
# storage, runc). ctest: ContainerComposeDemo (labels container, long). Skips (exit 77) when not
# root or podman / runc / debootstrap / the Debian mirror are missing.
#
#   tests/deploy/container_demo.sh SOURCE_DIR WORK_DIR BIN_DIR
#
# 1. A base image from Debian's packages (no registry is reachable here): debootstrap
#    --variant=minbase bookworm, `podman import`, tagged debian:12 and debian:12-slim (Debian's
#    own images are minbase debootstraps too; slim also drops docs and locales).
# 2. The FedKit image from deploy/Dockerfile, one of two ways:
#      default                       deploy/Dockerfile's runtime stage, verbatim (its text from the
#                                    last FROM on), on top of a "build" stage that holds BIN_DIR's
#                                    fedkit-coordinator/-client/-sim stripped as the Dockerfile's
#                                    build stage strips them (objcopy --strip-debug). That build stage
#                                    is scripts/install-deps.sh plus the CMake build, which CI runs on
#                                    Debian 12 every time; compiling it again costs ~20 min of 2 cores.
#      FEDKIT_CONTAINER_FULL_BUILD=1 `podman build -f deploy/Dockerfile` of SOURCE_DIR's committed tree
#                                    (git archive HEAD), both stages, compiling FedKit.
# 3. deploy/docker-compose.yml run by compose_podman.py (the file's services, commands, volumes
#    and healthcheck with `podman run`; see that script for what differs from Compose), with
#    FEDKIT_CONTAINER_ROUNDS rounds (default 3) instead of 20: certs, TLS coordinator with the
#    demo token, four clients; checks exits, the healthcheck, grpc.health.v1 over TLS (and that
#    plaintext, as the kubelet's grpc probe speaks, fails), deploy/k8s's readiness command, a
#    SIGTERM to the coordinator after round 1 (it must stop within stop_grace_period and resume
#    when started again), metrics and the final accuracy (>= FEDKIT_CONTAINER_MIN_ACCURACY,
#    default 0.70).
#
# WORK_DIR keeps podman's storage (several GB with vfs) so that a second run reuses the base image
# and the build cache; delete it to start afresh. Containers and volumes of a run are removed.
set -euo pipefail

src="$(cd "${1:?usage: container_demo.sh SOURCE_DIR WORK_DIR BIN_DIR}" && pwd)"
work="${2:?WORK_DIR}"
bin="${3:?BIN_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rounds="${FEDKIT_CONTAINER_ROUNDS:-3}"
min_acc="${FEDKIT_CONTAINER_MIN_ACCURACY:-0.70}"
py=/usr/bin/python3

skip() { echo "SKIP: $*"; exit 77; }
say() { echo "container_demo: $*"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman, debootstrap)"
for t in podman runc debootstrap objcopy nsenter "$py"; do
  command -v "$t" >/dev/null || skip "$t not installed (apt-get install podman runc debootstrap)"
done
"$py" -c 'import yaml' 2>/dev/null || skip "python3-yaml missing"
for b in fedkit-coordinator fedkit-client fedkit-sim; do
  [ -x "$bin/$b" ] || skip "$bin/$b not built"
done
mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
[ -n "$mirror" ] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$mirror" ] || skip "no Debian mirror in /etc/apt/sources.list*"
"$py" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]+'/dists/bookworm/Release', timeout=20)" \
  "$mirror" 2>/dev/null || skip "Debian mirror $mirror unreachable"
# Optional: the grpc.health.v1 check over TLS (python3-grpcio, a test-only tool).
health_args=()
if ! "$py" -c 'import grpc' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-grpcio \
    >/dev/null 2>&1 || true
fi
if "$py" -c 'import grpc' 2>/dev/null; then
  health_args=(--health-script "$here/grpc_health_check.py")
else
  say "python3-grpcio not installable: the grpc.health.v1 check is left out"
fi

mkdir -p "$work"
work="$(cd "$work" && pwd)"
# Private storage, so this never touches (or is touched by) anyone else's podman images.
runroot="/run/fedkit-container-test-$(echo "$work" | sha256sum | cut -c1-12)"
# This machine's kernel lets no process raise a hard rlimit (CAP_SYS_RESOURCE is not in the
# bounding set), while podman 4.3 asks for nofile 1048576 and crun refuses hybrid cgroups (v1
# controllers plus a cgroup2 mount): use runc and limits no higher than what conmon inherits
# (nofile: this shell's hard limit; nproc: 32768, the hard limit podman leaves its conmon).
nofile="$(ulimit -Hn)"
[ "$nofile" = unlimited ] && nofile=1048576
nproc="$(ulimit -Hu)"
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
cat > "$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$work/containers.conf"
P="podman --root $work/storage --runroot $runroot --storage-driver vfs"
say "podman: $P (CONTAINERS_CONF=$CONTAINERS_CONF)"
now() { date +%s.%N; }
elapsed() { "$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# 1. Base image.
if ! $P image exists localhost/debian:12; then
  t0=$(now)
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; echo "FAIL: debootstrap"; exit 1; }
  tar -C "$work/rootfs" -c . | $P import - localhost/debian:12 >/dev/null
  $P tag localhost/debian:12 localhost/debian:12-slim
  rm -rf "$work/rootfs"
  say "base image: debootstrap + import in $(elapsed "$t0") s"
fi
say "base image size: $($P image inspect --format '{{.Size}}' localhost/debian:12) bytes"
# The engine itself (this is what failed with crun: setrlimit RLIMIT_NOFILE).
$P run --rm --network none localhost/debian:12 true \
  || { echo "FAIL: podman run of the base image"; exit 1; }

# 2. The FedKit image.
ctx="$work/context"
rm -rf "$ctx" && mkdir -p "$ctx"
t0=$(now)
if [ "${FEDKIT_CONTAINER_FULL_BUILD:-0}" = 1 ]; then
  mode="full build: podman build -f deploy/Dockerfile of git HEAD ($(git -C "$src" rev-parse --short HEAD))"
  git -C "$src" archive HEAD | tar -x -C "$ctx"
  # --layers=false: with vfs every committed layer is a full copy of the build stage's root file
  # system (~3 GB after install-deps.sh), and the build stage has a dozen COPY steps.
  $P build --layers=false --network host -f "$ctx/deploy/Dockerfile" -t localhost/fedkit:test "$ctx" \
    > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; echo "FAIL: podman build"; exit 1; }
else
  mode="runtime stage of deploy/Dockerfile over prebuilt binaries from $bin"
  mkdir -p "$work/out/out"
  for b in fedkit-coordinator fedkit-client fedkit-sim; do
    objcopy --strip-debug "$bin/$b" "$work/out/out/$b"
  done
  tag="$(cat "$work"/out/out/* | sha256sum | cut -c1-16)"
  $P image exists "localhost/fedkit-build-out:$tag" \
    || tar -C "$work/out" -c out | $P import - "localhost/fedkit-build-out:$tag" >/dev/null
  # The build stage's name, from the Dockerfile's first FROM ("FROM debian:12 AS build").
  stage="$(awk 'toupper($1)=="FROM"{print $NF; exit}' "$src/deploy/Dockerfile")"
  [ -n "$stage" ] || { echo "FAIL: no build stage name in deploy/Dockerfile"; exit 1; }
  { echo "FROM localhost/fedkit-build-out:$tag AS $stage"
    awk 'toupper($1)=="FROM"{n++} n>=2' "$src/deploy/Dockerfile"; } > "$ctx/Containerfile"
  grep -q "COPY --from=$stage /out/" "$ctx/Containerfile" \
    || { echo "FAIL: runtime stage does not COPY --from=$stage /out/"; exit 1; }
  cp -r "$src/deploy" "$ctx/deploy"
  $P build --network host -f "$ctx/Containerfile" -t localhost/fedkit:test "$ctx" \
    > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; echo "FAIL: podman build"; exit 1; }
fi
build_s="$(elapsed "$t0")"
$P image prune -f >/dev/null 2>&1 || true
size="$($P image inspect --format '{{.Size}}' localhost/fedkit:test)"
cached="$(grep -c 'Using cache' "$work/build.log" || true)"
say "image: $mode"
say "image built in $build_s s ($cached steps from cache); size $size bytes"
for b in fedkit-coordinator fedkit-client fedkit-sim; do
  $P run --rm --network none localhost/fedkit:test "$b" --help >/dev/null \
    || { echo "FAIL: $b --help in the image"; exit 1; }
done
[ "$($P run --rm --network none localhost/fedkit:test id -u)" = 10001 ] \
  || { echo "FAIL: image does not run as uid 10001"; exit 1; }

# 3. The compose demo.
"$py" "$here/compose_podman.py" --compose "$src/deploy/docker-compose.yml" \
  --image localhost/fedkit:test --podman "$P" --prefix "fedkit-ct-$$" --workdir "$work/demo" \
  --rounds "$rounds" --min-accuracy "$min_acc" --summary-json "$work/demo/summary.json" \
  --k8s-statefulset "$src/deploy/k8s/coordinator-statefulset.yaml" --sigterm-after-round 1 \
  "${health_args[@]}"
echo "container_demo: OK (image $size bytes, built in $build_s s; summary in $work/demo/summary.json)"
