"""The webapp with DSS's pods (k8sEnabled): pods beside host processes in /api/table with a "where", the treemap
grouped by node, a pod's kernel unloaded through DSS from the table's action, and the cluster's problems as
a "pods" block (banner), never an error. Real dataikuapi and kubernetes clients over HTTP against both simulators."""
import pytest

from dev.dss_simulator import Simulator
from dev.k8s_simulator import DEMO_DSS_FRAGMENT, K8sSimulator, demo_pods
from test_webapp_backend import CSRF, Backend, as_user, dss_instance


@pytest.fixture()
def sim():
    s = Simulator(dss_instance(), fleet_pids={"kernel-1": 110, "kernel-2": 111})
    s.extend(dict(DEMO_DSS_FRAGMENT, projects=[dict(DEMO_DSS_FRAGMENT["projects"][0], projectKey="CHURN",
                                                    name="Churn", owner="admin")]))
    s.set_abort_delay(0)
    with s.serve():
        yield s


@pytest.fixture()
def k8s():
    k = K8sSimulator()
    demo_pods(k)
    with k.serve():
        yield k


def _backend(sim, k8s, tmp_path, monkeypatch, **extra):
    kubeconfig = k8s.write_kubeconfig(str(tmp_path / "kubeconfig"), token="reader-token")
    config = dict({"k8sEnabled": True, "k8sKubeconfig": kubeconfig}, **extra)
    return Backend(sim, tmp_path, monkeypatch, config=config)


def test_pods_beside_host_processes_with_where(sim, k8s, tmp_path, monkeypatch):
    b = _backend(sim, k8s, tmp_path, monkeypatch)
    try:
        table = b.client.get("/api/table", headers=as_user("admin")).get_json()
    finally:
        b.close()
    pods = {r["pod"]: r for r in table["rows"] + table["orphans"] if r.get("pod")}
    hosts = [r for r in table["rows"] if not r.get("pod")]
    assert hosts and all(r["where"] and not r["where"].startswith("k8s/") for r in hosts)
    kernel = pods["dataiku-exec-remote-notebook-c7f2a1b9"]
    assert kernel["where"] == "k8s/k8s-node-a" and kernel["activity_kind"] == "notebook_session"
    assert kernel["activity_id"] == "k8s-churn-session-1" and kernel["actionable"] is True
    orphan = pods["dataiku-exec-remote-notebook-9d1e"]
    assert orphan in table["orphans"] and "DSS lists no notebook session" in orphan["reason"]
    assert table["pods"]["reachable"] is True and table["pods"]["count"] == 7
    assert "k8s-churn-session-1" not in {r["activity_id"] for r in table["activities_without_process"]}


def test_the_treemap_groups_pods_by_node(sim, k8s, tmp_path, monkeypatch):
    b = _backend(sim, k8s, tmp_path, monkeypatch)
    try:
        snap = b.client.get("/api/snapshot", headers=as_user("admin")).get_json()
    finally:
        b.close()
    trace = snap["figures"]["treemap"]["data"][0]
    tops = {label for label, parent in zip(trace["labels"], trace["parents"]) if parent == ""}
    assert {"k8s/k8s-node-a", "k8s/k8s-node-b"} <= tops


def test_a_pods_kernel_is_unloaded_through_dss_from_the_table(sim, k8s, tmp_path, monkeypatch):
    b = _backend(sim, k8s, tmp_path, monkeypatch)
    try:
        payload = {"kind": "notebook_session", "project_key": "CHURN", "id": "k8s-churn-session-1"}
        preview = b.client.post("/api/actions/preview", json=payload, headers=dict(as_user("admin"), **CSRF))
        assert preview.status_code == 200 and preview.get_json()["outcome"] == "would_act"
        applied = b.client.post("/api/actions/apply", json=dict(payload, confirm=True),
                                headers=dict(as_user("admin"), **CSRF))
        assert applied.status_code == 200, applied.get_data(as_text=True)
        assert applied.get_json()["outcome"] in ("aborted", "abort_requested")
    finally:
        b.close()
    assert "k8s-churn-session-1" not in sim.session_ids()
    assert not [r for r in k8s.requests if r.method == "DELETE"]  # the pod is DSS's to remove


def test_an_unreachable_cluster_is_a_block_not_an_error(sim, k8s, tmp_path, monkeypatch):
    b = _backend(sim, k8s, tmp_path, monkeypatch, k8sTimeoutSeconds=1)
    k8s.stop()
    try:
        response = b.client.get("/api/table", headers=as_user("admin"))
    finally:
        b.close()
    assert response.status_code == 200
    table = response.get_json()
    assert table["pods"]["reachable"] is False and "did not answer" in table["pods"]["notes"][0]
    assert table["rows"]  # the host's rows are still there


def test_forbidden_is_a_clear_note(sim, k8s, tmp_path, monkeypatch):
    kubeconfig = k8s.write_kubeconfig(str(tmp_path / "kc"), token="nothing-token")
    b = Backend(sim, tmp_path, monkeypatch, config={"k8sEnabled": True, "k8sKubeconfig": kubeconfig,
                                                    "k8sNamespaces": "dss"})
    try:
        table = b.client.get("/api/table", headers=as_user("admin")).get_json()
    finally:
        b.close()
    assert 'not allowed to list pods in namespace "dss"' in table["pods"]["errors"][0]


def test_off_by_default(sim, tmp_path, monkeypatch):
    b = Backend(sim, tmp_path, monkeypatch)
    try:
        table = b.client.get("/api/table", headers=as_user("admin")).get_json()
    finally:
        b.close()
    assert table["pods"] is None and not any(r.get("pod") for r in table["rows"])
