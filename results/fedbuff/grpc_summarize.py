#!/usr/bin/env python3
"""Prints results/fedbuff/grpc.md's table from grpc_run.sh's JSONL files (fedkit-coordinator
--metrics-out): for each run, how many rounds (commits) it made, how many updates each one
committed, the first evaluated round at or above the target accuracy and its wall time since the
coordinator started serving, the staleness, and the final accuracy.
Usage: python3 results/fedbuff/grpc_summarize.py [TARGET]"""
import collections
import json
import pathlib
import sys

TARGET = float(sys.argv[1]) if len(sys.argv) > 1 else 0.80
HERE = pathlib.Path(__file__).resolve().parent
RUNS = ["grpc_fedbuff_k10_c20", "grpc_fedavg_k10", "grpc_fedbuff_k10_c39_overselect0.3_secagg"]

print(f"| run | rounds | updates per round (rounds) | round reaching {TARGET:.2f} | wall seconds "
      f"to {TARGET:.2f} | mean staleness (largest) | final accuracy (round, wall s) |")
print("|---|---|---|---|---|---|---|")
for name in RUNS:
    path = HERE / f"{name}.jsonl"
    if not path.exists():
        print(f"| {name} | (not run) | | | | | |")
        continue
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sizes = collections.Counter(l["participants"] for l in lines)
    sizes_text = ", ".join(f"{k} ({v})" for k, v in sorted(sizes.items()))
    hit = next((l for l in lines if l.get("accuracy", 0) >= TARGET), None)
    stale = [l["staleness_mean"] for l in lines if "staleness_mean" in l]
    stale_text = (f"{sum(stale) / len(stale):.2f} ({max(l['staleness_max'] for l in lines)})"
                  if stale else "0 (synchronous)")
    last = lines[-1]
    final = f"{last['accuracy']:.4f} ({last['round']}, {last['elapsed_seconds']:.0f})"
    if hit is None:
        print(f"| {name} | {len(lines)} | {sizes_text} | not reached | | {stale_text} | {final} |")
    else:
        print(f"| {name} | {len(lines)} | {sizes_text} | {hit['round']} | "
              f"{hit['elapsed_seconds']:.1f} | {stale_text} | {final} |")
