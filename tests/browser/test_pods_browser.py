"""DSS's pods in the monitoring webapp, in real headless Chromium, against the demo with its simulated cluster
(`python -m dev.demo --k8s`): pods beside host processes with a "Where" column, the treemap grouped by node, an
orphan pod with its reason, and a pod's kernel unloaded through DSS (dry run, confirm, gone; the pod itself is
never deleted by the webapp)."""
import dataikuapi
import pytest
from demo_process import running_demo
from webapp_browser import Page

from dev.k8s_simulator.scenes import KERNEL_POD_KERNEL_ID

pytestmark = [pytest.mark.browser, pytest.mark.slow]
KERNEL_POD = "dataiku-exec-remote-notebook-c7f2a1b9"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_demo(tmp_path_factory.mktemp("demo"), "--k8s", "--sampling", "2", "--memory-mib", "600") as process:
        yield process


@pytest.fixture
def page(browser, demo):
    p = Page(browser, demo, "admin")
    yield p
    p.close()


def test_pods_beside_host_processes_with_where_and_the_treemap_by_node(page):
    p = page
    p.chart("pt-chart-treemap")
    tops = p.page.evaluate("""() => { const t = document.getElementById('pt-chart-treemap').data[0];
        return t.labels.filter((l, i) => t.parents[i] === ''); }""")
    assert {"k8s/k8s-node-a", "k8s/k8s-node-b"} <= set(tops)
    p.tab("processes")
    p.page.wait_for_selector("th[data-key=where]")
    rows = p.rows()
    pods = [r for r in rows if (r.get("where") or "").startswith("k8s/")]
    hosts = [r for r in rows if r.get("where") and not r["where"].startswith("k8s/")]
    assert pods and hosts
    kernel = next(r for r in pods if KERNEL_POD in r["text"])
    assert kernel["kind"] == "notebook_session" and kernel["where"] == "k8s/k8s-node-a" and kernel["enabled"]
    p.tab("orphans")
    orphans = p.rows("#pt-orphans")
    orphan = next(r for r in orphans if "dataiku-exec-remote-notebook-9d1e" in r["text"])
    assert "DSS lists no notebook session of project marketing by alice" in orphan["text"]
    p.shot("pods.png")
    assert p.errors == []


def test_a_pods_kernel_is_unloaded_through_dss(page, demo):
    p = page
    p.tab("processes")
    row = '#pt-table tr[data-id="k8s-churn-session-1"]'
    p.page.wait_for_selector(row)
    client = dataikuapi.DSSClient(demo.status["dss_url"], demo.status["admin_key"])

    def kernel_ids():
        nb = client.get_project("CHURN").get_jupyter_notebook("Churn on Kubernetes")
        return [s.kernel_id for s in nb.get_sessions(as_objects=True)]

    assert KERNEL_POD_KERNEL_ID in kernel_ids()
    p.page.click(row + " button")
    p.page.wait_for_selector("#pt-dialog[data-phase=confirm]")
    assert "dry run" in p.page.inner_text("#pt-dialog")
    assert KERNEL_POD_KERNEL_ID in kernel_ids(), "a dry run must not touch DSS"
    p.page.click("#pt-dialog-confirm")
    p.page.wait_for_selector("#pt-dialog[data-phase=done]", timeout=60000)
    assert p.page.get_attribute("#pt-dialog", "data-outcome") in ("aborted", "abort_requested")
    assert KERNEL_POD_KERNEL_ID not in kernel_ids()
    assert p.errors == []
