#!/usr/bin/python3
"""Tests of fedkit-plot (scripts/plot.py): its functions, then the program as a user runs it.

    plot_test.py FEDKIT_PLOT [unittest arguments]

FEDKIT_PLOT is the program (build/bin/fedkit-plot); its functions are loaded from the same file.
The metrics files are written here, in the shapes fedkit-sim and fedkit-coordinator write.
"""
import importlib.machinery
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

FEDKIT_PLOT = None  # set by main
plot = None  # the module

# fedkit-sim with --eval-every 2: rounds 2, 4, 6, with the cumulative time fields.
SIM = [
    {"round": 2, "accuracy": 0.50, "loss": 1.5, "train_loss": 1.2, "seconds": 1.0,
     "eval_seconds": 0.5, "elapsed_seconds": 3.0, "virtual_seconds": 7.0,
     "virtual_elapsed_seconds": 13.0, "participants": 5},
    {"round": 4, "accuracy": 0.60, "loss": 1.2, "train_loss": 1.0, "seconds": 1.0,
     "eval_seconds": 0.5, "elapsed_seconds": 6.5, "virtual_seconds": 6.0,
     "virtual_elapsed_seconds": 26.0, "participants": 5},
    {"round": 6, "accuracy": 0.75, "loss": 0.9, "train_loss": 0.8, "seconds": 1.0,
     "eval_seconds": 0.5, "elapsed_seconds": 10.0, "virtual_seconds": 5.0,
     "virtual_elapsed_seconds": 37.0, "participants": 5},
]
# fedkit-coordinator: a line per committed round, "seconds" per round, no cumulative time.
COORDINATOR = [
    {"round": 1, "participants": 4, "examples": 40, "train_loss": 2.0, "seconds": 2.5,
     "accuracy": 0.3, "loss": 2.1},
    {"round": 2, "participants": 4, "examples": 40, "train_loss": 1.5, "seconds": 1.5,
     "accuracy": 0.4, "loss": 1.8},
    {"round": 3, "participants": 4, "examples": 40, "train_loss": 1.1, "seconds": 3.0,
     "accuracy": 0.55, "loss": 1.4},
]
# Differential privacy: epsilon grows with the rounds.
DP = [
    {"round": 10, "accuracy": 0.70, "loss": 0.8, "train_loss": 0.5, "seconds": 0.1,
     "epsilon": 1.03, "delta": 1e-05},
    {"round": 20, "accuracy": 0.74, "loss": 0.7, "train_loss": 0.4, "seconds": 0.1,
     "epsilon": 1.07, "delta": 1e-05},
]

# fedkit-sim --eval-clients-local --eval-finetune-steps: rounds 5 and 10 with per-client accuracies.
CLIENTS = [
    {"round": 5, "accuracy": 0.6, "loss": 1.1, "client_eval_clients": [0, 1, 2],
     "client_accuracies": [0.2, 0.3, 0.4], "client_finetuned_accuracies": [0.5, 0.5, 0.6]},
    {"round": 10, "accuracy": 0.7, "loss": 0.9, "client_eval_clients": [0, 1, 2, 3, 4],
     "client_accuracies": [0.12, 0.33, 0.34, 0.81, 0.97],
     "client_finetuned_accuracies": [0.52, 0.61, 0.88, 0.91, 0.99]},
]


def step_counts(patch):
    """The bin heights of a histtype="step" outline: the y of its vertices 1, 3, 5, ..."""
    ys = [float(y) for _, y in patch.get_path().vertices]
    return ys[1:2 * (len(plot.HISTOGRAM_BINS) - 1):2]


def expected_counts(values):
    counts = [0.0] * (len(plot.HISTOGRAM_BINS) - 1)
    for v in values:
        counts[min(int(v * 20), 19)] += 1
    return counts


def png_size(path):
    """(width, height) from a PNG file's IHDR chunk; fails the test if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG: {head[:8]!r}"
    assert head[12:16] == b"IHDR", head[12:16]
    return struct.unpack(">II", head[16:24])


class PlotTestCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="fedkit_plot_test_")
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, name, records=None, text=None):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            if text is not None:
                f.write(text)
            else:
                for r in records:
                    f.write(json.dumps(r) + "\n")
        return path

    def run_plot(self, *args):
        return subprocess.run([FEDKIT_PLOT, *args], capture_output=True, text=True)


class ReadingTest(PlotTestCase):
    def test_reads_every_object_with_its_line_number_and_skips_blank_lines(self):
        path = self.write("m.jsonl", text=json.dumps(SIM[0]) + "\n\n" + json.dumps(SIM[1]) + "\n")
        records = plot.read_metrics(path)
        self.assertEqual([n for n, _ in records], [1, 3])
        self.assertEqual(records[1][1]["round"], 4)

    def test_bad_json_names_file_and_line(self):
        path = self.write("bad.jsonl", text=json.dumps(SIM[0]) + "\n{\"round\": 4,\n")
        with self.assertRaisesRegex(plot.PlotError, r"bad\.jsonl:2: not JSON"):
            plot.read_metrics(path)

    def test_a_line_that_is_not_an_object_names_file_and_line(self):
        path = self.write("list.jsonl", text="[1, 2]\n")
        with self.assertRaisesRegex(plot.PlotError, r"list\.jsonl:1: expected a JSON object"):
            plot.read_metrics(path)

    def test_empty_and_missing_files(self):
        with self.assertRaisesRegex(plot.PlotError, r"empty\.jsonl: no metrics"):
            plot.read_metrics(self.write("empty.jsonl", text="\n"))
        with self.assertRaisesRegex(plot.PlotError, r"nope\.jsonl: cannot read"):
            plot.read_metrics(os.path.join(self.dir, "nope.jsonl"))


class AxesTest(PlotTestCase):
    def x(self, records, axis, name="m.jsonl"):
        path = self.write(name, records)
        return plot.x_values(path, plot.read_metrics(path), axis)

    def test_round_and_epsilon(self):
        self.assertEqual(self.x(SIM, "round"), [2, 4, 6])
        self.assertEqual(self.x(DP, "epsilon"), [1.03, 1.07])

    def test_time_prefers_the_cumulative_field(self):
        self.assertEqual(self.x(SIM, "time"), [3.0, 6.5, 10.0])
        self.assertEqual(self.x(SIM, "virtual-time"), [13.0, 26.0, 37.0])

    def test_time_sums_per_round_seconds_of_a_line_per_round(self):
        self.assertEqual(self.x(COORDINATOR, "time"), [2.5, 4.0, 7.0])
        per_round_virtual = [dict(r, round=i + 1, virtual_seconds=v)
                             for i, (r, v) in enumerate(zip(COORDINATOR, [1.0, 2.0, 4.0]))]
        self.assertEqual(self.x(per_round_virtual, "virtual-time"), [1.0, 3.0, 7.0])

    def test_time_refuses_to_sum_a_file_that_skips_rounds(self):
        old_sim = [{k: v for k, v in r.items() if k != "elapsed_seconds"} for r in SIM]
        with self.assertRaisesRegex(plot.PlotError,
                                    r"old\.jsonl:1: round 2 where round 1 was expected.*"
                                    r"elapsed_seconds"):
            self.x(old_sim, "time", "old.jsonl")

    def test_missing_fields_name_file_line_field_and_axis(self):
        with self.assertRaisesRegex(plot.PlotError,
                                    r"coord\.jsonl:1: no \"epsilon\" field, which --x epsilon"):
            self.x(COORDINATOR, "epsilon", "coord.jsonl")
        with self.assertRaisesRegex(plot.PlotError,
                                    r"coord\.jsonl:1: no \"virtual_seconds\" field"):
            self.x(COORDINATOR, "virtual-time", "coord.jsonl")
        unbounded = [dict(DP[0]), dict(DP[1], epsilon=None)]
        with self.assertRaisesRegex(plot.PlotError, r"z0\.jsonl:2: \"epsilon\" is null"):
            self.x(unbounded, "epsilon", "z0.jsonl")
        no_accuracy = [dict(COORDINATOR[0]), {"round": 2, "seconds": 1.0}]
        path = self.write("noeval.jsonl", no_accuracy)
        with self.assertRaisesRegex(plot.PlotError,
                                    r"noeval\.jsonl:2: no \"accuracy\" field, which --y accuracy"):
            plot.plot_series([path], ["r"], "round", ["accuracy"])


class SeriesTest(PlotTestCase):
    def test_overlaid_runs_have_one_curve_per_file_in_every_panel(self):
        sim = self.write("sim.jsonl", SIM)
        coord = self.write("coord.jsonl", COORDINATOR)
        panels = plot.plot_series([sim, coord], ["simulator", "coordinator"], "time",
                                  ["accuracy", "loss", "train_loss"])
        self.assertEqual([p.y for p in panels], ["accuracy", "loss", "train_loss"])
        accuracy = panels[0].curves
        self.assertEqual([c.label for c in accuracy], ["simulator", "coordinator"])
        self.assertEqual(accuracy[0], plot.Curve("simulator", [3.0, 6.5, 10.0], [0.5, 0.6, 0.75]))
        self.assertEqual(accuracy[1], plot.Curve("coordinator", [2.5, 4.0, 7.0], [0.3, 0.4, 0.55]))
        self.assertEqual(panels[1].curves[1].y, [2.1, 1.8, 1.4])
        self.assertEqual(panels[2].curves[0].y, [1.2, 1.0, 0.8])

    def test_the_figure_draws_exactly_the_series(self):
        sim = self.write("sim.jsonl", SIM)
        dp = self.write("dp.jsonl", DP)
        panels = plot.plot_series([sim, dp], ["a", "b"], "round", ["accuracy", "loss"])
        fig = plot.make_figure(panels, "round", 800, 300, 100, title="t", legend="best")
        axes = fig.get_axes()
        self.assertEqual(len(axes), 2)
        for ax, panel in zip(axes, panels):
            drawn = [(line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
                     for line in ax.get_lines()]
            self.assertEqual(drawn, [(c.label, c.x, c.y) for c in panel.curves])
            self.assertEqual(ax.get_xlabel(), "round")
        self.assertEqual(axes[0].get_ylabel(), "accuracy (eval set)")
        legend = axes[0].get_legend()
        self.assertIsNotNone(legend)
        self.assertEqual([t.get_text() for t in legend.get_texts()], ["a", "b"])
        self.assertIsNone(axes[1].get_legend())
        # Outside: beside the last panel.
        fig = plot.make_figure(panels, "round", 800, 300, 100, legend="outside")
        self.assertIsNone(fig.get_axes()[0].get_legend())
        self.assertEqual([t.get_text() for t in fig.get_axes()[1].get_legend().get_texts()],
                         ["a", "b"])
        fig = plot.make_figure(panels, "round", 800, 300, 100)
        self.assertEqual([ax.get_legend() for ax in fig.get_axes()], [None, None])

    def test_epsilon_axis_names_the_common_delta(self):
        dp = self.write("dp.jsonl", DP)
        self.assertEqual(plot.epsilon_delta([dp]), 1e-05)
        other = self.write("other.jsonl", [dict(DP[0], delta=1e-6)])
        self.assertIsNone(plot.epsilon_delta([dp, other]))
        panels = plot.plot_series([dp], ["z1"], "epsilon", ["accuracy"])
        fig = plot.make_figure(panels, "epsilon", 400, 300, 100, delta=1e-05, log_x=True)
        self.assertEqual(fig.get_axes()[0].get_xlabel(), "epsilon (delta = 1e-05)")
        self.assertEqual(fig.get_axes()[0].get_xscale(), "log")


class ClientHistogramTest(PlotTestCase):
    def test_the_last_round_with_client_accuracies_of_each_file_that_has_them(self):
        clients = self.write("clients.jsonl", CLIENTS + [{"round": 11, "accuracy": 0.7,
                                                          "loss": 0.9}])
        sim = self.write("sim.jsonl", SIM)
        histograms = plot.client_histograms([sim, clients], ["sim", "clients"])
        self.assertEqual(histograms, [plot.ClientHistogram(
            "clients", 10, CLIENTS[1]["client_accuracies"],
            CLIENTS[1]["client_finetuned_accuracies"])])
        no_tuning = [{k: v for k, v in r.items() if k != "client_finetuned_accuracies"}
                     for r in CLIENTS]
        path = self.write("plain.jsonl", no_tuning)
        self.assertIsNone(plot.client_histograms([path], ["p"])[0].finetuned)
        self.assertEqual(plot.client_histograms([sim], ["sim"]), [])

    def test_accuracies_that_are_not_numbers_name_file_and_line(self):
        path = self.write("bad.jsonl", [CLIENTS[0], dict(CLIENTS[1], client_accuracies=["x"])])
        with self.assertRaisesRegex(plot.PlotError,
                                    r"bad\.jsonl:2: \"client_accuracies\" is not a list"):
            plot.client_histograms([path], ["b"])

    def test_the_histogram_panel_counts_the_clients_per_bin(self):
        path = self.write("clients.jsonl", CLIENTS)
        panels = plot.plot_series([path], ["run"], "round", ["accuracy", "loss"])
        histograms = plot.client_histograms([path], ["run"])
        fig = plot.make_figure(panels, "round", 1200, 300, 100, histograms=histograms)
        axes = fig.get_axes()
        self.assertEqual(len(axes), 3)
        self.assertEqual(axes[0].get_ylabel(), "accuracy (eval set)")
        hist = axes[2]
        self.assertIn("round 10", hist.get_xlabel())
        self.assertEqual(hist.get_ylabel(), "clients")
        self.assertEqual(len(hist.patches), 2)  # global model and fine-tuned outlines
        self.assertEqual(step_counts(hist.patches[0]),
                         expected_counts(CLIENTS[1]["client_accuracies"]))
        self.assertEqual(step_counts(hist.patches[1]),
                         expected_counts(CLIENTS[1]["client_finetuned_accuracies"]))
        self.assertEqual([t.get_text() for t in hist.get_legend().get_texts()],
                         ["global model (mean 0.514)", "fine-tuned (mean 0.782)"])
        # Without per-client accuracies: only the curve panels.
        fig = plot.make_figure(panels, "round", 800, 300, 100, histograms=[])
        self.assertEqual(len(fig.get_axes()), 2)


class ProgramTest(PlotTestCase):
    def test_a_histogram_panel_when_the_run_evaluated_clients(self):
        clients = self.write("clients.jsonl", CLIENTS)
        out = os.path.join(self.dir, "clients.png")
        r = self.run_plot(clients, "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(png_size(out), (3 * 560, 420))
        r = self.run_plot(clients, "-o", out, "--client-histogram", "none")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(png_size(out), (2 * 560, 420))
        bad = self.write("bad.jsonl", [dict(CLIENTS[0], client_accuracies=0.5)])
        r = self.run_plot(bad, "-o", out)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{bad}:1: \"client_accuracies\" is not a list of numbers", r.stderr)

    def test_png_of_the_asked_size(self):
        sim = self.write("sim.jsonl", SIM)
        out = os.path.join(self.dir, "run.png")
        r = self.run_plot(sim, "-o", out, "--size", "640x360", "--dpi", "80", "--title", "a run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(png_size(out), (640, 360))
        # Default: 560 pixels wide per panel, 420 high.
        r = self.run_plot(sim, "-o", out, "--y", "accuracy", "--y", "loss,train_loss")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(png_size(out), (3 * 560, 420))

    def test_svg_is_an_svg_of_the_asked_size_and_the_same_data_gives_the_same_bytes(self):
        sim = self.write("sim.jsonl", SIM)
        coord = self.write("coord.jsonl", COORDINATOR)
        outs = [os.path.join(self.dir, f"run{i}.svg") for i in (1, 2)]
        for out in outs:
            r = self.run_plot(sim, coord, "-o", out, "--x", "time", "--size", "1000x400",
                              "--label", "sim", "--label", "coordinator")
            self.assertEqual(r.returncode, 0, r.stderr)
        root = ET.parse(outs[0]).getroot()
        self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
        # 1000 x 400 pixels at 100 dpi: 10 x 4 inches, 720 x 288 points.
        self.assertEqual((root.get("width"), root.get("height")), ("720pt", "288pt"))
        with open(outs[0], "rb") as a, open(outs[1], "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_usage_errors_exit_2_naming_what_is_wrong(self):
        sim = self.write("sim.jsonl", SIM)
        png = os.path.join(self.dir, "x.png")
        cases = [
            ([sim, "-o", os.path.join(self.dir, "run.jpg")], "unknown extension '.jpg'"),
            ([sim, "-o", os.path.join(self.dir, "run")], "unknown extension '(none)'"),
            ([sim, "-o", png, "--label", "a", "--label", "b"], "2 --label for 1 files"),
            ([sim, "-o", png, "--y", "accuracy,f1"], "--y 'f1'"),
            ([sim, "-o", png, "--x", "minutes"], "--x"),
            ([sim, "-o", png, "--size", "big"], "--size"),
            ([sim, "-o", png, "--legend", "top"], "--legend"),
            ([sim], "-o OUT is required"),
            (["-o", png], "no metrics file"),
        ]
        for args, expected in cases:
            r = self.run_plot(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(expected, r.stderr, args)
            self.assertTrue(r.stderr.startswith("fedkit-plot: "), r.stderr)
        self.assertFalse(os.path.exists(png))

    def test_data_errors_exit_1_naming_file_and_line(self):
        bad = self.write("bad.jsonl", text=json.dumps(SIM[0]) + "\nnot json\n")
        coord = self.write("coord.jsonl", COORDINATOR)
        out = os.path.join(self.dir, "out.png")
        r = self.run_plot(bad, "-o", out)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{bad}:2: not JSON", r.stderr)
        r = self.run_plot(coord, "-o", out, "--x", "epsilon")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{coord}:1: no \"epsilon\" field", r.stderr)
        self.assertFalse(os.path.exists(out))

    def test_check_only_loads_matplotlib(self):
        r = self.run_plot("--check")
        self.assertEqual((r.returncode, r.stderr), (0, ""))


def main():
    global FEDKIT_PLOT, plot
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    FEDKIT_PLOT = os.path.abspath(sys.argv.pop(1))
    loader = importlib.machinery.SourceFileLoader("fedkit_plot", FEDKIT_PLOT)
    spec = importlib.util.spec_from_loader("fedkit_plot", loader)
    plot = importlib.util.module_from_spec(spec)
    loader.exec_module(plot)
    unittest.main()


if __name__ == "__main__":
    main()
