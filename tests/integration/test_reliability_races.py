"""Races between what DSS lists, what the host shows and what the plugin does, each provoked for real:

- an activity that finishes between the listing and the abort: nothing is sent, the row says so;
- one that finishes while its stop is on its way: it is reported as finished, never as aborted;
- a kernel that turns busy, or gets a browser connected, after the decision: the re-check spares it;
- a pid DSS lists that no longer is the process it was (the process exited, the pid went to a non-DSS process or
  to another kernel): memory and roles are never attributed to the wrong activity.

The macro core (`macros.run`, which every runnable.py and CLI mirror calls) runs with a progress hook to act at
the exact stage; real dataikuapi over HTTP against the simulator; the real scanner over real processes.
"""
import subprocess
import sys

from dev.dss_simulator.builders import future, instance, job, notebook, project, session
from dev.fleet import KERNEL_IDS
from process_tracker import joins, macros
from process_tracker.activities import list_activities
from process_tracker.host import Scanner


def rows_of(report):
    return {r["id"]: r for r in report.rows}


def stops(sim):
    return [(r.method, r.path) for r in sim.actions]


def at_stage(stage, action):
    """A progress callback doing `action()` when the run reaches `stage` (3: decided, not yet acted)."""

    def hook(i):
        if i == stage:
            action()

    return hook


def two_of_each():
    return instance(projects=[project(
        "P",
        notebooks=[notebook("a", [session("alice", session_id="s1", started_ago="3d", idle_for="36h")]),
                   notebook("b", [session("bob", session_id="s2", started_ago="3d", idle_for="36h")])],
        jobs=[job("j1", "alice", started_ago="30h"), job("j2", "bob", started_ago="30h")],
    )], futures=[future("f1", "bob", started_ago="36h"), future("f2", "bob", started_ago="36h")], abortDelay=0)


APPLY = {"simulate": False, "scanHost": False, "waitSeconds": 2}


def test_activities_finishing_between_listing_and_abort_are_left_alone(simulator):
    sim = simulator(two_of_each())
    cases = (("kill-idle-kernels", "session", "s1", "s2"), ("abort-long-jobs", "job", "j1", "j2"),
             ("abort-background-tasks", "future", "f1", "f2"))
    for macro_id, kind, finishing, other in cases:
        report = macros.run(macro_id, sim.client(), APPLY, progress=at_stage(3, lambda: sim.finish(kind, finishing)))
        rows = rows_of(report)
        assert rows[finishing]["outcome"] == "already_finished", rows[finishing]
        assert rows[finishing]["message"] == "no longer running when re-checked: nothing done"
        assert rows[other]["outcome"] == "aborted"
        assert sim.phase(kind, finishing) == "DONE" and not sim.abort_requested(kind, finishing)
        assert not any(finishing in path for _, path in stops(sim)), stops(sim)


def test_a_job_finishing_while_its_abort_is_on_its_way_is_reported_finished_not_aborted(simulator):
    sim = simulator(two_of_each())
    sim.add_fault(path=r"^/projects/P/jobs/j1/abort$", method="POST", latency=0.5)  # the abort travels slowly

    def finish_soon():
        sim.finish("job", "j1", after=0.2)  # ends on its own before the abort lands

    report = macros.run("abort-long-jobs", sim.client(), APPLY, progress=at_stage(3, finish_soon))
    row = rows_of(report)["j1"]
    assert sim.phase("job", "j1") == "DONE"
    # whether it ended before the re-check or during the stop's trip, it is never reported as aborted
    assert row["outcome"] in ("finished_before_abort", "already_finished"), row
    assert [p for _, p in stops(sim)].count("/projects/P/jobs/j1/abort") <= 1
    assert rows_of(report)["j2"]["outcome"] == "aborted"


def test_a_kernel_turning_busy_or_connected_after_the_decision_is_spared(simulator):
    sim = simulator(two_of_each())

    def user_comes_back():
        sim.set_kernel_state("s1", state="busy")
        sim.set_kernel_state("s2", connections=1)

    report = macros.run("kill-idle-kernels", sim.client(), APPLY, progress=at_stage(3, user_comes_back))
    rows = rows_of(report)
    assert (rows["s1"]["outcome"], rows["s1"]["reason"]) == ("spared", "spared: busy: running code now")
    assert (rows["s2"]["outcome"], rows["s2"]["reason"]) == ("spared", "spared: bob has it open (1 connection)")
    assert rows["s1"]["message"] == "re-checked just before acting: spared"
    assert stops(sim) == [] and sorted(sim.session_ids()) == ["s1", "s2"]


def _sessions(fleet, stale_pid, exited_pid):
    """Sessions whose listed pid is stale: s-k1 (kernel-1's id) lists the pid kernel-2 has now; s-k2 (kernel-2's
    id) lists none; s-not-dss lists a pid a non-DSS process has now; s-exited lists the pid of a process that
    exited; s-k3 is a plain, correct session."""
    return instance(projects=[project("P", notebooks=[notebook("n", [
        session("alice", session_id="s-k1", kernel_id=KERNEL_IDS["kernel-1"], kernel_pid=stale_pid),
        session("alice", session_id="s-k2", kernel_id=KERNEL_IDS["kernel-2"]),
        session("bob", session_id="s-not-dss", kernel_id="0badc0de-0000-4000-8000-000000000000",
                kernel_pid=fleet.pid("not-dss-1")),
        session("bob", session_id="s-exited", kernel_id="0badc0de-1111-4000-8000-000000000000",
                kernel_pid=exited_pid),
        session("bob", session_id="s-k3", kernel_id=KERNEL_IDS["kernel-3"], kernel_pid=fleet.pid("kernel-3")),
    ])])])


def test_stale_pids_never_attribute_a_process_to_the_wrong_session(fleet, simulator):
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()  # its pid is now free (or someone else's)
    sim = simulator(_sessions(fleet, fleet.pid("kernel-2"), exited.pid))
    inventory = list_activities(sim.client(), kinds=["notebook_session"])
    joined = joins.join(Scanner().scan(), inventory, instance=fleet.dip_home)

    def pids(session_id):
        return {m.process.pid for m in joined.for_activity("notebook_session", session_id)}

    k1, k2, k3 = (fleet.pid(n) for n in ("kernel-1", "kernel-2", "kernel-3"))
    assert k1 in pids("s-k1") and k2 not in pids("s-k1")  # its kernel id wins over a pid now kernel-2's
    assert k2 in pids("s-k2")
    assert k3 in pids("s-k3")
    assert pids("s-not-dss") == set() and pids("s-exited") == set()
    not_here = {a.id for a in joined.not_on_host}
    assert {"s-not-dss", "s-exited"} <= not_here and not {"s-k1", "s-k2", "s-k3"} & not_here
    by_pid = {m.process.pid: m for m in joined.rows}
    assert by_pid[fleet.pid("not-dss-1")].activity is None


def test_the_inventory_macro_shows_each_kernel_memory_once_with_stale_pids(fleet, simulator):
    sim = simulator(_sessions(fleet, fleet.pid("kernel-2"), None))
    report = macros.run("running-activities", sim.client(), {"kinds": ["notebook_session"], "scanHost": True},
                        environ={"DIP_HOME": fleet.dip_home})
    rows = rows_of(report)
    for session_id in ("s-k1", "s-k2", "s-k3"):
        assert rows[session_id]["role"] == "jupyter_kernel" and rows[session_id]["memory"], rows[session_id]
    assert rows["s-not-dss"]["role"] == "" and rows["s-not-dss"]["memory"] == ""
    orphans = {r["pid"] for r in report.rows if r["kind"] == "orphan"}
    assert str(fleet.pid("kernel-orphan")) in orphans
    assert not {str(fleet.pid(n)) for n in ("kernel-1", "kernel-2", "kernel-3")} & orphans
