"""Faults against every face of the plugin: cells of the fault matrix of bench/reliability.py (which runs all of
them), each judged against the simulator's log and state: the run finishes with a table or one readable message,
stops exactly what it decided to stop (each stop sent at most once, never retried), says the truth about it, and
shows no secret nor traceback. Real dataikuapi over HTTP, the real console script, the webapp as DSS loads it.

Client timeout 1 s, stops verified for 2 s: a hung call costs about 3 s (a read: 3 tries), not minutes.
"""
import re

import pytest

from bench.reliability import FACES, FAULTS, HANG_SECONDS, S_A, S_B, Simulator, reliability_instance, run_cell

KERNELS = "macro kill-idle-kernels"
TASKS = "macro abort-background-tasks"
JOBS = "macro abort-long-jobs"
SERVICES = "macro stop-idle-services"
INVENTORY = "macro running-activities"
INSTALLER = "macro install-cleanup-scenario"
CLI_KERNELS, CLI_TASKS, CLI_JOBS, WEBAPP = "cli kill-kernels", "cli abort-tasks", "cli abort-jobs", "webapp"

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
    (CLI_KERNELS, "none", r"^Applied: 2 aborted, 2 spared\.$"),
    (CLI_TASKS, "none", r"^Applied: 3 aborted, 5 spared\.$"),
    (CLI_JOBS, "none", r"^Applied: 2 aborted, 2 spared\.$"),
    (WEBAPP, "none", r"^HTTP 200$"),
    (TASKS, "stop_500", r"^Applied: 3 failed, 5 spared\.$"),
    (SERVICES, "stop_500", r"^Applied: 6 failed\.$"),
    (CLI_JOBS, "stop_500", r"^Applied: 2 failed, 2 spared\.$"),
    (WEBAPP, "stop_500", r"^HTTP 200$"),
    (JOBS, "stop_malformed", r"^Applied: 2 aborted, 2 spared\.$"),
    (SERVICES, "stop_malformed", r"^Applied: 6 aborted\.$"),
    (CLI_KERNELS, "stop_malformed", r"^Applied: 2 aborted, 2 spared\.$"),
    (WEBAPP, "stop_malformed", r"^HTTP 200$"),
    (KERNELS, "project_500", r"^Applied: 1 aborted, 1 failed, 2 spared\.$"),
    # futures are instance-wide, but what they run (a webapp, a continuous activity) is unknown in the failing
    # project: every future is spared (fail closed), the scenario run is still aborted
    (TASKS, "project_500", r"^Applied: 1 aborted, 7 spared, 2 error\.$"),
    (SERVICES, "project_500", r"^Applied: 3 aborted, 3 error\.$"),
    (INVENTORY, "project_500", r"^19 listed, 3 error\.$"),
    (INSTALLER, "project_500", r"^error: installing the clean-up scenario in project B: .*Simulated failure"),
    (CLI_JOBS, "project_500", r"^Applied: 1 aborted, 1 failed, 2 spared\.$"),
    (WEBAPP, "project_500", r"^HTTP 200$"),  # a failing re-check is a "failed" outcome, not a 502
    (JOBS, "listing_malformed", r"^error: nothing could be listed \(1 failed call\), first: listing running jobs: "
                                r"DSS answered with a malformed body$"),
    (INVENTORY, "listing_malformed", r"^10 error\.$"),
    (WEBAPP, "listing_malformed", r"^HTTP 200,502$"),
    # the kernel macro against every fault
    (KERNELS, "latency", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "listing_500", r"^error: nothing could be listed \(1 failed call\), first: listing running notebooks"),
    (KERNELS, "listing_hang", r"^error: nothing could be listed .*: DSS did not answer in time$"),
    (KERNELS, "listing_malformed", r"^error: nothing could be listed"),
    (KERNELS, "probe_500", r"^Applied: 2 failed, 2 spared\.$"),
    (KERNELS, "flaky_reads", r"^Applied: "),
    (KERNELS, "stop_500", r"^Applied: 2 failed, 2 spared\.$"),
    (KERNELS, "stop_hang", r"^Applied: 2 failed, 2 spared\.$"),
    (KERNELS, "stop_late", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "stop_malformed", r"^Applied: 2 aborted, 2 spared\.$"),
    (KERNELS, "revoked_mid_run", r"^Applied: "),
    (KERNELS, "revoked", r"^error: checking who runs the kill-idle-kernels macro: .*Unknown API Key$"),
    (KERNELS, "api_down", UNREACHABLE),
    # the other faces against the faults that matter most for them
    (JOBS, "stop_late", r"^Applied: 2 aborted, 2 spared\.$"),
    (JOBS, "project_hang", r"^Applied: 1 aborted, 1 failed, 2 spared\.$"),
    (INVENTORY, "api_down", UNREACHABLE),
    (INSTALLER, "api_down", UNREACHABLE),
    (CLI_TASKS, "api_down", CLI_UNREACHABLE),
    (CLI_JOBS, "revoked_mid_run", r"^Applied: "),
    (WEBAPP, "probe_500", r"^HTTP 200$"),  # a failing re-check is a "failed" outcome, not a 502
    (WEBAPP, "flaky_reads", r"^HTTP "),
    (WEBAPP, "revoked", r"^HTTP 200,403$"),
    (WEBAPP, "api_down", r"^HTTP 200,403,502$"),
]


@pytest.mark.parametrize(("face", "fault", "shown"), CELLS, ids=["%s-%s" % (c[0].split()[-1], c[1]) for c in CELLS])
def test_fault_cell(face, fault, shown):
    cell = run_cell(face, fault)
    assert cell.finished, cell.problems
    assert cell.wrong_aborts == 0 and cell.misreports == 0 and cell.mismatches == 0, cell.problems
    assert cell.leaks == 0, cell.problems
    assert re.search(shown, cell.outcome), cell.outcome


def test_the_cells_cover_every_face_and_every_fault():
    assert {c[0] for c in CELLS} == set(FACES)
    assert {c[1] for c in CELLS} == set(FAULTS)


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
    assert run_cell(KERNELS, "listing_hang").ok
    assert [r.path for r in logs[0]].count("/admin/notebooks/") == 1
    assert run_cell(KERNELS, "stop_hang").ok
    stops = [(r.method, r.path) for r in logs[1] if r.method == "DELETE"]
    assert sorted(stops) == sorted([S_A.stop(), S_B.stop()])
    assert HANG_SECONDS > 1.0  # each hung call outlived the client's 1 s timeout


def test_the_instance_of_the_matrix_is_what_the_faces_expect():
    sim = Simulator(reliability_instance())
    with sim.serve():
        assert sorted(sim.session_ids()) == ["s-A-fresh", "s-A-stale", "s-B-fresh", "s-B-stale"]
        assert sim.phase("future", "f-sc-A") == "RUNNING" and sim.phase("code_studio", "cs-B") == "RUNNING"
