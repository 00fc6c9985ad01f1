"""The pod source (process_tracker.pods) with the REAL kubernetes client over HTTP against dev/k8s_simulator."""
import json

import pytest
from kubernetes import client

from dev.k8s_simulator import Cluster, K8sSimulator, Rule, dss_pod, notebook_kernel_labels, spark_labels
from process_tracker import charts, history, host, pods
from process_tracker.errors import ConfigError

GI = 1024 ** 3
MI = 1024 ** 2
NOW = 1_800_000_000.0


@pytest.fixture
def k8s():
    sim = K8sSimulator()
    sim.start()
    yield sim
    sim.stop()


def _fleet(sim, now=NOW):
    """A few DSS pods of every kind, in two namespaces, plus a pod that is not DSS's."""
    sim.add(dss_pod("dataiku-exec-remote-notebook-ab12", project_key="CHURN", submitter="Alice", now=now,
                    requests={"memory": "1Gi", "cpu": "500m"}, limits={"memory": "2Gi", "cpu": "2"},
                    extra_labels=notebook_kernel_labels(), started_ago=7200), memory="700Mi", cpu="100m")
    sim.add(dss_pod("exec-recipe-1", execution_type="JOB_ACTIVITY", project_key="CHURN",
                    job_id="Build_scores_2026", node="node-2", now=now), memory="1Gi", cpu="1500m")
    sim.add(dss_pod("exec-spark-exec-1", execution_type="JOB_ACTIVITY", project_key="CHURN",
                    job_id="Build_scores_2026", extra_labels=spark_labels("executor"), node="node-2", now=now))
    sim.add(dss_pod("exec-webapp-1", execution_type="WEBAPP_BACKEND", project_key="SALES", webapp_id="Vx3d",
                    namespace="dss-apps", now=now))
    sim.add(dss_pod("exec-ml-1", execution_type="ANALYSIS_ML_TRAIN", project_key="FRAUD", mltask_id="mt1",
                    now=now))
    sim.add(dss_pod("api-deploy-1", execution_type="API_DEPLOYER_DEPLOYMENT", deployment_id="dep1",
                    install_id="other1", now=now))
    sim.add(dss_pod("pending-1", phase="Pending", project_key="CHURN", now=now), metrics=False)
    not_dss = dss_pod("nginx-1", now=now)
    not_dss["metadata"]["labels"] = {"app": "nginx"}
    sim.add(not_dss)


def _by_name(listing):
    return {p.pod_name: p for p in listing.pods}


def test_lists_dss_pods_as_process_like_records_with_roles_where_and_memory(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    got = _by_name(listing)
    assert "nginx-1" not in got  # no dku-install-id label: not DSS's
    assert set(got) == {"dataiku-exec-remote-notebook-ab12", "exec-recipe-1", "exec-spark-exec-1", "exec-webapp-1",
                        "exec-ml-1", "api-deploy-1", "pending-1"}
    kernel = got["dataiku-exec-remote-notebook-ab12"]
    assert isinstance(kernel, host.ProcessRecord)
    assert (kernel.role, kernel.label, kernel.explained_by) == ("jupyter_kernel", "notebook kernel pod",
                                                                "notebook_session")
    assert kernel.user == "alice" and kernel.labels["dku-project-key"] == "churn"  # DSS lower-cases label values
    assert (kernel.where, kernel.node, kernel.namespace, kernel.phase) == ("k8s/node-1", "node-1", "dss", "Running")
    assert kernel.created_at == NOW - 7200 and kernel.age_seconds == 7200
    assert kernel.rss_anon_bytes == kernel.rss_bytes == 700 * MI and kernel.cpu_percent == 10.0
    assert kernel.memory_source == pods.MEMORY_FROM_METRICS
    assert (kernel.memory_request_bytes, kernel.memory_limit_bytes) == (GI, 2 * GI)
    assert (kernel.cpu_request_cores, kernel.cpu_limit_cores) == (0.5, 2.0)
    assert got["exec-recipe-1"].explained_by == "job" and got["exec-recipe-1"].cpu_percent == 150.0
    assert (got["exec-recipe-1"].role, got["exec-recipe-1"].label) == ("container_recipe", "recipe pod")
    assert (got["exec-spark-exec-1"].role, got["exec-spark-exec-1"].label) == ("spark_executor", "Spark executor pod")
    assert (got["exec-webapp-1"].role, got["exec-webapp-1"].namespace) == ("webapp_backend", "dss-apps")
    assert got["exec-ml-1"].role == "ml_training"
    assert got["api-deploy-1"].role == "apinode" and got["api-deploy-1"].explained_by is None
    pending = got["pending-1"]
    assert pending.where == "k8s/unscheduled" and pending.rss_anon_bytes is None
    assert pending.memory_source == pods.MEMORY_FROM_SPEC
    assert listing.reachable and listing.errors == () and listing.memory_source == pods.MEMORY_FROM_METRICS


def test_a_pod_has_no_pid_a_synthetic_negative_one_that_no_process_or_group_can_have(k8s):
    for i in range(300):
        k8s.add(dss_pod("exec-p%03d" % i, execution_type="JOB_ACTIVITY", now=NOW), metrics=False)
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    pids = [p.pid for p in listing.pods]
    assert len(set(pids)) == 300
    assert all(pid < -pods.PID_MAX_LIMIT and pid > -(1 << 31) for pid in pids)
    assert all(p.ppid == p.pid for p in listing.pods)  # roots: no tree
    again = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    assert [p.pid for p in again.pods] == pids  # stable between listings (derived from the uid)


def test_pids_stay_unique_when_uids_collide():
    taken = set()
    first = pods._pod_pid("same-uid", taken)
    second = pods._pod_pid("same-uid", taken)
    assert first != second and second < -pods.PID_MAX_LIMIT


def test_pages_through_the_list_with_limit_and_continue(k8s):
    for i in range(7):
        k8s.add(dss_pod("exec-p%d" % i, execution_type="JOB_ACTIVITY", now=NOW))
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(namespaces=("dss",), page_size=3), now=NOW)
    assert len(listing.pods) == 7
    lists = [r for r in k8s.requests if r.path == "/api/v1/namespaces/dss/pods"]
    assert len(lists) == 3
    assert all("limit=3" in r.query for r in lists)
    assert ["continue=" in r.query for r in lists] == [False, True, True]


def test_an_expired_continue_token_restarts_the_list_once(k8s):
    for i in range(5):
        k8s.add(dss_pod("exec-p%d" % i, execution_type="JOB_ACTIVITY", now=NOW))
    original = k8s.cluster.list_pods
    calls = []

    def expiring(namespace, label_selector, field_selector, limit, continue_token):
        calls.append(continue_token)
        if continue_token and len(calls) == 2:
            from dev.k8s_simulator.cluster import SimError
            raise SimError(410, "Expired", "The provided continue parameter is too old")
        return original(namespace, label_selector, field_selector, limit, continue_token)

    k8s.cluster.list_pods = expiring
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(page_size=2), now=NOW)
    assert sorted(p.pod_name for p in listing.pods) == ["exec-p%d" % i for i in range(5)]
    assert calls[2] is None  # restarted from the beginning


def test_only_this_nodes_install_id_when_configured(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(install_id="OTHER1"), now=NOW)
    assert [p.pod_name for p in listing.pods] == ["api-deploy-1"]
    assert "labelSelector=dataiku.com/dku-install-id%3Dother1" in k8s.requests[0].query


def test_configured_namespaces_only(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(namespaces=["dss-apps"]), now=NOW)
    assert [p.pod_name for p in listing.pods] == ["exec-webapp-1"]
    assert {r.path for r in k8s.requests} == {"/api/v1/namespaces/dss-apps/pods",
                                              "/apis/metrics.k8s.io/v1beta1/namespaces/dss-apps/pods"}


def test_without_the_metrics_api_requests_and_limits_only_and_said_so(k8s):
    _fleet(k8s)
    k8s.cluster.metrics_mode = "absent"
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    kernel = _by_name(listing)["dataiku-exec-remote-notebook-ab12"]
    assert kernel.rss_anon_bytes is None and kernel.cpu_percent is None
    assert kernel.memory_request_bytes == GI and kernel.memory_source == pods.MEMORY_FROM_SPEC
    assert listing.memory_source == pods.MEMORY_FROM_SPEC and listing.errors == ()
    assert any("metrics API (metrics.k8s.io) is not served" in n for n in listing.notes)


def test_metrics_server_unavailable_is_a_note(k8s):
    _fleet(k8s)
    k8s.cluster.metrics_mode = "unavailable"
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    assert len(listing.pods) == 7 and listing.memory_source == pods.MEMORY_FROM_SPEC
    assert any("HTTP 503" in n for n in listing.notes)


def test_forbidden_metrics_is_a_note_naming_the_permission(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client("pods-only-token"), pods.PodSettings(namespaces=("dss",)), now=NOW)
    assert len(listing.pods) == 6 and listing.errors == ()
    (note,) = listing.notes
    assert 'not allowed to read pod metrics in namespace "dss"' in note and "pods.metrics.k8s.io" in note


def test_forbidden_namespace_is_an_error_row_and_the_others_still_list(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client("dss-ns-token"), pods.PodSettings(namespaces=("dss", "dss-apps")),
                             now=NOW)
    assert {p.namespace for p in listing.pods} == {"dss"}
    (err,) = listing.errors
    assert (err.namespace, err.what, err.status) == ("dss-apps", "pods", 403)
    assert 'not allowed to list pods in namespace "dss-apps"' in err.message and "docs/kubernetes.md" in err.message


def test_cluster_wide_list_needs_a_cluster_role(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client("dss-ns-token"), pods.PodSettings(), now=NOW)
    assert listing.pods == () and listing.errors[0].status == 403
    assert "cluster-wide" in listing.errors[0].message


def test_unknown_credentials_are_an_error_not_a_crash(k8s):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client("stolen-token"), pods.PodSettings(), now=NOW)
    assert listing.errors[0].status == 401 and "refused the credentials" in listing.errors[0].message


def test_unreachable_cluster_is_a_note_and_reachable_false(k8s):
    api = k8s.api_client()
    k8s.stop()
    listing = pods.list_pods(api, pods.PodSettings(namespaces=("dss", "other"), timeout_seconds=2), now=NOW)
    assert listing.reachable is False and listing.pods == ()
    (note,) = listing.notes
    assert note.startswith("the Kubernetes cluster did not answer")


def test_kubeconfig_path_and_context_name(k8s, tmp_path):
    _fleet(k8s)
    path = k8s.write_kubeconfig(str(tmp_path / "kubeconfig"), token="reader-token", context="dss-cluster")
    api = pods.make_api_client(pods.PodSettings(kubeconfig=path, context="dss-cluster"))
    assert len(pods.list_pods(api, pods.PodSettings(), now=NOW).pods) == 7
    with pytest.raises(pods.PodSourceError, match="cannot load the kubeconfig"):
        pods.make_api_client(pods.PodSettings(kubeconfig=path, context="no-such-context"))
    with pytest.raises(pods.PodSourceError, match="cannot load the kubeconfig"):
        pods.make_api_client(pods.PodSettings(kubeconfig=str(tmp_path / "missing")))


def test_in_cluster_config_outside_a_cluster_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(pods.PodSourceError, match="in-cluster configuration"):
        pods.make_api_client(pods.PodSettings(in_cluster=True))


@pytest.mark.parametrize("kwargs, param", [
    ({"namespaces": ["../etc"]}, "namespaces"),
    ({"namespaces": ["DSS"]}, "namespaces"),
    ({"namespaces": "dss"}, "namespaces"),
    ({"install_id": "a b"}, "install_id"),
    ({"context": "x\ny"}, "context"),
    ({"page_size": 0}, "page_size"),
    ({"timeout_seconds": True}, "timeout_seconds"),
    ({"in_cluster": True, "context": "a"}, "in_cluster"),
])
def test_bad_settings_name_the_parameter(kwargs, param):
    with pytest.raises(ConfigError) as e:
        pods.PodSettings(**kwargs)
    assert e.value.param == param


def test_settings_from_a_macro_or_webapp_config():
    s = pods.settings_from_config({"k8sNamespaces": "dss, dss-apps", "k8sContext": "prod", "k8sAllowDelete": False,
                                   "k8sInstallId": ""})
    assert (s.namespaces, s.context, s.install_id, s.allow_delete) == (("dss", "dss-apps"), "prod", None, False)
    with pytest.raises(ConfigError) as e:
        pods.settings_from_config({"k8sNamespaces": "Bad_NS"})
    assert e.value.param == "k8sNamespaces"


def test_odd_pods_are_skipped_or_read_defensively(k8s):
    weird = dss_pod("exec-weird", execution_type="SOMETHING_NEW", now=NOW,
                    requests={"memory": "lots"}, extra_labels={"dataiku.com/dku-project-key": "x" * 80})
    weird["status"]["startTime"] = "yesterday"
    k8s.add(weird)
    k8s.cluster.pods[("dss", "exec-weird")]["metadata"]["labels"]["dataiku.com/dku-project-key"] = "x" * 80
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    (p,) = listing.pods
    assert (p.role, p.label, p.explained_by) == ("dss_other", "DSS pod", None)
    assert "dku-project-key" not in p.labels  # not a valid label value: dropped, not passed on
    assert p.memory_request_bytes is None and p.created_at == NOW - 3600  # creationTimestamp instead


def test_records_go_through_the_existing_views(k8s, tmp_path):
    _fleet(k8s)
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    snap = host.Snapshot(NOW, "dss-host", (), {}, (), host.ScanStats(0.0, 0.0, 0, 0, 0, 0, 0))
    merged = pods.with_pods(snap, listing.pods)
    assert merged.roles["jupyter_kernel"].rss_anon_bytes == 700 * MI
    rows = {r["role"]: r for r in charts.role_rows(merged.processes)}
    assert rows["jupyter_kernel"]["count"] == 2  # the running kernel pod and the pending one
    fig = json.loads(json.dumps(charts.treemap(merged.processes)))
    assert any("notebook kernel pod" in label for label in fig["data"][0]["labels"])
    store = history.HistoryStore(str(tmp_path), clock=lambda: NOW)
    store.record(merged)
    latest = store.latest()
    assert len(latest.processes) == 7 and {p.pid for p in latest.processes} == {p.pid for p in listing.pods}
    as_json = pods.pod_to_json(listing.pods[0])
    assert as_json["where"].startswith("k8s/") and as_json["pid"] < 0 and "labels" in as_json


def test_a_listing_is_read_once_per_page_without_model_objects(k8s):
    """Listing uses `_preload_content=False` (raw JSON): a field the client's models do not know never fails."""
    pod = dss_pod("exec-future", execution_type="JOB_ACTIVITY", now=NOW)
    pod["spec"]["someFutureField"] = {"x": 1}
    pod["status"]["phase"] = "SomeNewPhase"
    k8s.add(pod)
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(), now=NOW)
    assert listing.pods[0].phase == "SomeNewPhase"


def test_custom_rbac_rule_per_namespace():
    cluster = Cluster()
    cluster.tokens["ml-token"] = (Rule(("list",), "pods", ("ml",)),)
    sim = K8sSimulator(cluster)
    sim.add(dss_pod("exec-a", namespace="ml", execution_type="ANALYSIS_ML_TRAIN", now=NOW))
    with sim.serve():
        api = sim.api_client("ml-token")
        listing = pods.list_pods(api, pods.PodSettings(namespaces=("ml",)), now=NOW)
        assert [p.pod_name for p in listing.pods] == ["exec-a"]
        with pytest.raises(client.ApiException) as e:
            client.CoreV1Api(api).read_namespaced_pod("exec-a", "ml")  # no "get": a Status object, 403
        assert e.value.status == 403 and json.loads(e.value.body)["kind"] == "Status"


def test_an_answer_that_is_not_a_pod_list_is_an_error_row(k8s):
    _fleet(k8s)
    k8s.cluster.malformed_lists = True
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(namespaces=("dss",)), now=NOW)
    assert listing.reachable and listing.pods == ()
    (err,) = listing.errors
    assert err.namespace == "dss" and "JSONDecodeError" in err.message


def test_a_hung_api_server_ends_with_the_timeout_as_unreachable(k8s):
    _fleet(k8s)
    k8s.cluster.latency_seconds = 3
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings(timeout_seconds=1), now=NOW)
    assert listing.reachable is False and "did not answer" in listing.notes[0]


def test_tokens_never_reach_notes_errors_or_records(k8s, tmp_path):
    secret = "eyJhbGciOiJSUzI1NiJ9.s3cr3t-token-value"
    k8s.cluster.tokens[secret] = (Rule(("list",), "pods", ("dss",)),)
    _fleet(k8s)
    path = k8s.write_kubeconfig(str(tmp_path / "kc"), token=secret)
    api = pods.make_api_client(pods.PodSettings(kubeconfig=path))
    outputs = []
    for settings in (pods.PodSettings(), pods.PodSettings(namespaces=("dss", "dss-apps"))):
        listing = pods.list_pods(api, settings, now=NOW)
        outputs.append(repr(listing))
        outputs.extend(json.dumps(pods.pod_to_json(p)) for p in listing.pods)
    k8s.stop()
    outputs.append(repr(pods.list_pods(api, pods.PodSettings(timeout_seconds=1), now=NOW)))
    assert all(secret not in text and "s3cr3t" not in text for text in outputs)
    assert any("forbidden" in text for text in outputs)


def test_the_pod_source_is_off_unless_enabled():
    assert pods.settings_if_enabled({"k8sNamespaces": "dss"}) is None
    assert pods.settings_if_enabled({"k8sEnabled": True, "k8sNamespaces": "dss"}).namespaces == ("dss",)


def test_install_id_from_the_data_directory(tmp_path):
    (tmp_path / "install.ini").write_text("[general]\nnodeid = dss-design\ninstallid = AbC123xyz\n")
    assert pods.install_id_from_dip_home(str(tmp_path)) == "abc123xyz"
    (tmp_path / "install.ini").write_text("[general]\ninstallid = not a label/value\n")
    assert pods.install_id_from_dip_home(str(tmp_path)) is None
    (tmp_path / "install.ini").write_text("garbage without a section")
    assert pods.install_id_from_dip_home(str(tmp_path)) is None
    assert pods.install_id_from_dip_home(str(tmp_path / "missing")) is None
    assert pods.install_id_from_dip_home(None) is None


def test_this_node_only_reads_the_install_id_from_the_data_directory(tmp_path):
    (tmp_path / "install.ini").write_text("[general]\ninstallid = node42\n")
    config = {"k8sEnabled": True, "k8sThisNodeOnly": True}
    assert pods.settings_if_enabled(config, dip_home=str(tmp_path)).install_id == "node42"
    assert pods.settings_if_enabled(dict(config, k8sInstallId="other"), dip_home=str(tmp_path)).install_id == "other"
    with pytest.raises(ConfigError) as e:
        pods.settings_if_enabled(config, dip_home=str(tmp_path / "elsewhere"))
    assert e.value.param == "k8sThisNodeOnly"
