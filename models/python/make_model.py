#!/usr/bin/env python3
"""Writes FedKit models as TorchScript files: the models of the README, written in plain PyTorch.

    python3 models/python/make_model.py 2nn /tmp/2nn.pt          # McMahan et al.'s 2NN (784-200-200-10)
    python3 models/python/make_model.py cnn /tmp/cnn.pt          # their CNN, on [1, 28, 28] images
    python3 models/python/make_model.py small-cnn /tmp/scnn.pt   # a CNN with 8 and 16 channels
    python3 models/python/make_model.py bn-mlp /tmp/bn.pt        # an MLP with BatchNorm1d
    python3 models/python/make_model.py own-loss /tmp/ls.pt      # a 2NN with its own loss() method
    python3 models/python/make_model.py regression /tmp/r.pt --shape 6 --classes 2   # 2 float targets, MSE

The built-in registry models (logreg, mlp, cnn, seed) have twins here with the same parameter names
and shapes, so a registry model trained by FedKit becomes TorchScript and travels like any other:

    build/bin/fedkit-sim --model mlp --model-out /tmp/final.pt ...
    python3 models/python/make_model.py mlp /tmp/final_mlp.pt --parameters /tmp/final.pt

Any module works the same way as long as forward() takes features shaped [batch, *feature_shape]
(the dataset's own shape: [batch, 1, 28, 28] for Fashion-MNIST) and returns [batch, classes]
logits; an optional `loss(self, output, target)` replaces cross-entropy. Parameters are
initialised by PyTorch's defaults from --seed.
"""
import argparse

import torch
from torch import nn
import torch.nn.functional as F


class TwoNN(nn.Module):
    """Two hidden ReLU layers of `hidden` units (the "2NN" of McMahan et al. 2017)."""

    def __init__(self, in_features: int, hidden: int, classes: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Cnn(nn.Module):
    """Conv5x5(c1)-ReLU-MaxPool2 - Conv5x5(c2)-ReLU-MaxPool2 - FC(hidden)-ReLU - FC(classes).
    The defaults (32, 64, 512) are the registry's cnn; small-cnn is (8, 16, 64), about four times
    the 2NN's arithmetic per example (the registry cnn is about 60 times)."""

    def __init__(self, channels: int, height: int, width: int, classes: int,
                 c1: int = 32, c2: int = 64, hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc1 = nn.Linear(c2 * (height // 4) * (width // 4), hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class LogisticRegression(nn.Module):
    """The registry's logreg: Linear(features, classes)."""

    def __init__(self, in_features: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


class OneHiddenLayerMlp(nn.Module):
    """The registry's seed (TensorFlow Federated tutorial) model: features-10-classes with ReLU."""

    def __init__(self, in_features: int, hidden: int, classes: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class BatchNormMlp(nn.Module):
    """Linear - BatchNorm1d - ReLU - Linear: a model with buffers (running mean and variance)."""

    def __init__(self, in_features: int, hidden: int, classes: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x.flatten(1)))))


class RegressionMlp(nn.Module):
    """features - hidden - ReLU - targets, trained on mean squared error (float targets)."""

    def __init__(self, in_features: int, hidden: int, targets: int):
        super().__init__()
        self.fedkit_task = "regression"  # checked by FedKit against the dataset's task
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, targets)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class OwnLossTwoNN(TwoNN):
    """A 2NN trained on its own loss: cross-entropy with label smoothing 0.1."""

    @torch.jit.export
    def loss(self, output, target):
        return F.cross_entropy(output, target, label_smoothing=0.1)


def build(kind: str, shape, classes: int, hidden: int) -> nn.Module:
    in_features = 1
    for s in shape:
        in_features *= s
    if kind in ("2nn", "mlp"):
        return TwoNN(in_features, hidden, classes)
    if kind == "logreg":
        return LogisticRegression(in_features, classes)
    if kind == "seed":
        return OneHiddenLayerMlp(in_features, 10, classes)
    if kind == "cnn":
        if len(shape) != 3:
            raise SystemExit("cnn needs --shape C,H,W")
        return Cnn(shape[0], shape[1], shape[2], classes)
    if kind == "small-cnn":
        if len(shape) != 3:
            raise SystemExit("small-cnn needs --shape C,H,W")
        return Cnn(shape[0], shape[1], shape[2], classes, c1=8, c2=16, hidden=64)
    if kind == "bn-mlp":
        return BatchNormMlp(in_features, hidden, classes)
    if kind == "regression":
        return RegressionMlp(in_features, hidden, classes)
    if kind == "own-loss":
        return OwnLossTwoNN(in_features, hidden, classes)
    raise SystemExit(f"unknown model kind '{kind}'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["2nn", "cnn", "small-cnn", "bn-mlp", "own-loss", "logreg", "mlp", "seed",
                                           "regression"])
    parser.add_argument("out", help="where to write the TorchScript file")
    parser.add_argument("--shape", default="1,28,28", help="one example's feature shape (default 1,28,28)")
    parser.add_argument("--classes", type=int, default=10,
                        help="classes (regression: the number of float targets)")
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parameters", help="a FedKit --model-out file of the same registry model "
                        "(torch::save archive) whose parameters to take instead of fresh ones")
    args = parser.parse_args()
    shape = [int(s) for s in args.shape.split(",")]
    torch.manual_seed(args.seed)
    model = build(args.kind, shape, args.classes, args.hidden)
    if args.parameters:
        load_parameters(model, args.parameters)
    torch.jit.script(model).save(args.out)


def load_parameters(model: nn.Module, path: str) -> None:
    """Copies the parameters of a FedKit model file (a torch::save archive, which torch.jit.load
    reads) into `model`; names and shapes must match exactly."""
    try:
        saved = dict(torch.jit.load(path).named_parameters())
    except Exception as e:  # torch raises RuntimeError for a file that is not an archive
        raise SystemExit(f"--parameters {path}: cannot read it as a FedKit model file: {e}")
    own = dict(model.named_parameters())
    if list(saved) != list(own):
        raise SystemExit(f"--parameters {path}: holds parameters {list(saved)}, this model has {list(own)}")
    with torch.no_grad():
        for name, p in own.items():
            if saved[name].shape != p.shape:
                raise SystemExit(f"--parameters {path}: '{name}' is {list(saved[name].shape)}, "
                                 f"this model needs {list(p.shape)}")
            p.copy_(saved[name])


if __name__ == "__main__":
    main()
