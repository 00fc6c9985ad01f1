"""The inventory macro and its orphans with DSS's own records (issue 15): a real fleet of its own (its audit log
is written here, so the shared fleet's orphans stay orphans for the other tests), real CRU events in its
DIP_HOME's audit log, the real scanner, the simulator through the real dataikuapi in the DSS macro harness."""
import os

import pytest

from dev.cru_writer import AuditLog, cru_message
from dev.dss_runtime import run_macro
from dev.dss_simulator.builders import instance, notebook, project, session
from dev.fleet import KERNEL_IDS, Fleet, demo_layout

RUNNABLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "python-runnables")
NAMES = ("supervisord", "backend", "jupyter", "kernel-1", "kernel-orphan", "kernel-2")


@pytest.fixture(scope="module")
def small_fleet():
    with Fleet(lambda home: [s for s in demo_layout(home) if s.name in NAMES]) as running:
        yield running


def run(sim, fleet):
    env = {"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key, "DIP_HOME": fleet.dip_home}
    return run_macro(os.path.join(RUNNABLES, "running-activities"), {"kinds": ["notebook_session"]},
                     project_key="CHURN", env=env)


def orphans(result):
    return {r["id"] for r in result.rows() if r["kind"] == "orphan"}


def test_a_kernel_dss_records_in_its_audit_log_is_no_orphan(simulator, small_fleet):
    fleet = small_fleet
    s = session("alice", session_id="s-kernel-1", kernel_id=KERNEL_IDS["kernel-1"], kernel_pid={"fleet": "kernel-1"},
                started_ago="3d", idle_for="36h")
    sim = simulator(instance(projects=[project("CHURN", notebooks=[notebook("nb", [s])])], abortDelay=0),
                    fleet_pids=fleet.pids)
    assert orphans(run(sim, fleet)) == {KERNEL_IDS["kernel-orphan"], KERNEL_IDS["kernel-2"]}

    # DSS's audit log says kernel-orphan is bob's notebook kernel in FRAUD (its session listing aside): explained
    AuditLog(fleet.dip_home).write(cru_message(
        "start", "cru-k", fleet.pid("kernel-orphan"), fleet.create_time("kernel-orphan"),
        {"type": "JUPYTER_NOTEBOOK_KERNEL", "projectKey": "FRAUD", "authIdentifier": "bob"}))
    result = run(sim, fleet)
    assert orphans(result) == {KERNEL_IDS["kernel-2"]}  # no source explains this one

    # a completed item explains nothing any more: the kernel is an orphan again
    AuditLog(fleet.dip_home).write(cru_message(
        "complete", "cru-k", fleet.pid("kernel-orphan"), fleet.create_time("kernel-orphan"),
        {"type": "JUPYTER_NOTEBOOK_KERNEL", "projectKey": "FRAUD", "authIdentifier": "bob"}, end_time=1.0))
    assert orphans(run(sim, fleet)) == {KERNEL_IDS["kernel-orphan"], KERNEL_IDS["kernel-2"]}
