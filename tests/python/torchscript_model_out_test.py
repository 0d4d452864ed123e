#!/usr/bin/env python3
"""End to end: a model written in Python, trained by fedkit-sim, read back by Python.

    torchscript_model_out_test.py FEDKIT_SIM MAKE_MODEL_PY WORKDIR

Writes a 2NN with models/python/make_model.py, trains it for a few rounds of fedkit-sim on
Fashion-MNIST with --model-out and --metrics-out, loads the final model with torch.jit.load,
evaluates it on the Fashion-MNIST test set in Python (pixels / 255, as FedKit's reader), and checks
that the accuracy equals the one fedkit-sim reported for the last round (the same count of correct
test examples) and that the parameters changed from the initial file. Then, for the registry models
logreg, seed and mlp: trains one with fedkit-sim, exports its --model-out to TorchScript with
make_model.py --parameters, and checks the same accuracy equality for the exported file, and that
fedkit-sim trains the exported file further. Prints 'N passed, N failed'.
"""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def last_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()][-1]


def count_correct(path, x, y):
    model = torch.jit.load(path)
    model.eval()
    with torch.no_grad():
        return sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
                   for i in range(0, len(y), 500))


def main():
    sim, make_model, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    initial = os.path.join(work, "2nn.pt")
    final = os.path.join(work, "2nn_final.pt")
    metrics = os.path.join(work, "metrics.jsonl")
    subprocess.run([sys.executable, make_model, "2nn", initial, "--seed", "7"], check=True)
    subprocess.run([sim, "--model", initial, "--clients", "50", "--clients-per-round", "5",
                    "--rounds", "3", "--partition", "dirichlet:0.5", "--seed", "3",
                    "--threads", "2", "--model-out", final, "--metrics-out", metrics], check=True)
    last = last_metrics(metrics)

    images = read_idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    correct = count_correct(final, x, y)
    start = torch.jit.load(initial)
    changed = any(not torch.equal(a, b)
                  for a, b in zip(torch.jit.load(final).parameters(), start.parameters()))

    failures = []
    reported = round(last["accuracy"] * len(y))
    print(f"fedkit-sim reported accuracy {last['accuracy']} ({reported} of {len(y)}); "
          f"Python's torch.jit.load of --model-out: {correct} of {len(y)}")
    if correct != reported:
        failures.append(f"accuracy differs: Python {correct}, fedkit-sim {reported}")
    if not changed:
        failures.append("the final model's parameters equal the initial file's")
    checks = 2
    for name in ("logreg", "seed", "mlp"):
        trained = os.path.join(work, f"{name}_registry.pt")
        exported = os.path.join(work, f"{name}_exported.pt")
        registry_metrics = os.path.join(work, f"{name}_metrics.jsonl")
        subprocess.run([sim, "--model", name, "--clients", "50", "--clients-per-round", "5",
                        "--rounds", "2", "--seed", "3", "--threads", "2", "--model-out", trained,
                        "--metrics-out", registry_metrics], check=True)
        subprocess.run([sys.executable, make_model, name, exported, "--parameters", trained],
                       check=True)
        reported = round(last_metrics(registry_metrics)["accuracy"] * len(y))
        correct = count_correct(exported, x, y)
        print(f"{name}: fedkit-sim reported {reported} of {len(y)} correct; "
              f"its TorchScript export in Python: {correct}")
        checks += 2
        if correct != reported:
            failures.append(f"{name}: exported accuracy differs: Python {correct}, fedkit-sim {reported}")
        further = subprocess.run([sim, "--model", exported, "--clients", "50",
                                  "--clients-per-round", "5", "--rounds", "1", "--seed", "4"])
        if further.returncode != 0:
            failures.append(f"{name}: fedkit-sim --model {exported} exited {further.returncode}")
    for failure in failures:
        print("FAILED:", failure)
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
