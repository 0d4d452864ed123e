#!/usr/bin/python3
"""fedkit-export: a trained FedKit model as files for the edge (frozen, 8-bit, pruned), each one
re-evaluated on the Fashion-MNIST test set.

    fedkit-export FINAL.pt --model mlp|cnn|logreg|seed [OUTPUTS] [OPTIONS]   # a --model-out file
    fedkit-export MODEL.pt [OUTPUTS] [OPTIONS]                               # a TorchScript file

FINAL.pt is what `fedkit-sim --model-out` or `fedkit-coordinator --model-out` wrote for a registry
model (name it with --model), or a TorchScript file (no --model): one written by
models/python/make_model.py, or a --model-out of a TorchScript model.

Outputs (any of them; at least one, or --report):
  --frozen OUT.pt       TorchScript, scripted in eval mode, torch.jit.freeze'd and
                        torch.jit.optimize_for_inference'd (when the optimized module does not load
                        back, which happens for conv models in torch 1.13, pytorch/pytorch#81085,
                        the frozen module without that pass, and the report says so)
  --int8 OUT.pt         8-bit weights with one scale per output channel: models of Linear layers
                        only get dynamic quantization (torch.ao.quantization.quantize_dynamic with
                        per_channel_dynamic_qconfig: 8-bit weights, activations quantized per batch
                        at run time); models with convolutions get static post-training
                        quantization in FX graph mode (the engine's default per-channel qconfig
                        mapping, which fuses conv/linear with ReLU), calibrated on
                        --calibration-examples TRAINING examples (never the test set); then
                        scripted and frozen
  --pruned OUT.pt       global magnitude (L1) pruning of every Linear and Conv2d weight to
                        --sparsity S (torch.nn.utils.prune.global_unstructured, made permanent),
                        then frozen like --frozen. A zero takes as many bytes as any other float in
                        the file: sparsity shrinks the file only once it is compressed, so the report
                        gives both sizes
  --pruned-int8 OUT.pt  the pruned model quantized like --int8 (needs --sparsity)
  --report FILE         .md (a table) or .json: for the float32 original and every form written,
                        file bytes, gzip -9 bytes, test accuracy and mean cross-entropy loss on the
                        10,000 test examples, and latency per example at batch 1 and batch 64
                        (median over --latency-runs runs after --latency-warmup runs,
                        torch.set_num_threads(--threads), default 1, and OPENBLAS_NUM_THREADS the
                        same unless set: OpenBLAS keeps its own thread pool)
  --expected-out FILE.json  the logits and predicted classes of every form written on the first
                        --expected-count test examples (what the C++ device-path test compares with)

Every written file is loaded back with torch.jit.load before it is evaluated: what the report
shows is what a device gets. The quantized engine is the first of fbgemm, onednn, qnnpack that this
torch has (--engine to choose); Debian's torch 1.13 has onednn and qnnpack, not fbgemm.

Exit status: 0 written; 1 the model or the dataset cannot be read, or an output cannot be written
(the message names the file); 2 a usage error (unknown flag, --model not a registry name,
--sparsity outside [0, 1), a missing input file, an output in a directory that does not exist or
is not writable, no output asked for), with a message naming the flag.

Runs on Debian's /usr/bin/python3 with python3-torch 1.13 (the version of the LibTorch devices
use) and python3-numpy. The model architectures come from make_model.py (beside this file in the
source tree, in ../share/fedkit/ beside the installed program). The functions parse_args,
load_model, freeze, quantize_int8, prune_global and evaluate are what tests/python/export_test.py
calls; nothing here keeps state between calls.
"""
import argparse
import copy
import gzip
import io
import json
import math
import os
import statistics
import sys
import time

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
REGISTRY_MODELS = ("logreg", "mlp", "cnn", "seed")
FEATURE_SHAPE = (1, 28, 28)
CLASSES = 10
LATENCY_BATCHES = (1, 64)


class UsageError(Exception):
    """The command line is wrong (exit status 2); the message names the flag."""


class ExportError(Exception):
    """A model, the dataset or an output file cannot be handled (exit status 1); names the file."""


def _import_torch_and_make_model():
    """Imports torch and make_model.py (beside this file, or in ../share/fedkit/ when installed)."""
    here = os.path.dirname(os.path.realpath(__file__))
    for candidate in (here, os.path.join(here, "..", "share", "fedkit")):
        if os.path.exists(os.path.join(candidate, "make_model.py")):
            sys.path.insert(0, os.path.abspath(candidate))
            break
    try:
        import make_model  # noqa: F401 (imported for its model classes)
    except ImportError as e:
        raise ExportError(f"cannot import make_model.py (looked beside {here} and in "
                          f"{os.path.join(here, '..', 'share', 'fedkit')}): {e}") from None
    return make_model


# ---------------------------------------------------------------------------------------------
# Command line


def _sparsity(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1)")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2 itself; the caller prints and exits instead
        raise UsageError(message)


def _check_output(flag, path):
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path}: not writable")


def parse_args(argv):
    """The options of argv (without the program name). Raises UsageError naming the flag."""
    p = _Parser(prog="fedkit-export", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="the trained model: a --model-out file or a TorchScript file")
    p.add_argument("--model", help="the registry model INPUT holds (logreg, mlp, cnn, seed); "
                   "omit it for a TorchScript file")
    p.add_argument("--frozen", metavar="OUT.pt")
    p.add_argument("--int8", metavar="OUT.pt")
    p.add_argument("--pruned", metavar="OUT.pt")
    p.add_argument("--pruned-int8", metavar="OUT.pt")
    p.add_argument("--sparsity", type=_sparsity, help="fraction of Linear/Conv2d weights set to zero")
    p.add_argument("--report", metavar="FILE.md|FILE.json")
    p.add_argument("--expected-out", metavar="FILE.json")
    p.add_argument("--expected-count", type=_positive_int, default=8)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help=f"Fashion-MNIST IDX files (default {DEFAULT_DATA_DIR})")
    p.add_argument("--calibration-examples", type=_positive_int, default=2000,
                   help="training examples for static quantization's calibration (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="picks the calibration examples (default 0)")
    p.add_argument("--engine", help="quantized engine (default: fbgemm, else onednn, else qnnpack)")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--latency-runs", type=_positive_int, default=100)
    p.add_argument("--latency-warmup", type=int, default=10)
    args = p.parse_args(argv)

    if args.model is not None and args.model not in REGISTRY_MODELS:
        raise UsageError(f"--model '{args.model}': not a registry model ({', '.join(REGISTRY_MODELS)}); "
                         "omit --model for a TorchScript file")
    if not os.path.isfile(args.input):
        raise UsageError(f"input {args.input}: no such file")
    if (args.pruned or args.pruned_int8) and args.sparsity is None:
        raise UsageError("--pruned and --pruned-int8 need --sparsity S")
    if args.sparsity is not None and not (args.pruned or args.pruned_int8):
        raise UsageError("--sparsity needs --pruned or --pruned-int8")
    if not any((args.frozen, args.int8, args.pruned, args.pruned_int8, args.report)):
        raise UsageError("nothing to do: give --frozen, --int8, --pruned, --pruned-int8 or --report")
    if args.report and os.path.splitext(args.report)[1] not in (".md", ".json"):
        raise UsageError(f"--report {args.report}: the name must end in .md or .json")
    if args.latency_warmup < 0:
        raise UsageError(f"--latency-warmup {args.latency_warmup}: must be at least 0")
    outputs = {}
    for flag in ("--frozen", "--int8", "--pruned", "--pruned-int8", "--report", "--expected-out"):
        path = getattr(args, flag[2:].replace("-", "_"))
        if path is None:
            continue
        _check_output(flag, path)
        if os.path.abspath(path) in outputs or os.path.abspath(path) == os.path.abspath(args.input):
            raise UsageError(f"{flag} {path}: the same file as "
                             f"{outputs.get(os.path.abspath(path), 'the input')}")
        outputs[os.path.abspath(path)] = flag
    return args


# ---------------------------------------------------------------------------------------------
# Data


def read_idx(path):
    """An IDX file (gzip or plain) as a numpy array. Raises ExportError naming the file.

    Written by hand (numpy and gzip, as tests/python/torchscript_model_out_test.py does): the IDX
    header is four bytes and the dimensions, and torchvision's reader is not installed here."""
    import numpy as np
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ExportError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ExportError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ExportError(f"{path}: truncated header")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    count = math.prod(dims)
    if len(data) != 4 + 4 * ndim + count:
        raise ExportError(f"{path}: holds {len(data) - 4 - 4 * ndim} bytes of data, dims {dims} "
                          f"need {count}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(data_dir, split):
    """(x float32 [N, 1, 28, 28] in [0, 1], y int64 [N]) of Fashion-MNIST's "train" or "t10k"
    files, the way FedKit's reader (data/idx.h) scales them."""
    import numpy as np
    import torch

    def find(name):
        for suffix in (".gz", ""):
            if os.path.exists(os.path.join(data_dir, name + suffix)):
                return os.path.join(data_dir, name + suffix)
        raise ExportError(f"--data-dir {data_dir}: no {name}[.gz]")

    images = read_idx(find(f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(f"{split}-labels-idx1-ubyte"))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or \
            len(labels) != len(images):
        raise ExportError(f"--data-dir {data_dir}: {split} images {list(images.shape)} and labels "
                          f"{list(labels.shape)} are not Fashion-MNIST")
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).reshape(-1, *FEATURE_SHAPE)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# ---------------------------------------------------------------------------------------------
# Models


def _twin_of(make_model, script_module):
    """The make_model.py architecture whose parameter names and shapes `script_module` has, with its
    parameters, or None. (Whether it also computes the same is checked by the caller.)"""
    params = [(n, tuple(p.shape)) for n, p in script_module.named_parameters()]
    names = [n for n, _ in params]
    shapes = dict(params)
    if any(b.is_floating_point() for b in script_module.buffers()):
        return None  # e.g. BatchNorm: none of the twins has buffers
    in_features = math.prod(FEATURE_SHAPE)
    twin = None
    if names == ["linear.weight", "linear.bias"]:
        twin = make_model.LogisticRegression(in_features, shapes["linear.weight"][0])
    elif names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]:
        twin = make_model.OneHiddenLayerMlp(in_features, shapes["fc1.weight"][0], shapes["fc2.weight"][0])
    elif names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]:
        twin = make_model.TwoNN(in_features, shapes["fc1.weight"][0], shapes["fc3.weight"][0])
    elif names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                   "fc2.weight", "fc2.bias"] and len(shapes["conv1.weight"]) == 4:
        c1, c2 = shapes["conv1.weight"][0], shapes["conv2.weight"][0]
        twin = make_model.Cnn(*FEATURE_SHAPE, shapes["fc2.weight"][0], c1=c1, c2=c2,
                              hidden=shapes["fc1.weight"][0])
    if twin is None:
        return None
    own = dict(twin.named_parameters())
    if [n for n in own] != names or any(tuple(own[n].shape) != s for n, s in params):
        return None
    import torch
    with torch.no_grad():
        for n, p in script_module.named_parameters():
            own[n].copy_(p)
    return twin.eval()


def load_model(path, kind, probe):
    """(float32 original as a ScriptModule, the same as an nn.Module or None, description).

    kind: a registry name (the file is a --model-out archive) or None (a TorchScript file). The
    nn.Module is make_model.py's twin with the file's parameters: what --int8 and --pruned work on;
    None for a TorchScript model that is not one of those architectures (checked on `probe`
    examples: the twin must give the same logits). Raises ExportError naming the file."""
    import torch
    make_model = _import_torch_and_make_model()
    if kind is not None:
        module = make_model.build(kind, list(FEATURE_SHAPE), CLASSES, 200)
        try:
            make_model.load_parameters(module, path)
        except SystemExit as e:  # make_model.py reports a bad file this way
            raise ExportError(f"{e} (--model {kind})") from None
        module.eval()
        return torch.jit.script(module).eval(), module, f"registry model {kind}"
    try:
        script = torch.jit.load(path).eval()
    except Exception as e:  # RuntimeError for a file that is not a TorchScript archive
        raise ExportError(f"{path}: cannot read it as TorchScript (a --model-out file of a registry "
                          f"model needs --model): {str(e).splitlines()[0]}") from None
    twin = _twin_of(make_model, script)
    if twin is not None:
        with torch.no_grad():
            same = torch.allclose(twin(probe), script(probe), rtol=1e-4, atol=1e-5)
        if not same:
            twin = None
    description = "TorchScript" + (f" ({type(twin).__name__} of make_model.py)" if twin else "")
    return script, twin, description


def check_outputs(module, probe, what):
    """Raises ExportError unless module(probe) is float logits [len(probe), 10]."""
    import torch
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as e:
        raise ExportError(f"{what}: forward() on [{len(probe)}, 1, 28, 28] fails: "
                          f"{str(e).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or \
            list(out.shape) != [len(probe), CLASSES]:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ExportError(f"{what}: forward() on [{len(probe)}, 1, 28, 28] returns {shape}; "
                          f"Fashion-MNIST needs float logits [{len(probe)}, {CLASSES}]")


def freeze(module):
    """(frozen ScriptModule, the same after torch.jit.optimize_for_inference or None if that pass
    fails). Scripts `module` (an nn.Module or ScriptModule) in eval mode and freezes it; whether the
    optimized module survives a save and load is for the caller (save_and_load_back) to find out."""
    import torch
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    frozen = torch.jit.freeze(scripted.eval())
    try:
        # A second freeze (freeze clones): the pass rewrites the graph it is given in place, and a
        # deepcopy of a frozen module shares that graph.
        optimized = torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))
    except Exception:  # the frozen module is still a valid export
        optimized = None
    return frozen, optimized


def has_conv(module):
    import torch
    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def pick_engine(requested):
    import torch
    supported = torch.backends.quantized.supported_engines
    if requested is not None:
        if requested not in supported or requested == "none":
            raise UsageError(f"--engine {requested}: this torch has {[e for e in supported if e != 'none']}")
        return requested
    for engine in ("fbgemm", "onednn", "qnnpack"):
        if engine in supported:
            return engine
    raise ExportError("this torch has no quantized engine (torch.backends.quantized.supported_engines "
                      f"is {supported})")


def quantize_int8(module, calibration, engine):
    """(quantized nn.Module, note): 8-bit per-output-channel weights. Linear-only models: dynamic
    quantization; models with Conv2d: static post-training quantization in FX graph mode,
    calibrated on `calibration` (training examples). `module` is not changed."""
    import torch
    from torch.ao import quantization as q
    torch.backends.quantized.engine = engine
    model = copy.deepcopy(module).eval()
    if not has_conv(model):
        quantized = q.quantize_dynamic(model, qconfig_spec={torch.nn.Linear: q.per_channel_dynamic_qconfig})
        return quantized, f"dynamic int8 ({engine}): per-channel weights, activations per batch"
    from torch.ao.quantization import quantize_fx
    qconfig = q.get_default_qconfig(engine)
    if qconfig.weight().qscheme not in (torch.per_channel_symmetric, torch.per_channel_affine):
        # qnnpack's default is per tensor; the export promises one scale per output channel.
        qconfig = q.QConfig(activation=qconfig.activation, weight=q.default_per_channel_weight_observer)
    mapping = q.QConfigMapping().set_global(qconfig)
    prepared = quantize_fx.prepare_fx(model, mapping, example_inputs=(calibration[:1],))
    with torch.no_grad():
        for start in range(0, len(calibration), 250):
            prepared(calibration[start:start + 250])
    quantized = quantize_fx.convert_fx(prepared)
    return quantized, (f"static int8 ({engine}, FX graph mode): per-channel weights, activations "
                       f"calibrated on {len(calibration)} training examples")


def prune_global(module, sparsity):
    """(pruned copy of `module`, measured sparsity): the smallest |w| of all Linear and Conv2d weights
    together set to zero (torch.nn.utils.prune, L1, global), the masks made permanent."""
    import torch
    from torch.nn.utils import prune
    model = copy.deepcopy(module).eval()
    targets = [(m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    if not targets:
        raise ExportError("--pruned: the model has no Linear or Conv2d layer")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    for m, name in targets:
        prune.remove(m, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    total = sum(m.weight.numel() for m, _ in targets)
    return model, zeros / total


# ---------------------------------------------------------------------------------------------
# Measuring


def evaluate(module, x, y, batch=500):
    """(accuracy, mean cross-entropy loss, predicted classes) of `module` on (x, y)."""
    import torch
    import torch.nn.functional as F
    correct, loss, predictions = 0, 0.0, []
    with torch.no_grad():
        for start in range(0, len(y), batch):
            out = module(x[start:start + batch])
            target = y[start:start + batch]
            loss += float(F.cross_entropy(out, target, reduction="sum"))
            predicted = out.argmax(1)
            correct += int((predicted == target).sum())
            predictions.append(predicted)
    return correct / len(y), loss / len(y), torch.cat(predictions)


def latency_per_example(module, x, batch, runs, warmup):
    """(median, fastest) seconds per example of module(x[:batch]) over `runs` calls after `warmup`
    calls. (The fastest run is the one least disturbed by other processes on a shared machine.)

    A plain perf_counter loop rather than torch.utils.benchmark.Timer, whose blocked_autorange
    chooses how many calls to time per form: here every form gets the same number of single calls,
    and both their median and their minimum are kept."""
    import torch
    inputs = x[:batch].contiguous()
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            module(inputs)
        for _ in range(runs):
            start = time.perf_counter()
            module(inputs)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch, min(times) / batch


def file_sizes(data):
    """(bytes, bytes after gzip -9) of a file's contents."""
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def _save(module, flag, path):
    import torch
    try:
        torch.jit.save(module, path)
    except Exception as e:
        raise ExportError(f"{flag} {path}: cannot write: {str(e).splitlines()[0]}") from None


def _load_back(flag, path):
    import torch
    try:
        return torch.jit.load(path).eval()
    except Exception as e:
        raise ExportError(f"{flag} {path}: written but does not load back: "
                          f"{str(e).splitlines()[0]}") from None


def save_and_load_back(flag, path, frozen, optimized, probe):
    """Writes `optimized` (False: not asked for) to path if it loads back from the file and gives `frozen`'s outputs on
    `probe`, else `frozen`. Returns (the module loaded back from the file, note). In torch 1.13 a
    conv model's optimize_for_inference graph (MKLDNN) is written but does not load back
    (pytorch/pytorch#81085), so conv models get the frozen module."""
    import torch
    if optimized is False:  # not asked for (8-bit forms)
        _save(frozen, flag, path)
        return _load_back(flag, path), ""
    if optimized is not None:
        _save(optimized, flag, path)
        try:
            reloaded = torch.jit.load(path).eval()
            with torch.no_grad():
                if torch.allclose(reloaded(probe), frozen(probe), rtol=1e-4, atol=1e-5):
                    return reloaded, "frozen, optimize_for_inference"
            why = "changes the outputs after a save and load"
        except Exception as e:
            why = f"does not load back ({str(e).splitlines()[0]}; pytorch/pytorch#81085)"
        note = f"frozen; optimize_for_inference {why}, so not applied"
    else:
        note = "frozen; optimize_for_inference failed, so not applied"
    _save(frozen, flag, path)
    return _load_back(flag, path), note


# ---------------------------------------------------------------------------------------------
# Reports


def _fmt_bytes(n):
    return f"{n:,}"


def markdown_report(report):
    lines = [
        f"# fedkit-export: {report['input']}",
        "",
        f"Model: {report['model']}. Test set: Fashion-MNIST t10k ({report['test_examples']:,} examples, "
        f"{report['data_dir']}). torch {report['torch']}, quantized engine {report['engine']}, "
        f"torch.set_num_threads({report['threads']}), OPENBLAS_NUM_THREADS={report['openblas_threads']}. Latency: median over {report['latency_runs']} "
        f"runs after {report['latency_warmup']} warm-up runs, per example (in brackets the fastest run).",
        "",
        "| form | file | bytes | gzip -9 bytes | accuracy | change (points) | loss | latency batch 1, us: median (fastest) "
        "| latency batch 64, us per example: median (fastest) | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in report["forms"]:
        lines.append(
            f"| {f['form']} | {f['file'] or '(not written)'} | {_fmt_bytes(f['bytes'])} | "
            f"{_fmt_bytes(f['gzip_bytes'])} | {f['accuracy']:.4f} | {f['accuracy_change_points']:+.2f} | "
            f"{f['loss']:.4f} | {f['latency_us_batch1']:.1f} ({f['latency_us_batch1_min']:.1f}) | "
            f"{f['latency_us_batch64']:.2f} ({f['latency_us_batch64_min']:.2f}) | "
            f"{f['notes']} |")
    lines.append("")
    return "\n".join(lines)


def write_text(flag, path, text):
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise ExportError(f"{flag} {path}: cannot write: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------------------


def run(args, log=print):
    """Does what `args` (parse_args) asks; returns the report as a dict."""
    # Debian's torch does float matrix products in OpenBLAS (the pthread build), whose own thread
    # pool torch.set_num_threads does not size: without this, "1 thread" would be 1 for torch's
    # kernels and nproc for OpenBLAS's. Read once, when torch first loads OpenBLAS.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    engine = pick_engine(args.engine)
    test_x, test_y = load_split(args.data_dir, "t10k")
    probe = test_x[:16]
    original, module, description = load_model(args.input, args.model, probe)
    check_outputs(original, probe, args.input)
    if module is None and (args.int8 or args.pruned or args.pruned_int8):
        flag = "--int8" if args.int8 else "--pruned" if args.pruned else "--pruned-int8"
        raise ExportError(f"{flag}: {args.input} is a TorchScript model that is none of make_model.py's "
                          "architectures (logreg, seed, 2nn/mlp, cnn/small-cnn with the same names, "
                          "shapes and outputs); only --frozen and --report apply to it")
    calibration = None
    if module is not None and has_conv(module) and (args.int8 or args.pruned_int8):
        train_x, _ = load_split(args.data_dir, "train")
        count = min(args.calibration_examples, len(train_x))
        generator = torch.Generator().manual_seed(args.seed)
        calibration = train_x[torch.randperm(len(train_x), generator=generator)[:count]]

    # (form, flag, path, (frozen, optimized: None if the pass failed, False if not asked), notes)
    forms = []
    if args.frozen:
        forms.append(("frozen", "--frozen", args.frozen, freeze(original), ""))
    if args.int8:
        quantized, note = quantize_int8(module, calibration, engine)
        forms.append(("int8", "--int8", args.int8, (freeze(quantized)[0], False), note + "; frozen"))
    if args.pruned or args.pruned_int8:
        pruned, measured = prune_global(module, args.sparsity)
        sparsity_note = f"{measured:.1%} of Linear/Conv2d weights zero (global L1, asked {args.sparsity:g})"
        if args.pruned:
            forms.append((f"pruned {args.sparsity:g}", "--pruned", args.pruned, freeze(pruned),
                          sparsity_note))
        if args.pruned_int8:
            quantized, note = quantize_int8(pruned, calibration, engine)
            forms.append((f"pruned {args.sparsity:g} + int8", "--pruned-int8", args.pruned_int8,
                          (freeze(quantized)[0], False), f"{sparsity_note}; {note}; frozen"))

    buffer = io.BytesIO()
    torch.jit.save(original, buffer)
    measured = [("float32", None, original, buffer.getvalue(),
                 f"{description}, scripted, not frozen (input file {os.path.getsize(args.input):,} bytes)")]
    for form, flag, path, (frozen, optimized), note in forms:
        reloaded, how = save_and_load_back(flag, path, frozen, optimized, probe)  # what a device gets
        if optimized is not False:  # --frozen and --pruned: say how they were frozen
            note = f"{note}; {how}" if note else how
        check_outputs(reloaded, probe, f"{flag} {path}")
        with open(path, "rb") as f:
            data = f.read()
        log(f"wrote {flag} {path} ({len(data):,} bytes): {note}")
        measured.append((form, path, reloaded, data, note))

    report = {
        "input": args.input, "model": description, "torch": torch.__version__, "engine": engine,
        "threads": torch.get_num_threads(), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "data_dir": args.data_dir, "test_examples": len(test_y),
        "calibration_examples": None if calibration is None else len(calibration),
        "latency_runs": args.latency_runs, "latency_warmup": args.latency_warmup, "forms": [],
    }
    expected = {"count": min(args.expected_count, len(test_y)), "forms": {}}
    base_accuracy = None
    for form, path, m, data, note in measured:
        accuracy, loss, predictions = evaluate(m, test_x, test_y)
        if base_accuracy is None:
            base_accuracy = accuracy
        size, gz = file_sizes(data)
        row = {
            "form": form, "file": path, "bytes": size, "gzip_bytes": gz, "accuracy": accuracy,
            "accuracy_change_points": 100.0 * (accuracy - base_accuracy), "loss": loss,
            "notes": note,
        }
        for batch in LATENCY_BATCHES:
            median, fastest = latency_per_example(m, test_x, batch, args.latency_runs, args.latency_warmup)
            row[f"latency_us_batch{batch}"] = 1e6 * median
            row[f"latency_us_batch{batch}_min"] = 1e6 * fastest
        report["forms"].append(row)
        log(f"{form}: accuracy {accuracy:.4f} loss {loss:.4f} bytes {size:,} gzip {gz:,} "
            f"latency {row['latency_us_batch1']:.1f} us (batch 1) {row['latency_us_batch64']:.2f} "
            f"us/example (batch 64)")
        if path is not None:
            with torch.no_grad():
                logits = m(test_x[:expected["count"]])
            expected["forms"][form] = {"file": os.path.abspath(path), "logits": logits.tolist(),
                                       "predictions": logits.argmax(1).tolist()}
    if args.report:
        if args.report.endswith(".json"):
            write_text("--report", args.report, json.dumps(report, indent=2) + "\n")
        else:
            write_text("--report", args.report, markdown_report(report))
    if args.expected_out:
        expected["labels"] = test_y[:expected["count"]].tolist()
        write_text("--expected-out", args.expected_out, json.dumps(expected) + "\n")
    return report


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        run(args)
    except UsageError as e:
        print(f"fedkit-export: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"fedkit-export: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, OSError) as e:  # from torch, past the checks above
        print(f"fedkit-export: failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
