"""deploy/grafana/fedkit-coordinator.json against README.md's metrics table and promtool.

Usage: grafana_dashboard_test.py DASHBOARD README [PROMTOOL]

Checks that the dashboard is a Grafana dashboard (valid JSON, panels with unique ids, positions and
PromQL targets on the Prometheus data-source input), that every metric the README documents has a
panel and every metric a panel queries is documented, and, with promtool, that every expression
parses as PromQL (each becomes a recording rule for `promtool check rules`).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

DASHBOARD, README = sys.argv[1], sys.argv[2]
PROMTOOL = sys.argv[3] if len(sys.argv) > 3 else None
METRIC = re.compile(r"\b((?:fedkit|process)_[a-z0-9_]+)")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def documented_metrics():
    """Metric names in the first column of README's metrics table."""
    names = set()
    with open(README, encoding="utf-8") as f:
        for line in f:
            cells = line.strip().strip("|").split("|")
            if len(cells) >= 4 and ("`fedkit_" in cells[0] or "`process_" in cells[0]):
                names.update(re.findall(r"`((?:fedkit|process)_[a-z0-9_]+)`", cells[0]))
    return names


def expressions(dashboard):
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD, encoding="utf-8") as f:
            cls.dashboard = json.load(f)

    def test_is_a_grafana_dashboard(self):
        d = self.dashboard
        self.assertEqual(d["uid"], "fedkit-coordinator")
        self.assertIsInstance(d["schemaVersion"], int)
        self.assertEqual(d["__inputs"][0]["pluginId"], "prometheus")
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for p in d["panels"]:
            self.assertIn(p["type"], {"timeseries", "stat"}, p["title"])
            self.assertTrue(p["targets"], p["title"])
            self.assertEqual(p["datasource"]["uid"], "${DS_PROMETHEUS}", p["title"])
            self.assertLessEqual(p["gridPos"]["x"] + p["gridPos"]["w"], 24, p["title"])

    def test_every_documented_metric_has_a_panel_and_nothing_else_is_queried(self):
        documented = documented_metrics()
        self.assertGreater(len(documented), 20, "README's metrics table not found")
        queried = set()
        for expr in expressions(self.dashboard):
            queried.update(HISTOGRAM_SUFFIX.sub("", m) for m in METRIC.findall(expr))
        self.assertEqual(documented - queried, set(), "documented but on no panel")
        self.assertEqual(queried - documented, set(), "queried but not documented")

    @unittest.skipIf(not PROMTOOL or not os.path.exists(PROMTOOL), "no promtool")
    def test_every_expression_is_valid_promql(self):
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": "fedkit:panel_%d" % i, "expr": e}
            for i, e in enumerate(expressions(self.dashboard))]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump(rules, f)  # JSON is YAML
        try:
            run = subprocess.run([PROMTOOL, "check", "rules", f.name], capture_output=True,
                                 text=True, check=False)
        finally:
            os.unlink(f.name)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)

    def test_a_broken_expression_is_caught(self):
        if not PROMTOOL or not os.path.exists(PROMTOOL):
            self.skipTest("no promtool")
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump({"groups": [{"name": "g", "rules": [
                {"record": "r", "expr": "sum by (le (rate(x[5m]))"}]}]}, f)
        try:
            run = subprocess.run([PROMTOOL, "check", "rules", f.name], capture_output=True,
                                 text=True, check=False)
        finally:
            os.unlink(f.name)
        self.assertNotEqual(run.returncode, 0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
