"""The macros with DSS's pods (the k8s* parameters): the inventory lists pods beside host processes with a "where"
column, the kernel macro kills a pod's kernel through DSS (never deleting the pod), and an unreachable cluster or a
refusal is a note or a row while the rest of the run goes on. The macros run as DSS runs them (dev.dss_runtime),
with the real dataikuapi and kubernetes clients over HTTP against both simulators."""
import os
import socket

import pytest

from dev.dss_runtime import MacroFailed, run_macro
from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import load_demo
from dev.k8s_simulator import DEMO_DSS_FRAGMENT, K8sSimulator, demo_pods

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")


@pytest.fixture()
def dss():
    s = Simulator(dict(load_demo(), abortDelay=0))
    s.extend(DEMO_DSS_FRAGMENT)
    with s.serve():
        yield s


@pytest.fixture()
def k8s():
    k = K8sSimulator()
    demo_pods(k)
    with k.serve():
        yield k


def _run(dss, macro_id, config):
    env = {"DKU_DSS_URL": dss.url, "DKU_API_KEY": dss.admin_key}
    result = run_macro(os.path.join(RUNNABLES, macro_id), dict({"scanHost": False}, **config), project_key="CHURN",
                       env=env)
    return result.table


def _rows(table):
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, r)) for r in table["records"]]


def _k8s(k8s, tmp_path, token="reader-token", **extra):
    return dict({"k8sEnabled": True, "k8sKubeconfig": k8s.write_kubeconfig(str(tmp_path / "kc"), token=token)},
                **extra)


def test_the_inventory_lists_pods_beside_activities_with_where(dss, k8s, tmp_path):
    table = _run(dss, "running-activities", _k8s(k8s, tmp_path))
    rows = _rows(table)
    kernel = next(r for r in rows if r["id"] == "k8s-churn-session-1")
    assert kernel["where"] == "pod dss/dataiku-exec-remote-notebook-c7f2a1b9 on k8s-node-a"
    assert kernel["memory"] == "1.8 GiB" and kernel["role"] == "jupyter_kernel"
    job = next(r for r in rows if r["kind"] == "job" and r["project"] == "SALES")
    assert job["where"].startswith("3 pods, e.g. pod dss/exec-") and job["memory"] == "7.6 GiB"
    orphan = next(r for r in rows if r["id"] == "dss/dataiku-exec-remote-notebook-9d1e")
    assert orphan["kind"] == "orphan" and "DSS lists no notebook session" in orphan["note"]
    assert orphan["where"] == "pod dss/dataiku-exec-remote-notebook-9d1e on k8s-node-b"
    api = next(r for r in rows if r["id"] == "dss/apideploy-churn-scoring")
    assert api["kind"] == "pod" and "lists no activity" in api["note"]
    # an activity no pod runs and the host was not scanned for: no where, no memory
    other = next(r for r in rows if r["kind"] == "notebook_session" and r["id"] != "k8s-churn-session-1")
    assert other["where"] == "" and other["memory"] == ""


def test_host_processes_get_the_host_name_as_where(dss, k8s, tmp_path, fleet):
    dss.stop()
    sim = Simulator(dict(load_demo(), abortDelay=0), fleet_pids=fleet.pids)
    sim.extend(DEMO_DSS_FRAGMENT)
    with sim.serve():
        env = {"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key, "DIP_HOME": fleet.dip_home}
        result = run_macro(os.path.join(RUNNABLES, "running-activities"), dict(_k8s(k8s, tmp_path), scanHost=True),
                           project_key="CHURN", env=env)
    rows = result.rows()
    on_host = [r for r in rows if r["pid"] and r["kind"] not in ("orphan", "pod")]
    assert on_host and all(r["where"] == socket.gethostname() for r in on_host)
    assert any(r["where"].startswith("pod dss/") for r in rows)


def test_the_kernel_macro_unloads_a_pods_kernel_through_dss_and_never_deletes_the_pod(dss, k8s, tmp_path):
    config = _k8s(k8s, tmp_path, maxIdleTimeHours=1, maxSessionAgeHours=0, projects=["CHURN"], simulate=False,
                  waitSeconds=2)
    table = _run(dss, "kill-idle-kernels", config)
    row = next(r for r in _rows(table) if r["id"] == "k8s-churn-session-1")
    assert row["outcome"] in ("aborted", "abort_requested")
    assert row["where"] == "pod dss/dataiku-exec-remote-notebook-c7f2a1b9 on k8s-node-a" and row["memory"] == "1.8 GiB"
    assert "k8s-churn-session-1" not in dss.session_ids()
    assert not [r for r in k8s.requests if r.method == "DELETE"]


def test_the_largest_first_rule_counts_a_pods_memory(dss, k8s, tmp_path):
    config = _k8s(k8s, tmp_path, maxIdleTimeHours=1, maxSessionAgeHours=0, freeMemoryGB=1.0, scanHost=True)
    table = _run(dss, "kill-idle-kernels", config)
    acted = [r for r in _rows(table) if r["outcome"] == "would_act"]
    assert [r["id"] for r in acted] == ["k8s-churn-session-1"]


def test_an_unreachable_cluster_is_a_note_and_the_run_goes_on(dss, k8s, tmp_path):
    config = _k8s(k8s, tmp_path)
    k8s.stop()
    table = _run(dss, "running-activities", config)
    rows = _rows(table)
    assert any(r["kind"] == "notebook_session" for r in rows)
    assert "Kubernetes: the Kubernetes cluster did not answer" in table["header"]


def test_missing_rbac_is_a_clear_row(dss, k8s, tmp_path):
    table = _run(dss, "running-activities", _k8s(k8s, tmp_path, token="nothing-token", k8sNamespaces="dss"))
    warnings = [r for r in _rows(table) if r["kind"] == "warning"]
    assert any('not allowed to list pods in namespace "dss"' in r["note"] for r in warnings)
    assert any(r["kind"] == "job" for r in _rows(table))


def test_a_bad_namespace_fails_before_anything_naming_the_parameter(dss, tmp_path):
    with pytest.raises(MacroFailed) as failed:
        _run(dss, "running-activities", {"k8sEnabled": True, "k8sNamespaces": "Not_A_Namespace"})
    assert "k8sNamespaces" in str(failed.value) and "DNS-1123" in str(failed.value)


def test_off_by_default_no_pod_and_no_cluster_call(dss, k8s):
    rows = _rows(_run(dss, "running-activities", {}))
    assert not any(r["kind"] == "pod" or r["where"].startswith("pod ") for r in rows)
    assert not k8s.requests


def test_the_job_macro_shows_a_jobs_pods_and_aborts_through_dss_only(dss, k8s, tmp_path):
    config = _k8s(k8s, tmp_path, minRunningHours=0, projects=["SALES"], simulate=False, waitSeconds=2)
    rows = _rows(_run(dss, "abort-long-jobs", config))
    job = next(r for r in rows if r["id"] == "Build_sales_monthly_2026-11-25T08-02-51.663")
    assert job["outcome"] in ("aborted", "abort_requested") and job["where"].startswith("3 pods, e.g. pod dss/exec-")
    assert job["memory"] == "7.6 GiB"
    assert not [r for r in k8s.requests if r.method == "DELETE"]


@pytest.mark.parametrize("install_id, pods_shown", [("a1b2c3d4e5", True), ("0ther1d", False)])
def test_this_node_only_reads_the_install_id_from_dip_home(dss, k8s, tmp_path, install_id, pods_shown):
    dip_home = tmp_path / "dss_data"
    dip_home.mkdir()
    (dip_home / "install.ini").write_text("[general]\ninstallid = %s\n" % install_id)
    env = {"DKU_DSS_URL": dss.url, "DKU_API_KEY": dss.admin_key, "DIP_HOME": str(dip_home)}
    config = _k8s(k8s, tmp_path, scanHost=False, k8sThisNodeOnly=True)
    rows = run_macro(os.path.join(RUNNABLES, "running-activities"), config, project_key="CHURN", env=env).rows()
    assert any(r["where"].startswith("pod ") for r in rows) is pods_shown
    assert all("dku-install-id%3D" + install_id in r.query for r in k8s.requests if r.path.endswith("/pods"))


def test_this_node_only_without_an_install_id_fails_naming_the_parameter(dss, k8s, tmp_path):
    env = {"DKU_DSS_URL": dss.url, "DKU_API_KEY": dss.admin_key, "DIP_HOME": str(tmp_path)}
    with pytest.raises(MacroFailed) as failed:
        run_macro(os.path.join(RUNNABLES, "running-activities"), _k8s(k8s, tmp_path, k8sThisNodeOnly=True),
                  project_key="CHURN", env=env)
    message = str(failed.value)
    assert message.startswith("k8sThisNodeOnly: cannot read this DSS node's install id (installid in install.ini")
    assert str(tmp_path) in message and "turn this setting off" in message
