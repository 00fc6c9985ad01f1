"""Pods joined to what DSS lists (real dataikuapi against dev/dss_simulator, real kubernetes client against
dev/k8s_simulator), orphans with their reason, and one Joined for host processes and pods."""
import pytest

from dev.dss_simulator.builders import instance, job, notebook, project, session, webapp
from dev.k8s_simulator import K8sSimulator, dss_pod, spark_labels
from process_tracker import activities, host, joins, pod_joins, pods
from process_tracker.activities import Inventory, FailedListing

NOW = None  # the simulators run on real time here


def _instance():
    return instance(projects=[
        project("CHURN", notebooks=[
            notebook("explore", [session("alice", session_id="s-alice-1", kernel_id="k-alice-1")]),
            notebook("by-id", [session("bob", session_id="s-bob-1", kernel_id="0f1e2d3c")]),
            notebook("twin-a", [session("carol", session_id="s-carol-a", kernel_id="k-carol-a")]),
            notebook("twin-b", [session("carol", session_id="s-carol-b", kernel_id="k-carol-b")]),
        ], jobs=[job("Build_scores_2026-12-01T10-00-00", "alice")]),
        project("SALES", webapps=[webapp("Vx3dR", name="dashboard")]),
    ], users=_users())


def _users():
    from dev.dss_simulator.builders import default_users, user

    return default_users() + [user("carol", ["data_scientists"])]


def _cluster():
    sim = K8sSimulator()
    # joined by project and user: alice has exactly one CHURN session
    sim.add(dss_pod("dataiku-exec-remote-notebook-q7w8", project_key="CHURN", submitter="alice"))
    # joined by id: the pod's execution id is bob's kernel id
    sim.add(dss_pod("dataiku-exec-remote-notebook-r1", project_key="CHURN", submitter="bob", execution_id="0F1E2D3C"))
    # carol has two CHURN sessions: cannot tell which
    sim.add(dss_pod("dataiku-exec-remote-notebook-c1", project_key="CHURN", submitter="carol"))
    # a kernel whose session DSS no longer lists
    sim.add(dss_pod("dataiku-exec-remote-notebook-gone", project_key="CHURN", submitter="dave"))
    # a recipe and a Spark executor of the running job (label lower-cased, ':' and 'T' as DSS's label has them)
    sim.add(dss_pod("exec-recipe-1", execution_type="JOB_ACTIVITY", project_key="CHURN",
                    job_id="build_scores_2026-12-01t10-00-00"))
    sim.add(dss_pod("exec-spark-1", execution_type="JOB_ACTIVITY", project_key="CHURN",
                    job_id="build_scores_2026-12-01t10-00-00", extra_labels=spark_labels("executor")))
    # a recipe of a job that ended
    sim.add(dss_pod("exec-recipe-old", execution_type="JOB_ACTIVITY", project_key="CHURN", job_id="build_old_1",
                    phase="Failed"))
    sim.add(dss_pod("exec-webapp-1", execution_type="WEBAPP_BACKEND", project_key="SALES", webapp_id="vx3dr"))
    sim.add(dss_pod("api-deploy-1", execution_type="API_DEPLOYER_DEPLOYMENT", deployment_id="dep1"))
    return sim


@pytest.fixture
def both(simulator):
    dss = simulator(_instance())
    k8s = _cluster()
    k8s.start()
    yield dss, k8s
    k8s.stop()


def _rows(joined):
    return {m.process.pod_name: m for m in joined.rows if isinstance(m, pod_joins.PodMatch)}


def _listed(dss, k8s, token="reader-token"):
    inventory = activities.list_activities(dss.client())
    listing = pods.list_pods(k8s.api_client(token), pods.PodSettings())
    return inventory, listing


def test_pods_join_to_what_dss_lists_by_their_labels(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    rows = _rows(pod_joins.join_pods(listing.pods, inventory))

    alice = rows["dataiku-exec-remote-notebook-q7w8"]
    assert (alice.status, alice.via, alice.activity.id) == ("joined", "pod_labels", "s-alice-1")
    bob = rows["dataiku-exec-remote-notebook-r1"]
    assert (bob.status, bob.via, bob.activity.id) == ("joined", "pod_kernel_id", "s-bob-1")
    for name in ("exec-recipe-1", "exec-spark-1"):
        assert (rows[name].status, rows[name].via, rows[name].activity.kind) == ("joined", "pod_job_id", "job")
        assert rows[name].activity.id == "Build_scores_2026-12-01T10-00-00"
    web = rows["exec-webapp-1"]
    assert (web.status, web.via, web.activity.id, web.activity.project_key) == ("joined", "pod_webapp_id", "Vx3dR",
                                                                                "SALES")
    assert all(m.via_pid == m.process.pid for m in rows.values() if m.activity is not None)


def test_what_dss_no_longer_lists_is_an_orphan_with_the_reason(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    joined = pod_joins.join_pods(listing.pods, inventory)
    rows = _rows(joined)
    gone = rows["dataiku-exec-remote-notebook-gone"]
    assert gone.status == "orphan" and gone.activity is None
    assert gone.reason == "DSS lists no notebook session of project churn by dave any more (pod phase Running)"
    old = rows["exec-recipe-old"]
    assert old.status == "orphan" and "job build_old_1 of project churn" in old.reason and "Failed" in old.reason
    assert {p.pod_name for p in joined.orphans} == {"dataiku-exec-remote-notebook-gone", "exec-recipe-old"}


def test_an_ambiguous_kernel_pod_is_unknown_never_guessed(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    carol = _rows(pod_joins.join_pods(listing.pods, inventory))["dataiku-exec-remote-notebook-c1"]
    assert (carol.status, carol.activity) == ("unknown", None)
    assert "2 notebook sessions" in carol.reason


def test_two_kernel_pods_for_one_session_is_unknown_for_both(both):
    dss, k8s = both
    k8s.add(dss_pod("dataiku-exec-remote-notebook-q7w9", project_key="CHURN", submitter="alice"))
    inventory, listing = _listed(dss, k8s)
    rows = _rows(pod_joins.join_pods(listing.pods, inventory))
    for name in ("dataiku-exec-remote-notebook-q7w8", "dataiku-exec-remote-notebook-q7w9"):
        assert rows[name].status == "unknown" and "2 kernel pods" in rows[name].reason


def test_pods_dss_lists_nothing_for_are_unjoined_not_orphans(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    api = _rows(pod_joins.join_pods(listing.pods, inventory))["api-deploy-1"]
    assert (api.status, api.activity) == ("unjoined", None)
    assert "lists no activity for a API deployment pod" in api.reason


def test_a_failed_listing_makes_its_pods_unknown_not_orphans(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    failing = Inventory(inventory.taken_at, tuple(a for a in inventory.activities if a.kind != "notebook_session"),
                        (FailedListing("notebook_session", None, "DSS answered 500"),))
    rows = _rows(pod_joins.join_pods(listing.pods, failing))
    gone = rows["dataiku-exec-remote-notebook-gone"]
    assert gone.status == "unknown" and "listing DSS's notebook sessions failed" in gone.reason
    assert rows["exec-recipe-old"].status == "orphan"  # jobs listed fine


def test_host_and_pods_in_one_joined(both, fleet):
    """With a real host snapshot: one Joined; a session a host kernel explains is no pod's; not_on_host loses
    the activities pods explain."""
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    snapshot = host.Scanner().scan()
    host_joined = joins.join(snapshot, inventory)
    joined = pod_joins.join_pods(listing.pods, inventory, host=host_joined)
    assert joined.rows[:len(host_joined.rows)] == host_joined.rows
    assert len(joined.rows) == len(host_joined.rows) + len(listing.pods)
    pod_explained = {(m.activity.kind, m.activity.id) for m in joined.rows
                     if isinstance(m, pod_joins.PodMatch) and m.activity is not None}
    assert ("notebook_session", "s-alice-1") in pod_explained
    assert not pod_explained & {(a.kind, a.id) for a in joined.not_on_host}
    assert [p.pid for p in joined.orphans][:len(host_joined.orphans)] == [p.pid for p in host_joined.orphans]
    reasons = pod_joins.reasons(joined)
    assert len(reasons) == len(listing.pods) and all(pid < 0 for pid in reasons)


def test_a_session_a_host_process_explains_is_not_a_pods(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    alice = next(a for a in inventory.activities if a.id == "s-alice-1")
    fake = host.ProcessRecord(4242, 1, 0.0, "python", "jupyter_kernel", "kernel", "dss", None, 1, 1)
    host_joined = joins.Joined((joins.Match(fake, alice, "session_pid", 4242, "joined"),),
                               (joins.Match(fake, alice, "session_pid", 4242, "joined"),), (), (), ())
    rows = _rows(pod_joins.join_pods(listing.pods, inventory, host=host_joined))
    assert rows["dataiku-exec-remote-notebook-q7w8"].status == "orphan"


def test_ids_compare_case_insensitively_on_letters_and_digits():
    assert pod_joins._same("Build_scores_2026-12-01T10:00:00", "build_scores_2026-12-01t10-00-00")
    assert pod_joins._same("CHURN", "churn")
    assert not pod_joins._same("CHURN", "churn2")
    assert not pod_joins._same(None, None) and not pod_joins._same("", "")


def test_claimed_sessions_from_host_rows_are_not_candidates(both):
    dss, k8s = both
    inventory, listing = _listed(dss, k8s)
    rows = _rows(pod_joins.join_pods(listing.pods, inventory, claimed={("notebook_session", "CHURN", "s-alice-1")}))
    assert rows["dataiku-exec-remote-notebook-q7w8"].status == "orphan"
