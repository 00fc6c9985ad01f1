"""The process fleet (dev/fleet.py): real processes that look like a DSS host's to psutil and /proc, and that never
outlive their controller. Checked with psutil and /proc as the scanner will read them."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from dev.fleet import (
    JAVA,
    KERNEL_IDS,
    MIN_CMDLINE_BYTES,
    PLANTED_SECRETS,
    UIF_USER,
    Fleet,
    FleetError,
    ProcSpec,
    connection_file,
    full_layout,
    govern_layout,
    platform_layout,
    second_instance_layout,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IS_ROOT = os.geteuid() == 0


def psutil_view(spec):
    """What psutil's cmdline() returns for the spec: the list itself, except that a single NUL-terminated title
    with spaces (nginx's) is split on spaces by psutil, exactly as for a real nginx."""
    if len(spec.cmdline) == 1 and " " in spec.cmdline[0]:
        return spec.cmdline[0].split(" ")
    return list(spec.cmdline)


def rss_anon_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon for %d" % pid)


def identities(fleet):
    return {name: (pid, fleet.create_time(name)) for name, pid in fleet.pids.items()}


def running(identity, zombie_ok=False):
    """True when that very process (pid + create time) still exists (a zombie counts unless zombie_ok)."""
    pid, created_at = identity
    try:
        proc = psutil.Process(pid)
        if proc.create_time() != created_at:
            return False
        return not (zombie_ok and proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---- the demo layout, as psutil sees it ----------------------------------------------------------------------

def test_every_process_has_the_exact_command_line_comm_parent_and_owner(fleet):
    assert len(fleet.pids) == len(fleet.specs) >= 27
    owners = set()
    for spec in fleet.specs:
        proc = psutil.Process(fleet.pid(spec.name))
        with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
            assert f.read() == spec.cmdline_bytes, spec.name
        assert proc.cmdline() == psutil_view(spec), spec.name
        assert proc.name() == spec.comm_name, spec.name
        with open("/proc/%d/comm" % proc.pid) as f:
            assert f.read().strip() == spec.comm_name[:15]
        parent_pid = fleet.pid(spec.parent) if spec.parent else os.getpid()
        assert proc.ppid() == parent_pid, spec.name
        assert proc.username() == fleet.username(spec.name), spec.name
        owners.add(proc.username())
    if IS_ROOT:  # kernel-uif runs as another unix user, its UIF links as the DSS user
        assert fleet.username("kernel-uif") == UIF_USER
        assert psutil.Process(fleet.pid("kernel-uif-exec")).username() != UIF_USER
        assert owners == {UIF_USER, fleet.username("backend")}
    else:
        assert owners == {fleet.username("backend")}


def test_every_process_holds_its_configured_memory_as_rss_anon(fleet):
    for name, pid in fleet.pids.items():
        assert fleet.memory_bytes(name) > 0
        assert rss_anon_bytes(pid) >= fleet.memory_bytes(name), name
        assert psutil.Process(pid).memory_info().rss >= fleet.memory_bytes(name), name
    assert fleet.memory_bytes("backend") == 60 * 1024 * 1024


def test_the_tree_is_the_documented_one(fleet):
    chains = {
        "recipe-1": ["jek-1", "backend", "supervisord"],
        "spark-1": ["jek-2", "backend", "supervisord"],
        "kernel-uif": ["kernel-uif-exec", "kernel-uif-sudo", "jupyter", "supervisord"],
        "nginx-worker-2": ["nginx", "supervisord"],
        "ml-1": ["backend", "supervisord"],
        "webapp-1": ["backend", "supervisord"],
        "kernel-orphan": ["jupyter", "supervisord"],
        "jek-idle": ["backend", "supervisord"],
    }
    for name, ancestors in chains.items():
        parents = [p.pid for p in psutil.Process(fleet.pid(name)).parents()]
        assert parents[: len(ancestors)] == [fleet.pid(a) for a in ancestors], name
        assert parents[len(ancestors)] == os.getpid()  # supervisord is the controller's child (not daemonized)
    for name in ("not-dss-1", "not-dss-2", "supervisord"):
        assert psutil.Process(fleet.pid(name)).ppid() == os.getpid()


def test_java_processes_are_dss_shaped(fleet):
    kinds = {"backend": ("backend", "com.dataiku.dip.DSSBackendMain", "4g"),
             "jek-1": ("jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain", "2g"),
             "jek-idle": ("jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain", "2g"),
             "fek-1": ("fek", "com.dataiku.dip.futures.DSSFutureKernelMain", "2g"),
             "cak-1": ("cak", "com.dataiku.dip.dataflow.streaming.slave.DSSCAKernelMain", "1g"),
             "eventserver": ("eventserver", "com.dataiku.dip.eventsserver.EventServerMain", "512m")}
    for name, (kind, main_class, xmx) in kinds.items():
        cmdline = psutil.Process(fleet.pid(name)).cmdline()
        assert cmdline[0] == JAVA and cmdline[1] == "-Ddku." + kind, name
        assert "-Xmx" + xmx in cmdline and main_class in cmdline
        classpath = cmdline[cmdline.index("-cp") + 1]
        assert classpath.split(":")[0] == fleet.dip_home + "/bin"  # names the instance
        assert len("\0".join(cmdline)) > 8000  # real DSS command lines are many KB
        assert psutil.Process(fleet.pid(name)).name() == "java"
    spark = psutil.Process(fleet.pid("spark-1")).cmdline()
    assert spark[0] == JAVA and "org.apache.spark.deploy.SparkSubmit" in spark
    assert not any(arg.startswith("-Ddku.") for arg in spark)
    assert psutil.Process(fleet.pid("not-dss-2")).cmdline() == ["java", "-jar", "/opt/other/app.jar"]


def test_nginx_titles_are_rewritten_after_start(fleet):
    conf = fleet.dip_home + "/install-support/nginx.conf"
    assert psutil.Process(fleet.pid("nginx")).cmdline() == ["nginx:", "master", "process", "nginx", "-c", conf]
    for worker in ("nginx-worker-1", "nginx-worker-2"):
        proc = psutil.Process(fleet.pid(worker))
        assert proc.cmdline() == ["nginx:", "worker", "process"] and proc.name() == "nginx"


def test_markers_of_every_dss_role_are_on_the_command_lines(fleet):
    def line(name):
        return " ".join(psutil.Process(fleet.pid(name)).cmdline())

    d = fleet.dip_home
    assert line("supervisord") == "%s/pyenv/bin/python -m supervisor.supervisord -c %s/install-support/supervisord.conf" % (d, d)
    assert "dku-jupyter/dkulauncher.py" in line("jupyter")
    assert "--notebook-dir=%s/config/ipython_notebooks" % d in line("jupyter")
    assert line("ml-1").endswith("-m dataiku.doctor.server 41731 " + PLANTED_SECRETS[0])
    assert line("webapp-1").endswith("/dataiku/webapps/backend.py")
    assert line("kernel-uif-sudo").startswith("sudo -n %s/security/execwrapper.sh execute" % d)
    assert "/resources/security/exec.py" in line("kernel-uif-exec")
    assert psutil.Process(fleet.pid("kernel-uif-sudo")).name() == "sudo"
    with open(d + "/run/supervisord.pid") as f:
        assert int(f.read()) == fleet.pid("supervisord")


def test_kernels_name_their_connection_file_and_come_from_a_notebook(fleet):
    for name in ("kernel-1", "kernel-2", "kernel-3", "kernel-4", "kernel-uif", "kernel-orphan"):
        proc = psutil.Process(fleet.pid(name))
        path = connection_file(fleet.dip_home, KERNEL_IDS[name])
        assert proc.cmdline()[1:] == ["-m", "ipykernel_launcher", "-f", path]
        assert "/jupyter-run/jupyter/runtime/kernel-%s.json" % KERNEL_IDS[name] in path
        assert os.path.isfile(path)
        assert proc.environ()["DKU_CALL_ORIGIN"] == "notebook"  # readable: root, or the same user
    uif = psutil.Process(fleet.pid("kernel-uif"))
    assert os.getpgid(uif.pid) == uif.pid  # UIF targets run in a process group of their own
    assert os.getpgid(fleet.pid("kernel-1")) == os.getpgid(os.getpid())


def test_secrets_are_planted_where_dss_puts_them(fleet):
    ml_secret, keystore_password, token = PLANTED_SECRETS
    assert ml_secret in psutil.Process(fleet.pid("ml-1")).cmdline()
    assert "-Djavax.net.ssl.keyStorePassword=" + keystore_password in psutil.Process(fleet.pid("backend")).cmdline()
    jupyter = psutil.Process(fleet.pid("jupyter")).cmdline()
    assert jupyter[jupyter.index("--token") + 1] == token
    assert len(set(PLANTED_SECRETS)) == 3 and all(len(s) > 20 for s in PLANTED_SECRETS)


# ---- custom trees, kill, stop ----------------------------------------------------------------------------------

def test_a_custom_tree_gets_exact_arguments_including_spaces_and_unicode(tmp_path):
    d = str(tmp_path)
    specs = [ProcSpec("top", ("/opt/some tool/bin/daemon", "--name=ünïcödé", "an argument with spaces", ""),
                      comm="daemon-top", memory_mib=3, env={"DIP_HOME": d}, cwd=d),
             ProcSpec("leaf", ("/usr/bin/python3.9", "-c", "pass"), parent="top", memory_mib=0)]
    with Fleet(specs) as fleet:
        assert fleet.dip_home == d
        top, leaf = psutil.Process(fleet.pid("top")), psutil.Process(fleet.pid("leaf"))
        assert top.cmdline() == list(specs[0].cmdline)  # the empty last argument is a real argument
        assert top.name() == "daemon-top" and top.cwd() == d
        assert leaf.cmdline() == ["/usr/bin/python3.9", "-c", "pass"] and leaf.name() == "python3.9"
        assert leaf.ppid() == top.pid and leaf.cwd() == "/"
        assert rss_anon_bytes(top.pid) >= 3 * 1024 * 1024
        ids = identities(fleet)
    assert not any(running(i) for i in ids.values())
    assert os.path.isdir(d)  # a DIP_HOME the caller gave is the caller's: not removed


def test_stop_leaves_no_process_and_no_directory_behind():
    fleet = Fleet(lambda d: govern_layout(d) + second_instance_layout(d + "_2"), memory_scale=0.5).start()
    ids, base = identities(fleet), fleet.base
    assert len(ids) == 9 and all(running(i) for i in ids.values())
    assert psutil.Process(fleet.pid("govern-server")).cmdline()[1] == "-Ddku.governserver"
    assert psutil.Process(fleet.pid("dss2-backend")).cmdline()[1] == "-Ddku.backend"
    fleet.stop()
    fleet.stop()  # idempotent
    # every process was reaped by its own parent: not even a zombie remains
    assert [name for name, i in ids.items() if running(i)] == []
    assert not os.path.exists(base)


def test_kill_makes_a_process_and_its_descendants_vanish_and_spares_the_rest():
    with Fleet(second_instance_layout, memory_scale=0.25) as fleet:
        ids = identities(fleet)
        fleet.kill("dss2-backend")
        assert not running(ids["dss2-backend"]) and not running(ids["dss2-jek-1"])  # gone, reaped
        assert not fleet.alive("dss2-backend")
        for name in ("dss2-supervisord", "dss2-jupyter", "dss2-kernel-1"):
            assert running(ids[name]) and fleet.alive(name), name
        assert fleet.pid("dss2-backend") == ids["dss2-backend"][0]  # the old pid stays known
        fleet.kill("dss2-supervisord")  # a child of the controller
        assert not any(running(i) for i in ids.values())
    assert not any(running(i) for i in ids.values())


@pytest.mark.parametrize("bad, message", [
    ([ProcSpec("a", ("/bin/something-long-enough",)), ProcSpec("a", ("/bin/something-long-enough",))], "duplicate"),
    ([ProcSpec("a", ("/bin/something-long-enough",), parent="nope")], "unknown parent"),
    ([ProcSpec("a", ("/bin/something-long-enough",), parent="b"),
      ProcSpec("b", ("/bin/something-long-enough",), parent="a")], "cycle"),
    ([ProcSpec("a", ("sleep", "1"))], "at least %d" % MIN_CMDLINE_BYTES),
    ([ProcSpec("a", ("/bin/something-long-enough",), comm="a-comm-longer-than-15")], "longer than 15"),
])
def test_bad_specs_are_refused_by_name_before_anything_starts(bad, message):
    fleet = Fleet(bad)
    with pytest.raises(FleetError, match=message) as error:
        fleet.start()
    assert str(error.value).startswith("a:")
    assert fleet.pids == {} and not os.path.exists(fleet.base)


def test_a_start_that_times_out_cleans_up_everything(tmp_path):
    d = str(tmp_path / "dss")
    fleet = Fleet(lambda home: second_instance_layout(home), dip_home=d, start_timeout=0.0)
    with pytest.raises(FleetError, match="not ready"):
        fleet.start()

    def leftovers():
        found = []
        for proc in psutil.process_iter(["cmdline", "environ", "status"]):
            text = " ".join(proc.info["cmdline"] or []) + repr(proc.info["environ"] or {})
            if d in text and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        return found

    assert wait_until(lambda: leftovers() == [], timeout=15), leftovers()
    assert not os.path.exists(fleet.base)


# ---- the CLI, Ctrl-C, SIGTERM, and a controller that dies ----------------------------------------------------

def read_pids(stream):
    """Read `python -m dev.fleet` output up to its ready line: {name: pid}."""
    pids = {}
    for line in stream:
        if line.startswith("ready:"):
            return pids
        name, value = line.split()
        if name != "dip_home":
            pids[name] = int(value)
    raise AssertionError("the fleet CLI ended before it was ready")


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c twice", "sigterm"])
def test_the_cli_stops_its_fleet_on_ctrl_c_and_sigterm(how):
    cli = subprocess.Popen([sys.executable, "-m", "dev.fleet", "--layout", "govern", "--memory-scale", "0.25"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = read_pids(cli.stdout)
        assert set(pids) == {"govern-supervisord", "govern-server", "govern-nginx", "govern-nginx-worker-1"}
        ids = {name: (pid, psutil.Process(pid).create_time()) for name, pid in pids.items()}
        if how.startswith("ctrl-c"):
            os.killpg(cli.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
            if how == "ctrl-c twice":  # an impatient user (or `timeout -s INT`): the teardown must still finish
                os.killpg(cli.pid, signal.SIGINT)
            assert cli.wait(timeout=30) == 0
        else:
            cli.send_signal(signal.SIGTERM)
            assert cli.wait(timeout=30) == -signal.SIGTERM
        assert [name for name, i in ids.items() if running(i)] == []
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stdout.close()


REAPER = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us, as to a host's init
subprocess.Popen([sys.executable, "-m", "dev.fleet", "--layout", "full", "--memory-scale", "0.25", "--json"])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def test_a_controller_killed_with_sigkill_leaves_nothing_behind():
    """The controller gets no chance to clean up: the fleet must exit by itself (lifeline EOF, PDEATHSIG). The
    controller runs under a subreaper that reaps orphans as init would, and exits once it has no child left."""
    reaper = subprocess.Popen([sys.executable, "-c", REAPER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    base = None
    try:
        started = json.loads(reaper.stdout.readline())
        base, pids = os.path.dirname(started["dip_home"]), started["pids"]
        assert len(pids) == len(full_layout("/x")) and "dss2-kernel-1" in pids and "apinode-apimain" in pids and "kernel-r" in pids
        ids = {name: (pid, psutil.Process(pid).create_time()) for name, pid in pids.items()}
        (controller,) = psutil.Process(reaper.pid).children()
        controller.kill()
        assert reaper.wait(timeout=60) == 0  # every orphan exited and was reaped
        assert [name for name, i in ids.items() if running(i)] == []
    finally:
        if reaper.poll() is None:
            for child in psutil.Process(reaper.pid).children(recursive=True):
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            reaper.kill()
            reaper.wait()
        reaper.stdout.close()
        if base:  # the controller had no chance to remove its temporary directory
            shutil.rmtree(base, ignore_errors=True)


def test_the_platform_layout_carries_the_documented_markers_of_dss_companions():
    """One process per DSS companion of dss-reference.md section 3 (Hadoop proxy, Fleet Manager agent, runtime
    databases, story service), with the documented marker on its command line, its comm and its parent."""
    with Fleet(platform_layout) as fleet:
        def line(name):
            return psutil.Process(fleet.pid(name)).cmdline()

        hproxy = line("platform-hproxy")
        assert hproxy[0] == JAVA and hproxy[1] == "-Ddku.hproxy"
        assert hproxy[hproxy.index("-cp") + 1].split(":")[0] == fleet.dip_home + "/bin"
        assert psutil.Process(fleet.pid("platform-hproxy")).ppid() == fleet.pid("platform-supervisord")
        assert any("dataiku-fm-agent" in arg for arg in line("platform-fm-agent"))
        assert line("platform-postgres")[0].endswith("/bin/postgres") and "/data/pgsql/data" in line("platform-postgres")
        assert "/data/pgsql-govern/data" in line("platform-postgres-govern")
        worker = psutil.Process(fleet.pid("platform-postgres-worker"))
        assert worker.cmdline() == ["postgres:", "background", "writer"] and worker.name() == "postgres"
        assert worker.ppid() == fleet.pid("platform-postgres")
        story = line("platform-story")
        assert story[story.index("--file") + 1].endswith("/story/docker-compose.yml")
        for name in ("platform-fm-agent", "platform-postgres", "platform-postgres-govern", "platform-story"):
            assert psutil.Process(fleet.pid(name)).ppid() == os.getpid()  # init / systemd on a real host
