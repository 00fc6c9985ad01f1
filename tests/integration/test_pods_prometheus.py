"""Two exporters listing DSS's pods, scraped by a real Prometheus (Debian's `prometheus`, on loopback).

Node A: `process-tracker exporter --kubeconfig ... --k8s-namespaces dss` with the DSS listing (the demo's pods and
the demo DSS, real dataikuapi and kubernetes clients over HTTP). Node B: the same cluster's namespace `ml`, without
DSS. Both report an empty DSS data directory, so every dss_* series is a pod's. Assertions go through Prometheus's
HTTP API, and the webapp's Prometheus-mode history (prom_history) reads the pods' series back."""
import json
import os
import subprocess
import sys

import pytest
from test_prometheus import PROMETHEUS, _ready, free_port, wait_for

import requests
from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import load_demo
from dev.k8s_simulator import DEMO_DSS_FRAGMENT, K8sSimulator, demo_pods, dss_pod
from process_tracker.prom_history import PrometheusHistory, history_view

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MI = 1024 * 1024
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: `make test` installs Debian's prometheus")]


def _exporter(tmp, kubeconfig, extra):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python-lib"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "process_tracker", "exporter", "--listen", "127.0.0.1:0", "--scan-interval", "5",
         "--dss-datadir", tmp, "--kubeconfig", kubeconfig, "--pod-interval", "1"] + extra,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    assert "serving http://" in line and "pods: on" in line, line
    return proc, line.split()[3].split("//")[1].split("/")[0]


class Stack:
    def __init__(self):
        self.procs, self.url = [], None

    def query(self, promql):
        body = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=30).json()
        assert body["status"] == "success", body
        return body["data"]["result"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("pods-prometheus"))
    empty = os.path.join(tmp, "no-dss-here")
    os.makedirs(empty)
    s = Stack()
    k8s, dss = K8sSimulator(), Simulator(load_demo())
    demo_pods(k8s)
    for i in (1, 2):
        k8s.add(dss_pod("dataiku-exec-remote-notebook-ml%d" % i, namespace="ml", project_key="FORECAST",
                        submitter="carol", node="k8s-node-c"), memory="%dMi" % (100 * i), cpu="10m")
    dss.extend(DEMO_DSS_FRAGMENT)
    k8s.start()
    dss.start()
    try:
        kubeconfig = k8s.write_kubeconfig(os.path.join(tmp, "kubeconfig"))
        proc_a, s.node_a = _exporter(empty, kubeconfig, ["--k8s-namespaces", "dss", "--listing-interval", "1",
                                                         "--url", dss.url, "--api-key", dss.admin_key])
        s.procs.append(proc_a)
        proc_b, s.node_b = _exporter(empty, kubeconfig, ["--k8s-namespaces", "ml", "--no-dss"])
        s.procs.append(proc_b)
        port = free_port()
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            json.dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                       "scrape_configs": [{"job_name": "process-tracker",
                                           "static_configs": [{"targets": [s.node_a, s.node_b]}]}]}, f)
        s.procs.append(subprocess.Popen(
            [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        s.url = "http://127.0.0.1:%d" % port
        wait_for(lambda: _ready(s.url), what="prometheus ready")
        wait_for(lambda: len(s.query('count by (instance) (dss_processes{where="pod"})')) == 2
                 and s.query('dss_activity_rss_anon_bytes{kind="notebook_session"}')
                 and len(s.query('count_over_time(dss_process_cpu_seconds_total{where="pod"}[10s]) >= 3')) > 0,
                 timeout=90, what="two nodes with pods")
        yield s
    finally:
        for proc in s.procs:
            proc.terminate()
        for proc in s.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        k8s.stop()
        dss.stop()


def _by(rows, *labels):
    return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in rows}


def test_each_node_counts_its_pods_per_role_with_where_pod(stack):
    counts = _by(stack.query('sum by (instance, role) (dss_processes{where="pod"})'), "instance", "role")
    assert counts[(stack.node_a, "jupyter_kernel")] == 2 and counts[(stack.node_a, "spark_executor")] == 2
    assert {role for node, role in counts if node == stack.node_b} == {"jupyter_kernel"}
    assert counts[(stack.node_b, "jupyter_kernel")] == 2
    memory = _by(stack.query('dss_process_rss_anon_bytes{where="pod", role="jupyter_kernel"}'), "instance")
    assert memory == {(stack.node_a,): (1800 + 3100) * MI, (stack.node_b,): 300 * MI}
    assert not stack.query('dss_processes{where="host"}')  # no host data directory reported


def test_a_pods_activity_series_joins_like_a_host_one(stack):
    rows = _by(stack.query('dss_activity_rss_anon_bytes{kind="notebook_session"}'), "instance", "project", "activity")
    assert rows == {(stack.node_a, "CHURN", "Churn on Kubernetes"): 1800 * MI}
    orphans = _by(stack.query('dss_orphan_processes{where="pod"}'), "instance", "role")
    assert orphans == {(stack.node_a, "jupyter_kernel"): 1}  # node B lists no DSS: no orphan can be told


def test_series_per_node_stay_bounded(stack):
    for node in (stack.node_a, stack.node_b):
        (row,) = stack.query('count({instance="%s", __name__=~"dss_.*|process_tracker_.*"})' % node)
        assert 0 < float(row["value"][1]) <= 600


def test_prometheus_mode_history_shows_pod_memory_apart(stack):
    source = PrometheusHistory(stack.url)
    series = source.role_series("1h", node=stack.node_b)
    assert set(series.roles) == {"pod:jupyter_kernel"}
    assert max(series.roles["pod:jupyter_kernel"]["rss_anon_bytes"]) == pytest.approx(300 * MI)
    both = source.role_series("1h")
    assert max(both.roles["pod:jupyter_kernel"]["count"]) == pytest.approx(4)
    names = {t["name"] for t in history_view(source, "1h")["figures"]["memory_by_role"]["data"]}
    assert any(n.endswith("(pods)") for n in names), names
