"""Faults against every face of the plugin: cells of the fault matrix of bench/reliability.py (which runs all of
them), each judged against the simulator's log and state: the run finishes with a table or one readable message,
stops exactly what it decided to stop (each stop sent at most once, never retried), says the truth about it, and
shows no secret nor traceback. Real dataikuapi over HTTP, the real console script, the webapp as DSS loads it.

Client timeout 1 s, stops verified for 2 s: a hung call costs about 3 s (a read: 3 tries), not minutes.
The cells here are a subset (every face and every fault at least once, about 50 of the bench's ~240 cells), so
that the file runs in well under a minute; `bench/reliability.py` runs them all and measures the times (a test
here never asserts a duration: a slow DSS shows as its "did not answer in time" row or message).
"""
import os
import re
import shutil

import pytest

from bench.reliability import FACES, FAULTS, HANG_SECONDS, S_A, S_B, Simulator, reliability_instance, run_cell

KERNELS = "macro kill-idle-kernels"
TASKS = "macro abort-background-tasks"
JOBS = "macro abort-long-jobs"
SERVICES = "macro stop-idle-services"
INVENTORY = "macro running-activities"
INSTALLER = "macro install-cleanup-scenario"
CLI_KERNELS, CLI_TASKS, CLI_JOBS, WEBAPP = "cli kill-kernels", "cli abort-tasks", "cli abort-jobs", "webapp"
VIEWS = "webapp views"

UNREACHABLE = r"^error: checking who runs .*: cannot reach DSS$"
CLI_UNREACHABLE = r"^exit 1: process-tracker: error: checking who runs process-tracker .*: cannot reach DSS"

# (face, fault, what the user sees: a regex on the table's header, the error message or the HTTP statuses)
CELLS = [
    # every face, fault-free and with the cheap faults
    (KERNELS, "none", r"^Applied: 2 aborted, 2 spared\.$"),
    (TASKS, "none", r"^Applied: 3 aborted, 5 spared\.$"),  # 4 futures run webapps and continuous activities
    (JOBS, "none", r"^Applied: 2 aborted, 2 spared\.$"),
    (SERVICES, "none", r"^Applied: 6 aborted\.$"),
    (INVENTORY, "none", r"^22 listed\.$"),
    (INSTALLER, "none", r"^1 created\.$"),
    (CLI_TASKS, "none", r"^Applied: 3 aborted, 5 spared\.$"),
    (TASKS, "stop_500", r"^Applied: 3 failed, 5 spared\.$"),
    (SERVICES, "stop_500", r"^Applied: 6 failed\.$"),
    (WEBAPP, "stop_500", r"^HTTP 200$"),
    (JOBS, "stop_malformed", r"^Applied: 2 aborted, 2 spared\.$"),
    (SERVICES, "stop_malformed", r"^Applied: 6 aborted\.$"),
    (CLI_KERNELS, "stop_malformed", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "project_500", r"^Applied: 1 aborted, 1 failed, 2 spared\.$"),
    # futures are instance-wide, but what they run (a webapp, a continuous activity) is unknown in the failing
    # project: every future is spared (fail closed), the scenario run is still aborted
    (TASKS, "project_500", r"^Applied: 1 aborted, 7 spared, 2 error\.$"),
    (SERVICES, "project_500", r"^Applied: 3 aborted, 3 error\.$"),
    (INVENTORY, "project_500", r"^19 listed, 3 error\.$"),
    (INSTALLER, "project_500", r"^error: installing the clean-up scenario in project B: .*Simulated failure"),
    (CLI_JOBS, "project_500", r"^Applied: 1 aborted, 1 failed, 2 spared\.$"),
    (JOBS, "listing_malformed", r"^error: nothing could be listed \(1 failed call\), first: listing running jobs: "
                                r"DSS answered with a malformed body$"),
    (INVENTORY, "listing_malformed", r"^10 error\.$"),
    # the kernel macro against every fault
    (KERNELS, "latency", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "listing_500", r"^error: nothing could be listed \(1 failed call\), first: listing running notebooks"),
    (KERNELS, "listing_malformed", r"^error: nothing could be listed"),
    (KERNELS, "probe_500", r"^Applied: 2 failed, 2 spared\.$"),
    (KERNELS, "flaky_reads", r"^Applied: "),
    (KERNELS, "stop_500", r"^Applied: 2 failed, 2 spared\.$"),
    (KERNELS, "stop_late", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "stop_malformed", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "revoked_mid_run", r"^Applied: "),
    (KERNELS, "revoked", r"^error: checking who runs the kill-idle-kernels macro: .*Unknown API Key$"),
    (KERNELS, "api_down", UNREACHABLE),
    # the other faces against the faults that matter most for them
    (JOBS, "project_hang", r"^Applied: 1 aborted, 1 failed, 2 spared\.$"),
    (INVENTORY, "api_down", UNREACHABLE),
    (INSTALLER, "api_down", UNREACHABLE),
    (CLI_TASKS, "api_down", CLI_UNREACHABLE),
    (WEBAPP, "revoked", r"^HTTP 200,403$"),
    # issue 12: a DSS answering slowly, hugely or oddly, a host hiding processes, a damaged history
    (KERNELS, "trickle", r"^error: nothing could be listed \(1 failed call\), first: listing running notebooks: "
                         r"DSS did not answer in time$"),
    (KERNELS, "oversized", r"^error: nothing could be listed \(1 failed call\), first: listing running notebooks: "
                           r"DSS's answer is over the 67108864-byte bound$"),
    (TASKS, "wrong_types", r"^Applied: 1 aborted, 6 spared, 2 error\.$"),  # f-A-long's start time is a string
    (INSTALLER, "wrong_types", r"^1 created, 1 warning\.$"),  # project keys not checkable: a warning row
    (CLI_TASKS, "non_finite", r"^Applied: 1 aborted, 5 spared, 2 error\.$"),  # 1e999 and NaN start times
    (JOBS, "html_502", r"^error: nothing could be listed \(1 failed call\), first: listing running jobs: "
                       r"DSS answered an HTML page \(HTTP 502\)$"),
    (TASKS, "slow_futures", r"^error: nothing could be listed \(2 failed calls\), first: listing background tasks: "
                            r"DSS did not answer in time$"),
    (VIEWS, "trickle", r"^HTTP 200$"),
    (CLI_KERNELS, "hidepid", r"^Applied: 2 aborted, 2 spared\.$"),  # host scan as nobody under hidepid=1
    (WEBAPP, "hidepid", r"^HTTP 200$"),
    (WEBAPP, "history_truncated", r"^HTTP 200$"),
    (WEBAPP, "history_garbage", r"^HTTP 200$"),
    (WEBAPP, "history_readonly", r"^HTTP 200,503$"),  # the history views: 503 with the reason
]

# what the webapp's page said besides its statuses (Cell.notes: the snapshot's sample, stats and history banner,
# the table's error rows)
NOTED = {
    # a page opened while DSS trickles: the table does not wait for the listing's second wave of cut calls
    (VIEWS, "trickle"): r"table: \d+ host rows; listing: DSS has not answered the listing yet, a call is slow",
    (WEBAPP, "hidepid"): r'snapshot: sample yes; stats .*"unreadable": [1-9].*"unreadable_reason": "hidepid=noaccess"',
    (WEBAPP, "history_truncated"): r"snapshot: sample yes; .*history The history file was damaged \(database disk "
                                   r"image is malformed\) and was moved aside",
    (WEBAPP, "history_garbage"): r"snapshot: sample yes; .*history The history file was damaged \(file is not a "
                                 r"database\) and was moved aside",
    (WEBAPP, "history_readonly"): r"snapshot: error: the history folder .* is read-only: .*no restart is needed",
}


# like tests/integration/test_host.py's hidepid test and test_history_damage.py's tmpfs: a hidepid /proc and a
# read-only mount are real, and need root (with unshare and setpriv for the former)
NEEDS_ROOT = {"hidepid", "history_readonly"}
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
                                reason="a hidepid /proc and a read-only mount need root, unshare and setpriv")


@pytest.mark.parametrize(("face", "fault", "shown"),
                         [pytest.param(*c, marks=[needs_root] if c[1] in NEEDS_ROOT else []) for c in CELLS],
                         ids=["%s-%s" % (c[0].split()[-1], c[1]) for c in CELLS])
def test_fault_cell(face, fault, shown):
    cell = run_cell(face, fault)
    assert cell.finished, cell.problems
    assert cell.wrong_aborts == 0 and cell.misreports == 0 and cell.mismatches == 0, cell.problems
    assert cell.leaks == 0, cell.problems
    assert re.search(shown, cell.outcome), cell.outcome
    if (face, fault) in NOTED:
        assert re.search(NOTED[face, fault], "\n".join(cell.notes)), cell.notes


# run (and judged like every cell) by test_a_hung_read_is_tried_once_then_reported_and_a_hung_stop_is_sent_once
HUNG = [(KERNELS, "listing_hang", r"^error: nothing could be listed .*: DSS did not answer in time$"),
        (KERNELS, "stop_hang", r"^Applied: 2 failed, 2 spared\.$")]


def test_the_cells_cover_every_face_and_every_fault():
    """Every face and every fault has a cell here (the bench runs them all, each face against each fault)."""
    assert {c[0] for c in CELLS + HUNG} == set(FACES)
    assert {c[1] for c in CELLS + HUNG} == set(FAULTS)


def test_a_hung_read_is_tried_once_then_reported_and_a_hung_stop_is_sent_once(monkeypatch):
    """The bounds themselves, in the simulator's log: a read that hangs is tried once (its deadline ends it; a read
    that timed out is not retried, docs/reliability.md "Deadlines"), then the run goes on; a stop that hangs is sent
    once and never again."""
    from bench import reliability

    logs = []
    real = reliability._judge

    def keep_log(cell, face, fault, sim, *args):
        logs.append(sim.requests)
        return real(cell, face, fault, sim, *args)

    monkeypatch.setattr(reliability, "_judge", keep_log)
    for face, fault, shown in HUNG:
        cell = run_cell(face, fault)
        assert cell.ok, cell.problems
        assert re.search(shown, cell.outcome), cell.outcome
    assert [r.path for r in logs[0]].count("/admin/notebooks/") == 1
    stops = [(r.method, r.path) for r in logs[1] if r.method == "DELETE"]
    assert sorted(stops) == sorted([S_A.stop(), S_B.stop()])
    assert HANG_SECONDS > 1.0  # each hung call outlived the client's 1 s timeout


def test_the_instance_of_the_matrix_is_what_the_faces_expect():
    sim = Simulator(reliability_instance())
    with sim.serve():
        assert sorted(sim.session_ids()) == ["s-A-fresh", "s-A-stale", "s-B-fresh", "s-B-stale"]
        assert sim.phase("future", "f-sc-A") == "RUNNING" and sim.phase("code_studio", "cs-B") == "RUNNING"
