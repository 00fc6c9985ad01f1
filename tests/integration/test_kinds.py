"""Activity kinds as data, against the simulator with the real dataikuapi client: ids can steer no call (from a
user or read back from DSS), odd values from DSS become error rows naming the item and the field, background
tasks are told apart by the call that returned them (webapp backends, continuous activities and scenario runs are
never aborted as background tasks), this plugin's webapp and own run are spared from what DSS really returns, and
the listing works the same on DSS 12 to 15 (whatever dataikuapi release is installed)."""
import math

import pytest

from dev.dss_simulator.builders import (
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
from process_tracker import dss, kinds, policy
from process_tracker.actions import perform
from process_tracker.activities import KINDS, Activity, get_activity, list_activities
from process_tracker.errors import ConfigError, DSSError, DSSNotFound, DSSUnreachable
from process_tracker.policy import Decision, ServiceRules, TaskRules

NOW = 1_800_000_000.0
HOSTILE_IDS = ["../admin/users/alice", "../projects/PROD", "%2e%2e/admin", "a/b", "x?y=1", "x#y", "a\nb", "..",
               "", "é" * 3, "x" * 300]
MINE = "webapp_%s_process-monitor" % policy.PLUGIN_ID


def client_for(sim, login="admin"):
    return dss.install_timeouts(sim.client(login), timeout=10)


def services(**settings):
    """A real stuck task among futures that are not background tasks: a webapp backend, this plugin's own webapp,
    a continuous activity, a scenario run, and a task started just now (the macro's own run)."""
    return instance(
        projects=[
            project("CHURN",
                    webapps=[webapp("w-dash", "Dashboard", started_ago="5d"),
                             webapp("w-mine", "Process monitor", started_ago="5d", type=MINE)],
                    continuous_activities=[continuous_activity("stream", "bob", started_ago="4d")],
                    scenarios=[scenario("NIGHTLY", running_by="alice", started_ago="2h", future_id="sc-run")],
                    jobs=[job("j-run", "alice", started_ago="2d", kernel_pid=4201)],
                    notebooks=[notebook("explore", [session("alice", session_id="s1", kernel_pid=4101)])]),
        ],
        futures=[future("f-stuck", "bob", "Stuck export", started_ago="9d", action="export"),
                 future("f-me", "admin", "Macro run", started_ago="20s", action="run_macro")],
        **settings,
    )


@pytest.fixture
def sim(simulator, manual_clock):
    manual_clock.set(NOW)
    return simulator(services(abortDelay=0), clock=manual_clock)


def by_id(inventory):
    return {a.id: a for a in inventory.activities}


# ----- ids can steer no call -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_a_hostile_id_is_refused_before_any_request(sim, kind, bad):
    with pytest.raises(ConfigError) as e:
        get_activity(client_for(sim), kind, bad, project_key="CHURN")
    assert e.value.param == "id"
    assert sim.requests == []


def test_a_traversal_through_a_future_id_never_reaches_dss(sim):
    client = client_for(sim)
    for bad in ("../admin/users/alice", "../projects/CHURN"):
        with pytest.raises(ConfigError):
            get_activity(client, "future", bad)
        stub = Activity("future", bad, None, "x", None, "running", started_at=NOW - 86400 * 9)
        with pytest.raises(ConfigError, match="^decisions: "):
            perform(client, [Decision(stub, True, "asked")], apply=True, wait_seconds=0)
    with pytest.raises(ConfigError) as e:
        get_activity(client, "notebook_session", "s1", project_key="CHURN", notebook_name="../../admin")
    assert e.value.param == "notebook_name"
    with pytest.raises(ConfigError) as e:
        get_activity(client, "job", "j-run", project_key="../CHURN")
    assert e.value.param == "project_key"
    assert [r for r in sim.requests if not r.path.startswith("/futures/")] == []
    assert sim.unrouted_requests(["future"]) == [] and sim.actions == []


def test_listing_and_acting_on_each_kind_stay_within_its_routes(sim, manual_clock):
    client = client_for(sim)
    inv = list_activities(client, now=NOW)
    assert inv.errors == ()
    assert sim.unrouted_requests() == []
    for kind in ("notebook_session", "job", "webapp", "continuous_activity", "future"):
        activity = next(a for a in inv.activities if a.kind == kind)
        before = len(sim.requests)
        perform(client, [Decision(activity, True, "test")], apply=True, wait_seconds=0)
        sim.state.log[:before] = []
        assert sim.actions and sim.unrouted_requests([kind]) == [], kind
        sim.state.log.clear()


def test_ids_read_back_from_dss_are_checked_and_a_bad_item_is_one_error_row(simulator, manual_clock):
    manual_clock.set(NOW)
    inst = services()
    inst["futures"].append(future("../admin/users/alice", "bob", started_ago="9d"))
    inst["projects"][0]["webapps"].append(webapp("w?x=1", "Odd", running=False))
    inst["projects"].append(project("BAD KEY"))
    sim = simulator(inst, clock=manual_clock)
    inv = list_activities(client_for(sim), now=NOW)
    rows = sorted((e.kind, e.project_key, e.message) for e in inv.errors)
    assert rows == [
        ("future", None, "background task '../admin/users/alice': field jobId is not a valid future id: "
                         "'../admin/users/alice'"),
        ("projects", None, "project 'BAD KEY': field projectKey is not a valid project key: 'BAD KEY'"),
        ("webapp", "CHURN", "webapp 'w?x=1': field id is not a valid webapp id: 'w?x=1'"),
    ]
    assert {"f-stuck", "w-dash", "stream", "j-run", "s1"} <= set(by_id(inv))
    assert sim.unrouted_requests() == []
    assert not any("BAD" in r.path or "admin/users" in r.path for r in sim.requests)


# ----- one reading layer for DSS's values --------------------------------------------------------------------

@pytest.mark.parametrize("field, value, why", [
    ("startTime", math.inf, "is not a finite number"),
    ("startTime", math.nan, "is not a finite number"),
    ("startTime", 1e20, "is not a time between 2000 and 2100 (epoch ms): 1e+20"),
    ("startTime", "yesterday", "is a string, not a number"),
    ("runningTime", -5, "is not a plausible duration (ms): -5"),
    ("owner", ["x"], "is a list, not a string"),
])
def test_an_odd_value_in_one_future_is_an_error_row_naming_it_and_the_rest_lists(sim, field, value, why):
    sim.state.tasks[("future", "f-stuck")].data["raw"] = {field: value}
    inv = list_activities(client_for(sim), kinds=["future"], now=NOW)
    assert [(e.kind, e.message) for e in inv.errors] == [
        ("future", "background task 'f-stuck': field %s %s" % (field, why))]
    assert "f-me" in by_id(inv) and "f-stuck" not in by_id(inv)


def test_odd_pids_and_shapes_are_error_rows(sim):
    sim.state.tasks[("session", "s1")].data["raw"] = {"kernelPid": math.inf}
    sim.state.tasks[("job", "j-run")].data["raw"] = {"kernelPid": 2 ** 40}
    inv = list_activities(client_for(sim), now=NOW)
    rows = sorted((e.kind, e.message) for e in inv.errors)
    assert rows == [("job", "job 'j-run': field kernelPid is not a process id (1 to 4194304): 1099511627776"),
                    ("notebook_session", "notebook session 's1': field kernelPid is not a finite number")]
    sim.replace_answer("^/projects/$", {"projectKey": "CHURN"})  # an object where a list goes
    inv = list_activities(client_for(sim), kinds=["future", "webapp"], now=NOW)
    assert [(e.kind, e.message) for e in inv.errors] == [
        ("projects", "listing projects: DSS answered an object instead of a list")]
    assert "f-stuck" in by_id(inv)


# ----- background tasks: classified by the call, never aborted when they run something else ----------------------

def test_background_task_cleanup_with_defaults_aborts_only_the_real_task(sim, manual_clock):
    client = client_for(sim)
    inv = list_activities(client, kinds=policy.TASK_KINDS, now=NOW)
    assert inv.errors == ()
    decisions = policy.decide(inv.activities, TaskRules(), NOW, policy.protection_from({}, pids=[1]))
    reasons = {d.activity.id: (d.act, d.reason) for d in decisions}
    assert reasons == {
        "f-stuck": (True, "running 9.0 d > 24 h"),
        "wb-w-dash": (False, "spared: runs webapp CHURN/w-dash (aborting it would stop it)"),
        "wb-w-mine": (False, "spared: runs webapp CHURN/w-mine (aborting it would stop it)"),
        "ca-stream": (False, "spared: runs continuous activity CHURN/stream (aborting it would stop it)"),
        "sc-run": (False, "spared: running 2.0 h <= 24 h"),
        "f-me": (False, "spared: started less than 5 min before this run (it may be this run)"),
    }
    assert by_id(inv)["sc-run"].kind == "scenario"  # by the call that returned it: no payload action
    results = perform(client, decisions, apply=True, wait_seconds=1,
                      recheck=policy.make_recheck(TaskRules(), clock=lambda: NOW))
    assert [(r.activity.id, r.outcome) for r in results if r.outcome != "spared"] == [("f-stuck", "aborted")]
    assert [(a.method, a.path) for a in sim.actions] == [("DELETE", "/futures/f-stuck")]
    assert {k: sim.phase(*k) for k in [("webapp", "w-dash"), ("continuous_activity", "stream")]} == {
        ("webapp", "w-dash"): "RUNNING", ("continuous_activity", "stream"): "RUNNING"}


def test_with_no_minimum_nothing_but_real_tasks_is_aborted_and_never_the_run_itself(sim):
    client = client_for(sim)
    inv = list_activities(client, kinds=["future"], now=NOW)
    rules = TaskRules(min_running_hours=0, kinds=("future",))
    decisions = policy.decide(inv.activities, rules, NOW, policy.protection_from({}, pids=[1]))
    assert [d.activity.id for d in decisions if d.act] == ["f-stuck"]
    assert "sc-run" not in by_id(inv)  # a scenario run is never a background task


def test_when_what_futures_run_cannot_be_checked_every_future_is_spared(sim):
    sim.add_fault(path="^/projects/CHURN/continuous-activities/$", error_rate=1.0)
    inv = list_activities(client_for(sim), kinds=["future"], now=NOW)
    assert [(e.kind, e.project_key) for e in inv.errors] == [("continuous_activity", "CHURN")]
    decisions = policy.decide(inv.activities, TaskRules(min_running_hours=0), NOW)
    assert not any(d.act for d in decisions)
    stuck = next(d for d in decisions if d.activity.id == "f-stuck")
    assert stuck.reason.startswith("spared: cannot tell whether it runs a webapp, a continuous activity or a "
                                   "scenario (listing continuous activities of project CHURN: ")


# ----- this plugin's own webapp -------------------------------------------------------------------------------

def test_stopping_idle_services_spares_this_plugins_webapp_from_what_dss_returns(sim):
    client = client_for(sim)
    inv = list_activities(client, kinds=["webapp"], now=NOW)
    assert by_id(inv)["w-mine"].details["webapp_type"] == MINE
    decisions = policy.decide(inv.activities, ServiceRules(min_running_hours=0), NOW)
    assert {d.activity.id: (d.act, d.reason) for d in decisions} == {
        "w-dash": (True, "running 5.0 d (no minimum)"),
        "w-mine": (False, "spared: the process-tracker webapp")}
    one = get_activity(client, "webapp", "w-mine", project_key="CHURN")  # the webapp's own action path
    assert policy.protection_reason(one, policy.NO_PROTECTION) == "spared: the process-tracker webapp"


# ----- DSS versions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["12.6.4", "13.5.6", "14.7.5"])
def test_before_dss_15_jobs_are_listed_per_project_without_trying_the_missing_endpoint(sim, version):
    sim.dss_version = version
    inv = list_activities(client_for(sim), kinds=["job"], now=NOW)
    assert inv.errors == () and [a.id for a in inv.activities] == ["j-run"]
    assert by_id(inv)["j-run"].pid == 4201
    assert inv.notes == ("running jobs listed project by project (DSS %s has no instance-wide list)"
                         % version.split(".")[0],)
    assert not any("running" in r.path for r in sim.requests)
    job_now = get_activity(client_for(sim), "job", "j-run", project_key="CHURN")
    assert job_now.pid == 4201 and not any("running" in r.path for r in sim.requests)


@pytest.mark.parametrize("status", [400, 404, 405])
def test_without_a_version_the_missing_endpoint_answer_is_the_fallback(sim, status):
    sim.dss_version = ""  # /instance-info without dssVersion: an older DSS
    sim.missing_endpoint_status = status
    inv = list_activities(client_for(sim), kinds=["job"], now=NOW)
    assert inv.errors == () and [a.id for a in inv.activities] == ["j-run"]
    assert inv.notes == ("running jobs listed project by project (this DSS has no instance-wide list: HTTP %d)"
                         % status,)
    assert get_activity(client_for(sim), "job", "j-run", project_key="CHURN").pid == 4201


def test_dss_15_uses_the_instance_wide_running_jobs(sim):
    inv = list_activities(client_for(sim), kinds=["job"], now=NOW)
    assert [a.id for a in inv.activities] == ["j-run"] and inv.notes == ()
    assert [r.path for r in sim.requests] == ["/instance-info", "/jobs/running/"]


def test_every_route_of_the_kinds_table_is_served_by_the_simulator(sim):
    adapter = sim.app.url_map.bind("localhost")
    for name, routes in kinds.ROUTES.items():
        for route in routes:
            path = route.path.format(**{p: "x" for p in route.placeholders})
            adapter.match("/dip/publicapi" + path, method=route.method)  # raises when not served


# ----- one translation point ----------------------------------------------------------------------------------

def test_calling_translates_once_from_the_original(sim):
    client = client_for(sim)
    with pytest.raises(DSSNotFound) as e, dss.calling("reading task nope"):
        client._perform_json("GET", "/futures/nope")
    assert str(e.value).startswith("reading task nope: ") and e.value.status == 404
    assert e.value.__cause__.__class__.__name__ == "DataikuException"
    with pytest.raises(DSSError, match=r"^reading x: unexpected answer from DSS \(KeyError\)$") as e, \
            dss.calling("reading x"):
        {}["missing"]
    assert isinstance(e.value.__cause__, KeyError)
    with pytest.raises(ConfigError), dss.calling("anything"):
        raise ConfigError("id", "typed errors pass unchanged")
    sim.stop()
    with pytest.raises(DSSUnreachable, match="^listing projects: cannot reach DSS$"), dss.calling("listing projects"):
        client._perform_json("GET", "/projects/")


def test_docs_list_every_route_of_the_kinds_table():
    import pathlib

    from process_tracker import actions

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "dss-calls.md").read_text()
    routes = [r for rs in kinds.ROUTES.values() for r in rs] + list(kinds.COMMON_ROUTES) + [actions.AUTH_INFO]
    missing = [(r.method, r.path) for r in routes if "`%s %s" % (r.method, r.path) not in doc]
    assert missing == []


@pytest.mark.parametrize("login", ["admin", "alice"])  # the admin list of running notebooks, or project by project
def test_a_notebook_name_that_would_steer_a_path_is_an_error_row_and_its_sessions_are_not_called(simulator, login):
    inst = services()
    inst["projects"][0]["notebooks"].append(notebook("a/../b", [session("alice", session_id="s-odd")]))
    sim = simulator(inst)
    inv = list_activities(client_for(sim, login), kinds=["notebook_session"])
    assert [(e.kind, e.project_key, e.message) for e in inv.errors] == [
        ("notebook_session", "CHURN" if login == "alice" else None,
         "notebook 'a/../b': field name is not a valid notebook name: 'a/../b'")]
    assert [a.id for a in inv.activities] == ["s1"]
    assert sim.unrouted_requests(["notebook_session"]) == [] and not any("a/" in r.path for r in sim.requests)


def test_any_id_either_is_refused_or_stays_within_its_kinds_routes(simulator):
    """Property: whatever the id (dot segments, encoded ones, slashes, query and fragment marks, newlines, NUL,
    unicode, long strings), get_activity makes no request outside the routes of the kind asked for."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sim = simulator(services())
    client = client_for(sim)
    pieces = st.sampled_from(["..", "%2e%2e", "/", "?", "#", "%", "\n", "\x00", "é", "a", "CHURN", "f-stuck", " "])
    ids = st.one_of(st.text(max_size=40), st.lists(pieces, max_size=8).map("".join), st.just("x" * 500))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(KINDS), id_=ids, project_key=st.sampled_from(["CHURN", "../CHURN", "A/B"]))
    def check(kind, id_, project_key):
        sim.state.log.clear()
        try:
            get_activity(client, kind, id_, project_key=project_key)
        except ConfigError:
            assert sim.requests == []
        assert sim.unrouted_requests([kind]) == [] and sim.actions == []

    check()


def test_one_background_task_can_be_fetched_with_what_it_runs(sim):
    client = client_for(sim)
    webapp_future = get_activity(client, "future", "wb-w-dash", check_runs=True)
    assert (webapp_future.project_key, webapp_future.details["runs"]) == ("CHURN", "webapp CHURN/w-dash")
    assert policy.protection_reason(webapp_future, policy.NO_PROTECTION).startswith("spared: runs webapp CHURN/w-dash")
    stuck = get_activity(client, "future", "f-stuck", check_runs=True)
    assert "runs" not in stuck.details and "unchecked" not in stuck.details
    assert policy.protection_reason(stuck, policy.NO_PROTECTION) is None
    assert "runs" not in get_activity(client, "future", "wb-w-dash").details  # one read only, without it
