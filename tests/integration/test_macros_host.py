"""The macros with the host side: the real scanner over the real process fleet (dev/fleet.py), joined to the
simulator's sessions by kernelPid, run through the DSS macro harness with the real dataikuapi."""
import os

from dev.dss_runtime import run_macro
from dev.dss_simulator.builders import instance, notebook, project, session
from dev.fleet import KERNEL_IDS, PLANTED_SECRETS

RUNNABLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "python-runnables")
KERNELS = ("kernel-1", "kernel-2", "kernel-3", "kernel-4")  # 40, 20, 30 and 15 MiB of anonymous memory


def host_instance():
    sessions = [session("alice", session_id="s-" + name, kernel_id=KERNEL_IDS[name], kernel_pid={"fleet": name},
                        started_ago="3d", idle_for="36h") for name in KERNELS]
    return instance(projects=[project("CHURN", notebooks=[
        notebook("nb-" + s["sessionId"], [s]) for s in sessions])], abortDelay=0)


def run(sim, macro_id, config, fleet):
    # DSS sets DIP_HOME for the processes it starts: only this instance's processes join (other fleets may run on
    # this host at the same time, with the same kernel ids)
    env = {"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key, "DIP_HOME": fleet.dip_home}
    return run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="CHURN", env=env)


def mib(cell):
    value, unit = cell.split()
    assert unit == "MiB", cell
    return float(value)


def test_kernel_rows_show_the_memory_read_on_the_host(simulator, fleet):
    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    result = run(sim, "kill-idle-kernels", {}, fleet)
    rows = {r["id"]: r for r in result.rows()}
    memory = {name: mib(rows["s-" + name]["memory"]) for name in KERNELS}
    assert memory["kernel-1"] > memory["kernel-3"] > memory["kernel-2"] > memory["kernel-4"] >= 15
    assert rows["s-kernel-1"]["pid"] == str(fleet.pid("kernel-1"))
    assert all(r["outcome"] == "would_act" for r in rows.values())


def test_largest_first_until_the_target_is_freed(simulator, fleet):
    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    # kernel-1 (40 MiB + interpreter) alone is below 60 MiB; with kernel-3 (30 MiB + ...) it is above
    result = run(sim, "kill-idle-kernels", {"freeMemoryGB": 60 / 1024.0}, fleet)
    rows = {r["id"]: r for r in result.rows()}
    acting = sorted(k for k, r in rows.items() if r["outcome"] == "would_act")
    assert acting == ["s-kernel-1", "s-kernel-3"]
    assert rows["s-kernel-1"]["reason"].endswith("largest first")
    assert rows["s-kernel-2"]["reason"].startswith("spared: 60.0 MiB target reached by larger kernels")
    assert sim.actions == []


def test_gb_threshold_fails_the_run_before_anything(simulator, fleet):
    from dev.dss_runtime import MacroFailed

    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    try:
        run(sim, "kill-idle-kernels", {"simulate": False, "failIfMoreThanGB": 50 / 1024.0}, fleet)
        raise AssertionError("the threshold did not fail the run")
    except MacroFailed as e:
        assert e.message.startswith("failIfMoreThanGB: the kernels that would be killed hold ")
        assert e.message.endswith("more than the limit of 50.0 MiB; nothing was done")
    assert sim.actions == [] and len(sim.session_ids()) == 4


def test_inventory_joins_processes_and_lists_orphans_without_leaking_secrets(simulator, fleet):
    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    result = run(sim, "running-activities", {"kinds": ["notebook_session"]}, fleet)
    rows = result.rows()
    sessions = {r["id"]: r for r in rows if r["kind"] == "notebook_session"}
    assert sessions["s-kernel-1"]["role"] == "jupyter_kernel" and mib(sessions["s-kernel-1"]["memory"]) >= 40
    orphans = {r["id"]: r for r in rows if r["kind"] == "orphan"}
    # kernel-uif has no session here either; other fleets on this host (other DIP_HOMEs) are not this instance's
    assert set(orphans) == {KERNEL_IDS["kernel-orphan"], KERNEL_IDS["kernel-uif"]}
    orphan = orphans[KERNEL_IDS["kernel-orphan"]]
    assert orphan["pid"] == str(fleet.pid("kernel-orphan")) and orphan["role"] == "jupyter_kernel"
    assert orphan["note"] == "no DSS activity explains this process"
    assert "orphan" in result.table["header"]
    for secret in PLANTED_SECRETS:
        assert secret not in result.raw


def test_without_the_host_scan_memory_is_blank(simulator, fleet):
    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    rows = run(sim, "kill-idle-kernels", {"scanHost": False}, fleet).rows()
    assert all(r["memory"] == "" for r in rows)
