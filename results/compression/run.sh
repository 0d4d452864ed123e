#!/usr/bin/env bash
# The runs behind results/compression/README.md (issue 13, "What it must show" 1). Each run writes
# NAME.jsonl (fedkit-sim --metrics-out: upload_bytes and download_bytes per round), NAME.log
# (stdout) and NAME.err. Usage: bash results/compression/run.sh [headline|secagg|dp|download|all]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/common.sh
OUT=results/compression
SIM=build/bin/fedkit-sim
run() {  # NAME ARGS...
  local name="$1"; shift
  echo "== $name: $*" >&2
  /usr/bin/time -f "%e s wall, %M KiB max RSS" -o "$OUT/$name.time" \
    "$SIM" "$@" --metrics-out "$OUT/$name.jsonl" > "$OUT/$name.log" 2> "$OUT/$name.err"
}
what="${1:-all}"
# The headline run: configs/fmnist_mlp_demo.yaml (2NN, 199,210 parameters; 1,000 clients,
# dirichlet:0.5, 100 per round, 5 local epochs) for 200 rounds, as the README's accuracy result.
HEAD="--config configs/fmnist_mlp_demo.yaml --rounds 200 --eval-every 10 --threads 2"
if [ "$what" = headline ] || [ "$what" = all ]; then
  rm -f "$OUT"/headline_*.jsonl
  for c in none quantize-rotate:8 quantize-rotate:4 quantize-rotate:2 quantize:8 topk:0.1 \
           topk:0.01 randk:0.1 randk:0.01; do
    run "headline_${c//:/_}" $HEAD --compression "$c"
  done
fi
# The same under SecAgg+ (needs a clip norm; --clip-norm 2 as results/secagg_fmnist), 100 rounds.
SECAGG="$HEAD --rounds 100 --clip-norm 2 --secagg secagg+"
if [ "$what" = secagg ] || [ "$what" = all ]; then
  for c in none quantize-rotate:8 quantize-rotate:4 randk:0.1; do
    run "secaggplus_${c//:/_}" $SECAGG --compression "$c"
  done
fi
# DP-FedAvg at a fixed epsilon (results/dp_fmnist's setup: logreg, 10,000 IID clients, 100 per
# round, z = 1.0, adaptive clipping, delta 1e-5), 200 rounds: distributed DP under SecAgg+ with a
# smaller modulus (its encoding's compression), and central DP with compressed uploads.
DP="--dataset fmnist --partition iid --clients 10000 --clients-per-round 100 --rounds 200
    --model logreg --local-epochs 5 --batch-size 6 --client-lr 0.1 --server-optimizer sgd
    --server-lr 1 --server-momentum 0.5 --eval-every 10 --threads 2 --seed 0
    --clip-norm 0.5 --adaptive-clip-quantile 0.5 --delta 1e-5 --noise-multiplier 1.0"
if [ "$what" = dp ] || [ "$what" = all ]; then
  for bits in 32 24; do
    run "dp_distributed_modulus$bits" $DP --dp distributed --secagg secagg+ --secagg-modulus-bits "$bits"
  done
  for c in none quantize-rotate:8 randk:0.1; do
    run "dp_central_${c//:/_}" $DP --dp central --compression "$c"
  done
fi
# Compressed model downloads (--download-compression) on the headline run: float32 (a rerun of
# headline_none, which it must equal), float16, 8-bit, and 8-bit downloads with 8-bit rotated
# uploads.
if [ "$what" = download ] || [ "$what" = all ]; then
  for d in float32 float16 quantize:8; do
    run "download_${d//:/_}" $HEAD --download-compression "$d"
  done
  run "download_quantize_8_upload_quantize-rotate_8" $HEAD --download-compression quantize:8 \
    --compression quantize-rotate:8
fi
