"""pod_views: the pod source shared for a few seconds and never raising for the cluster; table rows in the
webapp's row shape (webapp.process_row), with `where` and the pod's status and reason."""
from dev.k8s_simulator import DEMO_DSS_FRAGMENT, K8sSimulator, demo_pods, dss_pod
from dev.k8s_simulator.scenes import SALES_JOB_ID
from process_tracker import activities, pod_views, pods, webapp


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_one_listing_shared_for_ttl_seconds():
    k8s = K8sSimulator()
    k8s.add(dss_pod("exec-a", execution_type="JOB_ACTIVITY"))
    clock = Clock()
    with k8s.serve():
        source = pod_views.PodSource(pods.PodSettings(), ttl_seconds=10, clock=clock,
                                     api_client_factory=lambda: k8s.api_client())
        first = source.listing()
        assert source.listing() is first
        clock.t = 11
        assert source.listing() is not first
        assert len([r for r in k8s.requests if r.path == "/api/v1/pods"]) == 2


def test_a_broken_configuration_is_a_banner_not_an_exception(tmp_path):
    source = pod_views.PodSource(pods.PodSettings(kubeconfig=str(tmp_path / "missing")))
    listing = source.listing()
    assert listing.reachable is False and "cannot load the kubeconfig" in listing.notes[0]


def test_table_rows_in_the_webapps_shape(simulator, demo_instance):
    dss = simulator(demo_instance)
    dss.extend(DEMO_DSS_FRAGMENT)
    k8s = K8sSimulator()
    demo_pods(k8s)
    with k8s.serve():
        listing = pods.list_pods(k8s.api_client(), pods.PodSettings())
    inventory = activities.list_activities(dss.client())
    table = pod_views.table_rows(listing, inventory, inventory.taken_at, webapp.process_row)
    by_pod = {r["pod"]: r for r in table["rows"] + table["orphans"]}
    kernel = by_pod["dataiku-exec-remote-notebook-c7f2a1b9"]
    assert kernel["where"] == "k8s/k8s-node-a" and kernel["status"] == "joined" and kernel["via"] == "pod_kernel_id"
    assert kernel["activity_kind"] == "notebook_session" and kernel["actionable"] is True
    assert kernel["role_display"] == "Jupyter kernels" and kernel["pid"] < 0
    orphan = by_pod["dataiku-exec-remote-notebook-9d1e"]
    assert orphan in table["orphans"] and "marketing by alice" in orphan["reason"]
    assert ("notebook_session", "k8s-churn-session-1") in table["explained"]
    recipe = by_pod["exec-recipe-sales-1"]
    assert (recipe["activity_kind"], recipe["activity_id"]) == ("job", SALES_JOB_ID)
    assert by_pod["exec-ml-fraud-1"]["status"] == "unjoined"
    assert table["reachable"] is True and table["memory_source"] == pods.MEMORY_FROM_METRICS
