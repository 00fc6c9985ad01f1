"""The macros, run the way DSS runs them (dev.dss_runtime.run_macro), with the real dataikuapi over HTTP against
the simulator. Assertions are on what a user sees (the result table, the error message) and on the simulator's
state (what was really aborted), never on the plugin's own report alone."""
import json
import os
import threading

import pytest

from dev.dss_runtime import MacroFailed, run_macro
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
from process_tracker import macros

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")
NO_SCAN = {"scanHost": False}


def kernels_instance(**settings):
    return instance(
        projects=[
            project("CHURN", notebooks=[
                notebook("explore", [session("alice", session_id="s-idle", started_ago="3d", idle_for="36h")]),
                notebook("busy", [session("bob", session_id="s-busy", started_ago="3d", idle_for="36h",
                                          state="busy")]),
                notebook("open", [session("bob", session_id="s-connected", started_ago="3d", idle_for="36h",
                                          connections=1)]),
                notebook("fresh", [session("alice", session_id="s-fresh", started_ago="2h", idle_for="5m")]),
            ]),
            project("SANDBOX", notebooks=[
                notebook("old", [session("bob", session_id="s-old", started_ago="5d", idle_for="1h")]),
            ]),
        ],
        abortDelay=0,
        **settings,
    )


def tasks_instance(**settings):
    return instance(
        projects=[
            project("CHURN",
                    jobs=[job("j-long", "alice", started_ago="30h"), job("j-short", "alice", started_ago="1h")],
                    scenarios=[scenario("NIGHTLY", running_by="bob", started_ago="26h", future_id="f-nightly")],
                    webapps=[webapp("dash", started_ago="5d"), webapp("new-app", started_ago="1h")],
                    continuous_activities=[continuous_activity("stream", "alice", started_ago="10d")],
                    code_studios=[code_studio("vscode-1", "bob", started_ago="4d")]),
            project("FRAUD", jobs=[job("j-fraud", "bob", started_ago="40h")]),
        ],
        futures=[
            future("f-train", "bob", started_ago="36h", action="train_model",
                   targets=[{"objectType": "SAVED_MODEL", "projectKey": "CHURN", "objectId": "m1"}]),
            future("f-export", "alice", started_ago="2h", action="export_dataset",
                   targets=[{"objectType": "DATASET", "projectKey": "CHURN", "objectId": "d1"}]),
        ],
        abortDelay=0,
        **settings,
    )


def env_for(sim, login=None):
    return {"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.key_for(login) if login else sim.admin_key}


def run(sim, macro_id, config=None, login=None, project_key="CHURN", extra_env=None):
    env = env_for(sim, login)
    env.update(extra_env or {})
    return run_macro(os.path.join(RUNNABLES, macro_id), dict(NO_SCAN, **(config or {})) if macro_id not in (
        "install-cleanup-scenario",) else dict(config or {}), project_key=project_key, env=env)


def by_id(result):
    return {row["id"]: row for row in result.rows()}


def acted(sim):
    """The change requests the simulator received (aborts, unloads, stops, saves)."""
    return [(r.method, r.path) for r in sim.actions]


@pytest.mark.parametrize("dss_version", ["12.6.2", "15.2.0"])
def test_every_macro_header_names_the_dss_and_client_versions_used(simulator, dss_version):
    from importlib.metadata import version  # the client this run has: the matrix runs each release DSS ships

    sim = simulator(kernels_instance())
    sim.dss_version = dss_version
    for macro_id in ("kill-idle-kernels", "running-activities", "install-cleanup-scenario"):
        header = run(sim, macro_id).table["header"]
        assert header.endswith("(DSS %s, dataikuapi %s)" % (dss_version, version("dataiku-api-client"))), header


# --- kill-idle-kernels -----------------------------------------------------------------------------------------


def test_kernels_dry_run_lists_every_session_with_a_reason_and_touches_nothing(simulator):
    sim = simulator(kernels_instance())
    result = run(sim, "kill-idle-kernels")
    rows = by_id(result)
    assert rows["s-idle"]["outcome"] == "would_act" and rows["s-idle"]["reason"] == "idle 1.5 d > 24 h, age 3.0 d > 48 h"
    assert rows["s-busy"]["outcome"] == "spared" and rows["s-busy"]["reason"] == "spared: busy: running code now"
    assert rows["s-connected"]["reason"] == "spared: bob has it open (1 connection)"
    assert rows["s-fresh"]["reason"] == "spared: idle 5 min <= 24 h, age 2.0 h <= 48 h"
    assert rows["s-old"]["outcome"] == "would_act" and rows["s-old"]["reason"] == "age 5.0 d > 48 h"
    assert rows["s-idle"]["name"] == "explore" and rows["s-idle"]["owner"] == "alice"
    assert rows["s-idle"]["project"] == "CHURN" and rows["s-idle"]["idle"] == "1.5 d"
    table = result.table
    assert table["name"] == "Idle Jupyter kernels"
    assert table["header"].startswith("Dry run (nothing was done): 2 would_act, 3 spared")
    assert result.progress == [1, 2, 3, 4] and result.progress_target == (macros.STAGES, "NONE")
    assert acted(sim) == []
    assert sorted(sim.session_ids()) == ["s-busy", "s-connected", "s-fresh", "s-idle", "s-old"]


def test_kernels_applied_kills_exactly_the_selected_ones(simulator):
    sim = simulator(kernels_instance())
    result = run(sim, "kill-idle-kernels", {"simulate": False, "excludedProjects": ["SANDBOX"]})
    rows = by_id(result)
    assert rows["s-idle"]["outcome"] == "aborted"
    assert rows["s-idle"]["message"].startswith("stopped: confirmed by DSS")
    assert rows["s-old"]["outcome"] == "spared" and rows["s-old"]["reason"] == "spared: project SANDBOX excluded"
    assert result.table["header"].startswith("Applied: 1 aborted, 4 spared")
    assert sorted(sim.session_ids()) == ["s-busy", "s-connected", "s-fresh", "s-old"]
    assert [m for m, _ in acted(sim)] == ["DELETE"]


def test_builtin_macro_options_kill_busy_and_connected_when_asked(simulator):
    sim = simulator(kernels_instance())
    config = {"simulate": False, "dontKillBusyKernels": False, "dontKillConnectedKernels": False,
              "maxIdleTimeHours": 0, "maxSessionAgeHours": 48, "users": ["bob"]}
    rows = by_id(run(sim, "kill-idle-kernels", config))
    assert {k for k, r in rows.items() if r["outcome"] == "aborted"} == {"s-busy", "s-connected", "s-old"}
    assert rows["s-idle"]["reason"] == "spared: user alice not selected"
    assert sorted(sim.session_ids()) == ["s-fresh", "s-idle"]


def test_a_kernel_that_becomes_busy_before_the_action_is_spared(simulator):
    sim = simulator(kernels_instance())
    client = sim.client()

    def hook(stage):
        if stage == 3:  # decided, not yet acted: the user runs a cell
            sim.set_kernel_state("s-idle", state="busy")

    report = macros.run("kill-idle-kernels", client, {"simulate": False, "scanHost": False}, progress=hook)
    rows = {r["id"]: r for r in report.rows}
    assert rows["s-idle"]["outcome"] == "spared" and rows["s-idle"]["reason"] == "spared: busy: running code now"
    assert rows["s-old"]["outcome"] == "aborted"
    assert "s-idle" in sim.session_ids() and "s-old" not in sim.session_ids()


def test_fail_threshold_raises_and_kills_nothing(simulator):
    sim = simulator(kernels_instance())
    with pytest.raises(MacroFailed) as info:
        run(sim, "kill-idle-kernels", {"simulate": False, "failIfMoreThan": 1})
    assert info.value.message == "failIfMoreThan: 2 kernels would be killed, more than the limit of 1; nothing was done"
    assert acted(sim) == [] and len(sim.session_ids()) == 5
    result = run(sim, "kill-idle-kernels", {"simulate": False, "failIfMoreThan": 2})
    assert result.table["header"].startswith("Applied: 2 aborted")


def test_non_admin_is_refused_with_a_readable_message_and_nothing_is_done(simulator):
    sim = simulator(kernels_instance())
    for macro_id in ("kill-idle-kernels", "abort-background-tasks", "abort-long-jobs", "stop-idle-services",
                     "running-activities", "install-cleanup-scenario"):
        with pytest.raises(MacroFailed) as info:
            run(sim, macro_id, {"simulate": False} if macro_id != "install-cleanup-scenario" else {}, login="alice")
        assert "needs a DSS administrator: user alice is not one" in info.value.message, macro_id
    assert acted(sim) == [] and len(sim.session_ids()) == 5


def test_bad_parameter_is_named_and_nothing_is_called(simulator):
    sim = simulator(kernels_instance())
    with pytest.raises(MacroFailed) as info:
        run(sim, "kill-idle-kernels", {"maxIdleTimeHours": "abc"})
    assert info.value.message == "maxIdleTimeHours: must be a number of hours between 0 and 8760, got 'abc'"
    with pytest.raises(MacroFailed) as info:
        run(sim, "abort-background-tasks", {"taskKinds": []})
    assert info.value.message == "taskKinds: select at least one of future, scenario"
    assert sim.requests == []


def test_revoked_key_fails_with_a_clear_message(simulator):
    sim = simulator(kernels_instance())
    sim.revoke_key(sim.admin_key)
    with pytest.raises(MacroFailed) as info:
        run(sim, "kill-idle-kernels")
    assert info.value.message.startswith("checking who runs the kill-idle-kernels macro:")
    assert "Unknown API Key" in info.value.message
    assert acted(sim) == []


def test_unreachable_dss_fails_with_a_clear_message(simulator):
    sim = simulator(kernels_instance())
    env = env_for(sim)
    sim.stop()
    with pytest.raises(MacroFailed) as info:
        run_macro(os.path.join(RUNNABLES, "kill-idle-kernels"), NO_SCAN, project_key="CHURN", env=env)
    assert info.value.message == "checking who runs the kill-idle-kernels macro: cannot reach DSS"


def test_a_failing_project_is_an_error_row_and_the_rest_is_acted_on(simulator):
    sim = simulator(tasks_instance())
    sim.fail_project("FRAUD")
    result = run(sim, "stop-idle-services", {"simulate": False})
    errors = [r for r in result.rows() if r["outcome"] == "error"]
    assert sorted((r["kind"], r["project"]) for r in errors) == [("code_studio", "FRAUD"), ("webapp", "FRAUD")]
    assert all(r["message"] for r in errors)
    assert by_id(result)["dash"]["outcome"] == "aborted"
    assert ", 2 error." in result.table["header"]
    assert sim.phase("webapp", "dash") == "ABORTED"


def test_a_project_failing_at_action_time_is_a_failed_row(simulator):
    sim = simulator(kernels_instance())
    client = sim.client()
    report = macros.run("kill-idle-kernels", client, {"simulate": False, "scanHost": False},
                        progress=lambda stage: stage == 3 and sim.fail_project("SANDBOX"))
    rows = {r["id"]: r for r in report.rows}
    assert rows["s-old"]["outcome"] == "failed" and "nothing done" in rows["s-old"]["message"]
    assert rows["s-idle"]["outcome"] == "aborted"
    assert "s-old" in sim.session_ids() and "s-idle" not in sim.session_ids()


def test_everything_failing_fails_the_run(simulator):
    sim = simulator(kernels_instance())
    sim.add_fault(path=r"^/(projects|futures|jobs|admin/notebooks)", error_rate=1.0)
    with pytest.raises(MacroFailed) as info:
        run(sim, "kill-idle-kernels", {"simulate": False})
    assert info.value.message.startswith("nothing could be listed")
    assert acted(sim) == []


def test_key_revoked_mid_run_finishes_with_failed_rows_and_aborts_nothing(simulator):
    sim = simulator(kernels_instance())
    key = sim.admin_key
    report = macros.run("kill-idle-kernels", sim.client(), {"simulate": False, "scanHost": False},
                        progress=lambda stage: stage == 3 and sim.revoke_key(key))
    rows = {r["id"]: r for r in report.rows}
    assert rows["s-idle"]["outcome"] == "failed" and rows["s-old"]["outcome"] == "failed"
    assert "Unknown API Key" in rows["s-idle"]["message"]
    assert len(sim.session_ids()) == 5 and acted(sim) == []


def test_dss_down_mid_run_finishes_with_failed_rows(simulator):
    sim = simulator(tasks_instance())
    report = macros.run("abort-long-jobs", sim.client(), {"simulate": False}, progress=lambda s: s == 3 and sim.stop())
    rows = {r["id"]: r for r in report.rows}
    assert rows["j-long"]["outcome"] == "failed" and "cannot reach DSS" in rows["j-long"]["message"]
    assert rows["j-short"]["outcome"] == "spared"
    assert sim.phase("job", "j-long") == "RUNNING"


# --- self-protection ---------------------------------------------------------------------------------------------


def test_the_kernel_running_this_macro_is_never_killed(simulator):
    inst = kernels_instance()
    inst["projects"][0]["notebooks"].append(
        notebook("me", [session("admin", session_id="s-me", started_ago="9d", idle_for="9d",
                                kernel_pid={"fleet": "this-process"})]))
    sim = simulator(inst, fleet_pids={"this-process": os.getpid()})  # the harness runs the macro in this process
    rows = by_id(run(sim, "kill-idle-kernels", {"simulate": False}))
    assert rows["s-me"]["outcome"] == "spared"
    assert rows["s-me"]["reason"] == "spared: runs this macro (pid %d)" % os.getpid()
    assert "s-me" in sim.session_ids()


def test_a_task_running_a_process_tracker_macro_is_never_aborted(simulator):
    inst = tasks_instance()
    inst["futures"].append(future(
        "f-macro", "admin", started_ago="30h", action="run_macro",
        targets=[{"objectType": "PROJECT", "projectKey": "OPS",
                  "objectId": "pyrunnable_process-tracker_kill-idle-kernels"}]))
    sim = simulator(inst)
    rows = by_id(run(sim, "abort-background-tasks", {"simulate": False, "taskKinds": ["future"]}))
    assert rows["f-macro"]["outcome"] == "spared"
    assert rows["f-macro"]["reason"] == "spared: runs a process-tracker macro"
    assert rows["f-train"]["outcome"] == "aborted"
    assert sim.phase("future", "f-macro") == "RUNNING" and sim.phase("future", "f-train") == "ABORTED"


def test_a_scenario_whose_steps_call_this_plugin_and_its_jobs_are_never_aborted(simulator):
    step = {"id": "s1", "type": "runnable", "name": "clean",
            "params": {"runnableType": "pyrunnable_process-tracker_kill-idle-kernels", "config": {}}}
    inst = tasks_instance()
    inst["projects"].append(project(
        "OPS", scenarios=[scenario("CLEANUP", running_by="admin", started_ago="30h", future_id="f-cleanup",
                                   params={"steps": [step]})],
        jobs=[job("j-cleanup", "admin", started_ago="30h", scenarioId="CLEANUP")]))
    sim = simulator(inst)
    rows = by_id(run(sim, "abort-background-tasks", {"simulate": False, "taskKinds": ["scenario"]}))
    assert rows["f-cleanup"]["reason"] == "spared: a scenario running a process-tracker macro"
    assert rows["f-nightly"]["outcome"] == "aborted"
    rows = by_id(run(sim, "abort-long-jobs", {"simulate": False}))
    assert rows["j-cleanup"]["reason"] == "spared: started by a scenario running a process-tracker macro"
    assert sim.phase("future", "f-cleanup") == "RUNNING" and sim.phase("job", "j-cleanup") == "RUNNING"
    assert sim.phase("future", "f-nightly") == "ABORTED"


def test_the_scenario_named_by_the_trigger_file_is_never_aborted(simulator, tmp_path):
    sim = simulator(tasks_instance())
    trigger = tmp_path / "trigger.json"
    trigger.write_text(json.dumps({"trigger": {"type": "temporal", "name": "daily"}, "scenarioId": "NIGHTLY",
                                   "projectKey": "CHURN"}))
    rows = by_id(run(sim, "abort-background-tasks", {"simulate": False, "minRunningHours": 0},
                     extra_env={"DKU_CURRENT_SCENARIO_TRIGGER_FILE": str(trigger)}))
    assert rows["f-nightly"]["reason"] == "spared: the scenario running this macro"
    assert sim.phase("future", "f-nightly") == "RUNNING"
    assert sim.phase("future", "f-export") == "ABORTED"  # no minimum: everything else in scope


# --- tasks, jobs, services ---------------------------------------------------------------------------------------


def test_background_tasks_dry_run_then_applied(simulator):
    sim = simulator(tasks_instance())
    dry = by_id(run(sim, "abort-background-tasks"))
    assert dry["f-train"]["outcome"] == "would_act" and dry["f-train"]["reason"] == "running 1.5 d > 24 h"
    assert dry["f-nightly"]["outcome"] == "would_act" and dry["f-nightly"]["kind"] == "scenario"
    assert dry["f-export"]["reason"] == "spared: running 2.0 h <= 24 h"
    assert acted(sim) == []
    rows = by_id(run(sim, "abort-background-tasks", {"simulate": False, "excludedTaskTypes": ["run_scenario"]}))
    assert rows["f-train"]["outcome"] == "aborted"
    assert rows["f-nightly"]["reason"] == "spared: task type run_scenario excluded"
    assert sim.phase("future", "f-train") == "ABORTED" and sim.phase("future", "f-nightly") == "RUNNING"


def test_long_jobs_by_running_time_and_initiator(simulator):
    sim = simulator(tasks_instance())
    rows = by_id(run(sim, "abort-long-jobs", {"simulate": False, "excludedUsers": ["bob"]}))
    assert rows["j-long"]["outcome"] == "aborted" and rows["j-long"]["owner"] == "alice"
    assert rows["j-short"]["outcome"] == "spared"
    assert rows["j-fraud"]["reason"] == "spared: user bob excluded"
    assert sim.phase("job", "j-long") == "ABORTED"
    assert sim.phase("job", "j-short") == "RUNNING" and sim.phase("job", "j-fraud") == "RUNNING"


def test_jobs_before_dss_15_are_listed_project_by_project(simulator):
    sim = simulator(tasks_instance(dssVersion="14.2.0"))
    result = run(sim, "abort-long-jobs", {"simulate": False})
    rows = by_id(result)
    assert rows["j-long"]["outcome"] == "aborted" and rows["j-fraud"]["outcome"] == "aborted"
    assert not any(r["outcome"] == "error" for r in result.rows())
    assert any(r.path == "/projects/FRAUD/jobs/" for r in sim.requests)
    assert sim.phase("job", "j-fraud") == "ABORTED"


def test_services_by_kind_and_running_time(simulator):
    sim = simulator(tasks_instance())
    dry = by_id(run(sim, "stop-idle-services"))
    assert dry["dash"]["outcome"] == "would_act" and dry["new-app"]["outcome"] == "spared"
    assert acted(sim) == []
    rows = by_id(run(sim, "stop-idle-services", {"simulate": False}))
    assert rows["dash"]["outcome"] == "aborted" and rows["dash"]["reason"] == "running 5.0 d > 72 h"
    assert rows["new-app"]["outcome"] == "spared"
    assert rows["vscode-1"]["outcome"] == "aborted"
    assert "stream" not in rows  # continuous activities only when selected
    assert sim.phase("webapp", "dash") == "ABORTED" and sim.phase("webapp", "new-app") == "RUNNING"
    assert sim.phase("continuous_activity", "stream") == "RUNNING"
    rows = by_id(run(sim, "stop-idle-services", {"simulate": False, "serviceKinds": ["continuous_activity"]}))
    assert rows["stream"]["outcome"] == "aborted"


# --- every outcome in the table -----------------------------------------------------------------------------------


def test_every_outcome_state_is_visible_in_the_table(simulator):
    inst = instance(projects=[project("P", jobs=[
        job("j-aborted", "alice", started_ago="30h"),
        job("j-requested", "alice", started_ago="30h", abortDelay="never"),
        job("j-finished-first", "alice", started_ago="30h"),
        job("j-ends-on-its-own", "alice", started_ago="30h", abortDelay="never"),
        job("j-fails", "alice", started_ago="30h"),
        job("j-young", "alice", started_ago="1h"),
    ])], abortDelay=0)
    sim = simulator(inst)
    sim.add_fault(path=r"^/projects/P/jobs/j-fails/abort$", method="POST", error_rate=1.0)
    stop = threading.Event()

    def finish_after_abort():  # j-ends-on-its-own completes by itself once its abort was requested
        while not stop.is_set():
            if sim.abort_requested("job", "j-ends-on-its-own"):
                sim.finish("job", "j-ends-on-its-own")
                return
            stop.wait(0.02)

    def hook(stage):
        if stage == 3:  # decided, not yet acted: this one ends meanwhile
            sim.finish("job", "j-finished-first")

    watcher = threading.Thread(target=finish_after_abort, daemon=True)
    watcher.start()
    try:
        report = macros.run("abort-long-jobs", sim.client(), {"simulate": False, "waitSeconds": 1.5},
                            progress=hook)
    finally:
        stop.set()
        watcher.join()
    outcome = {r["id"]: r["outcome"] for r in report.rows}
    assert outcome == {"j-aborted": "aborted", "j-requested": "abort_requested",
                       "j-finished-first": "already_finished", "j-ends-on-its-own": "finished_before_abort",
                       "j-fails": "failed", "j-young": "spared"}
    assert report.header.startswith("Applied: 1 aborted, 1 abort_requested, 1 finished_before_abort, "
                                    "1 already_finished, 1 failed, 1 spared")
    assert sim.phase("job", "j-aborted") == "ABORTED" and sim.phase("job", "j-requested") == "ABORTING"
    assert sim.phase("job", "j-ends-on-its-own") == "DONE" and sim.phase("job", "j-fails") == "RUNNING"
    assert not sim.abort_requested("job", "j-finished-first") and not sim.abort_requested("job", "j-young")
    failed = next(r for r in report.rows if r["id"] == "j-fails")
    assert failed["message"].startswith("trying to abort the job:")


# --- the inventory -------------------------------------------------------------------------------------------------


def test_running_activities_lists_everything_read_only(simulator):
    sim = simulator(tasks_instance())
    result = run(sim, "running-activities")
    kinds = {(r["kind"], r["id"]) for r in result.rows()}
    assert {("job", "j-long"), ("scenario", "f-nightly"), ("future", "f-train"), ("webapp", "dash"),
            ("continuous_activity", "stream"), ("code_studio", "vscode-1")} <= kinds
    assert result.table["name"] == "Running activities"
    assert [c["name"] for c in result.table["columns"]][:3] == ["kind", "project", "name"]
    assert acted(sim) == []


def test_running_activities_scope(simulator):
    sim = simulator(tasks_instance())
    result = run(sim, "running-activities", {"projects": ["FRAUD"], "kinds": ["job"]})
    assert [(r["kind"], r["id"]) for r in result.rows()] == [("job", "j-fraud")]


# --- the scheduled clean-up installer -----------------------------------------------------------------------------


def _cleanup_scenarios(sim, project_key):
    client = sim.client()
    return [s for s in client.get_project(project_key).list_scenarios(as_type="listitems")
            if "process-tracker-cleanup" in (s.get("tags") or [])]


def test_installer_creates_one_scenario_and_updates_it_idempotently(simulator):
    sim = simulator(kernels_instance())
    first = run(sim, "install-cleanup-scenario", {"hour": 3, "maxIdleTimeHours": 12})
    row = first.rows()[0]
    assert row["outcome"] == "created" and row["project"] == "CHURN"
    assert row["reason"] == "daily at 03:00 (DSS server time); steps: kill-idle-kernels (dry run)"
    (listed,) = _cleanup_scenarios(sim, "CHURN")
    definition = sim.scenario("CHURN", listed["id"])
    (step,) = definition["params"]["steps"]
    assert step["type"] == "runnable"
    assert step["params"]["runnableType"] == "pyrunnable_process-tracker_kill-idle-kernels"
    assert step["params"]["config"]["simulate"] is True and step["params"]["config"]["maxIdleTimeHours"] == 12.0
    assert step["params"]["adminConfig"] == {} and step["params"]["proceedOnFailure"] is False
    (trigger,) = definition["triggers"]
    assert trigger["type"] == "temporal" and trigger["params"]["frequency"] == "Daily"
    assert (trigger["params"]["hour"], trigger["params"]["minute"]) == (3, 0) and trigger["active"] is True

    again = run(sim, "install-cleanup-scenario", {"hour": 3, "maxIdleTimeHours": 12})
    assert again.rows()[0]["outcome"] == "unchanged"
    updated = run(sim, "install-cleanup-scenario", {"hour": 4, "act": True,
                                                     "macros": ["kill-idle-kernels", "abort-long-jobs"]})
    assert updated.rows()[0]["outcome"] == "updated"
    (listed,) = _cleanup_scenarios(sim, "CHURN")  # still one
    definition = sim.scenario("CHURN", listed["id"])
    assert [s["params"]["runnableType"] for s in definition["params"]["steps"]] == [
        "pyrunnable_process-tracker_kill-idle-kernels", "pyrunnable_process-tracker_abort-long-jobs"]
    assert all(s["params"]["config"]["simulate"] is False for s in definition["params"]["steps"])
    assert len(definition["triggers"]) == 1 and definition["triggers"][0]["params"]["hour"] == 4


def test_installer_keeps_what_an_admin_added_by_hand(simulator):
    sim = simulator(kernels_instance())
    run(sim, "install-cleanup-scenario", {"projectKey": "SANDBOX"})
    (listed,) = _cleanup_scenarios(sim, "SANDBOX")
    client = sim.client()
    settings = client.get_project("SANDBOX").get_scenario(listed["id"]).get_settings()
    settings.raw_steps.append({"id": "mine", "type": "exec_sql", "name": "by hand", "params": {}})
    settings.add_periodic_trigger(60)
    settings.save()
    run(sim, "install-cleanup-scenario", {"projectKey": "SANDBOX", "hour": 5})
    definition = sim.scenario("SANDBOX", listed["id"])
    assert [s["id"] for s in definition["params"]["steps"]] == ["process_tracker_kill_idle_kernels", "mine"]
    assert sorted(t["params"]["frequency"] for t in definition["triggers"]) == ["Daily", "Minutely"]


def test_installed_step_config_is_a_valid_config_of_its_macro(simulator):
    sim = simulator(kernels_instance())
    run(sim, "install-cleanup-scenario", {"macros": ["kill-idle-kernels"], "excludedUsers": ["bob"]})
    (listed,) = _cleanup_scenarios(sim, "CHURN")
    (step,) = sim.scenario("CHURN", listed["id"])["params"]["steps"]
    # what DSS would do when the scenario runs: the step's config given to the macro as is
    result = run_macro(os.path.join(RUNNABLES, "kill-idle-kernels"), dict(step["params"]["config"], scanHost=False),
                       project_key="CHURN", env=env_for(sim))
    rows = by_id(result)
    assert rows["s-old"]["reason"] == "spared: user bob excluded"
    assert result.table["header"].startswith("Dry run")
    assert len(sim.session_ids()) == 5


def test_installer_without_project_names_the_parameter(simulator):
    sim = simulator(kernels_instance())
    with pytest.raises(MacroFailed) as info:
        run(sim, "install-cleanup-scenario", {}, project_key=None)
    assert info.value.message.startswith("projectKey: no project")
