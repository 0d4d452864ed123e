#!/usr/bin/env python3
"""Tables of results/compression/*.jsonl (fedkit-sim --metrics-out): bytes per client per round and
accuracy, each against the run without compression of the same group. Prints Markdown."""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    path = os.path.join(HERE, name + ".jsonl")
    if not os.path.exists(path):
        return None
    return [json.loads(line) for line in open(path)]


def table(group, baseline, names, extra=None):
    base = load(baseline)
    if base is None:
        print(f"({group}: {baseline}.jsonl missing)\n")
        return
    b_up = sum(r["upload_bytes"] for r in base) / len(base)
    b_acc = base[-1]["accuracy"]
    cols = "| run | rounds | upload bytes per client per round (mean) | vs none | download bytes | final accuracy | vs none (points) |"
    if extra:
        cols += f" {extra} |"
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    for name in [baseline] + names:
        rows = load(name)
        if rows is None:
            print(f"| {name} | not run | | | | | |")
            continue
        up = sum(r["upload_bytes"] for r in rows) / len(rows)
        down = sum(r["download_bytes"] for r in rows) / len(rows)
        acc = rows[-1].get("accuracy")
        line = (f"| {name} | {rows[-1]['round']} | {up:,.0f} | {b_up / up:.2f}x | {down:,.0f} | "
                f"{acc:.4f} | {100 * (acc - b_acc):+.2f} |")
        if extra == "epsilon":
            line += f" {rows[-1].get('epsilon', float('nan')):.3f} |"
        print(line)
    print()


def download_table(baseline, names):
    base = load(baseline)
    if base is None:
        print(f"(download: {baseline}.jsonl missing)\n")
        return
    b_down = sum(r["download_bytes"] for r in base) / len(base)
    b_acc = base[-1]["accuracy"]
    print("| run | rounds | download bytes per client per round (mean) | vs float32 | upload bytes "
          "| final accuracy | vs float32 (points) | largest gap to float32 at an evaluated round (points) |")
    print("|---|---|---|---|---|---|---|---|")
    b_acc_by_round = {r["round"]: r["accuracy"] for r in base if "accuracy" in r}
    for name in [baseline] + names:
        rows = load(name)
        if rows is None:
            print(f"| {name} | not run | | | | | | |")
            continue
        down = sum(r["download_bytes"] for r in rows) / len(rows)
        up = sum(r["upload_bytes"] for r in rows) / len(rows)
        acc = rows[-1]["accuracy"]
        gaps = [abs(r["accuracy"] - b_acc_by_round[r["round"]]) for r in rows
                if "accuracy" in r and r["round"] in b_acc_by_round]
        print(f"| {name} | {rows[-1]['round']} | {down:,.0f} | {b_down / down:.2f}x | {up:,.0f} | "
              f"{acc:.4f} | {100 * (acc - b_acc):+.2f} | {100 * max(gaps):.2f} |")
    print()


what = sys.argv[1] if len(sys.argv) > 1 else "all"
if what in ("headline", "all"):
    table("headline", "headline_none",
          ["headline_quantize-rotate_8", "headline_quantize-rotate_4", "headline_quantize-rotate_2",
           "headline_quantize_8", "headline_topk_0.1", "headline_topk_0.01", "headline_randk_0.1",
           "headline_randk_0.01"])
if what in ("secagg", "all"):
    table("secagg", "secaggplus_none",
          ["secaggplus_quantize-rotate_8", "secaggplus_quantize-rotate_4", "secaggplus_randk_0.1"])
if what in ("dp", "all"):
    table("dp distributed", "dp_distributed_modulus32", ["dp_distributed_modulus24"], "epsilon")
    table("dp central", "dp_central_none",
          ["dp_central_quantize-rotate_8", "dp_central_randk_0.1"], "epsilon")
if what in ("download", "all"):
    download_table("download_float32",
                   ["download_float16", "download_quantize_8",
                    "download_quantize_8_upload_quantize-rotate_8"])
