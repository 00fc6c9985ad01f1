"""activities.py: listing every kind of DSS activity as records, with the real dataikuapi client over HTTP against
the simulator (admin and non-admin, DSS 14 and 15, failing projects and calls), and re-fetching one activity."""
import pytest

from dev.dss_simulator.builders import (
    code_studio,
    continuous_activity,
    future,
    instance,
    job,
    notebook,
    project,
    scenario,
    session,
    webapp,
)
from process_tracker import dss, kinds
from process_tracker.activities import KINDS, Activity, get_activity, list_activities
from process_tracker.errors import ConfigError
from process_tracker.reading import Item

NOW = 1_800_000_000.0


def client_for(sim, login="admin"):
    """The client the plugin uses in production: real dataikuapi, with dss.py's timeouts and read retries."""
    return dss.install_timeouts(sim.client(login), timeout=10)


def small(**settings):
    """One of each kind in two projects, plus things that must not be listed (finished, stopped, not running)."""
    return instance(
        projects=[
            project(
                "CHURN",
                notebooks=[
                    notebook("explore", [session("alice", session_id="s1", kernel_id="k1", kernel_pid=4101,
                                                 started_ago="9d", idle_for="8d", connections=1)]),
                    notebook("two", [session("alice", session_id="s2", state="busy"),
                                     session("bob", session_id="s3", started_ago="1d", idle_for="2h")]),
                    notebook("never opened"),
                ],
                jobs=[job("j-run", "alice", kernel_pid=4201, started_ago="25m", scenarioId="NIGHTLY",
                          scenarioRunId="r-7"),
                      job("j-done", "alice", state="DONE", started_ago="1d", endedAgo="23h")],
                scenarios=[scenario("NIGHTLY", "Nightly", running_by="alice", started_ago="1h", future_id="run-1",
                                    runId="r-7"),
                           scenario("OFF", "Not running")],
                webapps=[webapp("w-run", "Dashboard", backend_pid=4301, backend_owner="alice"),
                         webapp("w-off", "Stopped one", running=False)],
                code_studios=[code_studio("cs-run", "bob"), code_studio("cs-off", "alice", state="STOPPED")],
            ),
            project(
                "FRAUD",
                jobs=[job("j-bob", "bob", started_ago="2h")],
                continuous_activities=[continuous_activity("stream", "bob", started_ago="2d")],
            ),
            project("EMPTY"),
        ],
        futures=[
            future("f1", "bob", "Computing metrics", started_ago="9d",
                   targets=[{"objectType": "DATASET", "projectKey": "FRAUD", "objectId": "tx"}],
                   progress=[{"name": "metrics", "unit": "NONE", "target": 2, "cur": 1}]),
            future("f2", "alice", "Training", action="train_prediction_models",
                   targets=[{"objectType": "ANALYSIS", "projectKey": "CHURN", "objectId": "a1"}]),
            future("f-done", "alice", "Finished export", started_ago="2h", endedAgo="1h"),
        ],
        **settings,
    )


def ids(inventory, kind=None):
    return sorted((a.kind, a.project_key or "", a.id) for a in inventory.activities if kind in (None, a.kind))


# /futures/ also lists the futures running webapp backends and continuous activities' main loops (as DSS does):
# they are listed as futures, in the project of what they run, and say what they run (details["runs"])
SERVICE_FUTURES = [("future", "CHURN", "wb-w-run"), ("future", "FRAUD", "ca-stream")]
ALL_SMALL = sorted([
    ("notebook_session", "CHURN", "s1"), ("notebook_session", "CHURN", "s2"), ("notebook_session", "CHURN", "s3"),
    ("future", "FRAUD", "f1"), ("future", "CHURN", "f2"), *SERVICE_FUTURES,
    ("scenario", "CHURN", "run-1"),
    ("job", "CHURN", "j-run"), ("job", "FRAUD", "j-bob"),
    ("webapp", "CHURN", "w-run"),
    ("continuous_activity", "FRAUD", "stream"),
    ("code_studio", "CHURN", "cs-run"),
])


@pytest.fixture
def sim(simulator, manual_clock):
    manual_clock.set(NOW)
    return simulator(small(), clock=manual_clock)


# ----- records from DSS's JSON (pure) ---------------------------------------------------------------------------

def read(kind, obj, project_key=None, listed=None):
    activity, bad = kinds.read_item(kind, obj, kinds.Ctx(NOW, project_key, Item(listed or {}, "listed")))
    assert bad is None
    return activity


def test_records_are_built_from_partial_json_absent_values_are_none():
    assert read("notebook_session", {"sessionId": "x", "projectKey": "P"}) == Activity(
        "notebook_session", "x", "P", "?", None, "unknown", details={
            "session_id": "x", "notebook_name": None, "kernel_id": None, "kernel_connections": None,
            "execution_state": "unknown", "unix_owner": None, "owner_display_name": None, "running_seconds": None})
    assert read("future", {"jobId": "f", "runningTime": 60000, "aborted": True, "payload": None}) == Activity(
        "future", "f", None, "background task", None, "aborting", started_at=NOW - 60, details={
            "future_id": "f", "progress": [], "running_seconds": 60.0, "action": None, "targets": [],
            "runnable_type": None})
    assert read("job", {"def": {"id": "j", "projectKey": "P"}}) == Activity("job", "j", "P", "j", None, "RUNNING", details={
        "job_id": "j", "initiator": None, "job_type": None, "scenario_id": None, "scenario_run_id": None,
        "running_seconds": None})
    assert read("webapp", {"futureInfo": {"alive": False}}, "P", {"id": "w", "name": "W"}) is None
    assert read("continuous_activity", {"recipeId": "r", "desiredState": "STOPPED"}) is None
    assert read("code_studio", {"state": "STOPPED"}, "P", {"id": "c"}) is None


@pytest.mark.parametrize("kwargs, param", [
    ({"kinds": ["notebook_session", "kernels"]}, "kinds"),
    ({"kinds": []}, "kinds"),
    ({"projects": "CHURN"}, "projects"),
    ({"projects": []}, "projects"),
    ({"projects": ["CHURN", ""]}, "projects"),
    ({"max_workers": 0}, "max_workers"),
    ({"max_workers": "8"}, "max_workers"),
])
def test_bad_parameters_name_the_parameter_and_call_nothing(sim, kwargs, param):
    with pytest.raises(ConfigError) as e:
        list_activities(client_for(sim), **kwargs)
    assert e.value.param == param
    assert sim.requests == []


# ----- listing against the simulator ------------------------------------------------------------------------------

def test_admin_lists_every_running_activity_of_every_kind_with_its_fields(sim):
    inv = list_activities(client_for(sim), now=NOW)
    assert inv.errors == () and inv.notes == ()
    assert inv.taken_at == NOW
    assert ids(inv) == ALL_SMALL
    by_id = {a.id: a for a in inv.activities}

    assert by_id["s1"] == Activity(
        "notebook_session", "s1", "CHURN", "explore", "alice", "idle", started_at=NOW - 9 * 86400,
        last_activity_at=NOW - 8 * 86400, pid=4101, details={
            "session_id": "s1", "notebook_name": "explore", "kernel_id": "k1", "kernel_connections": 1,
            "execution_state": "idle", "unix_owner": "dataiku", "owner_display_name": "Alice",
            "running_seconds": 9 * 86400})
    assert by_id["s2"].state == "busy"

    assert by_id["f1"] == Activity(
        "future", "f1", "FRAUD", "Computing metrics", "bob", "running", started_at=NOW - 9 * 86400, details={
            "future_id": "f1", "progress": [{"name": "metrics", "cur": 1, "target": 2, "unit": "NONE"}],
            "running_seconds": 9 * 86400, "action": "compute_metrics", "runnable_type": None,
            "targets": [{"type": "DATASET", "id": "tx", "project_key": "FRAUD"}]})

    sc = by_id["run-1"]
    assert (sc.owner, sc.state, sc.details["scenario_id"], sc.details["future_id"]) == (
        "alice", "running", "NIGHTLY", "run-1")

    j = by_id["j-run"]
    assert (j.owner, j.state, j.pid, j.started_at) == ("alice", "RUNNING", 4201, NOW - 25 * 60)
    assert (j.details["initiator"], j.details["scenario_id"], j.details["scenario_run_id"]) == ("alice", "NIGHTLY", "r-7")
    assert j.details["running_seconds"] == 25 * 60

    w = by_id["w-run"]
    assert (w.name, w.owner, w.state, w.pid, w.details["future_id"]) == (
        "Dashboard", "alice", "running", 4301, "wb-w-run")

    ca = by_id["stream"]
    assert (ca.owner, ca.state, ca.details["desired_state"], ca.details["future_id"]) == (
        "bob", "running", "STARTED", "ca-stream")

    cs = by_id["cs-run"]
    assert (cs.owner, cs.state, cs.started_at, cs.details["running_seconds"]) == ("bob", "RUNNING", NOW - 86400, 86400)


def test_instance_wide_calls_are_used_for_admins(sim):
    list_activities(client_for(sim))
    paths = [r.path for r in sim.requests]
    assert "/admin/notebooks/" in paths and "/jobs/running/" in paths
    # the admin notebook list carries the sessions: no call per notebook, no per-project job list
    assert not any(p.endswith("/sessions") or p.endswith("/jobs/") for p in paths)
    assert all(r.method == "GET" for r in sim.requests)


def test_kinds_and_projects_restrict_the_listing(sim):
    inv = list_activities(client_for(sim), kinds=["job", "future"], projects=["FRAUD"])
    assert ids(inv) == [("future", "FRAUD", "ca-stream"), ("future", "FRAUD", "f1"), ("job", "FRAUD", "j-bob")]
    paths = {r.path for r in sim.requests}
    assert not any("CHURN" in p for p in paths) and "/projects/" not in paths


def test_non_admin_lists_what_they_may_and_says_how(sim):
    inv = list_activities(client_for(sim, "alice"))
    assert inv.errors == ()
    assert ids(inv) == sorted([
        ("notebook_session", "CHURN", "s1"), ("notebook_session", "CHURN", "s2"),
        ("future", "CHURN", "f2"), ("future", "CHURN", "wb-w-run"), ("scenario", "CHURN", "run-1"),
        ("job", "CHURN", "j-run"),
        ("webapp", "CHURN", "w-run"), ("continuous_activity", "FRAUD", "stream"), ("code_studio", "CHURN", "cs-run"),
    ])
    assert any("notebooks listed project by project" in n for n in inv.notes)
    assert any("background tasks: only your own" in n for n in inv.notes)
    # all_users=False asks for nothing admin-only in the first place
    before = len(sim.requests)
    inv2 = list_activities(client_for(sim, "alice"), all_users=False)
    assert ids(inv2) == ids(inv) and inv2.notes == ()
    assert all(r.status < 400 for r in sim.requests[before:])


def test_dss_before_15_falls_back_to_per_project_job_lists(sim):
    sim.dss_version = "14.2.1"
    inv = list_activities(client_for(sim), kinds=["job"])
    assert inv.errors == ()
    assert ids(inv) == [("job", "CHURN", "j-run"), ("job", "FRAUD", "j-bob")]
    assert inv.activities[0].pid == 4201
    assert any("project by project" in n for n in inv.notes)
    paths = [r.path for r in sim.requests]
    assert {"/projects/CHURN/jobs/", "/projects/FRAUD/jobs/", "/projects/EMPTY/jobs/"} <= set(paths)
    assert get_activity(client_for(sim), "job", "j-run", project_key="CHURN").pid == 4201


def test_a_failing_project_is_an_error_row_and_the_rest_lists(sim):
    sim.fail_project("CHURN")
    inv = list_activities(client_for(sim), max_workers=4)
    assert {e.project_key for e in inv.errors} == {"CHURN"}
    assert {e.kind for e in inv.errors} == {"webapp", "code_studio", "continuous_activity"}
    assert all("CHURN" in e.message and "Simulated failure" in e.message for e in inv.errors)
    # instance-wide calls still list CHURN's sessions, futures and jobs; FRAUD is complete. CHURN's webapps are
    # unknown: the future of its backend is listed without a project, and every future says it is unchecked
    assert ids(inv) == sorted([a for a in ALL_SMALL if a[0] not in ("webapp", "code_studio") and a[2] != "wb-w-run"]
                              + [("future", "", "wb-w-run")])
    futures = [a for a in inv.activities if a.kind == "future"]
    assert all("listing webapps of project CHURN" in a.details["unchecked"] for a in futures)


def test_malformed_json_and_500_on_one_call_are_error_rows(sim):
    sim.add_fault(path="^/projects/CHURN/webapps/$", malformed=True)
    sim.add_fault(path="^/jobs/running/$", error_rate=1.0)
    inv = list_activities(client_for(sim))
    rows = {(e.kind, e.project_key): e.message for e in inv.errors}
    assert set(rows) == {("webapp", "CHURN"), ("job", None)}
    assert rows[("webapp", "CHURN")].startswith("listing webapps of project CHURN: ")
    assert rows[("job", None)].startswith("listing running jobs: ")
    assert ids(inv) == sorted([a for a in ALL_SMALL if a[0] not in ("webapp", "job") and a[2] != "wb-w-run"]
                              + [("future", "", "wb-w-run")])


def test_unlisted_projects_and_a_failing_project_list(sim):
    inv = list_activities(client_for(sim), kinds=["webapp"], projects=["CHURN", "NOPE"])
    assert ids(inv) == [("webapp", "CHURN", "w-run")]
    assert [(e.kind, e.project_key) for e in inv.errors] == [("webapp", "NOPE")]
    assert "does not exist" in inv.errors[0].message
    sim.add_fault(path="^/projects/$", error_rate=1.0)
    inv = list_activities(client_for(sim), kinds=["future", "webapp"])
    assert [e.kind for e in inv.errors] == ["projects"]
    assert ids(inv) == [("future", "", "ca-stream"), ("future", "", "wb-w-run"), ("future", "CHURN", "f2"),
                        ("future", "FRAUD", "f1")]
    assert all(a.details["unchecked"].startswith("listing projects: ") for a in inv.activities)


def test_the_same_records_whatever_the_concurrency_bound(sim):
    one = list_activities(client_for(sim), max_workers=1, now=NOW)
    many = list_activities(client_for(sim), max_workers=16, now=NOW)
    assert one == many


def test_demo_instance_lists_every_kind_with_fleet_pids(simulator, demo_instance):
    pids = {"kernel-1": 5001, "jek-1": 5002, "webapp-1": 5003}
    sim = simulator(demo_instance, fleet_pids=pids)
    inv = list_activities(client_for(sim))
    assert inv.errors == ()
    assert {a.kind for a in inv.activities} == set(KINDS)
    by_pid = {a.pid: a for a in inv.activities if a.pid is not None}
    assert set(by_pid) == {5001, 5002, 5003}
    assert (by_pid[5001].kind, by_pid[5001].details["kernel_id"]) == (
        "notebook_session", "11111111-1111-4111-8111-111111111111")
    assert by_pid[5002].kind == "job"
    assert (by_pid[5003].kind, by_pid[5003].details["port"]) == ("webapp", 43817)
    # every session the simulator lists is there, and nothing finished
    assert sorted(a.id for a in inv.activities if a.kind == "notebook_session") == sorted(sim.session_ids())


# ----- one activity, fresh ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, task_kind, id_, project_key", [
    ("notebook_session", "session", "s1", "CHURN"),
    ("future", "future", "f1", None),
    ("scenario", "future", "run-1", None),
    ("job", "job", "j-run", "CHURN"),
    ("webapp", "webapp", "w-run", "CHURN"),
    ("continuous_activity", "continuous_activity", "stream", "FRAUD"),
    ("code_studio", "code_studio", "cs-run", "CHURN"),
])
def test_get_activity_is_fresh_and_none_once_finished(sim, kind, task_kind, id_, project_key):
    client = client_for(sim)
    fresh = get_activity(client, kind, id_, project_key=project_key)
    assert isinstance(fresh, Activity) and (fresh.kind, fresh.id) == (kind, id_)
    listed = {(a.kind, a.id): a for a in list_activities(client, kinds=[kind]).activities}[(kind, id_)]
    assert (fresh.project_key, fresh.name, fresh.owner, fresh.pid) == (
        listed.project_key, listed.name, listed.owner, listed.pid)
    sim.finish(task_kind if kind != "webapp" else "webapp", "w-run" if kind == "webapp" else id_)
    assert get_activity(client, kind, id_, project_key=project_key) is None


def test_get_activity_reflects_a_kernel_turning_busy_and_unknown_ids(sim):
    client = client_for(sim)
    assert get_activity(client, "notebook_session", "s3", notebook_name="two", project_key="CHURN").state == "idle"
    sim.set_kernel_state("s3", "busy")
    assert get_activity(client, "notebook_session", "s3").state == "busy"
    assert get_activity(client, "future", "no-such-future") is None
    assert get_activity(client, "job", "no-such-job", project_key="CHURN") is None
    assert get_activity(client, "webapp", "w", project_key="NO_PROJECT") is None
    with pytest.raises(ConfigError, match="^project_key: "):
        get_activity(client, "job", "j-run")
    with pytest.raises(ConfigError, match="^kind: "):
        get_activity(client, "kernel", "x")
