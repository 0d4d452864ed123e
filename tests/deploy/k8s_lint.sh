#!/usr/bin/env bash
# deploy/k8s offline: rendered by Debian's kubectl (kubernetes-client 1.20: `kubectl kustomize`
# needs no cluster) and validated by validate_k8s.py against python3-kubernetes' Kubernetes 1.22
# API models; then deliberately broken copies must be refused, each for its own reason.
# ctest: K8sManifestsValidate (label lint). Skips (77) when python3-kubernetes is missing and
# cannot be installed.
#
#   tests/deploy/k8s_lint.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src="$(cd "${1:?usage: k8s_lint.sh SOURCE_DIR WORK_DIR}" && pwd)"
work="${2:?WORK_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py=/usr/bin/python3
export DEBIAN_FRONTEND=noninteractive

# Test tools, from Debian 12 only.
if ! "$py" -c 'import kubernetes, yaml' 2>/dev/null && [ "$(id -u)" -eq 0 ]; then
  apt-get install -y -qq --no-install-recommends python3-kubernetes python3-yaml >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends \
         python3-kubernetes python3-yaml >/dev/null 2>&1; } || true
fi
"$py" -c 'import kubernetes, yaml' 2>/dev/null || { echo "SKIP: python3-kubernetes missing"; exit 77; }

rm -rf "$work" && mkdir -p "$work"
# Debian's kubectl is package kubernetes-client. Some machines have another package's
# /usr/bin/kubectl (e.g. a cloud SDK's), which would conflict on install, so the .deb is unpacked
# into WORK_DIR instead of installed (cached beside it for later runs).
kubectl=""
if dpkg-query -W -f='${Status}' kubernetes-client 2>/dev/null | grep -q "install ok installed"; then
  kubectl=/usr/bin/kubectl
else
  cache="$work/../kubernetes-client"
  if [ ! -x "$cache/usr/bin/kubectl" ]; then
    mkdir -p "$cache"
    deb_dir="$(mktemp -d)"
    chmod 0777 "$deb_dir"  # apt's _apt user downloads into it
    if (cd "$deb_dir" && apt-get download -qq kubernetes-client >/dev/null 2>&1); then
      dpkg-deb -x "$deb_dir"/kubernetes-client_*.deb "$cache"
    fi
    rm -rf "$deb_dir"
  fi
  [ -x "$cache/usr/bin/kubectl" ] && kubectl="$cache/usr/bin/kubectl"
fi

# Renders a kustomization folder to one YAML stream: kubectl kustomize when there is Debian's
# kubectl, else the resource files the kustomization lists, concatenated.
render() {
  if [ -n "$kubectl" ]; then
    KUBECONFIG=/dev/null "$kubectl" kustomize "$1"
  else
    "$py" - "$1" <<'EOF'
import sys, yaml, os
d = sys.argv[1]
k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
for r in k["resources"]:
    print("---")
    print(open(os.path.join(d, r)).read())
EOF
  fi
}

pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAILED: $*"; fail=$((fail + 1)); }

if [ -n "$kubectl" ]; then
  echo "renderer: $kubectl ($(KUBECONFIG=/dev/null "$kubectl" version --client --short 2>/dev/null \
    || KUBECONFIG=/dev/null "$kubectl" version --client 2>&1 | head -1))"
else
  echo "renderer: Debian's kubectl unavailable; the kustomization's resources concatenated"
fi

# The real manifests must pass.
if render "$src/deploy/k8s" > "$work/rendered.yaml" 2> "$work/render.err" \
   && "$py" "$here/validate_k8s.py" "$work/rendered.yaml" > "$work/validate.out" 2>&1; then
  ok "deploy/k8s renders and validates ($(tail -1 "$work/validate.out"))"
  for kind in StatefulSet Service PodDisruptionBudget Job; do
    grep -q "^kind: $kind\$" "$work/rendered.yaml" || bad "rendered output has no $kind"
  done
else
  cat "$work/render.err" "$work/validate.out" 2>/dev/null
  bad "deploy/k8s does not validate"
fi

# Broken copies: FILE, a sed script, and the message the refusal must contain.
broken() {
  local name="$1" file="$2" script="$3" expect="$4"
  local dir="$work/broken-$name"
  cp -r "$src/deploy/k8s" "$dir"
  sed -i -e "$script" "$dir/$file"
  if cmp -s "$src/deploy/k8s/$file" "$dir/$file"; then
    bad "$name: the edit '$script' changed nothing in $file"
    return
  fi
  local out rc=0
  out="$( { render "$dir" > "$dir.yaml" && "$py" "$here/validate_k8s.py" "$dir.yaml"; } 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ]; then
    bad "$name: accepted"
  elif ! grep -q -- "$expect" <<<"$out"; then
    echo "$out"
    bad "$name: refused, but without '$expect'"
  else
    ok "$name: refused ($(grep -m1 -- "$expect" <<<"$out"))"
  fi
}
broken field-typo coordinator-statefulset.yaml 's/imagePullPolicy:/imagePullPolcy:/' \
  'unknown field in V1Container'
broken wrong-type coordinator-statefulset.yaml 's/^  replicas: 1 /  replicas: "one" /' \
  'expected an integer'
broken missing-containers clients-job.yaml 's/^      containers:/      initContainers:/' \
  'containers`, must not be `None`'
broken pdb-selects-nothing coordinator-pdb.yaml '$s/component: coordinator/component: coordinatr/' \
  'matches no workload'
broken undefined-variable clients-job.yaml 's/--client-index=$(JOB_COMPLETION_INDEX)/--client-index=$(JOB_INDEX)/' \
  'JOB_INDEX) is not defined'
broken unmounted-claim coordinator-statefulset.yaml 's/^        name: state$/        name: data/' \
  "volumeMount 'state' names no volume"
broken no-headless-service coordinator-service.yaml 's/clusterIP: None/clusterIP: ""/' \
  'is not a headless Service'
broken bad-name coordinator-pdb.yaml '0,/name: fedkit-coordinator/s//name: Fedkit_Coordinator/' \
  'is not a DNS subdomain'
broken yaml-syntax coordinator-service.yaml 's/^  type: ClusterIP/  type: [ClusterIP/' \
  'format error\|YAML:'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
