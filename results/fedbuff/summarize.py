#!/usr/bin/env python3
"""Prints results/fedbuff/README.md's table from the runs' JSONL files: for each run, the first
evaluated round (or commit) at or above the target accuracy, its virtual time, the client updates
trained until then, and the final accuracy. Usage: python3 results/fedbuff/summarize.py [TARGET]"""
import json
import pathlib
import sys

TARGET = float(sys.argv[1]) if len(sys.argv) > 1 else 0.80
BUDGET = 180.0  # virtual seconds: about FedBuff's 300 commits with K = 10, C = 20
HERE = pathlib.Path(__file__).resolve().parent
RUNS = ["fedavg_k10", "fedavg_k10_overselect0.3", "fedbuff_k10_c20", "fedbuff_k10_c30",
        "fedbuff_k10_c20_constant", "fedbuff_k5_c20", "fedavg_k10_secagg", "fedbuff_k10_c20_clip2",
        "fedbuff_k10_c20_secagg", "fedbuff_k10_c30_secagg", "fedavg_k10_overselect0.3_secagg",
        "fedbuff_k10_c26_overselect0.3_secagg", "fedbuff_k10_c39_overselect0.3_secagg"]

print(f"| run | rounds (commits) to {TARGET:.2f} | virtual seconds to {TARGET:.2f} | "
      f"client updates to {TARGET:.2f} | mean staleness | accuracy at {BUDGET:.0f} virtual s "
      f"(round) | final accuracy (round, virtual s) |")
print("|---|---|---|---|---|---|---|")
baseline = None
for name in RUNS:
    path = HERE / f"{name}.jsonl"
    if not path.exists():
        print(f"| {name} | (not run) | | | | | |")
        continue
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    hit = next((l for l in lines if l["accuracy"] >= TARGET), None)
    last = lines[-1]
    stale = [l["staleness_mean"] for l in lines if "staleness_mean" in l]
    stale_text = f"{sum(stale) / len(stale):.2f}" if stale else "0"
    within = [l for l in lines if l["virtual_elapsed_seconds"] <= BUDGET]
    at_budget = f"{within[-1]['accuracy']:.4f} ({within[-1]['round']})" if within else "-"
    final = f"{last['accuracy']:.4f} ({last['round']}, {last['virtual_elapsed_seconds']:.0f})"
    if hit is None:
        print(f"| {name} | not reached | not reached | | {stale_text} | {at_budget} | {final} |")
        continue
    seconds = hit["virtual_elapsed_seconds"]
    if baseline is None:
        baseline = seconds
    print(f"| {name} | {hit['round']} | {seconds:.1f} ({baseline / seconds:.2f}x) | "
          f"{hit['round'] * hit['contributors']} | {stale_text} | {at_budget} | {final} |")
