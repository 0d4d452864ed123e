#!/usr/bin/env bash
# The measurement behind results/device_telemetry.md: fedkit-coordinator and 20 fedkit-client
# processes on localhost over TLS (throwaway certificates from deploy/make-certs.sh), the mlp model
# on Fashion-MNIST (20 IID shards of 3,000 examples), a few rounds of 1 local epoch; then GetStatus
# from the dashboard's /api/status (protobuf's JSON mapping, proto field names) and a Markdown table of each round's
# device telemetry (reports, p50 and p90 of every field).
#
#   scripts/device_telemetry_run.sh [OUT_DIR] [ROUNDS]
#
# Needs build/bin/fedkit-coordinator and build/bin/fedkit-client, curl and python3. Writes
# OUT_DIR/status.json, OUT_DIR/table.md and the processes' logs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-/tmp/fedkit-device-telemetry}"
rounds="${2:-5}"
clients=20
bin="${FEDKIT_BUILD:-$root/build}/bin"
data=/usr/share/datasets/fashion-mnist
rm -rf "$out"
mkdir -p "$out"
bash "$root/deploy/make-certs.sh" "$out/certs" >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
http_port="$(free_port)"

"$bin/fedkit-coordinator" --listen "127.0.0.1:$port" --tls-cert "$out/certs/server.pem" \
  --tls-key "$out/certs/server.key" --model mlp --rounds "$rounds" --clients-per-round "$clients" \
  --local-epochs 1 --batch-size 32 --client-lr 0.05 --eval-data "$data" \
  --http "127.0.0.1:$http_port" --linger 600 >"$out/coordinator.log" 2>&1 &
coordinator=$!
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$coordinator" 2>/dev/null || true
}
trap cleanup EXIT

for ((i = 0; i < clients; i++)); do
  "$bin/fedkit-client" --server "127.0.0.1:$port" --tls-ca "$out/certs/ca.pem" \
    --num-clients "$clients" --client-index "$i" --model mlp --data-dir "$data" \
    >"$out/client-$i.log" 2>&1 &
  pids+=($!)
done

# The run is over when GetStatus says so (the coordinator lingers, answering, for 600 s).
status=""
for _ in $(seq 1 3600); do
  status="$(curl -s --max-time 5 "http://127.0.0.1:$http_port/api/status" || true)"
  case "$status" in *'"phase":"finished"'*) break ;; esac
  sleep 1
done
printf '%s\n' "$status" >"$out/status.json"
for p in "${pids[@]}"; do wait "$p" || echo "client $p exited with $?" >&2; done
pids=()
kill -TERM "$coordinator"
wait "$coordinator" || true

python3 - "$out/status.json" >"$out/table.md" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))
fields = [("training_seconds", "training s", "{:.2f}"),
          ("examples_per_second", "examples/s", "{:.0f}"), ("cpu_seconds", "CPU s", "{:.2f}"),
          ("model_load_seconds", "model load s", "{:.3f}"),
          ("peak_memory_bytes", "peak RSS MiB", "mib"), ("upload_bytes", "sent KiB", "kib"),
          ("download_bytes", "received KiB", "kib"), ("energy_joules", "energy J", "{:.1f}")]
def show(value, fmt):
    if fmt == "mib": return "{:.1f}".format(value / 2**20)
    if fmt == "kib": return "{:.1f}".format(value / 1024)
    return fmt.format(value)
print("| round | participants | reports | invalid | " +
      " | ".join(f"{name} p50 / p90" for _, name, _ in fields) + " |")
print("|" + "---|" * (4 + len(fields)))
for r in status.get("history", []):
    t = r.get("device_telemetry", {})
    cells = [str(r.get("round")), str(r.get("participants", 0)), str(t.get("reports", 0)),
             str(t.get("invalid_reports", 0))]
    for key, _, fmt in fields:
        q = t.get(key)
        cells.append("{} / {}".format(show(q.get("p50", 0), fmt), show(q.get("p90", 0), fmt))
                     if q and int(q.get("count", 0)) > 0 else "unset")
    print("| " + " | ".join(cells) + " |")
print()
print("device_telemetry_invalid:", status.get("device_telemetry_invalid", 0))
PY
cat "$out/table.md"
