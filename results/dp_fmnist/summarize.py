#!/usr/bin/env python3
"""Summarises results/dp_fmnist/*.jsonl: final accuracy and epsilon per run (summary.md), the
accuracy-vs-epsilon curves of every run (accuracy_vs_epsilon.csv), and central vs distributed DP at
matching epsilon (matching_epsilon.md)."""
import glob
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def eps_str(e):
    return "inf" if e is None else f"{e:.3f}"


runs = {os.path.basename(p)[:-6]: load(p) for p in sorted(glob.glob(os.path.join(HERE, "*.jsonl")))}

with open(os.path.join(HERE, "accuracy_vs_epsilon.csv"), "w") as out:
    out.write("run,round,epsilon,accuracy,clip_norm\n")
    for name, lines in runs.items():
        for l in lines:
            eps = l.get("epsilon")
            out.write(f"{name},{l['round']},{'' if eps is None else eps},{l['accuracy']},"
                      f"{l.get('clip_norm', '')}\n")

rows = ["| run | rounds | final accuracy | mean accuracy, last 5 evals | epsilon (delta 1e-5) | final clip |",
        "|---|---:|---:|---:|---:|---:|"]
for name, lines in runs.items():
    last = lines[-1]
    tail = [l["accuracy"] for l in lines[-5:]]
    clip = f"{last['clip_norm']:.3f}" if "clip_norm" in last else "-"
    rows.append(f"| {name} | {last['round']} | {last['accuracy']:.4f} | {statistics.mean(tail):.4f} | "
                f"{eps_str(last.get('epsilon')) if 'epsilon' in last else 'no DP'} | "
                f"{clip} |")
with open(os.path.join(HERE, "summary.md"), "w") as out:
    out.write("\n".join(rows) + "\n")
print("\n".join(rows))

# Central vs distributed at z = 1.0: the same q and (effective) z, so the same epsilon at every
# round. Compare accuracy at a few epsilons (rounds), per seed and averaged over seeds.
pairs = [(f"central_z1.0_seed{s}", f"distributed_secaggplus_z1.0_seed{s}") for s in range(3)]
pairs = [(c, d) for c, d in pairs if c in runs and d in runs]
if pairs:
    out_rows = ["| round | epsilon (central / distributed) | central accuracy | distributed accuracy | "
                "distributed - central (points) |", "|---:|---|---:|---:|---:|"]
    checkpoints = [100, 200, 300, 400, 500]
    for r in checkpoints:
        cs, ds, ce, de = [], [], [], []
        for c, d in pairs:
            lc = next((l for l in runs[c] if l["round"] == r), None)
            ld = next((l for l in runs[d] if l["round"] == r), None)
            if lc is None or ld is None:
                continue
            cs.append(lc["accuracy"])
            ds.append(ld["accuracy"])
            ce.append(lc["epsilon"])
            de.append(ld["epsilon"])
        if not cs:
            continue
        out_rows.append(f"| {r} | {statistics.mean(ce):.4f} / {statistics.mean(de):.4f} | "
                        f"{statistics.mean(cs):.4f} | {statistics.mean(ds):.4f} | "
                        f"{100 * (statistics.mean(ds) - statistics.mean(cs)):+.2f} |")
    # Also the mean over the last 10 evaluations (rounds 410-500) per seed, less noisy.
    per_seed = ["| seed | central, mean of rounds 410-500 | distributed, mean of rounds 410-500 | "
                "difference (points) |", "|---:|---:|---:|---:|"]
    diffs = []
    for c, d in pairs:
        a = statistics.mean(l["accuracy"] for l in runs[c] if l["round"] > 400)
        b = statistics.mean(l["accuracy"] for l in runs[d] if l["round"] > 400)
        diffs.append(b - a)
        per_seed.append(f"| {c[-1]} | {a:.4f} | {b:.4f} | {100 * (b - a):+.2f} |")
    per_seed.append(f"| mean | | | {100 * statistics.mean(diffs):+.2f} |")
    with open(os.path.join(HERE, "matching_epsilon.md"), "w") as out:
        out.write("\n".join(out_rows) + "\n\n" + "\n".join(per_seed) + "\n")
    print("\n".join(out_rows))
    print("\n".join(per_seed))

# Accuracy at a fixed privacy budget: for each noise level, the accuracy of the last evaluated round
# whose epsilon is within the budget (what --target-epsilon would stop at, to the eval interval).
budgets = [0.5, 1.0, 1.5, 2.0, 4.0, 8.0]
levels = [n for n in runs if n.startswith("central_z") and n.endswith("_seed0") and "target" not in n
          and n != "central_z0_seed0"] + ["distributed_secaggplus_z1.0_seed0"]
levels = [n for n in levels if n in runs]
levels.sort(key=lambda n: float(n.split("_z")[1].split("_")[0]))
table = ["| run | " + " | ".join(f"epsilon <= {b:g}" for b in budgets) + " |",
         "|---|" + "---:|" * len(budgets)]
for name in levels:
    cells = []
    for b in budgets:
        within = [l for l in runs[name] if l.get("epsilon") is not None and l["epsilon"] <= b]
        cells.append(f"{within[-1]['accuracy']:.4f} (r{within[-1]['round']})" if within else "-")
    table.append(f"| {name} | " + " | ".join(cells) + " |")
with open(os.path.join(HERE, "accuracy_at_epsilon.md"), "w") as out:
    out.write("\n".join(table) + "\n")
print("\n".join(table))
