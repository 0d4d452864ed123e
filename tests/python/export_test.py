#!/usr/bin/python3
"""Tests of fedkit-export (models/python/export.py): its argument handling, then small exports of
briefly trained models as a user runs them.

    export_test.py FEDKIT_EXPORT MAKE_MODEL_PY [unittest arguments]

FEDKIT_EXPORT is the program (build/bin/fedkit-export); MAKE_MODEL_PY is models/python/make_model.py,
which writes the inputs. The models are trained here for a few hundred seeded SGD steps on
Fashion-MNIST's training set (one thread), so that accuracies mean something and the test stays fast.
"""
import gzip
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn.functional as F

FEDKIT_EXPORT = None  # set by main
MAKE_MODEL = None
export = None  # the program's module
make_model = None


def load_module(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def train_briefly(model, steps, seed):
    """`steps` SGD steps (batch 32, lr 0.05) on seeded random Fashion-MNIST training examples."""
    x, y = export.load_split(export.DEFAULT_DATA_DIR, "train")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(y), (32,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x[rows]), y[rows]).backward()
        optimizer.step()
    return model.eval()


class ExportTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls._tmp = tempfile.TemporaryDirectory(prefix="fedkit_export_test_")
        cls.dir = cls._tmp.name
        torch.manual_seed(1)
        # A registry mlp's --model-out file: fedkit-sim writes a torch::save archive, which holds the
        # same parameter names as make_model.py's twin; a scripted twin stands in for it here.
        cls.mlp_file = cls.path("mlp_final.pt")
        torch.jit.script(train_briefly(make_model.build("mlp", [1, 28, 28], 10, 200), 300, 1)).save(
            cls.mlp_file)
        torch.manual_seed(2)
        cls.cnn_file = cls.path("small_cnn.pt")
        torch.jit.script(train_briefly(make_model.build("small-cnn", [1, 28, 28], 10, 200), 300, 2)).save(
            cls.cnn_file)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @classmethod
    def path(cls, name):
        return os.path.join(cls.dir, name)

    def run_export(self, *args):
        return subprocess.run([FEDKIT_EXPORT, *args], capture_output=True, text=True)

    def assertFails(self, code, args, *expected):
        result = self.run_export(*args)
        self.assertEqual(result.returncode, code, result.stderr)
        for text in expected:
            self.assertIn(text, result.stderr)
        self.assertEqual(result.stdout, "")


class UsageTest(ExportTestCase):
    def test_usage_errors_exit_2_naming_the_flag(self):
        out = self.path("out.pt")
        m = self.mlp_file
        self.assertFails(2, [], "input")
        self.assertFails(2, [m, "--model", "resnet", "--frozen", out], "--model 'resnet'", "mlp")
        self.assertFails(2, [m, "--model", "mlp", "--pruned", out, "--sparsity", "1"], "--sparsity", "[0, 1)")
        self.assertFails(2, [m, "--model", "mlp", "--pruned", out, "--sparsity", "-0.1"], "--sparsity")
        self.assertFails(2, [m, "--model", "mlp", "--pruned", out, "--sparsity", "half"], "--sparsity")
        self.assertFails(2, [m, "--model", "mlp", "--pruned", out], "--sparsity")
        self.assertFails(2, [m, "--model", "mlp", "--frozen", out, "--sparsity", "0.5"], "--sparsity")
        self.assertFails(2, [self.path("missing.pt"), "--frozen", out], "missing.pt", "no such file")
        self.assertFails(2, [m, "--model", "mlp"], "nothing to do")
        self.assertFails(2, [m, "--frozen", self.path("no/such/dir/f.pt")], "--frozen", "does not exist")
        self.assertFails(2, [m, "--int8", self.dir], "--int8", "is a directory")
        self.assertFails(2, [m, "--report", self.path("r.txt")], "--report", ".md or .json")
        self.assertFails(2, [m, "--frozen", out, "--int8", out], "--int8", "--frozen")
        self.assertFails(2, [m, "--frozen", m], "--frozen", "the input")
        self.assertFails(2, [m, "--frozen", out, "--calibration-examples", "0"], "--calibration-examples")
        self.assertFails(2, [m, "--frozen", out, "--engine", "tpu"], "--engine tpu")
        self.assertFails(2, [m, "--frozen", out, "--no-such-flag"], "--no-such-flag")
        self.assertFalse(os.path.exists(out))

    def test_bad_files_exit_1_naming_the_file(self):
        out = self.path("out1.pt")
        garbage = self.path("garbage.pt")
        with open(garbage, "wb") as f:
            f.write(b"not a model at all")
        self.assertFails(1, [garbage, "--frozen", out], "garbage.pt", "cannot read it as TorchScript")
        self.assertFails(1, [garbage, "--model", "mlp", "--frozen", out], "garbage.pt")
        # An mlp file named as a cnn: make_model.py's parameter check, naming the file.
        self.assertFails(1, [self.mlp_file, "--model", "cnn", "--frozen", out], "mlp_final.pt",
                         "--model cnn")
        self.assertFails(1, [self.mlp_file, "--frozen", out, "--data-dir", self.dir], "--data-dir",
                         "t10k-images-idx3-ubyte")
        # A TorchScript model none of make_model.py's architectures: frozen yes, int8 no.
        bn = self.path("bn.pt")
        subprocess.run([sys.executable, MAKE_MODEL, "bn-mlp", bn], check=True)
        self.assertFails(1, [bn, "--int8", out], "--int8", "bn.pt", "only --frozen and --report")
        result = self.run_export(bn, "--frozen", out, "--latency-runs", "1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.path.exists(out))
        # A model whose outputs do not fit Fashion-MNIST's 10 classes.
        three = self.path("three.pt")
        subprocess.run([sys.executable, MAKE_MODEL, "2nn", three, "--classes", "3"], check=True)
        self.assertFails(1, [three, "--frozen", self.path("o3.pt")], "three.pt", "[16, 10]")


class EndToEndTest(ExportTestCase):
    def export_all(self, source, name, *extra):
        outputs = {f: self.path(f"{name}_{f}.pt") for f in ("frozen", "int8", "pruned", "pruned_int8")}
        report = self.path(f"{name}.json")
        result = self.run_export(source, *extra, "--frozen", outputs["frozen"], "--int8", outputs["int8"],
                                 "--pruned", outputs["pruned"], "--pruned-int8", outputs["pruned_int8"],
                                 "--sparsity", "0.9", "--report", report, "--latency-runs", "3",
                                 "--latency-warmup", "1", "--calibration-examples", "500")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(report) as f:
            rows = {r["form"]: r for r in json.load(f)["forms"]}
        self.assertEqual(list(rows), ["float32", "frozen", "int8", "pruned 0.9", "pruned 0.9 + int8"])
        return outputs, rows

    def check_common(self, outputs, rows, quantized_op):
        base = rows["float32"]
        self.assertGreater(base["accuracy"], 0.5)  # briefly trained, well above chance
        # Freezing changes nothing the test set can see.
        self.assertAlmostEqual(rows["frozen"]["accuracy"], base["accuracy"], places=4)
        self.assertAlmostEqual(rows["frozen"]["loss"], base["loss"], places=4)
        # 8-bit weights: a quarter of the float bytes or so, the accuracy within 1 point.
        self.assertLess(rows["int8"]["bytes"], 0.4 * rows["frozen"]["bytes"])
        self.assertLess(abs(rows["int8"]["accuracy"] - base["accuracy"]), 0.01)
        graph = str(torch.jit.load(outputs["int8"]).graph)
        self.assertIn(quantized_op, graph)
        # 90% zeros: the file is as large as the frozen one, its gzip far smaller.
        self.assertGreater(rows["pruned 0.9"]["bytes"], 0.95 * rows["frozen"]["bytes"])
        self.assertLess(rows["pruned 0.9"]["gzip_bytes"], 0.4 * rows["frozen"]["gzip_bytes"])
        self.assertIn("90.0% of Linear/Conv2d weights zero", rows["pruned 0.9"]["notes"])
        self.assertLess(rows["pruned 0.9 + int8"]["gzip_bytes"], rows["int8"]["gzip_bytes"])
        for name, row in rows.items():
            self.assertGreater(row["latency_us_batch1"], 0, name)
            self.assertGreater(row["latency_us_batch64"], 0, name)
            if row["file"]:
                with open(row["file"], "rb") as f:
                    data = f.read()
                self.assertEqual(row["bytes"], len(data), name)
                self.assertEqual(row["gzip_bytes"], len(gzip.compress(data, 9, mtime=0)), name)
                self.assertEqual(len(list(torch.jit.load(row["file"]).parameters())), 0, name)

    def test_registry_mlp_exports(self):
        outputs, rows = self.export_all(self.mlp_file, "mlp", "--model", "mlp")
        self.check_common(outputs, rows, "quantized::linear_dynamic")
        self.assertIn("dynamic int8", rows["int8"]["notes"])

    def test_cnn_exports_with_static_quantization(self):
        outputs, rows = self.export_all(self.cnn_file, "cnn")
        self.check_common(outputs, rows, "quantized::conv2d")
        self.assertIn("calibrated on 500 training examples", rows["int8"]["notes"])

    def test_markdown_report_and_expected_outputs(self):
        report = self.path("r.md")
        expected = self.path("e.json")
        frozen = self.path("r_frozen.pt")
        result = self.run_export(self.mlp_file, "--model", "mlp", "--frozen", frozen, "--report", report,
                                 "--expected-out", expected, "--expected-count", "5", "--latency-runs", "2")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(report) as f:
            text = f.read()
        self.assertIn("| form | file | bytes | gzip -9 bytes | accuracy |", text)
        self.assertIn("torch.set_num_threads(1)", text)
        self.assertEqual(len([line for line in text.splitlines() if line.startswith("| f")]), 3)
        with open(expected) as f:
            e = json.load(f)
        self.assertEqual(e["count"], 5)
        self.assertEqual(list(e["forms"]), ["frozen"])
        x, _ = export.load_split(export.DEFAULT_DATA_DIR, "t10k")
        logits = torch.jit.load(frozen)(x[:5])
        self.assertEqual(e["forms"]["frozen"]["predictions"], logits.argmax(1).tolist())
        self.assertTrue(torch.allclose(torch.tensor(e["forms"]["frozen"]["logits"]), logits, atol=1e-5))

    def test_pruning_reaches_the_asked_sparsity(self):
        model = make_model.build("mlp", [1, 28, 28], 10, 200)
        for sparsity in (0.0, 0.5, 0.9):
            _, measured = export.prune_global(model, sparsity)
            self.assertAlmostEqual(measured, sparsity, places=3)
        self.assertTrue(all(bool((p != 0).all()) for n, p in model.named_parameters() if "weight" in n))


def main():
    global FEDKIT_EXPORT, MAKE_MODEL, export, make_model
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    FEDKIT_EXPORT, MAKE_MODEL = sys.argv[1], sys.argv[2]
    export = load_module("fedkit_export", FEDKIT_EXPORT)
    make_model = load_module("make_model", MAKE_MODEL)
    program = unittest.main(argv=[sys.argv[0]] + sys.argv[3:], exit=False)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
