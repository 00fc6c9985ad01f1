"""actions.perform: every outcome, asserted against the SIMULATOR's action log and state (real dataikuapi over HTTP),
with the simulator's manual clock driving both DSS's time and the verification wait (no real sleeping)."""
import logging
from collections import namedtuple

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
from process_tracker import dss
from process_tracker.actions import OUTCOMES, ActionResult, perform
from process_tracker.activities import list_activities
from process_tracker.errors import ConfigError
from process_tracker.policy import Decision

D = namedtuple("D", "activity act reason")  # any object with .activity, .act and .reason is accepted

SECRET = "s3cr3t-ml-token-0123456789"


def small(abort_delay="2s"):
    return instance(
        abortDelay=abort_delay,
        projects=[
            project(
                "CHURN",
                notebooks=[notebook("explore", [session("alice", session_id="s1", kernel_pid=4101, idle_for="8d"),
                                                session("bob", session_id="s2", idle_for="3d")])],
                jobs=[job("j1", "alice", kernel_pid=4201, started_ago="5h")],
                scenarios=[scenario("NIGHTLY", running_by="alice", future_id="run-1")],
                webapps=[webapp("w1", "Dashboard", backend_pid=4301)],
                continuous_activities=[continuous_activity("stream", "bob")],
                code_studios=[code_studio("cs1", "bob")],
            ),
        ],
        futures=[future("f1", "bob", "Computing metrics", started_ago="9d",
                        targets=[{"objectType": "DATASET", "projectKey": "CHURN", "objectId": "tx"}]),
                 future("f2", "alice", "Training", action="train_prediction_models",
                        extras={"serverSecret": SECRET})],
    )


# (activity kind, simulator task kind, id): the simulator tracks a running scenario as a future
EVERY_KIND = [
    ("notebook_session", "session", "s1"),
    ("future", "future", "f1"),
    ("scenario", "future", "run-1"),
    ("job", "job", "j1"),
    ("webapp", "webapp", "w1"),
    ("continuous_activity", "continuous_activity", "stream"),
    ("code_studio", "code_studio", "cs1"),
]


@pytest.fixture
def sim(simulator, manual_clock):
    return simulator(small(), clock=manual_clock)


def client_for(sim, login="admin"):
    return dss.install_timeouts(sim.client(login), timeout=10)


def listed(sim, login="admin"):
    inv = list_activities(client_for(sim, login))
    assert inv.errors == ()
    return {a.id: a for a in inv.activities}


def run(sim, clock, decisions, login="admin", **kwargs):
    """perform() with the simulator's manual clock: each poll sleep makes DSS's time pass as much."""
    kwargs.setdefault("apply", True)
    return perform(client_for(sim, login), decisions, clock=clock, sleep=clock.advance, **kwargs)


def stops(sim):
    """The change requests DSS received (everything but GET), as (method, path)."""
    return [(r.method, r.path) for r in sim.actions]


def test_dry_run_reports_would_act_and_spared_and_calls_nothing(sim, manual_clock):
    acts = listed(sim)
    before = len(sim.requests)
    decisions = [Decision(acts["f1"], True, "running 9d > 1h"), D(acts["s2"], False, "spared: connected")]
    results = run(sim, manual_clock, decisions, apply=False)
    assert [(r.outcome, r.reason) for r in results] == [("would_act", "running 9d > 1h"), ("spared", "spared: connected")]
    assert "would abort the task" in results[0].message
    assert len(sim.requests) == before and stops(sim) == []
    assert sim.phase("future", "f1") == "RUNNING"


@pytest.mark.parametrize("kind, task_kind, id_", EVERY_KIND)
def test_each_kind_is_stopped_through_its_api_call_and_confirmed(sim, manual_clock, kind, task_kind, id_):
    activity = listed(sim)[id_]
    assert activity.kind == kind
    [result] = run(sim, manual_clock, [D(activity, True, "stale")])
    assert isinstance(result, ActionResult)
    assert (result.outcome, result.reason) == ("aborted", "stale"), result.message
    assert sim.phase(task_kind, id_) == "ABORTED"
    expected = {
        "notebook_session": ("DELETE", "/projects/CHURN/jupyter-notebooks/explore/sessions/s1"),
        "future": ("DELETE", "/futures/f1"),
        "scenario": ("DELETE", "/futures/run-1"),
        "job": ("POST", "/projects/CHURN/jobs/j1/abort"),
        "webapp": ("PUT", "/projects/CHURN/webapps/w1/backend/actions/stop"),
        "continuous_activity": ("POST", "/projects/CHURN/continuous-activities/stream/stop"),
        "code_studio": ("POST", "/projects/CHURN/code-studios/cs1/stop"),
    }[kind]
    assert stops(sim) == [expected]  # exactly one change request: never retried, nothing else touched


def test_a_future_that_ignores_aborts_is_abort_requested_after_the_bounded_wait(sim, manual_clock):
    sim.set_abort_delay("never", kind="future", task_id="f1")
    acts = listed(sim)
    start = manual_clock()
    [result] = run(sim, manual_clock, [D(acts["f1"], True, "stale")], wait_seconds=10, poll_seconds=0.5)
    assert result.outcome == "abort_requested"
    assert "still running after 10 s" in result.message
    assert manual_clock() - start == pytest.approx(10)
    assert sim.abort_requested("future", "f1") and sim.phase("future", "f1") == "ABORTING"
    assert stops(sim) == [("DELETE", "/futures/f1")]


def test_already_finished_when_it_ended_between_listing_and_acting(sim, manual_clock):
    acts = listed(sim)
    sim.finish("job", "j1")
    sim.finish("session", "s1")
    results = run(sim, manual_clock, [D(acts["j1"], True, "stale"), D(acts["s1"], True, "idle")])
    assert [r.outcome for r in results] == ["already_finished", "already_finished"]
    assert stops(sim) == []
    assert sim.phase("job", "j1") == "DONE"


def test_finished_before_abort_when_it_ends_between_the_recheck_and_the_stop(sim, manual_clock):
    acts = listed(sim)

    def recheck(fresh):  # the race: it finishes on its own right after the re-check said "still act"
        sim.finish({"job": "job", "future": "future", "notebook_session": "session"}[fresh.kind], fresh.id,
                   state="FAILED" if fresh.kind == "job" else "DONE")
        return True, "still stale"

    results = run(sim, manual_clock, [D(acts["j1"], True, "a"), D(acts["f1"], True, "b"), D(acts["s2"], True, "c")],
                  recheck=recheck)
    assert [r.outcome for r in results] == ["finished_before_abort"] * 3, [r.message for r in results]
    assert "FAILED" in results[0].message
    assert sim.phase("job", "j1") == "FAILED" and sim.phase("future", "f1") == "DONE"
    assert sim.phase("session", "s2") == "DONE"


def test_finished_on_its_own_after_the_abort_request(sim, manual_clock):
    sim.set_abort_delay(30, kind="future", task_id="f1")
    sim.finish("future", "f1", after=3)
    [result] = run(sim, manual_clock, [D(listed(sim)["f1"], True, "stale")], wait_seconds=10)
    assert result.outcome == "finished_before_abort"
    assert sim.phase("future", "f1") == "DONE"


def test_a_failing_stop_is_failed_with_the_message_and_never_retried(sim, manual_clock):
    acts = listed(sim)
    sim.add_fault(path="/jobs/j1/abort$", method="POST", error_rate=1.0)
    results = run(sim, manual_clock, [D(acts["j1"], True, "stale"), D(acts["f1"], True, "stale")])
    assert [r.outcome for r in results] == ["failed", "aborted"]
    assert "Simulated failure" in results[0].message and results[0].message.startswith("trying to abort the job")
    assert [(m, p, s) for m, p, s in ((r.method, r.path, r.status) for r in sim.actions)] == [
        ("POST", "/projects/CHURN/jobs/j1/abort", 500), ("DELETE", "/futures/f1", 204)]
    assert sim.phase("job", "j1") == "RUNNING"


def test_a_non_admin_cannot_abort_someone_elses_task(sim, manual_clock):
    acts = listed(sim)
    [result] = run(sim, manual_clock, [D(acts["f1"], True, "stale")], login="alice")  # bob's future
    assert result.outcome == "failed"
    assert result.message.startswith("could not re-check it before acting, nothing done: ")
    assert "You may not act on future f1 of user bob" in result.message
    assert sim.phase("future", "f1") == "RUNNING" and not sim.abort_requested("future", "f1")


def test_recheck_spares_a_kernel_that_became_busy(sim, manual_clock):
    acts = listed(sim)
    sim.set_kernel_state("s1", "busy")
    seen = []

    def recheck(fresh):
        seen.append(fresh.state)
        return (False, "spared: busy now") if fresh.state == "busy" else (True, "still idle")

    results = run(sim, manual_clock, [D(acts["s1"], True, "idle 8d"), D(acts["s2"], True, "idle 3d")], recheck=recheck)
    assert [(r.outcome, r.reason) for r in results] == [("spared", "spared: busy now"), ("aborted", "idle 3d")]
    assert seen == ["busy", "idle"]
    assert results[0].activity.state == "busy"  # the fresh record, not the listed one
    assert sim.session_ids() == ["s1"]
    assert stops(sim) == [("DELETE", "/projects/CHURN/jupyter-notebooks/explore/sessions/s2")]


def test_a_malformed_answer_to_a_stop_is_verified_not_assumed(sim, manual_clock):
    sim.add_fault(path="/sessions/s1$", method="DELETE", malformed=True)
    [result] = run(sim, manual_clock, [D(listed(sim)["s1"], True, "idle")])
    assert result.outcome == "aborted"
    assert sim.session_ids() == ["s2"]


def test_stops_are_sequential_and_verified_together_within_one_wait(sim, manual_clock):
    sim.set_abort_delay(4)
    acts = listed(sim)
    start = manual_clock()
    results = run(sim, manual_clock, [D(acts[i], True, "stale") for i in ("j1", "f1", "run-1")],
                  wait_seconds=10, poll_seconds=1)
    assert [r.outcome for r in results] == ["aborted"] * 3
    assert manual_clock() - start == pytest.approx(4)  # one shared wait, not 3 x 4 s
    assert [p for _, p in stops(sim)] == ["/projects/CHURN/jobs/j1/abort", "/futures/f1", "/futures/run-1"]


def test_every_result_is_logged_without_secrets(sim, manual_clock, caplog):
    acts = listed(sim)
    assert acts["f2"].details.get("action") == "train_prediction_models"
    with caplog.at_level(logging.INFO, logger="process_tracker.actions"):
        run(sim, manual_clock, [D(acts["f2"], True, "stale"), D(acts["s2"], False, "spared: recent")])
    lines = [r.getMessage() for r in caplog.records if r.name == "process_tracker.actions"]
    assert len(lines) == 3
    assert lines[0] == "requesting: abort the task future f2 by admin (stale)"
    assert lines[1] == "spared notebook_session CHURN/s2 by admin: spared: nothing done (spared: recent)"
    assert lines[2].startswith("aborted future f2 by admin: stopped")
    assert not any(SECRET in line for line in lines)
    assert all(SECRET not in repr(a) for a in acts.values())


@pytest.mark.parametrize("kwargs, param", [
    ({"wait_seconds": -1}, "wait_seconds"),
    ({"poll_seconds": 0}, "poll_seconds"),
    ({"wait_seconds": "10"}, "wait_seconds"),
])
def test_bad_arguments_act_on_nothing(sim, manual_clock, kwargs, param):
    acts = listed(sim)
    with pytest.raises(ConfigError) as e:
        run(sim, manual_clock, [D(acts["f1"], True, "stale")], **kwargs)
    assert e.value.param == param
    with pytest.raises(ConfigError, match="^decisions: "):
        run(sim, manual_clock, [D(acts["f1"], True, "ok"), D("not an activity", True, "x")])
    assert stops(sim) == []


def test_outcomes_are_the_closed_set():
    assert OUTCOMES == ("aborted", "abort_requested", "already_finished", "finished_before_abort", "failed", "spared",
                        "would_act")
