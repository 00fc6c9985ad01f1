"""The DSS simulator's activities (futures, scenarios, notebooks and sessions, jobs, webapps, continuous activities,
code studios): every route driven with the real dataikuapi client, and abort semantics against a manual clock."""
import warnings

import pytest
from dataikuapi.dss.notebook import DSSNotebook
from dataikuapi.utils import DataikuException

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



def running_jobs(client, all_users=True, project_key=None):
    """Running jobs through their endpoint: the client methods for it exist in dataikuapi 15.x only, and these
    tests run with the clients of DSS 12 to 15."""
    if project_key:
        return client._perform_json("GET", "/projects/%s/jobs/running/" % project_key)
    return client._perform_json("GET", "/jobs/running/", params={"allUsers": all_users})


def job_ids(items):
    """Ids of job list items: raw dicts (dataikuapi < 15) or DSSJobListItems (15.x) alike."""
    return [j["def"]["id"] for j in items]

def rich(**settings):
    return instance(
        projects=[
            project("CHURN",
                    notebooks=[notebook("explore", [session("alice", session_id="s1", kernel_id="k1", kernel_pid=101,
                                                            started_ago="9d", idle_for="8d")]),
                               notebook("two sessions", [session("alice", session_id="s2a", state="busy"),
                                                         session("bob", session_id="s2b", connections=2)]),
                               notebook("idle notebook")],
                    jobs=[job("j-run", "alice", kernel_pid=201, started_ago="25m"),
                          job("j-done", "alice", state="DONE", started_ago="1d", endedAgo="23h")],
                    scenarios=[scenario("NIGHTLY", "Nightly", running_by="alice", started_ago="1h", future_id="run-1"),
                               scenario("IDLE", "Idle one", active=False)],
                    webapps=[webapp("w-run", "Dashboard", backend_pid=301, backend_owner="alice"),
                             webapp("w-none", "No backend", running=False)],
                    continuous_activities=[continuous_activity("stream", "bob")],
                    code_studios=[code_studio("cs-run", "bob"), code_studio("cs-off", "alice", state="STOPPED")]),
        ],
        futures=[future("f1", "bob", "Computing metrics", started_ago="9d",
                        targets=[{"objectType": "DATASET", "projectKey": "CHURN", "objectId": "ds"}],
                        progress=[{"name": "metrics", "unit": "NONE", "target": 2, "cur": 1}], result={"ok": True}),
                 future("f2", "alice", "Training", action="train_prediction_models")],
        **settings,
    )


@pytest.fixture
def sim(simulator, manual_clock):
    return simulator(rich(abortDelay=10), clock=manual_clock)


# ----- futures and running scenarios ----------------------------------------------------------------------
def test_futures_list_with_scenario_filters_and_shapes(sim, manual_clock):
    client = sim.client()
    futures = client.list_futures(all_users=True)
    # as on DSS, the futures running webapp backends and continuous activities' main loops are listed too
    assert [f["jobId"] for f in futures] == ["f1", "ca-stream", "wb-w-run", "f2"]
    f1 = futures[0]
    assert (f1["owner"], f1["jobDisplayName"], f1["alive"], f1["aborted"], f1["hasResult"]) == (
        "bob", "Computing metrics", True, False, False)
    assert f1["runningTime"] == 9 * 86400 * 1000 and f1["startTime"] == int((manual_clock() - 9 * 86400) * 1000)
    assert f1["payload"]["targets"][0]["projectKey"] == "CHURN" and f1["progress"]["states"][0]["cur"] == 1
    assert [f["jobId"] for f in client.list_futures(all_users=False)] == []  # admin owns none
    # their payloads say nothing invented: no action, no targets
    assert [f["payload"] for f in futures[1:3]] == [{"targets": [], "extras": {}}, {"targets": [], "extras": {"pid": 301}}]
    running = client.list_running_scenarios(all_users=True)
    # a scenario run: its scenario as the first target (documented by the client), no action string
    assert [(r["jobId"], "action" in r["payload"], r["payload"]["targets"][0]["objectId"]) for r in running] == [
        ("run-1", False, "NIGHTLY")]
    every = client._perform_json("GET", "/futures/", params={"allUsers": True})  # both flags default to true
    assert sorted(f["jobId"] for f in every) == ["ca-stream", "f1", "f2", "run-1", "wb-w-run"]
    assert [f.job_id for f in client.list_futures(as_objects=True, all_users=True)] == [f["jobId"] for f in futures]


def test_aborting_the_future_of_a_webapp_backend_or_a_continuous_activity_stops_it(sim, manual_clock):
    client = sim.client()
    assert client.get_future("wb-w-run").peek_state()["alive"] is True
    client.get_future("wb-w-run").abort()
    client.get_future("ca-stream").abort()
    manual_clock.advance(10)
    assert sim.phase("webapp", "w-run") == "ABORTED" and sim.phase("continuous_activity", "stream") == "ABORTED"
    state = client.get_project("CHURN").get_webapp("w-run").get_state().state
    assert state["futureInfo"]["alive"] is False and state["futureInfo"]["jobId"] == "wb-w-run"
    assert [f["jobId"] for f in client.list_futures(all_users=True)] == ["f1", "f2"]


def test_future_abort_goes_aborting_then_dead_after_the_delay(sim, manual_clock):
    fut = sim.client().get_future("f1")
    fut.abort()
    state = fut.peek_state()
    assert (state["alive"], state["aborted"]) == (True, True)
    assert "f1" in [f["jobId"] for f in sim.client().list_futures(all_users=True)]
    manual_clock.advance(10)
    state = fut.get_state()
    assert (state["alive"], state["aborted"], state["hasResult"]) == (False, True, False)
    assert "f1" not in [f["jobId"] for f in sim.client().list_futures(all_users=True)]
    assert sim.phase("future", "f1") == "ABORTED"


def test_abort_delay_zero_never_and_per_object(sim, manual_clock):
    client = sim.client()
    sim.set_abort_delay(0)
    client.get_future("f2").abort()
    assert client.get_future("f2").peek_state()["alive"] is False
    sim.set_abort_delay("never", "future", "f1")
    client.get_future("f1").abort()
    manual_clock.advance(7 * 86400)
    assert client.get_future("f1").peek_state()["alive"] is True
    assert sim.phase("future", "f1") == "ABORTING"


def test_a_task_that_finished_before_or_after_the_abort_request(sim, manual_clock):
    client = sim.client()
    sim.finish("future", "f1")
    client.get_future("f1").abort()  # arrives too late: nothing to abort
    state = client.get_future("f1").get_state()
    assert (state["alive"], state["aborted"], state["hasResult"], state["result"]) == (False, False, True, {"ok": True})
    assert "result" not in client.get_future("f1").peek_state()

    client.get_future("f2").abort()
    sim.finish("future", "f2", after=3)  # finishes on its own while the abort is pending
    manual_clock.advance(5)
    state = client.get_future("f2").peek_state()
    assert (state["alive"], state["aborted"], state["hasResult"]) == (False, True, True)
    assert sim.phase("future", "f2") == "DONE"


def test_a_failed_future_is_an_http_error(sim):
    sim.finish("future", "f2", state="FAILED")
    with pytest.raises(DataikuException, match="CodedException"):
        sim.client().get_future("f2").get_state()


def test_scenario_status_and_abort(sim, manual_clock):
    churn = sim.client().get_project("CHURN")
    nightly = churn.get_scenario("NIGHTLY")
    status = nightly.get_status()
    assert status.running is True and status.get_raw()["start"] == int((manual_clock() - 3600) * 1000)
    assert churn.get_scenario("IDLE").get_status().running is False
    assert churn.get_scenario("IDLE").abort() == {"aborted": False}
    nightly.abort()
    assert nightly.get_status().running is True  # aborting
    manual_clock.advance(10)
    assert nightly.get_status().running is False
    assert sim.client().list_running_scenarios(all_users=True) == []
    assert sim.client("alice").get_future("run-1").peek_state()["aborted"] is True


def test_scenario_create_settings_and_definitions_as_dss_stores_them(sim):
    churn = sim.client().get_project("CHURN")
    assert [(s["id"], s["running"]) for s in churn.list_scenarios()] == [("IDLE", False), ("NIGHTLY", True)]
    step = {"id": "clean", "type": "runnable", "name": "Clean up",
            "params": {"runnableType": "pyrunnable_process-tracker_kill", "config": {"simulate": True},
                       "adminConfig": {}, "proceedOnFailure": False}}
    created = churn.create_scenario("Process tracker clean-up", "step_based", {"params": {"steps": [step]}})
    assert created.id == "PROCESS_TRACKER_CLEANUP"
    settings = created.get_settings()
    assert settings.raw_steps == [step] and settings.active is False and settings.raw_triggers == []
    assert settings.effective_run_as == "admin"
    settings.add_periodic_trigger(every_minutes=60)
    settings.active = True
    settings.raw_steps[0]["params"]["config"]["simulate"] = False
    settings.save()
    stored = sim.scenario("CHURN", "PROCESS_TRACKER_CLEANUP")
    assert (stored["name"], stored["type"], stored["active"]) == ("Process tracker clean-up", "step_based", True)
    assert stored["params"]["steps"][0]["params"]["config"] == {"simulate": False}
    assert stored["triggers"][0]["params"]["repeatFrequency"] == 60 and stored["versionTag"]["versionNumber"] == 1
    assert "PROCESS_TRACKER_CLEANUP" in [s.id for s in churn.list_scenarios(as_type="objects")]
    assert churn.create_scenario("Process tracker clean-up", "step_based").id == "PROCESS_TRACKER_CLEANUP_1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        definition = created.get_definition(with_status=False)
        definition["active"] = False
        created.set_definition(definition, with_status=False)
        light = created.get_definition(with_status=True)
        assert (light["active"], light["running"]) == (False, False)
        light["active"] = True
        created.set_definition(light, with_status=True)
    assert sim.scenario("CHURN", "PROCESS_TRACKER_CLEANUP")["active"] is True
    python = churn.create_scenario("Scripted", "custom_python")
    settings = python.get_settings()
    assert settings.code == ""
    settings.code = "print('hi')"
    settings.save()
    assert python.get_settings().code == "print('hi')"


# ----- notebooks and sessions ------------------------------------------------------------------------------
def test_running_notebooks_project_notebooks_and_session_shapes(sim, manual_clock):
    client = sim.client()
    running = client.list_running_notebooks()
    assert [(nb.project_key, nb.notebook_name, len(nb.get_sessions())) for nb in running] == [
        ("CHURN", "explore", 1), ("CHURN", "two sessions", 2)]
    churn = client.get_project("CHURN")
    assert [nb.notebook_name for nb in churn.list_jupyter_notebooks(active=True)] == ["explore", "two sessions"]
    assert len(churn.list_jupyter_notebooks(active=False)) == 3
    (s,) = churn.get_jupyter_notebook("explore").get_sessions(as_objects=True)
    now_ms = int(manual_clock() * 1000)
    assert (s.session_id, s.kernel_id, s.kernel_pid, s.session_creator, s.session_creator_display_name) == (
        "s1", "k1", 101, "alice", "Alice")
    assert (s.kernel_execution_state, s.kernel_connections, s.session_unix_owner) == ("idle", 0, "dataiku")
    assert (now_ms - s.session_start_time, now_ms - s.kernel_last_activity_time) == (9 * 86400000, 8 * 86400000)
    states = {x["sessionId"]: (x["kernelExecutionState"], x["kernelConnections"])
              for x in churn.get_jupyter_notebook("two sessions").get_sessions()}
    assert states == {"s2a": ("busy", 0), "s2b": ("idle", 2)}
    assert [x["sessionId"] for x in sim.client("bob").get_project("CHURN")
            .get_jupyter_notebook("two sessions").get_sessions()] == ["s2b"]


def test_notebook_names_with_slashes_and_markup_work_as_the_client_sends_them(simulator):
    name = '<img src=x onerror="x()"><script>alert(1)</script> a/b'
    sim = simulator(instance(projects=[project("P", notebooks=[notebook(name, [session("bob", session_id="sx")])])]))
    nb = sim.client().get_project("P").get_jupyter_notebook(name)
    (s,) = nb.get_sessions()
    assert s["notebookName"] == name
    nb.unload()
    assert sim.session_ids() == []


def test_kernel_state_changes_mid_run(sim, manual_clock):
    nb = sim.client().get_project("CHURN").get_jupyter_notebook("explore")
    manual_clock.advance(60)
    sim.set_kernel_state("s1", "busy", connections=1)
    (s,) = nb.get_sessions()
    assert (s["kernelExecutionState"], s["kernelConnections"]) == ("busy", 1)
    assert s["kernelLastActivityTime"] == int(manual_clock() * 1000)
    sim.set_kernel_state("s1", "idle", idle_for="2h")
    (s,) = nb.get_sessions()
    assert s["kernelExecutionState"] == "idle" and s["kernelLastActivityTime"] == int((manual_clock() - 7200) * 1000)


def test_unloading_a_session_removes_it_and_its_notebook_stops_being_active(simulator, manual_clock):
    sim = simulator(rich(), clock=manual_clock)  # default abort delay 0
    client = sim.client()
    churn = client.get_project("CHURN")
    (s,) = churn.get_jupyter_notebook("explore").get_sessions(as_objects=True)
    assert s.unload() == {"sessionId": "s1", "unloaded": True}
    assert churn.get_jupyter_notebook("explore").get_sessions() == []
    assert [nb.notebook_name for nb in churn.list_jupyter_notebooks(active=True)] == ["two sessions"]
    assert [nb.notebook_name for nb in client.list_running_notebooks()] == ["two sessions"]
    with pytest.raises(DataikuException, match="NotFoundException"):
        s.unload()
    legacy = DSSNotebook(client, "CHURN", "two sessions")  # the deprecated API: /projects/<pk>/notebooks/
    assert [x["sessionId"] for x in legacy.get_sessions()] == ["s2a", "s2b"]
    legacy.unload(session_id="s2b")
    assert sim.session_ids() == ["s2a"]


def test_a_session_unload_can_take_time_or_be_ignored(sim, manual_clock):
    nb = sim.client().get_project("CHURN").get_jupyter_notebook("explore")
    assert nb.unload() == {"sessionId": "s1", "unloaded": False}
    assert [s["sessionId"] for s in nb.get_sessions()] == ["s1"]
    manual_clock.advance(10)
    assert nb.get_sessions() == []
    sim.set_abort_delay("never", "session", "s2a")
    sim.client().get_project("CHURN").get_jupyter_notebook("two sessions").unload("s2a")
    manual_clock.advance(3600)
    assert "s2a" in sim.session_ids()


# ----- jobs ------------------------------------------------------------------------------------------------
def test_job_lists_status_and_abort(sim, manual_clock):
    client = sim.client()
    churn = client.get_project("CHURN")
    jobs = {j["def"]["id"]: j for j in churn.list_jobs()}
    assert (jobs["j-run"]["state"], jobs["j-run"]["stableState"], jobs["j-run"]["kernelPid"]) == ("RUNNING", False, 201)
    assert (jobs["j-done"]["state"], jobs["j-done"]["stableState"]) == ("DONE", True)
    assert jobs["j-done"]["endTime"] > 0 and jobs["j-run"]["def"]["initiator"] == "alice"
    assert job_ids(running_jobs(client, project_key="CHURN")) == ["j-run"] == job_ids(running_jobs(client))
    if hasattr(client, "list_running_jobs"):  # dataikuapi 15.x: its DSSJobListItem reads the items' def.*
        assert [j.job_id for j in churn.list_running_jobs()] == ["j-run"]
        assert jobs["j-done"].end_time is not None and jobs["j-run"].start_time is not None
        assert [(j.project_key, j.id) for j in client.list_running_jobs(as_type="objects")] == [("CHURN", "j-run")]
    status = churn.get_job("j-run").get_status()["baseStatus"]
    assert status["state"] == "RUNNING" and status["def"]["id"] == "j-run"
    assert "msg" in churn.get_job("j-run").abort()
    assert churn.get_job("j-run").get_status()["baseStatus"]["state"] == "RUNNING"  # abort in progress
    manual_clock.advance(10)
    status = churn.get_job("j-run").get_status()["baseStatus"]
    assert status["state"] == "ABORTED" and status["jobEndTime"] == int(manual_clock() * 1000)
    assert running_jobs(client, project_key="CHURN") == [] and running_jobs(client) == []
    churn.get_job("j-done").abort()
    manual_clock.advance(10)
    assert churn.get_job("j-done").get_status()["baseStatus"]["state"] == "DONE"


def test_objects_added_while_running_are_listed(sim):
    sim.extend({"projects": [{"projectKey": "CHURN", "jobs": [job("j-new", "bob", started_ago="1m")]},
                             project("NEW", owner="bob")]})
    assert set(job_ids(running_jobs(sim.client()))) == {"j-run", "j-new"}
    assert "NEW" in sim.client().list_project_keys()


# ----- webapps, continuous activities, code studios -----------------------------------------------------------
def test_webapp_backend_state_and_stop(sim, manual_clock):
    churn = sim.client().get_project("CHURN")
    assert [(w.id, w.name) for w in churn.list_webapps()] == [("w-none", "No backend"), ("w-run", "Dashboard")]
    assert churn.get_webapp("w-run").get_settings().get_raw()["name"] == "Dashboard"
    state = churn.get_webapp("w-run").get_state()
    info = state.state["futureInfo"]
    assert state.running and info["payload"]["extras"]["pid"] == 301 and info["owner"] == "alice"
    assert (state.state["projectKey"], state.state["webAppId"], info["jobId"]) == ("CHURN", "w-run", "wb-w-run")
    none = churn.get_webapp("w-none").get_state()
    assert not none.running and "futureInfo" not in none.state
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        sim.client("bob").get_project("CHURN").get_webapp("w-run").stop_backend()
    churn.get_webapp("w-run").stop_backend()
    churn.get_webapp("w-none").stop_backend()
    assert churn.get_webapp("w-run").get_state().running  # stopping
    manual_clock.advance(10)
    assert not churn.get_webapp("w-run").get_state().running


def test_continuous_activities_list_status_and_stop(sim, manual_clock):
    churn = sim.client().get_project("CHURN")
    (item,) = churn.list_continuous_activities(as_objects=False)
    assert (item["recipeId"], item["desiredState"], item["mainLoopState"]["futureInfo"]["alive"]) == (
        "stream", "STARTED", True)
    (ca,) = churn.list_continuous_activities()
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        sim.client("alice").get_project("CHURN").get_continuous_activity("stream").stop()
    ca.stop()
    status = ca.get_status()
    assert status["desiredState"] == "STOPPED" and status["mainLoopState"]["futureInfo"]["alive"] is True
    manual_clock.advance(10)
    assert ca.get_status()["mainLoopState"]["futureInfo"]["alive"] is False


def test_code_studios_list_status_and_stop(sim, manual_clock):
    churn = sim.client().get_project("CHURN")
    assert [(c.id, c.owner) for c in churn.list_code_studios()] == [("cs-off", "alice"), ("cs-run", "bob")]
    studio = churn.get_code_studio("cs-run")
    assert studio.get_settings().get_raw()["owner"] == "bob"
    assert studio.get_status().state == "RUNNING"
    assert churn.get_code_studio("cs-off").get_status().state == "STOPPED"
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        sim.client("alice").get_project("CHURN").get_code_studio("cs-run").stop()
    fut = studio.stop()
    assert fut.job_id and fut.peek_state()["alive"] is True
    assert studio.get_status().state == "STOPPING"
    manual_clock.advance(10)
    status = studio.get_status()
    assert status.state == "STOPPED" and status.last_state_change is not None
    assert fut.get_state()["hasResult"] is True
    assert churn.get_code_studio("cs-off").stop().job_id is None  # already stopped
