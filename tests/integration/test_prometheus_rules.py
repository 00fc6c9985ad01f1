"""prometheus/rules.yml and grafana/process-tracker.json, checked by Prometheus's own promtool (no server needed).
The server-side checks (every alert expression and dashboard query returns data) are in test_prometheus.py."""
import json
import os
import re
import shutil
import subprocess

import pytest

from process_tracker.metrics import METRICS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "prometheus", "rules.yml")
RULE_TESTS = os.path.join(ROOT, "prometheus", "rules.test.yml")
DASHBOARD = os.path.join(ROOT, "grafana", "process-tracker.json")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: `make test` installs Debian's prometheus")


def promtool(*args):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(RULES))


@needs_promtool
def test_promtool_check_rules():
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_test_rules_covers_every_alert():
    done = promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(RULES) as f:
        alerts = set(re.findall(r"^\s+- alert: (\w+)$", f.read(), re.M))
    with open(RULE_TESTS) as f:
        tested = set(re.findall(r"alertname: (\w+)$", f.read(), re.M))
    assert len(alerts) >= 8 and alerts == tested


def _metric_names(expr):
    return set(re.findall(r"\b((?:dss|process_tracker)_[a-z_]+)", expr)) - {"dss_datadir"}  # a label


def exposed():
    names = set()
    for name, (kind, _, _) in METRICS.items():
        names.add(name + "_total" if kind == "counter" else name)
    return names


def test_rules_and_dashboard_use_only_metrics_the_exporter_exposes():
    with open(RULES) as f:
        used = _metric_names(f.read())
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= _metric_names(target["expr"])
    assert used and used <= exposed(), used - exposed()


def test_dashboard_is_importable_with_a_node_selector():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert "instance" in variables["node"]["query"]["query"] and variables["node"]["multi"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("memory by role", "processes by role", "top activities", "idle", "orphan", "cgroups",
                  "oom kills", "exporter cpu"):
        assert topic in titles, topic
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert '$node' in target["expr"], panel["title"]  # every panel follows the node selector
