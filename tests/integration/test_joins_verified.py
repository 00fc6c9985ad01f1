"""Kernel-id spoofing (issue 10, finding 5): any local user can start `python -m ipykernel_launcher -f
.../kernel-<alice's kernel id>.json` holding memory. Reproduced with a real process started as `nobody` next to the
demo fleet, the real scanner, the simulator and the real dataikuapi client: the claim must never be charged to
alice's session (freeMemoryGB, failIfMoreThanGB, the join's matches), and it is shown as an unverified claim."""
import os

import pytest

from dev.dss_runtime import run_macro
from dev.dss_simulator.builders import instance, notebook, project, session
from dev.fleet import KERNEL_IDS, Fleet, ProcSpec, kernel_cmdline
from process_tracker import joins
from process_tracker.activities import Activity, Inventory
from process_tracker.host import Scanner

RUNNABLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "python-runnables")
KERNELS = ("kernel-1", "kernel-2", "kernel-3", "kernel-4")  # 40, 20, 30 and 15 MiB
SPOOF_MIB = 120

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starting a process as another user needs root")


@pytest.fixture(scope="module")
def spoofer(fleet):
    """A process of user `nobody`, outside DSS's tree, claiming kernel-4's id with 120 MiB of memory."""
    spec = ProcSpec("spoof", kernel_cmdline(fleet.dip_home, KERNEL_IDS["kernel-4"], python="/usr/bin/python3"),
                    memory_mib=SPOOF_MIB, user="nobody", role="a local user's spoofed kernel",
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    with Fleet([spec], dip_home=fleet.dip_home) as running:
        yield running


def host_instance(with_pid=True):
    sessions = [session("alice", session_id="s-" + name, kernel_id=KERNEL_IDS[name],
                        kernel_pid={"fleet": name} if with_pid else None, started_ago="3d", idle_for="36h")
                for name in KERNELS]
    return instance(projects=[project("CHURN", notebooks=[
        notebook("nb-" + s["sessionId"], [s]) for s in sessions])], abortDelay=0)


def run(sim, macro_id, config, fleet):
    env = {"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key, "DIP_HOME": fleet.dip_home}
    return run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="CHURN", env=env)


def mib(cell):
    value, unit = cell.split()
    assert unit == "MiB", cell
    return float(value)


@pytest.mark.parametrize("with_pid", [True, False], ids=["kernelPid-given", "kernel-id-only"])
def test_a_spoofed_kernel_is_not_charged_to_the_session(simulator, fleet, spoofer, with_pid):
    sim = simulator(host_instance(with_pid), fleet_pids=fleet.pids)
    rows = {r["id"]: r for r in run(sim, "kill-idle-kernels", {}, fleet).rows()}
    memory = {name: mib(rows["s-" + name]["memory"]) for name in KERNELS}
    assert 15 <= memory["kernel-4"] < SPOOF_MIB  # its own kernel only
    assert memory["kernel-1"] > memory["kernel-3"] > memory["kernel-2"] > memory["kernel-4"]


def test_free_memory_picks_the_really_largest_kernel(simulator, fleet, spoofer):
    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    result = run(sim, "kill-idle-kernels", {"freeMemoryGB": 30 / 1024.0}, fleet)
    acting = sorted(r["id"] for r in result.rows() if r["outcome"] == "would_act")
    assert acting == ["s-kernel-1"]


def test_fail_if_more_than_ignores_the_spoofed_memory(simulator, fleet, spoofer):
    sim = simulator(host_instance(), fleet_pids=fleet.pids)
    # the four kernels hold about 105 MiB + 4 interpreters; with the spoofer's 120 MiB it would be over 200
    result = run(sim, "kill-idle-kernels", {"failIfMoreThanGB": 200 / 1024.0}, fleet)
    assert all(r["outcome"] == "would_act" for r in result.rows())


def _session_inventory(unix_owner=None, kernel_pid=None):
    details = {"kernel_id": KERNEL_IDS["kernel-4"]}
    if unix_owner:
        details["unix_owner"] = unix_owner
    return Inventory(taken_at=0.0, activities=(Activity(
        kind="notebook_session", id="s-kernel-4", project_key="CHURN", name="nb", owner="alice", state="idle",
        pid=kernel_pid, details=details),), errors=())


def test_the_join_shows_the_spoofer_as_an_unverified_claim(fleet, spoofer):
    snapshot = Scanner().scan()
    joined = joins.join(snapshot, _session_inventory(), instance=fleet.dip_home)
    rows = {m.process.pid: m for m in joined.rows}
    fake, real = rows[spoofer.pid("spoof")], rows[fleet.pid("kernel-4")]
    assert fake.process.user == "nobody"
    assert fake.activity is None and fake.status == "unverified" and fake.via is None
    assert fake.claim is not None and fake.claim.id == "s-kernel-4"
    assert (real.activity.id, real.via, real.source, real.status) == ("s-kernel-4", "kernel_id", "api", "joined")
    assert [m.process.pid for m in joined.for_activity("notebook_session", "s-kernel-4")] == [real.process.pid]
    assert fake.process not in joined.orphans  # not a DSS kernel DSS forgot: someone else's process
    assert [m.process.pid for m in joined.unverified] == [fake.process.pid]


def test_a_kernel_pid_pointing_at_the_spoofer_is_not_trusted_either(fleet, spoofer):
    """DSS's kernelPid can be stale (pid reused by the spoofer): the pid join is verified the same way."""
    snapshot = Scanner().scan()
    inventory = _session_inventory(kernel_pid=spoofer.pid("spoof"))
    joined = joins.join(snapshot, inventory, instance=fleet.dip_home)
    rows = {m.process.pid: m for m in joined.rows}
    assert rows[spoofer.pid("spoof")].activity is None and rows[spoofer.pid("spoof")].status == "unverified"


def test_a_uif_kernel_of_the_session_unix_owner_is_verified(fleet):
    """kernel-uif runs as dssuser1 under sudo -> execwrapper -> exec.py: the UIF chain is allowed."""
    snapshot = Scanner().scan()
    inv = Inventory(taken_at=0.0, activities=(Activity(
        kind="notebook_session", id="s-uif", project_key="CHURN", name="nb", owner="bob", state="idle", pid=None,
        details={"kernel_id": KERNEL_IDS["kernel-uif"], "unix_owner": fleet.username("kernel-uif")}),), errors=())
    rows = {m.process.pid: m for m in joins.join(snapshot, inv, instance=fleet.dip_home).rows}
    kernel = rows[fleet.pid("kernel-uif")]
    assert (kernel.activity.id, kernel.status) == ("s-uif", "joined")
    assert rows[fleet.pid("kernel-uif-sudo")].activity.id == "s-uif"  # its wrappers carry it
    # the same kernel claimed by a session of another unix owner: unverified
    other = Inventory(taken_at=0.0, activities=(Activity(
        kind="notebook_session", id="s-uif", project_key="CHURN", name="nb", owner="bob", state="idle", pid=None,
        details={"kernel_id": KERNEL_IDS["kernel-uif"], "unix_owner": "someoneelse"}),), errors=())
    rows = {m.process.pid: m for m in joins.join(snapshot, other, instance=fleet.dip_home).rows}
    assert rows[fleet.pid("kernel-uif")].status == "unverified"
    assert rows[fleet.pid("kernel-uif-sudo")].activity is None


def test_the_webapp_table_does_not_charge_the_spoofer_either(fleet, spoofer):
    """webapp.join_table is what /api/table serves: the spoofer's row has no activity and says why."""
    from process_tracker.webapp import join_table

    snapshot = Scanner().scan()
    rows, orphans, without = join_table(snapshot.processes, _session_inventory(), 0.0, instance=fleet.dip_home)
    by_pid = {r["pid"]: r for r in rows}
    fake, real = by_pid[spoofer.pid("spoof")], by_pid[fleet.pid("kernel-4")]
    assert fake["status"] == "unverified" and fake["activity_id"] is None and fake["actionable"] is False
    assert real["status"] == "joined" and real["activity_id"] == "s-kernel-4"
    assert spoofer.pid("spoof") not in {r["pid"] for r in orphans} and without == []
