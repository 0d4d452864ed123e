#!/usr/bin/env python3
"""Table of results/scaffold_fednova/*.jsonl (results/scaffold_fednova/run.sh): for each partition
and algorithm, the test accuracy after the last round, the best over the rounds, the mean over the
last five rounds (the curves oscillate under label skew), and the run's CPU time from its
/usr/bin/time -v output; a run that stopped says why. Prints Markdown.
  summarize.py [DIR]   (default: this directory; momentum0.9/ holds the first, diverged attempt)"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) > 1:
    HERE = os.path.abspath(sys.argv[1])
PARTITIONS = [("labels:2", "labels_2"), ("dirichlet:0.5", "dirichlet_0_5")]
ALGORITHMS = [("FedAvg", "fedavg"), ("FedProx (mu 0.01)", "fedprox"), ("SCAFFOLD", "scaffold"),
              ("FedNova", "fednova")]


def rows(name):
    path = os.path.join(HERE, name + ".jsonl")
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def stopped(name):
    """The fedkit-sim error line of a run that exited with an error, or None."""
    path = os.path.join(HERE, name + ".err")
    if not os.path.exists(path):
        return None
    text = open(path).read()
    if "Command exited with non-zero status" not in text:
        return None
    errors = [line for line in text.splitlines() if line.startswith("fedkit-sim: round")]
    return errors[-1].replace("fedkit-sim: ", "") if errors else "exited with an error"


def cpu_seconds(name):
    path = os.path.join(HERE, name + ".err")
    if not os.path.exists(path):
        return None
    text = open(path).read()
    user = re.search(r"User time \(seconds\): ([0-9.]+)", text)
    system = re.search(r"System time \(seconds\): ([0-9.]+)", text)
    if not user or not system:
        return None
    return float(user.group(1)) + float(system.group(1))


print("| partition | algorithm | rounds | final accuracy | best (round) | mean of last 5 | "
      "final test loss | CPU s |")
print("|---|---|---|---|---|---|---|---|")
for partition, p in PARTITIONS:
    for label, a in ALGORITHMS:
        name = f"{a}_{p}"
        r = rows(name)
        if not r:
            print(f"| {partition} | {label} | not run | | | | | |")
            continue
        best = max(r, key=lambda x: x["accuracy"])
        last5 = [x["accuracy"] for x in r[-5:]]
        cpu = cpu_seconds(name)
        why = stopped(name)
        rounds = f"{r[-1]['round']}" + (f" (stopped: {why})" if why else "")
        print(f"| {partition} | {label} | {rounds} | {r[-1]['accuracy']:.4f} | "
              f"{best['accuracy']:.4f} ({best['round']}) | {sum(last5) / len(last5):.4f} | "
              f"{r[-1]['loss']:.4f} | {'' if cpu is None else f'{cpu:.0f}'} |")
