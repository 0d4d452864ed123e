#!/usr/bin/env python3
"""Table of results/robust/*.jsonl (results/robust/run.sh): final test accuracy (after the last
round) of each aggregator under each attack and attacker fraction. Prints Markdown."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
AGGREGATORS = ["mean", "median", "trimmed-mean:0.2", "krum:5", "multi-krum:5,10", "norm-bound:1"]
ATTACKS = ["sign-flip", "scale:10", "label-flip", "noise:1"]


def final(name):
    path = os.path.join(HERE, name + ".jsonl")
    if not os.path.exists(path):
        return None
    rows = [json.loads(line) for line in open(path)]
    evaluated = [r for r in rows if "accuracy" in r]
    if not evaluated or evaluated[-1]["round"] != 100:
        return None
    return evaluated[-1]["accuracy"]


def cell(value):
    return "not run" if value is None else f"{value:.4f}"


columns = ["none"] + [f"{a} {int(100 * p)}%" for a in ATTACKS for p in (0.1, 0.2)]
print("| aggregator | " + " | ".join(columns) + " |")
print("|---" * (len(columns) + 1) + "|")
for agg in AGGREGATORS:
    a = agg.replace(":", "_").replace(",", "_")
    cells = [cell(final(f"{a}_none_0"))]
    for attack in ATTACKS:
        for p in ("0.1", "0.2"):
            cells.append(cell(final(f"{a}_{attack.replace(':', '_')}_{p}")))
    print(f"| {agg} | " + " | ".join(cells) + " |")
