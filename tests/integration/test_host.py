"""The scanner (python-lib/process_tracker/host.py) against real processes: the DSS-shaped fleet of dev/fleet.py,
processes that vanish, reuse a pid, rewrite their title, turn zombie or carry odd command lines, an unprivileged
scanner, and a fake cgroup tree. The CLI is run as the real console script."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pytest

from dev.fleet import KERNEL_IDS, PLANTED_SECRETS, Fleet, ProcSpec, full_layout
from process_tracker import host
from process_tracker.errors import ConfigError
from process_tracker.host import (
    ProcessRecord,
    Scanner,
    ScanOptions,
    cgroup_totals,
    is_dss_cgroup,
    parse_proc_cgroup,
    parse_status,
    read_cgroup,
    read_hidepid,
    reusable_pids,
    snapshot_to_json,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a python program that names itself `java` (prctl PR_SET_NAME: the comm a JVM has) and waits on stdin: DSS JVM
# markers on its command line then count, as for a real JVM
JVM_LOOKALIKE = "import ctypes, sys; ctypes.CDLL(None).prctl(15, b'java', 0, 0, 0); sys.stdin.read()"
CLI = os.path.join(os.path.dirname(sys.executable), "process-tracker")
IS_ROOT = os.geteuid() == 0

# every process of dev.fleet.full_layout: (role, label or None for any, link, instance directory name or None)
EXPECTED = {
    "supervisord": ("supervisord", "supervisord", False, "dss_data"),
    "nginx": ("nginx", "nginx master", False, "dss_data"),
    "nginx-worker-1": ("nginx", "nginx worker", False, "dss_data"),
    "nginx-worker-2": ("nginx", "nginx worker", False, "dss_data"),
    "backend": ("backend", "backend", False, "dss_data"),
    "jek-1": ("jek", "JEK", False, "dss_data"),
    "jek-2": ("jek", "JEK", False, "dss_data"),
    "jek-idle": ("jek", "JEK", False, "dss_data"),
    "recipe-1": ("python_recipe", "python recipe", False, "dss_data"),
    "spark-1": ("spark_driver", "Spark driver", False, "dss_data"),
    "fek-1": ("fek", "FEK", False, "dss_data"),
    "fek-2": ("fek", "FEK", False, "dss_data"),
    "cak-1": ("cak", "CAK", False, "dss_data"),
    "eventserver": ("eventserver", "event server", False, "dss_data"),
    "ml-1": ("ml_training", "ML server", False, "dss_data"),
    "webapp-1": ("webapp_backend", "webapp backend (Flask)", False, "dss_data"),
    "jupyter": ("jupyter_server", "Jupyter server", False, "dss_data"),
    "kernel-1": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss_data"),
    "kernel-2": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss_data"),
    "kernel-3": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss_data"),
    "kernel-4": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss_data"),
    "kernel-uif-sudo": ("jupyter_kernel", "UIF wrapper (sudo)", True, "dss_data"),
    "kernel-uif-exec": ("jupyter_kernel", "UIF wrapper (exec.py)", True, "dss_data"),
    "kernel-uif": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss_data"),
    "kernel-orphan": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss_data"),
    "not-dss-1": ("not_dss", "python3", False, None),
    "not-dss-2": ("not_dss", "java", False, None),
    "kernel-r": ("jupyter_kernel", "kernel ir", False, "dss_data"),
    "kernel-scala": ("jupyter_kernel", "kernel scala", False, "dss_data"),
    "webapp-bokeh": ("webapp_backend", "webapp backend (Bokeh)", False, "dss_data"),
    "webapp-dash": ("webapp_backend", "webapp backend (Dash)", False, "dss_data"),
    "webapp-shiny": ("webapp_backend", "webapp backend (Shiny)", False, "dss_data"),
    "pyspark-1": ("spark_driver", "PySpark python", False, "dss_data"),
    "dss2-supervisord": ("supervisord", "supervisord", False, "dss2_data"),
    "dss2-backend": ("backend", "backend", False, "dss2_data"),
    "dss2-jek-1": ("jek", "JEK", False, "dss2_data"),
    "dss2-jupyter": ("jupyter_server", "Jupyter server", False, "dss2_data"),
    "dss2-kernel-1": ("jupyter_kernel", "kernel py-dku-venv-py39-ds", False, "dss2_data"),
    "govern-supervisord": ("supervisord", "supervisord", False, "govern_data"),
    "govern-server": ("governserver", "Govern server", False, "govern_data"),
    "govern-nginx": ("nginx", "nginx master", False, "govern_data"),
    "govern-nginx-worker-1": ("nginx", "nginx worker", False, "govern_data"),
    "apinode-supervisord": ("supervisord", "supervisord", False, "api_data"),
    "apinode-apimain": ("apinode", "API node", False, "api_data"),
    "platform-supervisord": ("supervisord", "supervisord", False, "platform_data"),
    "platform-hproxy": ("hproxy", "Hadoop proxy", False, "platform_data"),
    "platform-fm-agent": ("fm_agent", "Fleet Manager agent", False, None),
    "platform-postgres": ("runtime_db", "runtime database", False, None),
    "platform-postgres-worker": ("runtime_db", "database worker", False, None),
    "platform-postgres-govern": ("runtime_db", "Govern runtime database", False, None),
    "platform-story": ("story", "story service", False, None),
}
HOST_LEVEL_ROLES = ("fm_agent", "runtime_db", "story")  # DSS's companions, of no data directory


@pytest.fixture(scope="module")
def full_fleet():
    """Every role of dev/fleet.py: the demo node, the extra roles, a second instance, a Govern and an API node."""
    with Fleet(full_layout) as running:
        yield running


@pytest.fixture(scope="module")
def scanned(full_fleet):
    """Two scans of the host with the full fleet up (the second one has CPU percentages)."""
    scanner = Scanner()
    first = scanner.scan()
    second = scanner.scan()
    return first, second


def _by_pid(snapshot):
    return {p.pid: p for p in snapshot.processes}


def _in_tmp(path):
    return bool(path) and os.path.realpath(path).startswith(os.path.realpath(tempfile.gettempdir()) + os.sep)


def test_every_fleet_process_gets_its_role_label_and_instance(full_fleet, scanned):
    assert set(full_fleet.names) == set(EXPECTED), "the fleet changed: update EXPECTED"
    for snapshot in scanned:
        records = _by_pid(snapshot)
        base = os.path.dirname(full_fleet.dip_home)
        for name, (role, label, link, instance) in EXPECTED.items():
            p = records[full_fleet.pid(name)]
            assert (p.role, p.label, p.link) == (role, label, link), name
            assert p.instance == (os.path.join(base, instance) if instance else None), name
            assert p.created_at == pytest.approx(full_fleet.create_time(name), abs=0.01), name
            assert p.user == full_fleet.username(name), name


def test_ids_from_the_fleet_command_lines(full_fleet, scanned):
    records = _by_pid(scanned[1])
    for name, kernel_id in KERNEL_IDS.items():
        assert records[full_fleet.pid(name)].ids["kernel_id"] == kernel_id
    assert records[full_fleet.pid("backend")].ids["xmx_bytes"] == 4 * 1024 ** 3
    assert records[full_fleet.pid("jek-1")].ids["xmx_bytes"] == 2 * 1024 ** 3
    assert records[full_fleet.pid("ml-1")].ids["port"] == 41731
    assert records[full_fleet.pid("kernel-1")].ids["code_env"] == "py39-ds"
    assert records[full_fleet.pid("backend")].ids["dip_home"] == full_fleet.dip_home
    for name in ("kernel-uif-sudo", "kernel-uif-exec"):  # wrappers keep no id of the command they wrap
        assert set(records[full_fleet.pid(name)].ids) <= {"dip_home"}


def test_uif_chain_resolves_to_the_kernel_role_and_the_kernel_keeps_its_owner(full_fleet, scanned):
    records = _by_pid(scanned[1])
    kernel = records[full_fleet.pid("kernel-uif")]
    exec_py = records[full_fleet.pid("kernel-uif-exec")]
    sudo = records[full_fleet.pid("kernel-uif-sudo")]
    assert kernel.ppid == exec_py.pid and exec_py.ppid == sudo.pid
    assert {kernel.role, exec_py.role, sudo.role} == {"jupyter_kernel"}
    assert kernel.user == full_fleet.username("kernel-uif")
    if IS_ROOT:
        assert kernel.user != sudo.user  # the kernel runs as the UIF user, the wrappers as root


def test_workers_recipes_and_spark_children_inherit(full_fleet, scanned):
    records = _by_pid(scanned[1])
    for child, parent in (("nginx-worker-1", "nginx"), ("recipe-1", "jek-1"), ("spark-1", "jek-2"),
                          ("pyspark-1", "spark-1"), ("govern-nginx-worker-1", "govern-nginx")):
        assert records[full_fleet.pid(child)].ppid == full_fleet.pid(parent)
        assert records[full_fleet.pid(child)].instance == records[full_fleet.pid(parent)].instance


def test_nothing_outside_the_fleets_is_classified_as_dss(full_fleet, scanned):
    ours = set(full_fleet.pids.values())
    for snapshot in scanned:
        for p in snapshot.processes:
            if p.pid in ours or p.role == "not_dss":
                continue
            # other DSS-shaped processes may only come from other fleets (tests or a demo running on this host):
            # python programs whose title says otherwise, in a temporary data directory
            assert p.instance != full_fleet.dip_home, (p.pid, p.role, p.label)
            try:
                exe = psutil.Process(p.pid).exe()
            except psutil.AccessDenied:
                exe = None
            except psutil.NoSuchProcess:
                continue
            if exe is not None:
                assert os.path.basename(exe).startswith("python"), (p.pid, p.role, p.label, exe)
            if p.role not in HOST_LEVEL_ROLES:
                assert _in_tmp(p.instance), (p.pid, p.role, p.label, p.instance)
    me = _by_pid(scanned[1])[os.getpid()]
    assert me.role == "not_dss" and me.instance is None


def test_memory_rss_anon_is_rss_minus_shared_and_matches_proc_status(full_fleet, scanned):
    records = _by_pid(scanned[1])
    for name in ("backend", "kernel-1", "ml-1", "recipe-1", "not-dss-1"):
        p = records[full_fleet.pid(name)]
        with open("/proc/%d/status" % p.pid, "rb") as f:
            status = parse_status(f.read())
        assert p.rss_anon_bytes == pytest.approx(status["rss_anon_bytes"], abs=256 * 1024), name
        assert p.rss_anon_bytes >= full_fleet.memory_bytes(name), name  # the touched anonymous memory
        assert p.rss_bytes >= p.rss_anon_bytes
    for name in ("backend", "kernel-uif", "nginx-worker-1"):  # details are read for DSS processes
        p = records[full_fleet.pid(name)]
        assert p.num_threads >= 1 and p.swap_bytes is not None and p.cgroup is not None
        assert p.age_seconds >= 0 and p.cpu_percent is not None and p.cpu_percent >= 0
        assert p.pss_bytes is None  # PSS is off by default


def test_dss_memory_swap_and_threads_come_from_one_read_of_proc_status(tmp_path):
    """A DSS process's rss, RssAnon, swap and threads are VmRSS, RssAnon, VmSwap and Threads of ONE read of its
    /proc/<pid>/status (statm is not read); a status without RssAnon (Linux before 4.5) leaves the memory to statm
    (resident, shared pages), as for every other process. A fake /proc root with figures no process has."""
    d = str(tmp_path / "dss")
    jek = subprocess.Popen([sys.executable, "-c", JVM_LOOKALIKE, "-Ddku.jek", "-cp", d + "/bin"], stdin=subprocess.PIPE)
    try:
        _wait_for(lambda: psutil.Process(jek.pid).name() == "java")
        status = tmp_path / "proc" / str(jek.pid) / "status"
        _write(status, "Name:\tpython\nVmRSS:\t  123456 kB\nRssAnon:\t  100000 kB\nRssFile:\t   23456 kB\n"
                       "RssShmem:\t       0 kB\nVmSwap:\t    4242 kB\nThreads:\t7\n")
        _write(status.parent / "cgroup", "0::/\n")
        _write(status.parent / "statm", "90000 1000 300 1 0 2000 0\n")  # must not be read: status has it all
        record = _by_pid(Scanner(proc_root=str(tmp_path / "proc")).scan())[jek.pid]
        assert (record.role, record.instance) == ("jek", d)
        assert (record.rss_bytes, record.rss_anon_bytes) == (123456 * 1024, 100000 * 1024)
        assert (record.swap_bytes, record.num_threads) == (4242 * 1024, 7)

        status.write_text("Name:\tpython\nVmRSS:\t  123456 kB\nVmSwap:\t       0 kB\nThreads:\t1\n")
        record = _by_pid(Scanner(proc_root=str(tmp_path / "proc")).scan())[jek.pid]
        page = os.sysconf("SC_PAGE_SIZE")
        assert (record.rss_bytes, record.rss_anon_bytes) == (1000 * page, 700 * page)
        assert (record.swap_bytes, record.num_threads) == (0, 1)
    finally:
        jek.kill()
        jek.wait()


def test_fleet_memory_matches_proc_status_and_details_are_for_dss_only(full_fleet, scanned):
    records = _by_pid(scanned[1])
    for name in ("backend", "kernel-1", "ml-1", "recipe-1", "nginx-worker-1"):
        p = records[full_fleet.pid(name)]
        with open("/proc/%d/status" % p.pid, "rb") as f:
            data = f.read()
        vm_rss = int(data.split(b"\nVmRSS:")[1].split()[0]) * 1024
        assert p.rss_bytes == pytest.approx(vm_rss, abs=256 * 1024), name
        assert p.rss_anon_bytes == pytest.approx(parse_status(data)["rss_anon_bytes"], abs=256 * 1024), name
        assert p.swap_bytes is not None and p.num_threads == parse_status(data)["threads"], name
    other = records[full_fleet.pid("not-dss-1")]
    assert other.rss_bytes >= other.rss_anon_bytes >= full_fleet.memory_bytes("not-dss-1")
    assert other.swap_bytes is None and other.num_threads is None  # details="dss": not read for not_dss


def test_role_totals_are_the_sums_of_their_processes(scanned):
    snapshot = scanned[1]
    for role, totals in snapshot.roles.items():
        members = [p for p in snapshot.processes if p.role == role]
        assert totals.count == len([p for p in members if not p.link])
        assert totals.rss_anon_bytes == sum(p.rss_anon_bytes or 0 for p in members)
        assert totals.rss_bytes == sum(p.rss_bytes or 0 for p in members)
    stats = snapshot.stats
    assert stats.seen == len(snapshot.processes)
    assert stats.classified == sum(1 for p in snapshot.processes if p.role != "not_dss")
    assert stats.scan_number == 2 and stats.cpu_seconds > 0 and stats.wall_seconds > 0
    first = scanned[0].stats  # first scan: everything seen is new (a process may vanish after being counted new)
    assert first.seen <= first.new <= first.seen + first.vanished


def test_cli_scan_json_all_has_the_documented_shape_and_no_secret(full_fleet):
    out = subprocess.run([CLI, "scan", "--json", "--all"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    for secret in PLANTED_SECRETS:
        assert secret not in out
    doc = json.loads(out)
    assert set(doc) == {"processes", "roles", "stats"}
    by_pid = {p["pid"]: p for p in doc["processes"]}
    kernel = by_pid[full_fleet.pid("kernel-1")]
    for p in doc["processes"]:
        assert set(p) == {"pid", "ppid", "create_time", "role", "label", "user", "instance", "rss_bytes",
                          "rss_anon_bytes", "pss_bytes", "cpu_percent", "ids", "context"}
    assert kernel["role"] == "jupyter_kernel" and kernel["ids"]["kernel_id"] == KERNEL_IDS["kernel-1"]
    assert kernel["pss_bytes"] is None and kernel["cpu_percent"] is None  # one scan: no CPU figure
    assert by_pid[full_fleet.pid("not-dss-1")]["role"] == "not_dss"
    assert all(set(t) == {"count", "rss_anon_bytes", "rss_bytes"} for t in doc["roles"].values())
    assert doc["roles"]["jek"]["count"] >= 4
    assert {"wall_seconds", "cpu_seconds", "seen", "new", "classified", "access_denied", "vanished"} <= set(
        doc["stats"])
    default = json.loads(subprocess.run([CLI, "scan", "--json"], capture_output=True, text=True, check=True,
                                        timeout=120).stdout)
    assert all(p["role"] != "not_dss" for p in default["processes"]) and "not_dss" not in default["roles"]


def test_cli_scan_table_groups_by_role_and_shows_no_secret(full_fleet):
    out = subprocess.run([CLI, "scan", "--top", "2", "--pss", "--interval", "0.2"], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    for secret in PLANTED_SECRETS:
        assert secret not in out
    lines = out.splitlines()
    assert lines[0].split() == ["ROLE", "COUNT", "RSSANON", "RSS", "CPU"]
    assert any(line.startswith("jupyter_kernel ") for line in lines)
    assert any("kernel py-dku-venv-py39-ds" in line for line in lines)
    assert "not_dss" not in out
    assert "instances: " in out and full_fleet.dip_home in out


def test_cli_scan_refuses_bad_options_in_one_line():
    result = subprocess.run([CLI, "scan", "--top", "-1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "process-tracker: error: --top: must be >= 0, got -1"


def test_snapshot_to_json_is_plain_json(scanned):
    doc = snapshot_to_json(scanned[1], include_not_dss=True)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["roles"]["not_dss"]["count"] >= 1


# --- races, identity, odd processes ------------------------------------------------------------------------------

def _small_fleet(tmp):
    d = os.path.join(tmp, "dss_data")
    java = "/usr/lib/jvm/java-17/bin/java"
    return [
        ProcSpec("backend", (java, "-Ddku.backend", "-cp", d + "/bin:/x", "com.dataiku.dip.DSSBackendMain"),
                 comm="java", memory_mib=2),
        ProcSpec("jek", (java, "-Ddku.jek", "-cp", d + "/bin:/x", "com.dataiku.dip.dataflow.kernel.slave."
                         "DSSJobKernelMain"), parent="backend", comm="java", memory_mib=2),
        ProcSpec("recipe", (d + "/code-envs/python/env/bin/python", "-u", "recipe.py"), parent="jek", memory_mib=2),
    ]


def test_a_process_killed_between_scans_disappears_without_error(tmp_path):
    with Fleet(_small_fleet(str(tmp_path)), dip_home=str(tmp_path / "dss_data")) as fleet:
        scanner = Scanner()
        first = _by_pid(scanner.scan())
        assert first[fleet.pid("recipe")].role == "python_recipe"
        fleet.kill("recipe")
        second = scanner.scan()
        records = _by_pid(second)
        assert fleet.pid("recipe") not in records or records[fleet.pid("recipe")].created_at != \
            first[fleet.pid("recipe")].created_at
        assert records[fleet.pid("jek")].role == "jek"
        assert records[fleet.pid("jek")].cpu_percent is not None


class _Racing(Scanner):
    """A scanner during which a chosen process exits at a precise point of the scan (a real exit, reaped)."""

    def __init__(self, victim, where, **kw):
        super().__init__(**kw)
        self.victim, self.where = victim, where

    def _kill(self, pid):
        if self.victim is not None and pid == self.victim.pid:
            self.victim.kill()
            self.victim.wait()
            self.victim = None

    def _read_static(self, proc, known, psutil_module):
        if self.where == "static":
            self._kill(proc.pid)
        return super()._read_static(proc, known, psutil_module)

    def _read_status(self, pid):
        if self.where == "details":
            self._kill(pid)
        return super()._read_status(pid)


@pytest.mark.parametrize("where", ["static", "details"])
def test_a_process_vanishing_mid_scan_is_counted_not_fatal(tmp_path, where):
    d = str(tmp_path)
    victim = subprocess.Popen([sys.executable, "-c", JVM_LOOKALIKE, "-Ddku.jek", "-cp", d + "/bin"],
                              stdin=subprocess.PIPE)
    try:
        _wait_for(lambda: psutil.Process(victim.pid).name() == "java")
        scanner = _Racing(victim if where == "static" else None, where)
        if where == "details":
            scanner.scan()  # classified first, then it dies while its details are read
            scanner.victim = victim
        snapshot = scanner.scan()
        assert victim.poll() is not None
        assert victim.pid not in _by_pid(snapshot)
        assert snapshot.stats.vanished >= 1
        assert snapshot.stats.seen == len(snapshot.processes)
    finally:
        victim.kill()
        victim.wait()


def test_scans_during_heavy_process_churn_stay_consistent():
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            procs = [subprocess.Popen(["true"]) for _ in range(20)]
            for p in procs:
                p.wait()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        scanner = Scanner(young_seconds=0)
        for _ in range(5):
            snapshot = scanner.scan()
            assert snapshot.stats.seen == len(snapshot.processes) > 0
            assert len({p.pid for p in snapshot.processes}) == len(snapshot.processes)
    finally:
        stop.set()
        thread.join()


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except psutil.Error:
            pass
        time.sleep(0.01)
    raise AssertionError("condition not reached in %.0f s" % timeout)


def test_records_are_identified_by_pid_and_created_at(full_fleet, scanned):
    for p in scanned[1].processes:
        if p.pid in set(full_fleet.pids.values()):
            assert p.key == (p.pid, psutil.Process(p.pid).create_time())


NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
CAN_PICK_PIDS = IS_ROOT and os.access(NS_LAST_PID, os.W_OK)


def _read_int(path):
    with open(path) as f:
        return int(f.read())


def _set_cursor(pid):
    """Make `pid + 1` the next pid the kernel tries (root only)."""
    with open(NS_LAST_PID, "w") as f:
        f.write(str(pid))


def _spawn_at(argv, pid):
    """Start argv with exactly `pid`, or None when the kernel gave another one (pid busy, concurrent fork)."""
    _set_cursor(pid - 1)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    if proc.pid == pid:
        return proc
    proc.kill()
    proc.wait()
    return None


def _wrap(pid, pid_max):
    return pid if pid < pid_max else 300 + (pid - pid_max)


@pytest.mark.parametrize("path", ["young", "allocation-window"])
def test_a_reused_pid_gets_a_new_identity_and_a_new_classification(tmp_path, path):
    """A real pid reuse: as root the pid is handed out again through ns_last_pid. "young": the old process is
    young, so it is re-read anyway (psutil sees the reuse); "allocation-window": young re-reads are off, and the
    kernel's pid cursor is moved 10,000 pids past the old process before the first scan, as if the allocator had
    gone round, so that only the allocation window can tell. Without root, a new process must still get its own
    identity and classification (the weaker check)."""
    old_argv = [sys.executable, "-c", "import sys; sys.stdin.read()", "not-dss"]
    new_argv = [sys.executable, "-c", JVM_LOOKALIKE, "-Ddku.jek", "-cp", str(tmp_path) + "/bin"]
    old = new = None
    try:
        if CAN_PICK_PIDS:
            pid_max = _read_int("/proc/sys/kernel/pid_max")
            cursor = _read_int(NS_LAST_PID)
            for i in range(50):
                old = _spawn_at(old_argv, _wrap(cursor + 1000 + 97 * i, pid_max))
                if old is not None:
                    break
            assert old is not None, "no free pid found"
            if path == "allocation-window":
                _set_cursor(_wrap(old.pid + 10000, pid_max))
        else:
            old = subprocess.Popen(old_argv, stdin=subprocess.PIPE)
        scanner = Scanner(young_seconds=0) if path == "allocation-window" else Scanner()
        before = _by_pid(scanner.scan())[old.pid]
        assert before.role == "not_dss"
        pid = old.pid
        old.kill()
        old.wait()
        new = _spawn_at(new_argv, pid) if CAN_PICK_PIDS else subprocess.Popen(new_argv, stdin=subprocess.PIPE)
        assert new is not None, "could not get pid %d back" % pid
        _wait_for(lambda: psutil.Process(new.pid).name() == "java")
        snapshot = scanner.scan()
        after = _by_pid(snapshot)[new.pid]
        assert after.created_at == psutil.Process(new.pid).create_time()
        assert (after.role, after.instance) == ("jek", str(tmp_path))
        assert after.cpu_percent is None  # a new identity: no previous CPU time to compare with
        if CAN_PICK_PIDS:
            assert new.pid == pid and after.created_at != before.created_at
            assert snapshot.stats.pid_reused == 1
    finally:
        for p in (old, new):
            if p is not None:
                p.kill()
                p.wait()


def test_reusable_pids_follows_the_cyclic_allocator():
    assert reusable_pids(None, (10, 100, 32768)) is None
    assert reusable_pids((10, 100, 32768), None) is None
    window = reusable_pids((1000, 500, 32768), (1200, 700, 32768))
    assert [window(p) for p in (999, 1000, 1001, 1200, 1201)] == [False, False, True, True, False]
    wrapped = reusable_pids((32000, 500, 32768), (400, 1300, 32768))
    assert [wrapped(p) for p in (31999, 32001, 300, 400, 401)] == [False, True, True, True, False]
    assert reusable_pids((1000, 500, 32768), (1200, 500 + 32768, 32768)) is None  # could have wrapped around


def test_a_title_rewritten_after_start_is_reclassified_while_young(tmp_path):
    script = "read line; exec %s -c \"%s\" -Ddku.fek -cp %s/bin" % (sys.executable, JVM_LOOKALIKE, tmp_path)
    proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE)
    try:
        young = Scanner()
        stale = Scanner(young_seconds=0)
        assert _by_pid(young.scan())[proc.pid].role == "not_dss"
        assert _by_pid(stale.scan())[proc.pid].role == "not_dss"
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        _wait_for(lambda: psutil.Process(proc.pid).name() == "java")
        again = _by_pid(young.scan())[proc.pid]
        assert (again.role, again.label, again.instance) == ("fek", "FEK", str(tmp_path))
        assert _by_pid(stale.scan())[proc.pid].role == "not_dss"  # cached: old processes are not re-read
    finally:
        proc.kill()
        proc.wait()


def test_odd_command_lines_and_zombies(tmp_path):
    code = "import sys; sys.stdin.read()"
    odd = [
        subprocess.Popen([sys.executable.encode(), b"-c", code.encode(), b"\xff\xfe-non-utf8", b"", b""],
                         stdin=subprocess.PIPE),
        subprocess.Popen([sys.executable, "-c", JVM_LOOKALIKE, "x" * 100000, "-Ddku.jek", "-cp", "%s/bin" % tmp_path],
                         stdin=subprocess.PIPE),
    ]
    zombie = subprocess.Popen(["true"])  # never waited for until the end: a zombie
    try:
        _wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE)
        _wait_for(lambda: psutil.Process(odd[1].pid).name() == "java")
        snapshot = Scanner().scan()
        records = _by_pid(snapshot)
        assert records[odd[0].pid].role == "not_dss"
        assert records[odd[1].pid].role == "jek" and records[odd[1].pid].instance == str(tmp_path)
        z = records[zombie.pid]
        assert z.zombie and z.role == "not_dss"
        assert snapshot.stats.zombies >= 1
        json.dumps(snapshot_to_json(snapshot, include_not_dss=True))
    finally:
        for p in odd + [zombie]:
            p.kill()
            p.wait()


def test_cpu_percent_is_measured_between_scans():
    busy = subprocess.Popen([sys.executable, "-c", "import sys\nwhile True: pass", "busy"])
    try:
        scanner = Scanner(details="all")
        assert _by_pid(scanner.scan())[busy.pid].cpu_percent is None
        time.sleep(0.3)
        record = _by_pid(scanner.scan())[busy.pid]
        assert record.cpu_percent > 0
        assert record.num_threads >= 1  # details="all" reads not_dss processes too
    finally:
        busy.kill()
        busy.wait()


# --- PSS, privileges ------------------------------------------------------------------------------------------

def test_pss_is_collected_for_the_top_n_dss_processes_every_nth_scan(full_fleet):
    scanner = Scanner(pss=True, pss_top_n=3, pss_every=2)
    first = scanner.scan()
    with_pss = [p for p in first.processes if p.pss_bytes is not None]
    dss = sorted((p for p in first.processes if p.role != "not_dss"), key=lambda p: -(p.rss_anon_bytes or 0))
    assert first.stats.pss_collected == len(with_pss)
    if IS_ROOT:
        assert {p.pid for p in with_pss} == {p.pid for p in dss[:3]}
        assert all(0 < p.uss_bytes <= p.pss_bytes <= p.rss_bytes for p in with_pss)
    second = scanner.scan()
    assert second.stats.pss_collected == 0 and all(p.pss_bytes is None for p in second.processes)


def _interpreter_for(user):
    """A python any user can run (the venv's may live under a private home): this one or the system's."""
    for candidate in (os.path.realpath(sys.executable), os.path.realpath(getattr(sys, "_base_executable", "")),
                      "/usr/bin/python3"):
        try:
            probe = subprocess.run([candidate, "-c", "pass"], user=user, capture_output=True, timeout=60)
        except OSError:  # not executable by that user
            continue
        if probe.returncode == 0:
            return candidate
    raise AssertionError("no python interpreter runnable as %s" % user)


def _run_scanner_as_nobody(code, hidepid=None):
    """Run `code` (python, prints JSON) as `nobody` when root (else as this user), with a readable copy of the
    package and psutil. `hidepid`: first mount a fresh /proc with that option, in a private mount namespace
    (`unshare -m`: the host's /proc is untouched). Returns the parsed JSON."""
    # The checkout and its .venv may sit under a 0700 directory (mktemp -d): give `nobody` a readable copy.
    readable = tempfile.mkdtemp(prefix="pt-unprivileged-")
    try:
        shutil.copytree(os.path.join(ROOT, "python-lib", "process_tracker"), os.path.join(readable, "process_tracker"))
        shutil.copytree(os.path.dirname(psutil.__file__), os.path.join(readable, "psutil"))
        for dirpath, _, filenames in os.walk(readable):
            os.chmod(dirpath, 0o755)
            for filename in filenames:
                os.chmod(os.path.join(dirpath, filename), 0o644)
        env = {"PYTHONPATH": readable, "PATH": "/usr/bin:/bin"}
        if hidepid is not None:
            python = _interpreter_for("nobody")
            script = 'mount -t proc -o hidepid=%s proc /proc && exec setpriv --reuid=nobody --regid=nogroup ' \
                     '--clear-groups "$0" -c "$1"' % hidepid
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, python, code]
            result = subprocess.run(argv, env=env, cwd=readable, capture_output=True, text=True, timeout=120)
        elif IS_ROOT:
            result = subprocess.run([_interpreter_for("nobody"), "-c", code], user="nobody", env=env, cwd=readable,
                                    capture_output=True, text=True, timeout=120)
        else:
            result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    timeout=120)
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_access_denied_is_counted_for_an_unprivileged_scanner(full_fleet):
    code = ("import json; from process_tracker.host import Scanner; s = Scanner(pss=True); s.scan(); snap = s.scan();"
            "print(json.dumps({'stats': snap.stats.access_denied, 'seen': snap.stats.seen,"
            " 'records': {p.pid: [p.role, p.pss_bytes, p.user] for p in snap.processes}}))")
    doc = _run_scanner_as_nobody(code)
    assert doc["stats"] > 0
    backend = doc["records"][str(full_fleet.pid("backend"))]
    assert backend[0] == "backend"  # the command line stays readable: still classified
    assert backend[1] is None  # PSS of another user's process: denied, left empty
    assert backend[2] == full_fleet.username("backend")


SCAN_STATS = ("import json, os; from process_tracker.host import Scanner; s = Scanner(); s.scan(); snap = s.scan();"
              "print(json.dumps({'stats': snap.stats.__dict__, 'me': os.getpid(),"
              " 'pids': [p.pid for p in snap.processes]}))")


@pytest.mark.skipif(not IS_ROOT or shutil.which("unshare") is None or shutil.which("setpriv") is None,
                    reason="a hidepid mount needs root, unshare and setpriv")
@pytest.mark.parametrize("hidepid,mode", [("1", "noaccess"), ("2", "invisible")])
def test_a_hidepid_proc_is_scanned_and_says_what_it_could_not_read(full_fleet, hidepid, mode):
    """A real /proc mounted hidepid=1 (other users' /proc/<pid> unreadable) or hidepid=2 (invisible), in a
    private mount namespace, scanned by `nobody`: the scan completes, the scanner's own process is in it, the
    other users' processes are left out and counted (hidepid=1) and the stats say why."""
    doc = _run_scanner_as_nobody(SCAN_STATS, hidepid=hidepid)
    stats = doc["stats"]
    assert doc["me"] in doc["pids"]
    assert full_fleet.pid("backend") not in doc["pids"]
    assert stats["unreadable_reason"] == "hidepid=" + mode
    assert stats["seen"] == len(doc["pids"])
    if hidepid == "1":
        assert stats["unreadable"] >= len(full_fleet.pids)  # listed, not readable: counted like vanished ones
    else:
        assert stats["unreadable"] == 0  # not even listed


# --- cgroups -----------------------------------------------------------------------------------------------------

def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_reader_on_a_fake_v1_and_v2_tree(tmp_path):
    _write(tmp_path / "memory/DSS/alice/notebooks/memory.usage_in_bytes", "1048576\n")
    _write(tmp_path / "memory/DSS/alice/notebooks/memory.limit_in_bytes", "9223372036854771712\n")
    _write(tmp_path / "memory/DSS/bob/recipes/memory.usage_in_bytes", "2048\n")
    _write(tmp_path / "memory/DSS/bob/recipes/memory.limit_in_bytes", "4096\n")
    _write(tmp_path / "DSS/notebooks/carol/memory.current", "300\n")
    _write(tmp_path / "DSS/notebooks/carol/memory.max", "max\n")
    _write(tmp_path / "DSS/webapps/dave/memory.current", "garbage\n")
    _write(tmp_path / "DSS/webapps/dave/memory.max", "1000\n")
    root = str(tmp_path)
    assert read_cgroup(root, "/DSS/alice/notebooks", 1) == host.CgroupRecord("/DSS/alice/notebooks", 1048576, None, 1)
    assert read_cgroup(root, "/DSS/bob/recipes", 1) == host.CgroupRecord("/DSS/bob/recipes", 2048, 4096, 1)
    assert read_cgroup(root, "/DSS/notebooks/carol", 2) == host.CgroupRecord("/DSS/notebooks/carol", 300, None, 2)
    assert read_cgroup(root, "/DSS/webapps/dave", 2) == host.CgroupRecord("/DSS/webapps/dave", None, 1000, 2)
    assert read_cgroup(root, "/DSS/missing", 2) is None
    totals = cgroup_totals({"/DSS/notebooks/carol": 2, "/DSS/alice/notebooks": 1, "/DSS/missing": 1}, root)
    assert [c.path for c in totals] == ["/DSS/alice/notebooks", "/DSS/notebooks/carol"]


def test_proc_cgroup_parsing_prefers_the_v1_memory_controller():
    v1 = b"12:pids:/x\n4:memory:/DSS/alice/notebooks\n1:name=systemd:/user.slice\n0::/\n"
    assert parse_proc_cgroup(v1) == ("/DSS/alice/notebooks", 1)
    assert parse_proc_cgroup(b"0::/DSS/notebooks/bob\n") == ("/DSS/notebooks/bob", 2)
    assert parse_proc_cgroup(b"5:cpu,memory:/a\n") == ("/a", 1)
    assert parse_proc_cgroup(b"garbage\n") == (None, 2)
    assert is_dss_cgroup("/DSS/notebooks/bob", ("DSS",)) and is_dss_cgroup("/x/dss/y", ("DSS",))
    assert not is_dss_cgroup("/system.slice/dssd.service", ("DSS",)) and not is_dss_cgroup(None, ("DSS",))


def test_scanner_reports_cgroup_totals_of_dss_processes_as_their_own_series(full_fleet, tmp_path):
    with open("/proc/%d/cgroup" % full_fleet.pid("kernel-1"), "rb") as f:
        path, version = parse_proc_cgroup(f.read())
    parts = [p for p in (path or "").split("/") if p]
    base = tmp_path / ("memory" if version == 1 else "")
    _write(base.joinpath(*parts) / ("memory.usage_in_bytes" if version == 1 else "memory.current"), "12345\n")
    _write(base.joinpath(*parts) / ("memory.limit_in_bytes" if version == 1 else "memory.max"), "99999\n")
    snapshot = Scanner(cgroup_root=str(tmp_path), cgroup_markers=tuple(parts[:1]) or ("DSS",)).scan()
    kernel = _by_pid(snapshot)[full_fleet.pid("kernel-1")]
    assert kernel.cgroup == path
    if parts:
        assert host.CgroupRecord(path, 12345, 99999, version) in snapshot.cgroups
    else:  # the fleet runs in the root cgroup here: no DSS cgroup to report
        assert snapshot.cgroups == ()


# --- options and records -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,param", [
    ({"pss_top_n": 0}, "pss_top_n"),
    ({"pss_every": 0}, "pss_every"),
    ({"young_seconds": -1}, "young_seconds"),
    ({"details": "some"}, "details"),
    ({"cgroup_markers": "DSS"}, "cgroup_markers"),
    ({"turbo": True}, "turbo"),
])
def test_bad_scanner_options_name_the_parameter(kwargs, param):
    with pytest.raises(ConfigError) as err:
        Scanner(**kwargs)
    assert err.value.param == param
    with pytest.raises(ConfigError):
        Scanner(ScanOptions(), pss=True)


def test_fast_records_equal_constructed_ones(scanned):
    for p in scanned[1].processes[:50]:
        values = {name: getattr(p, name) for name in ProcessRecord.__dataclass_fields__}
        assert ProcessRecord(**values) == p
        with pytest.raises(AttributeError):
            p.role = "x"


# --- names from comm only, DSS JVM markers need a JVM, invented data directories (issue 10, finding 8) ---------

PLANTED_KEY = "AKIAPTPLANTEDQ7X2EXAMPLE"  # an access key in argv[0], the way a careless wrapper names a process


def _started(argv, check):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    _wait_for(lambda: check(psutil.Process(proc.pid)))
    return proc


def _stop(*procs):
    for p in procs:
        p.kill()
        p.wait()


def test_a_process_name_is_its_comm_never_argv0_extended(tmp_path):
    """psutil's name() extends a 15-character comm with argv[0] when argv[0] starts with it: a key in argv[0]
    would reach the record's name and label, `scan --json` and the history file."""
    d = str(tmp_path / "dss_data")
    specs = _small_fleet(str(tmp_path)) + [
        ProcSpec("keyed", ("python3-" + PLANTED_KEY, "serve", "--port", "8080"), parent="jek", memory_mib=1)]
    with Fleet(specs, dip_home=d) as fleet:
        assert psutil.Process(fleet.pid("keyed")).name() == "python3-" + PLANTED_KEY  # what psutil would give
        snapshot = Scanner().scan()
        record = _by_pid(snapshot)[fleet.pid("keyed")]
        assert (record.role, record.name, record.label) == ("dss_other", "python3-AKIAPTP", "python3-AKIAPTP")
        text = json.dumps(snapshot_to_json(snapshot, include_not_dss=True)) + repr(snapshot.processes)
        assert PLANTED_KEY not in text and PLANTED_KEY[:10] not in text
        for argv in ([CLI, "scan", "--json", "--all"], [CLI, "scan", "--all", "--top", "100"]):  # the user's view
            out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
            assert "python3-AKIAPTP" in out and PLANTED_KEY[:10] not in out


def test_dss_jvm_markers_count_only_for_a_jvm(tmp_path):
    """`python3 ... -Ddku.jek -cp <dir>/bin` is not a JVM: not_dss. The same with the comm `java` (what a JVM's
    comm is), or with argv[0] `.../bin/java`, is a JEK of that directory."""
    args = ["-Ddku.jek", "-cp", str(tmp_path) + "/bin", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain"]
    code = "import sys; sys.stdin.read()"
    python = _started([sys.executable, "-c", code, *args], lambda p: "-Ddku.jek" in p.cmdline())
    named_java = _started([sys.executable, "-c", JVM_LOOKALIKE, *args], lambda p: p.name() == "java")
    try:
        records = _by_pid(Scanner().scan())
        assert (records[python.pid].role, records[python.pid].instance) == ("not_dss", None)
        assert (records[named_java.pid].role, records[named_java.pid].instance) == ("jek", str(tmp_path))
    finally:
        _stop(python, named_java)


def _foreign_kernel(data_dir, user):
    """A kernel-shaped process naming a connection file under `data_dir`, as an unrelated user, under no DSS."""
    kernel_id = "abcdef01-2345-4678-9abc-def012345678"
    return ProcSpec("foreign-kernel", ("/usr/bin/python3", "-m", "ipykernel_launcher", "-f",
                                       "%s/jupyter-run/jupyter/runtime/kernel-%s.json" % (data_dir, kernel_id)),
                    comm="python3", memory_mib=1, user=user, cwd="/tmp")


@pytest.mark.parametrize("layout", ["invented", "dss-shaped"])
def test_a_generic_marker_naming_an_invented_data_directory_stays_not_dss(tmp_path, layout):
    """A kernel run by an unrelated user from /tmp/.../fake is not a kernel of a new instance: its directory is not
    a DSS data directory. Once that directory holds install-support/, the kernel counts (the documented rule)."""
    fake = tmp_path / "fake"
    (fake / "jupyter-run/jupyter/runtime").mkdir(parents=True)
    if layout == "dss-shaped":
        (fake / "install-support").mkdir()
    with Fleet([_foreign_kernel(str(fake), "nobody")], dip_home=str(fake)) as fleet:
        record = _by_pid(Scanner().scan())[fleet.pid("foreign-kernel")]
    if layout == "invented":
        assert (record.role, record.instance) == ("not_dss", None)
    else:
        assert (record.role, record.instance) == ("jupyter_kernel", str(fake))


@pytest.mark.parametrize("method,outcome", [
    ("is_running", "left out"), ("create_time", "left out"), ("ppid", "left out"),
    ("cmdline", "partial"), ("uids", "partial"), ("memory_full_info", "partial"), ("ppid after re-parenting", "left out"),
])
def test_access_denied_at_each_psutil_call_site_is_counted_not_fatal(tmp_path, monkeypatch, method, outcome):
    """AccessDenied injected at each psutil call the scanner makes, for one real process (a JEK look-alike, so that
    PSS is read for it): the scan completes; the process is left out and counted `unreadable` when its identity or
    parent cannot be read, else kept with the unreadable value empty and counted `access_denied`. The
    re-parenting case: its parent exits between two scans, then its new parent cannot be read."""
    code = ("import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', %r, '-Ddku.jek', '-cp', %r]);"
            "print(c.pid, flush=True); sys.stdin.read()" % (JVM_LOOKALIKE, str(tmp_path) + "/bin"))
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    victim = int(parent.stdout.readline())
    try:
        _wait_for(lambda: psutil.Process(victim).name() == "java")
        scanner = Scanner(pss=True)
        if method.startswith("ppid "):
            assert _by_pid(scanner.scan())[victim].ppid == parent.pid
            parent.kill()
            parent.wait()
        name = method.split()[0]
        real = getattr(psutil.Process, name)

        def denied(self, *args, **kwargs):
            if self.pid == victim:
                raise psutil.AccessDenied(self.pid)
            return real(self, *args, **kwargs)

        for attribute in ("cache_activate", "cache_deactivate"):  # psutil's oneshot() memoizes some methods
            if hasattr(real, attribute):
                setattr(denied, attribute, getattr(real, attribute))
        monkeypatch.setattr(psutil.Process, name, denied)
        snapshot = scanner.scan()
        monkeypatch.undo()
        records = _by_pid(snapshot)
        assert snapshot.stats.seen == len(records) > 1
        if outcome == "left out":
            assert victim not in records and snapshot.stats.unreadable >= 1
            assert snapshot.stats.unreadable_reason == "other users' processes"
        else:
            assert snapshot.stats.access_denied >= 1
            record = records[victim]
            assert {"cmdline": record.role == "not_dss", "uids": record.user is None and record.role == "jek",
                    "memory_full_info": record.pss_bytes is None and record.role == "jek"}[name]
    finally:
        for pid in (victim, parent.pid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        parent.wait()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make a directory unreadable to the scanner's user")
@pytest.mark.parametrize("with_jvm", [False, True])
def test_an_unreadable_data_directory_counts_only_when_a_dss_jvm_names_it(with_jvm):
    """The scanner runs as `nobody`; the data directory (with install-support/) is root's, mode 0700: its layout
    cannot be checked, so a kernel naming it is not DSS, unless a DSS JVM (a backend) names it via -cp."""
    base = tempfile.mkdtemp(prefix="pt-private-")
    try:
        os.chmod(base, 0o755)
        data = os.path.join(base, "dss_data")
        os.makedirs(os.path.join(data, "install-support"))
        os.chmod(data, 0o700)
        specs = [_foreign_kernel(data, None)]
        if with_jvm:
            specs.append(ProcSpec("backend", ("/usr/lib/jvm/java-17/bin/java", "-Ddku.backend", "-cp", data + "/bin:/x",
                                              "com.dataiku.dip.DSSBackendMain"), comm="java", memory_mib=1))
        with Fleet(specs, dip_home=data) as fleet:
            code = ("import json; from process_tracker.host import Scanner; snap = Scanner().scan();"
                    "print(json.dumps({p.pid: [p.role, p.instance] for p in snap.processes}))")
            records = _run_scanner_as_nobody(code)
            kernel = records[str(fleet.pid("foreign-kernel"))]
        assert kernel == (["jupyter_kernel", data] if with_jvm else ["not_dss", None])
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("options,euid,gids,expected", [
    ("rw,hidepid=invisible", 1000, [1000], "invisible"),
    ("rw,hidepid=2", 1000, [1000], "invisible"),  # older kernels show the number
    ("rw,nosuid,hidepid=1", 1000, [1000], "noaccess"),
    ("rw,hidepid=ptraceable", 1000, [1000], "ptraceable"),
    ("rw,hidepid=2,gid=4242", 1000, [1000, 4242], None),  # a member of the mount's gid group sees everything
    ("rw,hidepid=2", 0, [0], None),  # root sees everything
    ("rw,hidepid=0", 1000, [1000], None),
    ("rw", 1000, [1000], None),
])
def test_hidepid_is_read_from_the_proc_mount_options(tmp_path, options, euid, gids, expected):
    proc = tmp_path / "proc"
    _write(proc / "self" / "mountinfo", "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
                                        "66 46 0:40 / %s rw,relatime - proc proc %s\n" % (proc, options))
    assert read_hidepid(str(proc), euid=euid, gids=gids) == expected
    assert read_hidepid(str(tmp_path / "missing"), euid=euid, gids=gids) is None
