"""The exporter with DSS's pods (`--k8s`, `--kubeconfig`, ...): pods counted in the per-role families with
where="pod", their activities joined like host ones, per-node series bounded, an unreachable cluster counted.
Real HTTP scrapes of a served exporter parsed by prometheus_client's parser, the real kubernetes client against the
simulated API server (dev/k8s_simulator), the real dataikuapi against the DSS simulator, and promtool."""
import subprocess

import pytest
from test_exporter import PROMTOOL, by, samples, scrape

from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import load_demo
from dev.k8s_simulator import DEMO_DSS_FRAGMENT, K8sSimulator, demo_pods, many_pods
from process_tracker import cli
from process_tracker.exporter import Exporter, ExporterOptions, ServeOptions, serve
from process_tracker.pods import PodSettings

MI = 1024 * 1024


@pytest.fixture()
def k8s():
    k = K8sSimulator()
    demo_pods(k)
    with k.serve():
        yield k


@pytest.fixture()
def dss():
    s = Simulator(load_demo())
    s.extend(DEMO_DSS_FRAGMENT)
    with s.serve():
        yield s


@pytest.fixture()
def served():
    servers = []

    def make(exporter):
        server = serve(exporter, ServeOptions(listen="127.0.0.1:0"))
        servers.append(server)
        return "http://127.0.0.1:%d" % server.server_port

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def _exporter(k8s, tmp_path, make_client=None, clock=None, **options):
    """An exporter reporting no host data directory (an empty one), so every dss_* series is a pod's."""
    opts = ExporterOptions(dss_datadirs=(str(tmp_path),), pods=PodSettings(), **options)
    kwargs = {"clock": clock} if clock else {}
    return Exporter(opts, make_client=make_client, pod_api_factory=k8s.api_client, **kwargs)


def test_pods_count_per_role_with_where_pod_and_per_node(k8s, tmp_path, served):
    exporter = _exporter(k8s, tmp_path)
    assert exporter.pods_once() is True
    text = scrape(served(exporter) + "/metrics")
    got = samples(text)
    counts = by(got, "dss_processes", "role", "where")
    assert counts == {("jupyter_kernel", "pod"): 2, ("container_recipe", "pod"): 1, ("spark_executor", "pod"): 2,
                      ("ml_training", "pod"): 1, ("apinode", "pod"): 1}
    memory = by(got, "dss_process_rss_anon_bytes", "role", "where")
    assert memory[("jupyter_kernel", "pod")] == (1800 + 3100) * MI  # the metrics API's working sets
    assert memory[("spark_executor", "pod")] == 2 * 2600 * MI
    assert by(got, "dss_processes", "dss_datadir")[("",)] >= 1  # a pod has no DSS data directory
    assert by(got, "dss_node_pods", "node") == {("k8s-node-a",): 2, ("k8s-node-b",): 5}
    assert by(got, "dss_node_pod_rss_anon_bytes", "node")[("k8s-node-a",)] == (1800 + 6 * 1024) * MI
    assert by(got, "process_tracker_exporter_pods_reachable")[()] == 1
    assert by(got, "process_tracker_exporter_pod_listings_total")[()] == 1
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_pod_activities_and_orphans_join_like_host_ones(k8s, dss, tmp_path, served):
    client = dss.client()
    exporter = _exporter(k8s, tmp_path, make_client=lambda: client)
    assert exporter.list_once() is True
    exporter.pods_once()
    got = samples(scrape(served(exporter) + "/metrics"))
    activity = by(got, "dss_activity_rss_anon_bytes", "project", "kind", "activity", "user")
    assert activity[("CHURN", "notebook_session", "Churn on Kubernetes", "alice")] == 1800 * MI
    jobs = [v for k, v in activity.items() if k[0] == "SALES" and k[1] == "job"]
    assert jobs == [3 * 2600 * MI]  # the recipe pod and its two Spark executors
    orphans = by(got, "dss_orphan_processes", "role", "where")
    assert orphans == {("jupyter_kernel", "pod"): 1}  # MARKETING's kernel pod: DSS lists no session for it
    assert by(got, "dss_orphan_rss_anon_bytes", "role", "where")[("jupyter_kernel", "pod")] == 3100 * MI


def test_pod_cpu_is_counted_between_listings(k8s, tmp_path, served):
    now = [1000.0]
    exporter = _exporter(k8s, tmp_path, clock=lambda: now[0])
    exporter.pods_once()
    now[0] += 30.0
    exporter.pods_once()
    got = samples(scrape(served(exporter) + "/metrics"))
    cpu = by(got, "dss_process_cpu_seconds_total", "role", "where")
    assert cpu[("jupyter_kernel", "pod")] == pytest.approx(30 * 0.020)  # 20m and 0 cores over 30 s
    assert cpu[("spark_executor", "pod")] == pytest.approx(30 * 2 * 1.8)


def test_per_node_series_are_bounded_the_rest_is_other(k8s, tmp_path, served):
    exporter = _exporter(k8s, tmp_path, max_pod_nodes=1)
    exporter.pods_once()
    got = samples(scrape(served(exporter) + "/metrics"))
    assert by(got, "dss_node_pods", "node") == {("k8s-node-b",): 5, ("other",): 2}


def test_an_unreachable_cluster_is_counted_and_the_last_pods_are_kept(k8s, tmp_path, served):
    exporter = _exporter(k8s, tmp_path)
    assert exporter.pods_once() is True
    k8s.stop()
    assert exporter.pods_once() is False
    got = samples(scrape(served(exporter) + "/metrics"))
    assert by(got, "process_tracker_exporter_pods_reachable")[()] == 0
    assert by(got, "process_tracker_exporter_pod_listing_errors_total")[()] == 1
    assert by(got, "dss_processes", "role", "where")[("jupyter_kernel", "pod")] == 2


def test_a_refusal_is_counted(k8s, tmp_path, served):
    opts = ExporterOptions(dss_datadirs=(str(tmp_path),), pods=PodSettings(namespaces=("dss",)))
    exporter = Exporter(opts, pod_api_factory=lambda: k8s.api_client("nothing-token"))
    assert exporter.pods_once() is False
    got = samples(scrape(served(exporter) + "/metrics"))
    assert by(got, "process_tracker_exporter_pod_listing_errors_total")[()] == 1
    assert by(got, "process_tracker_exporter_pods_reachable")[()] == 1  # it answered: a refusal
    assert "dss_processes" not in got or not by(got, "dss_processes", "where")


def test_without_pod_options_no_pod_series_and_no_cluster_call(k8s, tmp_path, served):
    exporter = Exporter(ExporterOptions(dss_datadirs=(str(tmp_path),)))
    assert exporter.pods_once() is False and not exporter.lists_pods
    got = samples(scrape(served(exporter) + "/metrics"))
    assert "process_tracker_exporter_pods_reachable" not in got and not k8s.requests


@pytest.mark.parametrize("argv, option", [
    (["--k8s", "--k8s-namespaces", "Bad_Namespace"], "--k8s-namespaces"),
    (["--k8s-context", "bad context"], "--k8s-context"),
    (["--k8s-in-cluster", "--kubeconfig", "/tmp/kc"], "--k8s-in-cluster"),
    (["--k8s", "--max-pod-nodes", "-1"], "--max-pod-nodes"),
    (["--k8s", "--pod-interval", "0"], "--pod-interval"),
])
def test_bad_pod_options_end_with_one_line_naming_the_option(argv, option, capsys):
    assert cli.main(["exporter", "--no-dss"] + argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("process-tracker: error: %s" % option) and err.count("\n") == 1, err


def test_two_thousand_pods_on_three_hundred_nodes_stay_under_600_series_by_default(tmp_path):
    k = K8sSimulator()
    many_pods(k, 2000, nodes=300)
    with k.serve():
        exporter = Exporter(ExporterOptions(dss_datadirs=(str(tmp_path),), pods=PodSettings()),
                            pod_api_factory=k.api_client)
        assert exporter.pods_once() is True
    assert exporter.series_count() <= 600
    pods = sum(v for (_role, where), v in by(_families(exporter), "dss_processes", "role", "where").items()
               if where == "pod")
    assert pods == 2000


def _families(exporter):
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    return samples(generate_latest(registry).decode())
