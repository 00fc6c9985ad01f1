"""policy.py, pure: every rule, every reason, acted-on and spared rows alike, with an injected clock."""
import pytest

from process_tracker.activities import Activity
from process_tracker.policy import (
    NO_PROTECTION,
    PLUGIN_ID,
    Decision,
    JobRules,
    KernelRules,
    Protection,
    Scope,
    ServiceRules,
    TaskRules,
    by_hand,
    cautions,
    decide,
    judge,
    make_recheck,
    protection_from,
)

NOW = 1_700_000_000.0
H = 3600.0
D = 86400.0
GIB = 1024**3


def kernel(sid="s1", idle_h=1.0, age_h=2.0, state="idle", connections=0, project="P", owner="alice", pid=None,
           last=True):
    return Activity(
        kind="notebook_session", id=sid, project_key=project, name="nb-" + sid, owner=owner, state=state,
        started_at=NOW - age_h * H, last_activity_at=(NOW - idle_h * H) if last else None, pid=pid,
        details={"kernel_connections": connections, "kernel_id": "k-" + sid},
    )


def future(fid="f1", running_h=30.0, action="train_model", project="P", owner="bob", state="running", details=None):
    d = {"action": action, "targets": [{"type": "SAVED_MODEL", "project_key": project, "id": "m"}]}
    d.update(details or {})
    return Activity(kind="future", id=fid, project_key=project, name="task " + fid, owner=owner, state=state,
                    started_at=NOW - running_h * H, details=d)


def scenario(fid="sc1", scenario_id="NIGHTLY", running_h=30.0, project="P", owner="bob"):
    return Activity(kind="scenario", id=fid, project_key=project, name=scenario_id, owner=owner, state="running",
                    started_at=NOW - running_h * H, details={"scenario_id": scenario_id})


def job(jid="j1", running_h=30.0, project="P", owner="carol", scenario_id=None, pid=None, state="RUNNING"):
    return Activity(kind="job", id=jid, project_key=project, name="build " + jid, owner=owner, state=state,
                    started_at=NOW - running_h * H, pid=pid, details={"scenario_id": scenario_id})


def service(kind="webapp", sid="w1", running_h=100.0, project="P", owner="dave", details=None, start=True):
    return Activity(kind=kind, id=sid, project_key=project, name=sid, owner=owner, state="running",
                    started_at=(NOW - running_h * H) if start else None, details=details or {})


def one(activity, rules, protected=NO_PROTECTION, memory=None):
    (d,) = decide([activity], rules, NOW, protected=protected, memory=memory)
    assert isinstance(d, Decision) and d.activity is activity
    return d


# --- kernels: the built-in macro's rules ---


def test_idle_kernel_is_killed_with_the_idle_time_in_the_reason():
    d = one(kernel(idle_h=9.2 * 24, age_h=10 * 24), KernelRules(max_age_hours=0))
    assert d.act and d.reason == "idle 9.2 d > 24 h"


def test_old_kernel_is_killed_even_when_recently_active():
    d = one(kernel(idle_h=0.1, age_h=50), KernelRules())
    assert d.act and d.reason == "age 2.1 d > 48 h"


def test_both_rules_are_named_when_both_match():
    d = one(kernel(idle_h=30, age_h=60), KernelRules())
    assert d.act and d.reason == "idle 1.2 d > 24 h, age 2.5 d > 48 h"


def test_recent_kernel_is_spared_with_both_measures():
    d = one(kernel(idle_h=2, age_h=5), KernelRules())
    assert not d.act and d.reason == "spared: idle 2.0 h <= 24 h, age 5.0 h <= 48 h"


def test_zero_disables_a_rule_as_in_dss():
    d = one(kernel(idle_h=1000, age_h=1000), KernelRules(max_idle_hours=0, max_age_hours=0))
    assert not d.act and d.reason == "spared: idle rule off, age rule off"
    assert one(kernel(idle_h=1000, age_h=1), KernelRules(max_age_hours=0)).act
    assert not one(kernel(idle_h=1, age_h=1000), KernelRules(max_age_hours=0)).act


def test_threshold_is_strict():
    assert not one(kernel(idle_h=24, age_h=1), KernelRules()).act
    assert one(kernel(idle_h=24.01, age_h=1), KernelRules()).act


def test_unknown_idle_time_never_triggers_the_idle_rule():
    d = one(kernel(last=False, age_h=1), KernelRules())
    assert not d.act and d.reason == "spared: idle unknown, age 1.0 h <= 48 h"


def test_busy_kernel_spared_unless_asked():
    k = kernel(idle_h=100, age_h=100, state="busy")
    assert one(k, KernelRules()) == Decision(k, False, "spared: busy: running code now", ("busy: running code now",))
    assert one(k, KernelRules(spare_busy=False)).act


def test_connected_kernel_spared_unless_asked():
    k = kernel(idle_h=100, age_h=100, connections=2)
    assert one(k, KernelRules()).reason == "spared: alice has it open (2 connections)"
    assert one(kernel(idle_h=100, connections=1), KernelRules()).reason == "spared: alice has it open (1 connection)"
    assert one(k, KernelRules(spare_connected=False)).act


def test_connection_count_read_defensively():
    k = Activity(kind="notebook_session", id="x", project_key="P", name="n", owner="a", state="idle",
                 started_at=NOW - 100 * H, last_activity_at=NOW - 100 * H, details={"kernel_connections": None})
    assert one(k, KernelRules()).act


# --- scope ---


@pytest.mark.parametrize(
    "scope, reason",
    [
        (Scope(exclude_projects=frozenset(["P"])), "spared: project P excluded"),
        (Scope(projects=frozenset(["Q"])), "spared: project P not selected"),
        (Scope(exclude_users=frozenset(["alice"])), "spared: user alice excluded"),
        (Scope(users=frozenset(["bob"])), "spared: user alice not selected"),
        (Scope(projects=frozenset(["P"]), exclude_projects=frozenset(["P"])), "spared: project P excluded"),
    ],
)
def test_scope_spares_with_a_reason(scope, reason):
    d = one(kernel(idle_h=100, age_h=100), KernelRules(scope=scope))
    assert not d.act and d.reason == reason


def test_in_scope_is_acted_on():
    scope = Scope(projects=frozenset(["P"]), users=frozenset(["alice"]))
    assert one(kernel(idle_h=100), KernelRules(scope=scope)).act


def test_scope_applies_to_every_kind():
    scope = Scope(exclude_users=frozenset(["bob", "carol", "dave"]))
    for activity, rules in [(future(), TaskRules(scope=scope)), (job(), JobRules(scope=scope)),
                            (service(), ServiceRules(scope=scope))]:
        assert not one(activity, rules).act


# --- self-protection ---


def test_activity_whose_pid_runs_this_macro_is_spared():
    k = kernel(idle_h=100, age_h=100, pid=4242)
    d = one(k, KernelRules(), protected=Protection(pids=frozenset([1, 4242])))
    assert not d.act and d.reason == "spared: runs this macro (pid 4242)"
    j = job(pid=4242)
    assert one(j, JobRules(), protected=Protection(pids=frozenset([4242]))).reason.startswith("spared: runs this")


def test_protection_wins_over_every_other_rule():
    k = kernel(idle_h=100, age_h=100, pid=7, project="EXCLUDED")
    rules = KernelRules(spare_busy=False, scope=Scope(exclude_projects=frozenset(["EXCLUDED"])))
    assert one(k, rules, protected=Protection(pids=frozenset([7]))).reason == "spared: runs this macro (pid 7)"


def test_a_future_or_scenario_run_started_around_or_after_this_run_may_be_this_run_and_is_spared():
    rules = TaskRules(min_running_hours=0)
    # the run began at NOW (decide's `now`): its own future started a little before, so within the margin
    assert one(future("me", running_h=60 / H), rules).reason == "spared: started less than 5 min before this run " \
                                                                "(it may be this run)"
    assert not one(scenario("sc", running_h=4 / 60), rules).act
    assert one(future("old", running_h=6 / 60), rules).act
    # an explicit start of the run: a task started after it is spared whatever `now` says
    started = Protection(run_started_at=NOW - 2 * H)
    assert not one(future("young", running_h=1.5), rules, started).act
    assert one(future("older", running_h=3), rules, started).act
    assert protection_from({}, run_started_at=NOW).run_started_at == NOW


def test_future_running_any_process_tracker_macro_is_spared_from_its_payload():
    f = future(action="run_macro", details={"targets": [{"type": "RUNNABLE", "project_key": "P",
                                                         "id": "pyrunnable_process-tracker_kill-idle-kernels"}]})
    assert one(f, TaskRules()).reason == "spared: runs a process-tracker macro"
    other = future(action="run_macro", details={"targets": [{"id": "pyrunnable_other-plugin_x"}]})
    assert one(other, TaskRules()).act


def test_scenario_running_this_macro_and_its_jobs_are_spared():
    protected = Protection(scenarios=frozenset([("P", "CLEANUP")]))
    assert one(scenario(scenario_id="CLEANUP"), TaskRules(), protected).reason == "spared: the scenario running this macro"
    assert one(scenario(scenario_id="CLEANUP", project="OTHER"), TaskRules(), protected).act
    assert one(scenario(scenario_id="NIGHTLY"), TaskRules(), protected).act
    d = one(job(scenario_id="CLEANUP"), JobRules(), protected)
    assert d.reason == "spared: started by the scenario running this macro"
    assert one(job(scenario_id=None), JobRules(), protected).act


def test_scenario_protected_in_any_project_when_project_unknown():
    protected = Protection(scenarios=frozenset([(None, "CLEANUP")]))
    assert not one(scenario(scenario_id="CLEANUP", project="X"), TaskRules(), protected).act


def test_a_future_running_a_webapp_a_continuous_activity_or_a_scenario_or_unchecked_is_spared():
    runs = future(details={"runs": "webapp CHURN/w1"})
    assert one(runs, TaskRules(min_running_hours=0)).reason == "spared: runs webapp CHURN/w1 (aborting it would stop it)"
    unchecked = future(details={"unchecked": "listing webapps of project CHURN: boom"})
    assert one(unchecked, TaskRules()).reason == ("spared: cannot tell whether it runs a webapp, a continuous "
                                                  "activity or a scenario (listing webapps of project CHURN: boom)")


def test_the_plugin_id_comes_from_plugin_json():
    import json
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    assert PLUGIN_ID == json.loads((root / "plugin.json").read_text())["id"] == "process-tracker"


def test_the_plugins_own_webapp_is_spared():
    mine = service(details={"webapp_type": "webapp_process-tracker_process-monitor"})
    assert one(mine, ServiceRules()).reason == "spared: the process-tracker webapp"
    assert one(service(details={"webapp_type": "webapp_other_x"}), ServiceRules()).act


def test_protection_from_environment_reads_the_scenario_trigger():
    trigger = {"trigger": {"type": "temporal", "name": "daily"}, "scenarioId": "CLEANUP", "projectKey": "OPS"}
    p = protection_from({"DKU_CURRENT_PROJECT_KEY": "P"}, pids=[10, 1], trigger=trigger)
    assert p.pids == frozenset([10, 1]) and p.scenarios == frozenset([("OPS", "CLEANUP")])
    nested = {"trigger": {"scenarioId": "CLEANUP"}}
    assert protection_from({"DKU_CURRENT_PROJECT_KEY": "P"}, trigger=nested).scenarios == frozenset([("P", "CLEANUP")])
    assert protection_from({}, trigger={"trigger": {"type": "manual"}}).scenarios == frozenset()
    assert protection_from({}, plugin_scenarios=[("A", "B")]).plugin_scenarios == frozenset([("A", "B")])


def test_scenarios_calling_this_plugins_macros_and_their_jobs_are_spared():
    protected = Protection(plugin_scenarios=frozenset([("P", "NIGHTLY")]))
    assert one(scenario(), TaskRules(), protected).reason == "spared: a scenario running a process-tracker macro"
    assert one(job(scenario_id="NIGHTLY"), JobRules(), protected).reason == (
        "spared: started by a scenario running a process-tracker macro")


# --- tasks ---


def test_long_task_is_aborted_short_one_spared():
    assert one(future(running_h=30), TaskRules()).reason == "running 1.2 d > 24 h"
    assert one(future(running_h=2), TaskRules()).reason == "spared: running 2.0 h <= 24 h"


def test_zero_minimum_means_every_task_in_scope():
    d = one(future(running_h=0.5), TaskRules(min_running_hours=0))
    assert d.act and d.reason == "running 30 min (no minimum)"


def test_task_types_include_and_exclude():
    rules = TaskRules(task_types=frozenset(["train_model"]))
    assert one(future(action="train_model"), rules).act
    assert one(future(action="export"), rules).reason == "spared: task type export not selected"
    rules = TaskRules(exclude_task_types=frozenset(["train_model"]))
    assert one(future(action="train_model"), rules).reason == "spared: task type train_model excluded"
    assert one(scenario(), TaskRules(exclude_task_types=frozenset(["run_scenario"]))).reason == (
        "spared: task type run_scenario excluded")


def test_kinds_select_candidates_others_get_no_row():
    acts = [future("f"), scenario("s"), kernel("k")]
    ds = decide(acts, TaskRules(kinds=("scenario",)), NOW)
    assert [d.activity.id for d in ds] == ["s"]
    assert [d.activity.id for d in decide(acts, TaskRules(), NOW)] == ["f", "s"]


def test_abort_in_progress_is_not_requested_again():
    assert one(future(state="aborting"), TaskRules()).reason == "spared: abort already in progress"
    assert one(job(state="aborting"), JobRules()).reason == "spared: abort already in progress"


def test_unknown_running_time_spares_even_with_no_minimum():
    # a task whose start is unknown may be this very run (DSS gives a macro no id of its own future): spared
    f = Activity(kind="future", id="f", project_key="P", name="t", owner="o", state="running", details={})
    assert one(f, TaskRules()).reason == "spared: start time unknown (it may be this run)"
    assert one(f, TaskRules(min_running_hours=0)).reason == "spared: start time unknown (it may be this run)"
    j = Activity(kind="job", id="j", project_key="P", name="t", owner="o", state="RUNNING", details={})
    assert one(j, JobRules()).reason == "spared: running time unknown"
    assert one(j, JobRules(min_running_hours=0)).reason == "running for an unknown time (no minimum)"


# --- jobs and services ---


def test_jobs_by_running_time():
    assert one(job(running_h=25), JobRules()).act
    assert not one(job(running_h=23), JobRules()).act
    assert one(job(running_h=2), JobRules(min_running_hours=1)).reason == "running 2.0 h > 1 h"


def test_services_by_running_time_and_kind():
    rules = ServiceRules()
    assert one(service(running_h=100), rules).reason == "running 4.2 d > 72 h"
    assert one(service(kind="code_studio", running_h=10), rules).reason == "spared: running 10.0 h <= 72 h"
    assert decide([service(kind="continuous_activity")], rules, NOW) == []
    ca = service(kind="continuous_activity")
    assert decide([ca], ServiceRules(kinds=("continuous_activity",)), NOW)[0].act


# --- free-memory mode ---


def test_largest_first_until_target_freed():
    ks = [kernel("small", idle_h=100), kernel("big", idle_h=100), kernel("mid", idle_h=100),
          kernel("young", idle_h=1), kernel("unmeasured", idle_h=100)]
    memory = {("notebook_session", "small"): 1 * GIB, ("notebook_session", "big"): 4 * GIB,
              ("notebook_session", "mid"): 2 * GIB, ("notebook_session", "young"): 8 * GIB}
    ds = {d.activity.id: d for d in decide(ks, KernelRules(free_bytes=5 * GIB), NOW, memory=memory)}
    assert ds["big"].act and ds["big"].reason == "idle 4.2 d > 24 h; 4.0 GiB, largest first"
    assert ds["mid"].act  # 4 + 2 >= 5
    assert not ds["small"].act and ds["small"].reason.startswith("spared: 5.0 GiB target reached by larger kernels")
    assert not ds["young"].act and ds["young"].reason.startswith("spared: idle 1.0 h")
    assert not ds["unmeasured"].act and ds["unmeasured"].reason.startswith("spared: memory unknown")
    assert list(ds) == ["small", "big", "mid", "young", "unmeasured"]  # input order kept


def test_free_mode_without_memory_spares_everything():
    ds = decide([kernel(idle_h=100)], KernelRules(free_bytes=GIB), NOW)
    assert not ds[0].act and "memory unknown" in ds[0].reason


def test_target_larger_than_everything_acts_on_all_measured():
    ks = [kernel("a", idle_h=100), kernel("b", idle_h=100)]
    memory = {("notebook_session", "a"): GIB, ("notebook_session", "b"): GIB}
    assert all(d.act for d in decide(ks, KernelRules(free_bytes=100 * GIB), NOW, memory=memory))


# --- recheck ---


def test_recheck_applies_the_rule_to_the_fresh_activity_with_a_fresh_clock():
    recheck = make_recheck(KernelRules(), clock=lambda: NOW)
    assert recheck(kernel(idle_h=100)) == (True, "idle 4.2 d > 24 h")
    assert recheck(kernel(idle_h=100, state="busy")) == (False, "spared: busy: running code now")
    recheck = make_recheck(KernelRules(), protected=Protection(pids=frozenset([5])), clock=lambda: NOW)
    assert recheck(kernel(idle_h=100, pid=5)) == (False, "spared: runs this macro (pid 5)")


def test_recheck_sees_time_pass():
    clock = [NOW]
    recheck = make_recheck(JobRules(min_running_hours=1), clock=lambda: clock[0])
    j = job(running_h=0.9)
    assert not recheck(j)[0]
    clock[0] += 0.2 * H
    assert recheck(j)[0]


def test_judge_is_decide_for_one():
    k = kernel(idle_h=100)
    assert judge(k, KernelRules(), NOW) == decide([k], KernelRules(), NOW)[0]


def test_every_candidate_gets_exactly_one_decision():
    acts = [kernel(str(i), idle_h=i * 5, age_h=i * 5, state=("busy" if i % 3 == 0 else "idle"),
                   connections=i % 2) for i in range(20)]
    ds = decide(acts, KernelRules(), NOW)
    assert [d.activity for d in ds] == acts
    assert all(d.reason for d in ds)
    assert all(d.reason.startswith("spared: ") != d.act for d in ds)


# --- by hand (the webapp): the same soft rules, as warnings an administrator may override ---


def test_cautions_are_the_texts_the_macros_spare_with():
    k = kernel(idle_h=100, age_h=100, state="busy", connections=1)
    assert cautions(k, NOW) == ("busy: running code now", "alice has it open (1 connection)")
    assert one(k, KernelRules()).reason == "spared: " + cautions(k, NOW)[0]
    assert one(kernel(idle_h=100, connections=1), KernelRules()).reason == "spared: " + cautions(
        kernel(connections=1), NOW)[0]
    assert cautions(kernel(age_h=0.05), NOW) == ("started 3 min ago",)
    assert cautions(future(running_h=0.05), NOW) == ("started 3 min ago",)
    assert cautions(future(running_h=1), NOW) == ()
    assert cautions(kernel(connections=1, owner=None), NOW) == ("someone has it open (1 connection)",)


def test_by_hand_warns_spares_and_acts_only_anyway():
    k = kernel(state="busy", connections=2)
    d = by_hand(k, NOW, NO_PROTECTION, "admin")
    assert not d.act and d.reason == "spared: busy: running code now; alice has it open (2 connections)"
    assert d.warnings == ("busy: running code now", "alice has it open (2 connections)")
    assert not by_hand(k, NOW, NO_PROTECTION, "admin", anyway=("busy",)).act  # "connected" was not overridden
    d = by_hand(k, NOW, NO_PROTECTION, "admin", anyway=("busy", "connected"))
    assert d.act and d.warning_kinds == ("busy", "connected") and d.reason == ("requested by admin from the process monitor, anyway (busy: running code now; "
                                  "alice has it open (2 connections))")
    quiet = by_hand(kernel(), NOW, NO_PROTECTION, "admin")
    assert quiet.act and quiet.warnings == () and quiet.reason == "requested by admin from the process monitor"


def test_by_hand_never_overrides_self_protection():
    k = kernel(state="busy", pid=5)
    d = by_hand(k, NOW, Protection(pids=frozenset([5])), "admin", anyway=("busy",))
    assert not d.act and d.reason == "spared: runs this macro (pid 5)"
