"""Two DSS nodes scraped by a real Prometheus (Debian's `prometheus`, started here on loopback).

Node A: the demo fleet (dev.fleet.demo_layout) with its exporter listing the DSS simulator (real dataikuapi over
HTTP). Node B: a second DSS node (dev.fleet.second_instance_layout), host metrics only. Each exporter is the real
CLI (`process-tracker exporter --dss-datadir ...`), scraped every second by a Prometheus whose config is
generated here, with prometheus/rules.yml loaded. Assertions go through Prometheus's HTTP API.

Cgroup figures: the fleet's processes sit in this machine's real memory cgroup; tests must not create cgroups on
a shared machine, so each exporter reads that cgroup's files under a --cgroup-root directory the test writes.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests
from test_exporter import fleet_truth
from test_prometheus_rules import DASHBOARD, RULES

from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import load_demo
from dev.fleet import Fleet, second_instance_layout
from process_tracker.host import parse_proc_cgroup
from process_tracker.prom_history import PrometheusHistory, history_view

PROMETHEUS = shutil.which("prometheus")
CLI = os.path.join(os.path.dirname(sys.executable), "process-tracker")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: `make test` installs Debian's prometheus")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.25)


def cgroup_root(base, pid, usage, limit, kills):
    """A /sys/fs/cgroup-shaped directory holding the files of the process's real memory cgroup.
    Returns (root, cgroup path, marker)."""
    with open("/proc/%d/cgroup" % pid, "rb") as f:
        path, version = parse_proc_cgroup(f.read())
    if not path or path == "/":
        pytest.skip("the fleet runs in the root cgroup here")
    directory = os.path.join(base, "memory" + path) if version == 1 else os.path.join(base, path.lstrip("/"))
    os.makedirs(directory)
    files = ({"memory.usage_in_bytes": usage, "memory.limit_in_bytes": limit, "memory.oom_control":
              "oom_kill_disable 0\nunder_oom 0\noom_kill %d\n" % kills} if version == 1 else
             {"memory.current": usage, "memory.max": limit, "memory.events": "oom 0\noom_kill %d\n" % kills})
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write("%s\n" % text if isinstance(text, int) else text)
    return base, path, [p for p in path.split("/") if p][0]


def start_exporter(fleet, extra, root, marker):
    proc = subprocess.Popen(
        [CLI, "exporter", "--listen", "127.0.0.1:0", "--scan-interval", "1", "--listing-interval", "2",
         "--dss-datadir", fleet.dip_home, "--cgroup-root", root, "--cgroup-marker", marker] + extra,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert "serving http://" in line, line
    return proc, line.split()[3].split("//")[1].split("/")[0]


class Stack:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.fleets = []
        self.sim = None

    def api(self, path, **params):
        r = requests.get(self.url + path, params=params, timeout=30)
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql):
        return self.api("/api/v1/query", query=promql)["result"]

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.sim is not None:
            self.sim.stop()
        for fleet in self.fleets:
            fleet.stop()


@pytest.fixture(scope="module", name="stack")
def prometheus_stack(fleet, tmp_path_factory):
    """Node A (the demo fleet, listing the simulator) and node B (host only), their exporters and a Prometheus
    scraping both every second. tests/browser/test_prometheus_browser.py imports it."""
    tmp = str(tmp_path_factory.mktemp("prometheus"))
    s = Stack(tmp)
    try:
        s.fleet_a = fleet
        s.fleet_b = Fleet(second_instance_layout).start()
        s.fleets.append(s.fleet_b)
        s.sim = Simulator(load_demo(), fleet_pids=fleet.pids)
        s.sim.start()
        root_a, s.cgroup, marker = cgroup_root(os.path.join(tmp, "cg-a"), fleet.pid("backend"), 950, 1000, 2)
        root_b, _, _ = cgroup_root(os.path.join(tmp, "cg-b"), s.fleet_b.pid("dss2-backend"), 100, 1000, 0)
        proc_a, s.node_a = start_exporter(fleet, ["--url", s.sim.url, "--api-key", s.sim.admin_key], root_a, marker)
        s.procs.append(proc_a)
        proc_b, s.node_b = start_exporter(s.fleet_b, ["--no-dss"], root_b, marker)
        s.procs.append(proc_b)
        port = free_port()
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            json.dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [RULES],
                       "scrape_configs": [{"job_name": "process-tracker",
                                           "static_configs": [{"targets": [s.node_a, s.node_b]}]}]}, f)
        s.procs.append(subprocess.Popen(
            [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w")))
        s.url = "http://127.0.0.1:%d" % port
        wait_for(lambda: _ready(s.url), what="prometheus ready")
        # both nodes scraped, the DSS listing joined, and enough samples for rates over 10 s
        wait_for(lambda: len(s.query("dss_processes{role=\"backend\"}")) == 2
                 and s.query("dss_activity_idle_seconds") and s.query("dss_orphan_processes")
                 and len(s.query("count_over_time(dss_process_cpu_seconds_total[10s]) >= 5")) > 0,
                 timeout=90, what="two nodes with data")
        yield s
    finally:
        s.stop()


def _ready(url):
    try:
        return requests.get(url + "/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def by_role(rows):
    return {r["metric"]["role"]: float(r["value"][1]) for r in rows}


def test_per_role_sums_of_each_node_equal_its_fleets_ground_truth(stack):
    for node, fleet in ((stack.node_a, stack.fleet_a), (stack.node_b, stack.fleet_b)):
        truth = fleet_truth(fleet)
        counts = by_role(stack.query('sum by (role) (dss_processes{instance="%s"})' % node))
        memory = by_role(stack.query('sum by (role) (dss_process_rss_anon_bytes{instance="%s"})' % node))
        assert counts == {role: count for role, (count, _) in truth.items()}, node
        for role, (_, rss) in truth.items():
            assert memory[role] == pytest.approx(rss, rel=0.02), (node, role)


def test_node_selection_separates_the_two_dss_nodes(stack):
    nodes = stack.api("/api/v1/label/instance/values", **{"match[]": "process_tracker_exporter_build_info"})
    assert sorted(nodes) == sorted([stack.node_a, stack.node_b])
    datadirs = {r["metric"]["instance"]: r["metric"]["dss_datadir"]
                for r in stack.query("count by (instance, dss_datadir) (dss_processes)")}
    assert datadirs == {stack.node_a: stack.fleet_a.dip_home, stack.node_b: stack.fleet_b.dip_home}
    activities = {r["metric"]["instance"] for r in stack.query("dss_activities")}
    assert activities == {stack.node_a}  # node B has no DSS listing
    listed = PrometheusHistory(stack.url).nodes()
    assert [(n["node"], n["up"], n["dss_datadirs"]) for n in listed] == sorted(
        [(stack.node_a, True, [stack.fleet_a.dip_home]), (stack.node_b, True, [stack.fleet_b.dip_home])])


def test_series_per_node_stay_bounded(stack):
    scraped = {r["metric"]["instance"]: float(r["value"][1]) for r in stack.query("scrape_samples_scraped")}
    assert set(scraped) == {stack.node_a, stack.node_b}
    assert all(0 < n <= 600 for n in scraped.values()), scraped


def substitute(expr, nodes):
    return (expr.replace("$node", "|".join(re.escape(n).replace("\\", "\\\\") for n in nodes)).replace("$dss_datadir", ".*")
            .replace("$__rate_interval", "10s"))


def test_every_dashboard_query_returns_data_for_both_nodes_and_for_one(stack):
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.match(r"label_values\((.*), (\w+)\)$", variable["query"]["query"])
            series = stack.api("/api/v1/series", **{"match[]": substitute(match.group(1), [stack.node_a])})
            assert any(match.group(2) in s for s in series), variable["name"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            both = stack.query(substitute(target["expr"], [stack.node_a, stack.node_b]))
            assert both, (panel["title"], target["expr"])
            one = stack.query(substitute(target["expr"], [stack.node_b]))
            assert all(r["metric"].get("instance", stack.node_b) == stack.node_b for r in one), panel["title"]


THRESHOLD = re.compile(r"(==|!=|>=|<=|>|<)\s*-?[0-9][0-9.e+]*")


def test_every_alert_expression_is_healthy_and_returns_data_with_its_thresholds_opened(stack):
    groups = wait_for(lambda: [g for g in stack.api("/api/v1/rules")["groups"] if g["rules"] and all(
        r.get("lastEvaluation", "").startswith("2") and not r["lastEvaluation"].startswith("0001")
        for r in g["rules"])], what="rules evaluated")
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 9
    for rule in rules:
        assert rule["health"] == "ok", rule
        opened = THRESHOLD.sub(">= -Inf", rule["query"])
        assert opened != rule["query"], rule["name"]
        assert stack.query(opened), (rule["name"], opened)
    near_limit = [r for r in rules if r["name"] == "DSSCgroupNearLimit"][0]
    assert near_limit["state"] in ("pending", "firing")  # node A's cgroup is at 95%
    assert {a["labels"]["instance"] for a in near_limit["alerts"]} == {stack.node_a}


def test_webapp_history_from_prometheus_has_the_sqlite_views_shape(stack):
    source = PrometheusHistory(stack.url)
    series = source.role_series("1h", node=stack.node_b)
    truth = fleet_truth(stack.fleet_b)
    assert set(series.roles) == set(truth)
    assert series.points >= 1 and series.step_seconds == 10
    last = {role: values["count"][-1] for role, values in series.roles.items()}
    assert last == pytest.approx({role: count for role, (count, _) in truth.items()})
    both = source.role_series("1h")
    assert both.roles["backend"]["count"][-1] == pytest.approx(2.0)  # every node summed
    view = history_view(source, "24h", node=stack.node_a)
    assert set(view) >= {"window", "points", "step_seconds", "figures"} and view["node"] == stack.node_a
    assert view["figures"]["memory_by_role"]["data"] and view["figures"]["count_by_role"]["data"]
    assert source.role_series("1h", node='no"such{node}').roles == {}  # escaped: an empty answer, not an error


# ---- the webapp's Prometheus mode ----------------------------------------------------------------------------

@pytest.fixture
def webapp(stack, tmp_path, monkeypatch):
    """The monitoring webapp loaded as DSS loads it (backend.py exec'd), its "Prometheus URL" set to the stack's."""
    from test_webapp_backend import Backend

    backend = Backend(stack.sim, tmp_path, monkeypatch, config={"prometheusUrl": stack.url})
    yield backend
    backend.close()


def test_webapp_lists_the_nodes_and_reads_each_nodes_history_from_prometheus(stack, webapp):
    from test_webapp_backend import as_user

    nodes = webapp.client.get("/api/nodes", headers=as_user("admin")).get_json()
    assert nodes["source"] == "prometheus"
    assert [n["node"] for n in nodes["nodes"]] == sorted([stack.node_a, stack.node_b])
    body = webapp.client.get("/api/history?window=1h&node=%s" % stack.node_b, headers=as_user("admin")).get_json()
    assert (body["source"], body["node"], body["step_seconds"]) == ("prometheus", stack.node_b, 10)
    names = {t["name"] for t in body["figures"]["count_by_role"]["data"]}
    assert len(names) == len(fleet_truth(stack.fleet_b))  # node B's roles only
    everything = webapp.client.get("/api/history?window=1h", headers=as_user("admin")).get_json()
    assert len(everything["figures"]["count_by_role"]["data"]) > len(names)  # every node summed
    assert webapp.client.get("/api/nodes").status_code == 403  # reads need a DSS user, as every view


def test_webapp_reports_an_unreachable_prometheus_as_a_502_envelope(stack, tmp_path, monkeypatch):
    from test_webapp_backend import Backend, as_user, error_of

    backend = Backend(stack.sim, tmp_path, monkeypatch, config={"prometheusUrl": "http://127.0.0.1:%d" % free_port()})
    try:
        message = error_of(backend.client.get("/api/history?window=1h", headers=as_user("admin")), 502,
                           "prometheus_unavailable")
        assert "unreachable" in message
        error_of(backend.client.get("/api/nodes", headers=as_user("admin")), 502, "prometheus_unavailable")
    finally:
        backend.close()
