#!/usr/bin/python3
"""fedkit-plot: curves of FedKit metrics files as a PNG or SVG picture.

    fedkit-plot RUN.jsonl [MORE.jsonl ...] -o OUT.png|OUT.svg [--x round|time|virtual-time|epsilon]
                [--y accuracy|loss|train_loss ...] [--label NAME ...] [--title T] [--dpi N]
                [--size WIDTHxHEIGHT] [--log-x] [--legend best|outside|none]
                [--client-histogram auto|none]

Input: JSON Lines as written by `fedkit-sim --metrics-out` (one object per evaluated round) and
`fedkit-coordinator --metrics-out` (one per committed round). One panel per --y (default accuracy
and loss side by side), one curve per file in every panel, a legend when there are several files
or any --label. The output's extension picks the format (.png or .svg); --size is in pixels.

Per-client evaluation (fedkit-sim --eval-clients-local): when a file's lines carry
"client_accuracies", one more panel at the right is a histogram of those accuracies at the last
round that has them (20 bins of 0.05 over [0, 1]), with "client_finetuned_accuracies" (after
--eval-finetune-steps) overlaid, one outline per file and kind; --client-histogram none leaves it
out.

X axes and the fields they read:
  round         "round"
  time          "elapsed_seconds" (fedkit-sim: wall time since the first round started, evaluation
                included); in a file without it, the running sum of "seconds" (each round's own
                time), which needs one line per round from round 1 (fedkit-coordinator's files,
                fedkit-sim's with --eval-every 1)
  virtual-time  "virtual_elapsed_seconds" (fedkit-sim with --device-speeds or --round-deadline);
                else the running sum of "virtual_seconds", with the same one-line-per-round rule
  epsilon       "epsilon" (differential privacy; null, an unbounded epsilon, is an error)

Exit status: 0 written; 1 a metrics file is unreadable, is not JSON Lines, lacks a field the axes
need, or matplotlib failed (the message names the file and line); 2 a usage error (unknown flag
or value, an output extension other than .png or .svg, a number of --label other than the
number of files).

Runs on Debian's /usr/bin/python3 with python3-matplotlib (Agg backend: no display needed). The
functions read_metrics, plot_series and make_figure are what the tests (tests/python/
plot_test.py) call; nothing here keeps state between calls.
"""
import argparse
import collections
import json
import math
import os
import sys

X_AXES = ("round", "time", "virtual-time", "epsilon")
Y_FIELDS = ("accuracy", "loss", "train_loss")
FORMATS = {".png": "png", ".svg": "svg"}

X_LABELS = {
    "round": "round",
    "time": "wall time (s)",
    "virtual-time": "virtual time (s)",
    "epsilon": "epsilon",
}
Y_LABELS = {
    "accuracy": "accuracy (eval set)",
    "loss": "loss (eval set)",
    "train_loss": "training loss (clients)",
}

# One curve: its legend label and the points, in file order.
Curve = collections.namedtuple("Curve", "label x y")
# One panel: the --y field it shows and one curve per file.
Panel = collections.namedtuple("Panel", "y curves")
# The clients' accuracies of one file at its last round with them: `finetuned` is None without
# fine-tuning.
ClientHistogram = collections.namedtuple("ClientHistogram", "label round accuracies finetuned")
HISTOGRAM_BINS = [i / 20 for i in range(21)]


class PlotError(Exception):
    """A metrics file cannot be plotted as asked (exit status 1); the message names file and line."""


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""


def read_metrics(path):
    """Returns [(line number, object)] for the non-blank lines of a JSON Lines file.

    Raises PlotError naming the file (and line) when it cannot be read, a line is not JSON or not a
    JSON object, or the file holds no object at all."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlotError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlotError(f"{path}:{number}: not JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise PlotError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        records.append((number, obj))
    if not records:
        raise PlotError(f"{path}: no metrics (the file is empty)")
    return records


def _number(path, number, obj, field, why):
    """obj[field] as a float; PlotError naming file, line and field when missing or not a number."""
    if field not in obj:
        has = ", ".join(sorted(obj)) or "nothing"
        raise PlotError(f"{path}:{number}: no \"{field}\" field, which {why} needs "
                        f"(this line has {has})")
    value = obj[field]
    if value is None and field == "epsilon":
        raise PlotError(f"{path}:{number}: \"epsilon\" is null (unbounded: DP with noise "
                        f"multiplier 0), which cannot be plotted against")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlotError(f"{path}:{number}: \"{field}\" is {json.dumps(value)}, not a number "
                        f"({why} needs a number)")
    return float(value)


def _running_sum(path, records, field, cumulative_field, why):
    """The running sum of a per-round field; needs one line per round from round 1."""
    total = 0.0
    values = []
    expected = 1
    for number, obj in records:
        round_ = _number(path, number, obj, "round", why)
        if round_ != expected:
            raise PlotError(
                f"{path}:{number}: round {round_:g} where round {expected} was expected: the file "
                f"has no \"{cumulative_field}\", so {why} is the running sum of \"{field}\", "
                f"which needs one line per round from round 1 (a fedkit-sim file with "
                f"--eval-every above 1 skips rounds; fedkit-sim now writes \"{cumulative_field}\")")
        total += _number(path, number, obj, field, why)
        values.append(total)
        expected += 1
    return values


def x_values(path, records, x):
    """The x coordinate of every record for --x x (see the module's docstring)."""
    why = f"--x {x}"
    if x == "round":
        return [_number(path, n, obj, "round", why) for n, obj in records]
    if x == "epsilon":
        return [_number(path, n, obj, "epsilon", why) for n, obj in records]
    field, cumulative = {
        "time": ("seconds", "elapsed_seconds"),
        "virtual-time": ("virtual_seconds", "virtual_elapsed_seconds"),
    }[x]
    if all(cumulative in obj for _, obj in records):
        return [_number(path, n, obj, cumulative, why) for n, obj in records]
    return _running_sum(path, records, field, cumulative, why)


def plot_series(paths, labels, x, ys):
    """Reads every file and returns one Panel per field of ys, each with one Curve per file.

    paths and labels have the same length; raises PlotError (see read_metrics and x_values) and
    ValueError for an x or y this tool does not know."""
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}")
    for y in ys:
        if y not in Y_FIELDS:
            raise ValueError(f"unknown y field {y!r}")
    runs = []
    for path, label in zip(paths, labels, strict=True):
        records = read_metrics(path)
        xs = x_values(path, records, x)
        runs.append((path, label, records, xs))
    panels = []
    for y in ys:
        curves = [
            Curve(label, xs, [_number(path, n, obj, y, f"--y {y}") for n, obj in records])
            for path, label, records, xs in runs
        ]
        panels.append(Panel(y, curves))
    return panels


def _numbers(path, number, obj, field):
    """obj[field] as a list of floats; PlotError naming file, line and field otherwise."""
    values = obj[field]
    if not isinstance(values, list) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise PlotError(f"{path}:{number}: \"{field}\" is not a list of numbers")
    return [float(v) for v in values]


def client_histograms(paths, labels):
    """One ClientHistogram per file whose lines carry "client_accuracies" (per-client evaluation),
    from the last such line; files without them are left out. Raises PlotError (read_metrics, and
    for accuracies that are not a list of numbers)."""
    histograms = []
    for path, label in zip(paths, labels, strict=True):
        last = None
        for number, obj in read_metrics(path):
            if "client_accuracies" in obj:
                last = (number, obj)
        if last is None:
            continue
        number, obj = last
        accuracies = _numbers(path, number, obj, "client_accuracies")
        finetuned = None
        if "client_finetuned_accuracies" in obj:
            finetuned = _numbers(path, number, obj, "client_finetuned_accuracies")
        round_ = obj.get("round")
        histograms.append(ClientHistogram(label, round_, accuracies, finetuned))
    return histograms


def _draw_histograms(ax, histograms):
    """Outlines of each histogram's accuracies (and fine-tuned ones, dashed) on ax."""
    rounds = sorted({h.round for h in histograms if isinstance(h.round, (int, float))})
    for h in histograms:
        name = h.label if len(histograms) > 1 else "global model"
        ax.hist(h.accuracies, bins=HISTOGRAM_BINS, histtype="step", linewidth=1.5,
                label=f"{name} (mean {sum(h.accuracies) / len(h.accuracies):.3f})"
                if h.accuracies else name)
        if h.finetuned is not None:
            tuned = f"{h.label}, fine-tuned" if len(histograms) > 1 else "fine-tuned"
            ax.hist(h.finetuned, bins=HISTOGRAM_BINS, histtype="step", linewidth=1.5,
                    linestyle="--",
                    label=f"{tuned} (mean {sum(h.finetuned) / len(h.finetuned):.3f})"
                    if h.finetuned else tuned)
    where = f" (round {', '.join(f'{r:g}' for r in rounds)})" if rounds else ""
    ax.set_xlabel(f"client accuracy on its held-out data{where}")
    ax.set_ylabel("clients")
    ax.set_xlim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")


def epsilon_delta(paths):
    """The one "delta" all files report, or None (then the epsilon axis does not name it)."""
    deltas = set()
    for path in paths:
        for _, obj in read_metrics(path):
            deltas.add(obj.get("delta"))
    return deltas.pop() if len(deltas) == 1 else None


def make_figure(panels, x, width_px, height_px, dpi, title=None, legend=None, log_x=False,
                delta=None, histograms=None):
    """A matplotlib Figure (Agg, not shown anywhere) with the panels side by side, and with
    histograms (client_histograms' list, if not empty) a histogram panel after them.

    legend: None for no legend, "best" inside the first panel where it hides the least, "outside"
    to the right of the last curve panel. The histogram panel always has its own legend."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    all_axes = fig.subplots(1, len(panels) + (1 if histograms else 0), squeeze=False)[0]
    axes = all_axes[:len(panels)]
    if histograms:
        _draw_histograms(all_axes[-1], histograms)
    xlabel = X_LABELS[x]
    if x == "epsilon" and isinstance(delta, (int, float)):
        xlabel = f"epsilon (delta = {delta:g})"
    for ax, panel in zip(axes, panels):
        for curve in panel.curves:
            marker = "o" if len(curve.x) <= 30 else None
            ax.plot(curve.x, curve.y, marker=marker, markersize=3, linewidth=1.5,
                    label=curve.label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(Y_LABELS[panel.y])
        ax.grid(True, alpha=0.3)
        if x == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_x:
            ax.set_xscale("log")
            # 0.2, 0.5, 1, 2, 5, 10 rather than 10^0 and 10^1 only.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    if legend == "best":
        axes[0].legend(loc="best", fontsize="small")
    elif legend == "outside":
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                        fontsize="small")
    elif legend is not None:
        raise ValueError(f"unknown legend placement {legend!r}")
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, out, dpi):
    """Writes fig to out in the format its extension names (FORMATS). SVG files get no date and
    fixed element ids, so that, as PNG files, the same data gives the same bytes."""
    import matplotlib
    fmt = FORMATS[os.path.splitext(out)[1].lower()]
    metadata = {"Date": None} if fmt == "svg" else None
    with matplotlib.rc_context({"svg.hashsalt": "fedkit-plot"}):
        fig.savefig(out, format=fmt, dpi=dpi, metadata=metadata)


def parse_size(text):
    """'WIDTHxHEIGHT' in pixels -> (width, height); raises ValueError."""
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise ValueError(f"expected WIDTHxHEIGHT in pixels, got {text!r}")
    width, height = (int(p) for p in parts)
    if width < 50 or height < 50 or width > 20000 or height > 20000:
        raise ValueError(f"{text!r}: each side must be 50 to 20000 pixels")
    return width, height


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_args(argv):
    """The command line as an argparse.Namespace with ys a list and size (width, height) filled in;
    raises UsageError for anything wrong with it (before any file is read)."""
    p = _Parser(prog="fedkit-plot", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="METRICS.jsonl")
    p.add_argument("-o", "--output", metavar="OUT", help="output file: .png or .svg")
    p.add_argument("--x", choices=X_AXES, default="round", help="x axis (default round)")
    p.add_argument("--y", action="append", metavar="FIELD",
                   help="a panel per field, repeatable or comma-separated: accuracy, loss, "
                        "train_loss (default accuracy,loss)")
    p.add_argument("--label", action="append", help="legend label per file, in file order "
                                                    "(default: the file name without .jsonl)")
    p.add_argument("--title", help="title above the panels")
    p.add_argument("--dpi", type=int, default=100, help="dots per inch (default 100)")
    p.add_argument("--size", metavar="WIDTHxHEIGHT",
                   help="picture size in pixels (default 560 wide per panel x 420)")
    p.add_argument("--log-x", action="store_true", help="logarithmic x axis")
    p.add_argument("--legend", choices=("best", "outside", "none"), default="best",
                   help="where the legend goes when there is one: best (inside the first panel, "
                        "where it hides the least; the default), outside (right of the last "
                        "panel), none")
    p.add_argument("--client-histogram", choices=("auto", "none"), default="auto",
                   help="auto: a histogram panel of per-client accuracies when the files have "
                        "them (fedkit-sim --eval-clients-local; the default); none: never")
    p.add_argument("--check", action="store_true",
                   help="only check that matplotlib loads (fedkit-sim --plot runs this first)")
    args = p.parse_args(argv)
    if args.check:
        return args
    if not args.files:
        raise UsageError("no metrics file given")
    if not args.output:
        raise UsageError("-o OUT is required")
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"-o {args.output}: unknown extension {ext or '(none)'!r}; "
                         f"use .png or .svg")
    ys = []
    for item in args.y or ["accuracy,loss"]:
        for y in item.split(","):
            if y not in Y_FIELDS:
                raise UsageError(f"--y {y!r}: expected one of {', '.join(Y_FIELDS)}")
            if y not in ys:
                ys.append(y)
    args.ys = ys
    if args.label is not None and len(args.label) != len(args.files):
        raise UsageError(f"{len(args.label)} --label for {len(args.files)} files: give one per "
                         f"file or none")
    if args.dpi < 10 or args.dpi > 1200:
        raise UsageError(f"--dpi {args.dpi}: expected 10 to 1200")
    if args.size:
        try:
            args.size = parse_size(args.size)
        except ValueError as e:
            raise UsageError(f"--size: {e}") from None
    else:
        args.size = None  # 560 wide per panel x 420, once the panels are known (main)
    return args


def default_label(path):
    base = os.path.basename(path)
    return base[:-len(".jsonl")] if base.endswith(".jsonl") else os.path.splitext(base)[0]


def main(argv):
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"fedkit-plot: {e}", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401  (python3-matplotlib)
    except ImportError as e:
        print(f"fedkit-plot: matplotlib is not available to {sys.executable} ({e}); "
              f"on Debian: apt-get install python3-matplotlib", file=sys.stderr)
        return 1
    if args.check:
        return 0
    labels = args.label or [default_label(p) for p in args.files]
    try:
        panels = plot_series(args.files, labels, args.x, args.ys)
        delta = epsilon_delta(args.files) if args.x == "epsilon" else None
        histograms = (client_histograms(args.files, labels)
                      if args.client_histogram == "auto" else [])
    except PlotError as e:
        print(f"fedkit-plot: {e}", file=sys.stderr)
        return 1
    width, height = args.size or (560 * (len(panels) + (1 if histograms else 0)), 420)
    wants_legend = (len(args.files) > 1 or args.label is not None) and args.legend != "none"
    fig = make_figure(panels, args.x, width, height, args.dpi, title=args.title,
                      legend=args.legend if wants_legend else None, log_x=args.log_x, delta=delta,
                      histograms=histograms)
    try:
        save_figure(fig, args.output, args.dpi)
    except (OSError, ValueError) as e:
        print(f"fedkit-plot: cannot write {args.output}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
