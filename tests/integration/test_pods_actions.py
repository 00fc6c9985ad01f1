"""Acting on pods: through DSS (real dataikuapi against dev/dss_simulator), never by deleting the pod; deleting
an orphan pod only with the opt-in, as an admin, after a dry run (real kubernetes client against dev/k8s_simulator)."""
import pytest

from dev.dss_simulator.builders import instance, job, notebook, project, session
from dev.k8s_simulator import K8sSimulator, dss_pod
from process_tracker import activities, pod_actions, pod_joins, pods
from process_tracker.errors import ConfigError

OPT_IN = pods.PodSettings(allow_delete=True)


@pytest.fixture
def both(simulator):
    dss = simulator(instance(projects=[project(
        "CHURN",
        notebooks=[notebook("explore", [session("alice", session_id="s-alice-1", kernel_id="k-alice-1")])],
        jobs=[job("Build_scores_1", "alice")])]))
    dss.set_abort_delay(0)  # stops end at once: the outcome is confirmed within the wait
    k8s = K8sSimulator()
    k8s.add(dss_pod("dataiku-exec-remote-notebook-q7w8", project_key="CHURN", submitter="alice"))
    k8s.add(dss_pod("exec-recipe-1", execution_type="JOB_ACTIVITY", project_key="CHURN", job_id="build_scores_1"))
    k8s.add(dss_pod("dataiku-exec-remote-notebook-gone", project_key="CHURN", submitter="dave"))
    k8s.start()
    yield dss, k8s
    k8s.stop()


def _joined(dss, k8s, token="reader-token"):
    inventory = activities.list_activities(dss.client())
    listing = pods.list_pods(k8s.api_client(token), pods.PodSettings())
    return {m.process.pod_name: m for m in pod_joins.join_pods(listing.pods, inventory).rows}


def _deletes(k8s):
    return [r for r in k8s.requests if r.method == "DELETE"]


def test_stopping_a_kernel_pod_unloads_its_session_through_dss_and_deletes_no_pod(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-q7w8"]

    dry = pod_actions.stop_pod_activity(dss.client(), match)
    assert dry.outcome == "would_act" and "runs in pod dss/dataiku-exec-remote-notebook-q7w8" in dry.reason
    assert dss.actions == [] and "s-alice-1" in dss.session_ids()

    done = pod_actions.stop_pod_activity(dss.client(), match, apply=True, wait_seconds=5, poll_seconds=0.05)
    assert done.outcome in ("aborted", "abort_requested")
    assert [a.method for a in dss.actions] == ["DELETE"] and "s-alice-1" in dss.actions[0].path
    assert _deletes(k8s) == [] and ("dss", "dataiku-exec-remote-notebook-q7w8") in k8s.cluster.pods


def test_stopping_a_recipe_pod_aborts_its_job_through_dss(both):
    dss, k8s = both
    match = _joined(dss, k8s)["exec-recipe-1"]
    done = pod_actions.stop_pod_activity(dss.client(), match, apply=True, wait_seconds=5, poll_seconds=0.05)
    assert done.outcome in ("aborted", "abort_requested")
    assert dss.abort_requested("job", "Build_scores_1")
    assert _deletes(k8s) == []


def test_an_orphan_has_nothing_to_stop_through_dss(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    with pytest.raises(ConfigError, match="runs no activity DSS lists"):
        pod_actions.stop_pod_activity(dss.client(), match, apply=True)
    assert dss.actions == []


def test_deleting_is_off_by_default(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    got = pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), pods.PodSettings(), match, apply=True,
                                        is_admin=True)
    assert got.outcome == "refused" and "turned off" in got.message
    assert _deletes(k8s) == []


def test_deleting_needs_an_admin_and_an_orphan(both):
    dss, k8s = both
    rows = _joined(dss, k8s)
    api = k8s.api_client("admin-token")
    not_admin = pod_actions.delete_orphan_pod(api, OPT_IN, rows["dataiku-exec-remote-notebook-gone"], apply=True)
    assert not_admin.outcome == "refused" and "administrator" in not_admin.message
    joined = pod_actions.delete_orphan_pod(api, OPT_IN, rows["exec-recipe-1"], apply=True, is_admin=True)
    assert joined.outcome == "refused" and "stop its activity through DSS" in joined.message
    assert _deletes(k8s) == []


def test_dry_run_first_then_delete_with_a_uid_precondition(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    api = k8s.api_client("admin-token")
    dry = pod_actions.delete_orphan_pod(api, OPT_IN, match, is_admin=True)
    assert dry.outcome == "would_delete" and "DSS lists no notebook session" in dry.message
    assert _deletes(k8s) == []

    done = pod_actions.delete_orphan_pod(api, OPT_IN, match, apply=True, is_admin=True, actor="admin")
    assert done.outcome == "deleted"
    assert k8s.cluster.deleted == [("dss", "dataiku-exec-remote-notebook-gone")]
    assert [r.path for r in _deletes(k8s)] == ["/api/v1/namespaces/dss/pods/dataiku-exec-remote-notebook-gone"]

    again = pod_actions.delete_orphan_pod(api, OPT_IN, match, apply=True, is_admin=True)
    assert again.outcome == "already_gone" and len(_deletes(k8s)) == 1


def test_a_new_pod_under_the_same_name_is_never_deleted(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    k8s.remove("dss", "dataiku-exec-remote-notebook-gone")
    k8s.add(dss_pod("dataiku-exec-remote-notebook-gone", project_key="CHURN", submitter="dave"))
    got = pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), OPT_IN, match, apply=True, is_admin=True)
    assert got.outcome == "refused" and "a new pod took the name" in got.message
    assert _deletes(k8s) == [] and ("dss", "dataiku-exec-remote-notebook-gone") in k8s.cluster.pods


def test_the_uid_precondition_holds_even_between_the_reread_and_the_delete(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]

    def replaced_meanwhile(_pod):
        k8s.remove("dss", "dataiku-exec-remote-notebook-gone")
        k8s.add(dss_pod("dataiku-exec-remote-notebook-gone", project_key="CHURN", submitter="dave"))
        return True, "still an orphan"

    got = pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), OPT_IN, match, apply=True, is_admin=True,
                                        recheck=replaced_meanwhile)
    assert got.outcome == "refused" and "uid precondition failed" in got.message
    assert ("dss", "dataiku-exec-remote-notebook-gone") in k8s.cluster.pods


def test_a_recheck_can_spare_the_pod(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    got = pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), OPT_IN, match, apply=True, is_admin=True,
                                        recheck=lambda p: (False, "DSS lists it again"))
    assert got.outcome == "refused" and "DSS lists it again" in got.message and _deletes(k8s) == []


def test_without_the_delete_permission_a_clear_failure(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    got = pod_actions.delete_orphan_pod(k8s.api_client("reader-token"), OPT_IN, match, apply=True, is_admin=True)
    assert got.outcome == "failed" and "not allowed to delete pods in namespace dss" in got.message
    assert "RBAC" in got.message and ("dss", "dataiku-exec-remote-notebook-gone") in k8s.cluster.pods


@pytest.mark.parametrize("namespace, name, param", [
    ("../kube-system", "x", "namespace"),
    ("Kube_System", "x", "namespace"),
    ("dss", "a/../../b", "pod"),
    ("dss", "UPPER", "pod"),
    ("dss", "x" * 254, "pod"),
])
def test_names_are_checked_before_any_call(both, namespace, name, param):
    dss, k8s = both
    from dataclasses import replace

    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    forged = replace(match, process=replace(match.process, namespace=namespace, pod_name=name))
    before = len(k8s.requests)
    with pytest.raises(ConfigError) as e:
        pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), OPT_IN, forged, apply=True, is_admin=True)
    assert e.value.param == param and len(k8s.requests) == before


def test_a_namespace_outside_the_configured_ones_is_refused(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    settings = pods.PodSettings(allow_delete=True, namespaces=("dss-apps",))
    got = pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), settings, match, apply=True, is_admin=True)
    assert got.outcome == "refused" and "not one of the configured namespaces" in got.message


def test_dss_recheck_lists_again_just_before_deleting(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    api = k8s.api_client("admin-token")
    # meanwhile DSS starts listing a session of dave's in that project: the pod is no longer an orphan
    dss.extend({"users": [{"login": "dave", "groups": ["data_scientists"], "apiKeys": ["dave-key"]}],
                "projects": [{"projectKey": "CHURN", "notebooks": [
                    {"name": "late", "sessions": [{"creator": "dave", "sessionId": "s-dave-1"}]}]}]})
    spared = pod_actions.delete_orphan_pod(api, OPT_IN, match, apply=True, is_admin=True,
                                           recheck=pod_actions.dss_recheck(dss.client()))
    assert spared.outcome == "refused" and "no longer an orphan" in spared.message and _deletes(k8s) == []


def test_dss_recheck_confirms_a_real_orphan(both):
    dss, k8s = both
    match = _joined(dss, k8s)["dataiku-exec-remote-notebook-gone"]
    done = pod_actions.delete_orphan_pod(k8s.api_client("admin-token"), OPT_IN, match, apply=True, is_admin=True,
                                         recheck=pod_actions.dss_recheck(dss.client()))
    assert done.outcome == "deleted" and len(_deletes(k8s)) == 1


def test_pod_rows_for_tables_and_json(both):
    dss, k8s = both
    inventory = activities.list_activities(dss.client())
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings())
    rows = {r["pod"]: r for r in pod_joins.pod_rows(pod_joins.join_pods(listing.pods, inventory))}
    kernel = rows["dataiku-exec-remote-notebook-q7w8"]
    assert kernel["activity"]["kind"] == "notebook_session" and kernel["project"] == "CHURN"
    assert kernel["where"] == "k8s/node-1" and kernel["status"] == "joined" and kernel["pid"] < 0
    gone = rows["dataiku-exec-remote-notebook-gone"]
    assert gone["activity"] is None and gone["project"] == "churn" and gone["status"] == "orphan"


def test_the_treemap_groups_pods_by_node(both):
    from process_tracker import charts

    _dss, k8s = both
    k8s.add(dss_pod("exec-recipe-2", execution_type="JOB_ACTIVITY", project_key="CHURN", node="node-2"))
    listing = pods.list_pods(k8s.api_client(), pods.PodSettings())
    fig = charts.treemap(pods.for_treemap(listing.pods))
    tops = [label for label, parent in zip(fig["data"][0]["labels"], fig["data"][0]["parents"]) if parent == ""]
    assert sorted(tops) == ["k8s/node-1", "k8s/node-2"]
