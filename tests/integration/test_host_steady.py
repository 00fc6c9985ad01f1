"""The scanner's steady path (issue 14, performance): once a process is known and past its young age, a scan reads
its /proc/<pid>/stat (state, CPU times, start ticks) and statm or status with plain system calls, without psutil.
These tests take psutil away after the first scans and check that the steady scans still give what the psutil path
gives: the same identities, roles, parents and names, CPU percentages, zombies; and a process met for the first
time then (which needs psutil) is left out and counted, never a failed scan."""
import subprocess
import sys
import time

import psutil
import pytest

from dev.fleet import Fleet, ProcSpec
from process_tracker.host import Scanner
from test_host import _wait_for  # tests/integration/test_host.py: poll until a process is seen

JVM_LOOKALIKE = "import ctypes, sys; ctypes.CDLL(None).prctl(15, b'java', 0, 0, 0); sys.stdin.read()"
BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
SAME = ("pid", "ppid", "created_at", "name", "role", "label", "user", "instance", "ids", "link", "zombie",
        "num_threads", "cgroup")


def _fleet(d):
    java = "/usr/lib/jvm/java-17/bin/java"
    return [
        ProcSpec("backend", (java, "-Ddku.backend", "-cp", d + "/bin:/x", "com.dataiku.dip.DSSBackendMain"),
                 comm="java", memory_mib=1),
        ProcSpec("jek", (java, "-Ddku.jek", "-cp", d + "/bin:/x", "com.dataiku.dip.dataflow.kernel.slave."
                         "DSSJobKernelMain"), parent="backend", comm="java", memory_mib=1),
        ProcSpec("recipe", (d + "/code-envs/python/env/bin/python", "-u", "recipe.py"), parent="jek", memory_mib=1),
    ]


def _no_psutil_process(monkeypatch):
    """From now on, psutil cannot read any process: as if every one were another user's under hidepid."""

    def refused(self, pid=None, *args, **kwargs):
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil.Process, "__init__", refused)


@pytest.fixture
def extra():
    """A busy process, a zombie (exited, not reaped) and a JVM look-alike started later on, stopped at teardown."""
    procs = {"busy": subprocess.Popen([sys.executable, "-c", BUSY]),
             "zombie": subprocess.Popen([sys.executable, "-c", "pass"])}
    yield procs
    for p in procs.values():
        p.kill()
        p.wait()


def test_steady_scans_read_known_processes_without_psutil(tmp_path, monkeypatch, extra):
    d = str(tmp_path / "dss_data")
    with Fleet(_fleet(d), dip_home=d) as fleet:
        _wait_for(lambda: psutil.Process(extra["zombie"].pid).status() == psutil.STATUS_ZOMBIE)
        scanner = Scanner(young_seconds=0)  # nothing is young: the second scan on is steady
        scanner.scan()
        before = {p.pid: p for p in scanner.scan().processes}
        _no_psutil_process(monkeypatch)
        time.sleep(0.3)  # the busy process burns CPU between the two scans
        late = subprocess.Popen([sys.executable, "-c", JVM_LOOKALIKE, "-Ddku.jek", "-cp", str(tmp_path) + "/bin"],
                                stdin=subprocess.PIPE)
        extra["late"] = late
        snapshot = scanner.scan()
        monkeypatch.undo()
    after = {p.pid: p for p in snapshot.processes}
    for name in ("backend", "jek", "recipe"):
        pid = fleet.pid(name)
        assert [getattr(after[pid], f) for f in SAME] == [getattr(before[pid], f) for f in SAME], name
        assert after[pid].role != "not_dss" and after[pid].rss_anon_bytes > 0 and after[pid].swap_bytes is not None
    assert after[extra["busy"].pid].cpu_percent > 10  # CPU times from /proc/<pid>/stat, between the two scans
    assert after[extra["zombie"].pid].zombie and after[extra["zombie"].pid].role == "not_dss"
    assert late.pid not in after  # new: psutil is needed to read it, and it could not
    stats = snapshot.stats
    assert stats.unreadable >= 1 and stats.analysed == 0 and stats.seen == len(snapshot.processes)
    assert stats.unreadable_reason == "other users' processes"
