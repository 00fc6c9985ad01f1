"""A fleet of real processes shaped like a DSS host's, for the scanner's tests and the demo. Not in the plugin zip.

    with Fleet(demo_layout) as fleet:          # or Fleet(specs, dip_home=...), Fleet(layout, memory_scale=2.0)
        fleet.pid("jek-1"), fleet.pids, fleet.dip_home, fleet.spec("ml-1"), fleet.kill("kernel-2")

Each process is a small Python program (dev/fleet_proc.py) that rewrites its own argv area and comm name so
that /proc/<pid>/cmdline, psutil's `cmdline()` and `name()` are exactly those of the DSS process it stands for
(a JEK's first token is the java binary, `-Ddku.jek` follows, then a classpath of several KB), allocates
`memory_mib` of touched anonymous memory (RssAnon), and spawns its own children, so parents are real. Processes
with a `user` run as that unix user when the controller is root (the user is created, `useradd --system`, when
missing); otherwise they run as the controller's user.

`Fleet.start()` returns once every process has reported, through a pipe, that its title is rewritten and its
memory allocated. Teardown, in order of preference: `stop()` / leaving the `with` block / atexit / SIGTERM or
SIGHUP to the controller (each process terminates its children, waits for them, then exits, so every process is
reaped by its own parent); if the controller dies abruptly, every process sees EOF on a lifeline pipe only the
controller holds and PR_SET_PDEATHSIG fires, so the fleet exits by itself.

Limits: `/proc/<pid>/exe` is a Python interpreter; the command line must be at least 21 bytes long (the
launcher's own argv); PR_SET_PDEATHSIG follows the thread that started the fleet, so start it from a thread that
outlives it (the main thread, a pytest fixture).

`python -m dev.fleet --layout demo` starts a layout, prints `name pid` lines and runs until Ctrl-C.
"""
import argparse
import atexit
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
PROC_PROGRAM = os.path.join(HERE, "fleet_proc.py")
MODULE_ARG = "-ESmfleet_proc"  # -E: ignore PYTHON* env, -S: no site (fast start), -m: run fleet_proc from cwd
MIN_CMDLINE_BYTES = len("./py") + 1 + len(MODULE_ARG) + 1 + 1  # the launcher's argv with an empty padding

INSTALL_DIR = "/opt/dataiku/dataiku-dss-14.2.0"  # a DSS installation directory (only appears in command lines)
JAVA = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
SPARK_HOME = "/opt/dataiku/spark-3.5.3-bin-hadoop3"
UIF_USER = "dssuser1"  # the unix user kernel-uif runs as, when the fleet runs as root

# Secrets planted on command lines, the way DSS really exposes them; no output of the plugin may contain them.
ML_SERVER_SECRET = "ptPlantedMlServerSecret0b9d4e71a2"
KEYSTORE_PASSWORD = "ptPlantedKeystorePassword5c3f8a06"
JUPYTER_TOKEN = "ptPlantedJupyterToken7e21b94dc3"
PLANTED_SECRETS = (ML_SERVER_SECRET, KEYSTORE_PASSWORD, JUPYTER_TOKEN)

KERNEL_IDS = {
    "kernel-1": "11111111-1111-4111-8111-111111111111",
    "kernel-2": "22222222-2222-4222-8222-222222222222",
    "kernel-3": "33333333-3333-4333-8333-333333333333",
    "kernel-4": "44444444-4444-4444-8444-444444444444",
    "kernel-uif": "55555555-5555-4555-8555-555555555555",
    "kernel-orphan": "66666666-6666-4666-8666-666666666666",
    "dss2-kernel-1": "77777777-7777-4777-8777-777777777777",
    "kernel-r": "88888888-8888-4888-8888-888888888888",
    "kernel-scala": "99999999-9999-4999-8999-999999999999",
}


class FleetError(Exception):
    """A fleet could not be built or started; the message says which process and why."""


@dataclass(frozen=True)
class ProcSpec:
    """One process of a fleet.

    `cmdline` is exactly what /proc/<pid>/cmdline will hold (one item per argument; a rewritten title such as
    nginx's is one item, which psutil's cmdline() splits on spaces, its rule for a single NUL-terminated title). `comm` defaults to the basename of the first item (at most 15 bytes, like the kernel's).
    `parent` is another spec's name, or None for a child of the controller. `memory_mib` is touched anonymous
    memory in MiB (scaled by the fleet's `memory_scale`). `user` is a unix user to run as (honoured only when the
    controller is root). `process_group`: start a process group of its own (UIF targets do). `env` is the whole
    environment (nothing is inherited from the controller). `files` are (path, text) written before start;
    `pidfile` gets the pid once the fleet is ready. `role` documents which DSS process it stands for.
    """

    name: str
    cmdline: Tuple[str, ...]
    parent: Optional[str] = None
    comm: Optional[str] = None
    memory_mib: float = 8.0
    role: str = ""
    user: Optional[str] = None
    process_group: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    files: Tuple[Tuple[str, str], ...] = ()
    pidfile: Optional[str] = None

    @property
    def comm_name(self) -> str:
        comm = self.comm if self.comm is not None else os.path.basename(self.cmdline[0])
        return os.fsencode(comm)[:15].decode("utf-8", "ignore")

    @property
    def cmdline_bytes(self) -> bytes:
        """The exact content of /proc/<pid>/cmdline: every argument NUL-terminated."""
        return b"".join(os.fsencode(arg) + b"\0" for arg in self.cmdline)


Layout = Callable[[str], List[ProcSpec]]


# --------------------------------------------------------------------------------------------------------------
# DSS-shaped command lines
# --------------------------------------------------------------------------------------------------------------

_JARS = (
    "activation-1.1.1", "annotations-24.0.1", "antlr4-runtime-4.13.1", "aopalliance-1.0", "asm-9.6",
    "aws-java-sdk-core-1.12.600", "aws-java-sdk-s3-1.12.600", "bcprov-jdk18on-1.77", "caffeine-3.1.8",
    "commons-codec-1.16.0", "commons-collections4-4.4", "commons-compress-1.25.0", "commons-io-2.15.1",
    "commons-lang3-3.14.0", "commons-math3-3.6.1", "commons-text-1.11.0", "failureaccess-1.0.2", "gson-2.10.1",
    "guava-33.0.0-jre", "h2-2.2.224", "hikaricp-5.1.0", "httpclient-4.5.14", "httpcore-4.4.16",
    "jackson-annotations-2.16.1", "jackson-core-2.16.1", "jackson-databind-2.16.1", "jakarta.servlet-api-6.0.0",
    "javassist-3.30.2-GA", "jcl-over-slf4j-2.0.11", "jetty-http-12.0.5", "jetty-io-12.0.5", "jetty-server-12.0.5",
    "jetty-util-12.0.5", "jna-5.14.0", "joda-time-2.12.6", "jsch-0.2.16", "json-20231013", "jsr305-3.0.2",
    "log4j-1.2-api-2.22.1", "log4j-api-2.22.1", "log4j-core-2.22.1", "lucene-core-9.9.1", "netty-all-4.1.104",
    "okhttp-4.12.0", "okio-3.7.0", "parquet-hadoop-1.13.1", "postgresql-42.7.1", "protobuf-java-3.25.2",
    "slf4j-api-2.0.11", "snakeyaml-2.2", "spring-beans-6.1.3", "spring-context-6.1.3", "spring-core-6.1.3",
    "spring-web-6.1.3", "spring-webmvc-6.1.3", "sqlite-jdbc-3.45.0.0", "trove4j-3.0.3", "xz-1.9",
    "zookeeper-3.9.1", "zstd-jni-1.5.5-11",
)


def java_classpath(dip_home: str) -> str:
    """A DSS JVM classpath (about 6 KB): `<DIP_HOME>/bin` first (it names the instance), then the install's jars."""
    entries = [dip_home + "/bin", INSTALL_DIR + "/dist/dataiku-core.jar", INSTALL_DIR + "/dist/dataiku-app-platform.jar",
               INSTALL_DIR + "/dist/dataiku-dip.jar"]
    for group in ("backend-run", "common-run"):
        entries.extend("%s/lib/ivy/%s/%s.jar" % (INSTALL_DIR, group, jar) for jar in _JARS)
    entries.append(INSTALL_DIR + "/lib/shadelib/*")
    return ":".join(entries)


def java_cmdline(kind: str, main_class: str, dip_home: str, xmx: str = "2g", args: Sequence[str] = (),
                 extra_opts: Sequence[str] = ()) -> Tuple[str, ...]:
    """`<jdk>/bin/java -Ddku.<kind> -Xmx<xmx> <opts> -cp <classpath> <main_class> <args>`, as DSS starts its JVMs."""
    opts = [
        "-Xms256m", "-Xmx" + xmx, "-XX:+UseG1GC", "-XX:MaxMetaspaceSize=1g", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", "-Dfile.encoding=utf8", "-Djava.io.tmpdir=%s/tmp" % dip_home,
        "-Ddku.dip.home=%s" % dip_home, "-Dlog4j.configurationFile=%s/bin/log4j2.xml" % dip_home,
    ]
    opts += ["--add-opens=%s=ALL-UNNAMED" % pkg for pkg in (
        "java.base/java.lang", "java.base/java.util", "java.base/java.nio", "java.base/sun.nio.ch",
        "java.base/java.lang.reflect", "java.base/java.util.concurrent", "java.security.jgss/sun.security.krb5")]
    return (JAVA, "-Ddku." + kind, *opts, *extra_opts, "-cp", java_classpath(dip_home), main_class, *args)


def kernel_cmdline(dip_home: str, kernel_id: str, python: Optional[str] = None) -> Tuple[str, ...]:
    """A Python Jupyter kernel: `<python> -m ipykernel_launcher -f <DIP_HOME>/jupyter-run/.../kernel-<id>.json`."""
    python = python or dip_home + "/code-envs/python/py39-ds/bin/python"
    return (python, "-m", "ipykernel_launcher", "-f", connection_file(dip_home, kernel_id))


def connection_file(dip_home: str, kernel_id: str) -> str:
    return "%s/jupyter-run/jupyter/runtime/kernel-%s.json" % (dip_home, kernel_id)


def _dss_env(dip_home: str, **extra: str) -> Dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "DIP_HOME": dip_home, "DKUINSTALLDIR": INSTALL_DIR}
    env.update(extra)
    return env


def _kernel_spec(dip_home: str, name: str, parent: str, memory_mib: float, python: Optional[str] = None,
                 **kwargs) -> ProcSpec:
    kernel_id = KERNEL_IDS[name]
    connection = json.dumps({"shell_port": 0, "iopub_port": 0, "transport": "tcp", "ip": "127.0.0.1",
                             "kernel_name": "py-dku-venv-py39-ds"})
    return ProcSpec(name, kernel_cmdline(dip_home, kernel_id, python), parent=parent, memory_mib=memory_mib,
                    role="jupyter kernel (ipykernel)", cwd=dip_home + "/config/ipython_notebooks",
                    env=_dss_env(dip_home, DKU_CALL_ORIGIN="notebook"),
                    files=((connection_file(dip_home, kernel_id), connection),), **kwargs)


def _supervisor_files(dip_home: str, programs: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
    conf = "".join("[program:%s]\ncommand=%s/bin/dku run-%s\n\n" % (p, dip_home, p) for p in programs)
    return ((dip_home + "/install-support/supervisord.conf", "[supervisord]\npidfile=%s/run/supervisord.pid\n\n%s"
             % (dip_home, conf)),)


def _supervisord(dip_home: str, name: str, programs: Sequence[str]) -> ProcSpec:
    return ProcSpec(name, (dip_home + "/pyenv/bin/python", "-m", "supervisor.supervisord", "-c",
                           dip_home + "/install-support/supervisord.conf"),
                    memory_mib=6, role="supervisord", cwd=dip_home, env=_dss_env(dip_home),
                    files=_supervisor_files(dip_home, programs), pidfile=dip_home + "/run/supervisord.pid")


def _nginx(dip_home: str, prefix: str, parent: str, workers: int = 2) -> List[ProcSpec]:
    conf = dip_home + "/install-support/nginx.conf"
    master = ProcSpec(prefix + "nginx", ("nginx: master process nginx -c " + conf,), parent=parent, comm="nginx",
                      memory_mib=4, role="nginx master", cwd=dip_home, env=_dss_env(dip_home),
                      files=((conf, "worker_processes %d;\n" % workers),))
    return [master] + [ProcSpec("%snginx-worker-%d" % (prefix, i), ("nginx: worker process",), parent=master.name,
                                comm="nginx", memory_mib=4, role="nginx worker", cwd=dip_home, env=_dss_env(dip_home))
                       for i in range(1, workers + 1)]


def _backend(dip_home: str, name: str, parent: str, memory_mib: float) -> ProcSpec:
    cmd = java_cmdline("backend", "com.dataiku.dip.DSSBackendMain", dip_home, xmx="4g", extra_opts=(
        "-Djavax.net.ssl.keyStore=%s/config/keystore.jks" % dip_home,
        "-Djavax.net.ssl.keyStorePassword=" + KEYSTORE_PASSWORD))
    return ProcSpec(name, cmd, parent=parent, comm="java", memory_mib=memory_mib, role="backend", cwd=dip_home,
                    env=_dss_env(dip_home))


def _jek(dip_home: str, name: str, parent: str, memory_mib: float, port: int) -> ProcSpec:
    cmd = java_cmdline("jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain", dip_home, xmx="2g",
                       args=("127.0.0.1", str(port)))
    return ProcSpec(name, cmd, parent=parent, comm="java", memory_mib=memory_mib, role="JEK (job kernel)",
                    cwd=dip_home + "/jobs", env=_dss_env(dip_home))


def dss_job_id(name: str, started_at: float) -> str:
    """A DSS job id: `<name>_<local start time as YYYY-MM-DDTHH-MM-SS.mmm>`, e.g. Build_x_2026-12-02T10-11-12.345."""
    millis = int(round(started_at * 1000))
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(millis // 1000))
    return "%s_%s.%03d" % (name, stamp, millis % 1000)


# The demo's running jobs: JEK name -> (project key, job id prefix, recipe activity id), as in dev/instances/demo.json
DEMO_JOBS = {"jek-1": ("CHURN", "Build_churn_scored", "compute_churn_scored_NP"),
             "jek-2": ("SALES", "Build_sales_monthly", "compute_sales_monthly_NP")}


def demo_layout(dip_home: str, jobs_started_at: Optional[float] = None) -> List[ProcSpec]:
    """The demo DSS design node: every row of dss-reference.md section 3 that lives on a design node. Names,
    parents and kernel ids are a contract with the simulator's demo instance (`{"fleet": "<name>"}` pids).
    The recipe's working directory names its job, dated `jobs_started_at` (default: now): the demo dates the
    instance's job the same way (`dss_job_id`)."""
    d = dip_home
    jobs_started_at = time.time() if jobs_started_at is None else jobs_started_at
    churn_job = dss_job_id(DEMO_JOBS["jek-1"][1], jobs_started_at)
    py = d + "/pyenv/bin/python"
    specs = [_supervisord(d, "supervisord", ("backend", "nginx", "ipython", "eventserver"))]
    specs += _nginx(d, "", "supervisord")
    specs.append(_backend(d, "backend", "supervisord", 60))
    specs += [_jek(d, "jek-1", "backend", 24, 41001), _jek(d, "jek-2", "backend", 24, 41002),
              _jek(d, "jek-idle", "backend", 16, 41003)]
    specs.append(ProcSpec(
        "recipe-1", (d + "/code-envs/python/py39-ds/bin/python", "-u",
                     "%s/jobs/CHURN/%s/%s/python-exec-wrapper.py" % (d, churn_job, DEMO_JOBS["jek-1"][2]),
                     "recipe.py"),
        parent="jek-1", memory_mib=30, role="python recipe",
        cwd=d, env=_dss_env(d, DKU_CURRENT_PROJECT_KEY="CHURN")))
    specs.append(ProcSpec(
        "spark-1", (JAVA, "-cp", "%s/conf/:%s/jars/*" % (SPARK_HOME, SPARK_HOME), "-Xmx1g",
                    "org.apache.spark.deploy.SparkSubmit", "--master", "local[2]", "--conf", "spark.driver.memory=1g",
                    "--name", "DSS_SALES_%s" % DEMO_JOBS["jek-2"][2], "--class", "com.dataiku.dip.spark.SparkRecipeRunner",
                    INSTALL_DIR + "/lib/spark/dataiku-spark-recipes.jar"),
        parent="jek-2", comm="java", memory_mib=40, role="Spark driver", cwd=d, env=_dss_env(d)))
    for name, memory in (("fek-1", 16), ("fek-2", 16)):
        specs.append(ProcSpec(name, java_cmdline("fek", "com.dataiku.dip.futures.DSSFutureKernelMain", d,
                                                 args=("127.0.0.1", "41100")),
                              parent="backend", comm="java", memory_mib=memory, role="FEK (future kernel)", cwd=d,
                              env=_dss_env(d)))
    specs.append(ProcSpec("cak-1", java_cmdline("cak", "com.dataiku.dip.dataflow.streaming.slave.DSSCAKernelMain", d,
                                                xmx="1g", args=("127.0.0.1", "41200")),
                          parent="backend", comm="java", memory_mib=12, role="CAK (continuous activity kernel)",
                          cwd=d, env=_dss_env(d)))
    specs.append(ProcSpec("eventserver", java_cmdline("eventserver", "com.dataiku.dip.eventsserver.EventServerMain", d,
                                                      xmx="512m"),
                          parent="supervisord", comm="java", memory_mib=10, role="event server", cwd=d,
                          env=_dss_env(d)))
    specs.append(ProcSpec("ml-1", (d + "/code-envs/python/py39-ml/bin/python", "-u", "-m", "dataiku.doctor.server",
                                   "41731", ML_SERVER_SECRET),
                          parent="backend", memory_mib=48, role="in-memory ML training", cwd=d + "/analysis-data",
                          env=_dss_env(d, DKU_CURRENT_PROJECT_KEY="CHURN")))
    specs.append(ProcSpec("webapp-1", (d + "/code-envs/python/py39-web/bin/python", "-u",
                                       INSTALL_DIR + "/python/dataiku/webapps/backend.py"),
                          parent="backend", memory_mib=12, role="webapp backend (Flask)", cwd=d + "/run/webapps",
                          env=_dss_env(d, DKU_CURRENT_PROJECT_KEY="CHURN")))
    specs.append(ProcSpec("jupyter", (py, INSTALL_DIR + "/dku-jupyter/dkulauncher.py",
                                      "--config=%s/install-support/jupyter/jupyter_notebook_config.py" % d,
                                      "--notebook-dir=%s/config/ipython_notebooks" % d, "--ip=127.0.0.1",
                                      "--port=11204", "--token", JUPYTER_TOKEN),
                          parent="supervisord", memory_mib=10, role="Jupyter server", cwd=d, env=_dss_env(d)))
    for name, memory in (("kernel-1", 40), ("kernel-2", 20), ("kernel-3", 30), ("kernel-4", 15)):
        specs.append(_kernel_spec(d, name, "jupyter", memory))
    # User isolation (UIF): sudo -> execwrapper.sh (exec'ed into exec.py) -> the kernel, as another user.
    specs.append(ProcSpec("kernel-uif-sudo", ("sudo", "-n", d + "/security/execwrapper.sh", "execute", UIF_USER,
                                              d + "/run/uif/kernel-uif.json"),
                          parent="jupyter", memory_mib=2, role="UIF link (sudo)", cwd=d, env=_dss_env(d),
                          files=((d + "/security/execwrapper.sh", "#!/bin/sh\n# stand-in: DSS's UIF wrapper\n"),)))
    specs.append(ProcSpec("kernel-uif-exec", (py, INSTALL_DIR + "/resources/security/exec.py", "execute", UIF_USER,
                                              d + "/run/uif/kernel-uif.json"),
                          parent="kernel-uif-sudo", memory_mib=4, role="UIF link (exec.py)", cwd=d, env=_dss_env(d)))
    specs.append(_kernel_spec(d, "kernel-uif", "kernel-uif-exec", 25, user=UIF_USER, process_group=True))
    specs.append(_kernel_spec(d, "kernel-orphan", "jupyter", 35))
    specs.append(ProcSpec("not-dss-1", ("/usr/bin/python3", "-m", "http.server", "18080", "--bind", "127.0.0.1"),
                          memory_mib=8, role="not DSS (a python http server)", cwd="/tmp",
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}))
    specs.append(ProcSpec("not-dss-2", ("java", "-jar", "/opt/other/app.jar"), memory_mib=8,
                          role="not DSS (a java app)", cwd="/tmp", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}))
    return specs


def extra_roles_layout(dip_home: str) -> List[ProcSpec]:
    """Rarer processes of section 3, under the demo's parents (combine with `demo_layout` on the same DIP_HOME):
    an R kernel (IRkernel), a Scala kernel (toree), Bokeh, Dash and Shiny webapp backends, a PySpark child of
    the Spark driver. Command lines beyond the documented markers are illustrative."""
    d = dip_home
    r_kernel = ("/usr/lib/R/bin/exec/R", "--slave", "-e", "IRkernel::main()", "--args",
                connection_file(d, KERNEL_IDS["kernel-r"]))
    toree = (JAVA, "-Xmx1g", "-classpath", "%s/jupyter-run/toree/lib/toree-assembly-0.5.0.jar" % d,
             "org.apache.toree.Main", "--profile", connection_file(d, KERNEL_IDS["kernel-scala"]))
    web_py = d + "/code-envs/python/py39-web/bin/python"
    return [
        ProcSpec("kernel-r", r_kernel, parent="jupyter", comm="R", memory_mib=12, role="jupyter kernel (R)",
                 cwd=d + "/config/ipython_notebooks", env=_dss_env(d, DKU_CALL_ORIGIN="notebook")),
        ProcSpec("kernel-scala", toree, parent="jupyter", comm="java", memory_mib=12, role="jupyter kernel (Scala)",
                 cwd=d + "/config/ipython_notebooks", env=_dss_env(d, DKU_CALL_ORIGIN="notebook")),
        ProcSpec("webapp-bokeh", (web_py, "-u", INSTALL_DIR + "/python/dataiku/webapps/run_bokeh.py"),
                 parent="backend", memory_mib=8, role="webapp backend (Bokeh)", cwd=d, env=_dss_env(d)),
        ProcSpec("webapp-dash", (web_py, "-u", INSTALL_DIR + "/python/dataiku/webapps/run_dash.py"),
                 parent="backend", memory_mib=8, role="webapp backend (Dash)", cwd=d, env=_dss_env(d)),
        ProcSpec("webapp-shiny", ("/usr/lib/R/bin/exec/R", "--slave", "--no-restore", "--file=%s/R/run_shiny.R"
                                  % INSTALL_DIR), parent="backend", comm="R", memory_mib=8,
                 role="webapp backend (Shiny, R)", cwd=d, env=_dss_env(d)),
        ProcSpec("pyspark-1", (d + "/code-envs/python/py39-ds/bin/python", "-m", "pyspark.daemon"), parent="spark-1",
                 memory_mib=8, role="PySpark worker of the Spark driver", cwd=d, env=_dss_env(d)),
    ]


def second_instance_layout(dip_home: str, prefix: str = "dss2-") -> List[ProcSpec]:
    """A second DSS design node on the same host (its own DIP_HOME): supervisord, backend, a JEK, Jupyter and a
    kernel (kernel id `KERNEL_IDS["dss2-kernel-1"]`); every name starts with `prefix`."""
    d = dip_home
    return [
        _supervisord(d, prefix + "supervisord", ("backend", "ipython")),
        _backend(d, prefix + "backend", prefix + "supervisord", 30),
        _jek(d, prefix + "jek-1", prefix + "backend", 12, 42001),
        ProcSpec(prefix + "jupyter", (d + "/pyenv/bin/python", INSTALL_DIR + "/dku-jupyter/dkulauncher.py",
                                      "--notebook-dir=%s/config/ipython_notebooks" % d),
                 parent=prefix + "supervisord", memory_mib=8, role="Jupyter server", cwd=d, env=_dss_env(d)),
        _kernel_spec(d, prefix + "kernel-1", prefix + "jupyter", 12),
    ]


def govern_layout(dip_home: str, prefix: str = "govern-") -> List[ProcSpec]:
    """A Govern node: supervisord, nginx (master + 1 worker) and the governserver JVM (`-Ddku.governserver`; the
    marker and main class are believed, not verified, see dss-reference.md section 3)."""
    d = dip_home
    server = ProcSpec(prefix + "server", java_cmdline("governserver", "com.dataiku.dip.server.GovernServerMain", d,
                                                      xmx="2g"),
                      parent=prefix + "supervisord", comm="java", memory_mib=20, role="governserver", cwd=d,
                      env=_dss_env(d), files=((d + "/run/governserver.log", ""),))
    return [_supervisord(d, prefix + "supervisord", ("governserver", "nginx")), server] + _nginx(
        d, prefix, prefix + "supervisord", workers=1)


def api_node_layout(dip_home: str, prefix: str = "apinode-") -> List[ProcSpec]:
    """An API node: supervisord and the `-Ddku.apimain` JVM (`com.dataiku.lambda.LambdaServerMain`)."""
    d = dip_home
    return [_supervisord(d, prefix + "supervisord", ("apimain",)),
            ProcSpec(prefix + "apimain", java_cmdline("apimain", "com.dataiku.lambda.LambdaServerMain", d, xmx="1g"),
                     parent=prefix + "supervisord", comm="java", memory_mib=12, role="API node", cwd=d,
                     env=_dss_env(d))]


def platform_layout(dip_home: str, prefix: str = "platform-") -> List[ProcSpec]:
    """The DSS companions of dss-reference.md section 3 that the other layouts lack: the Hadoop proxy JVM
    (`-Ddku.hproxy`, under its node's supervisord), and, as children of the controller (init / systemd on a real
    host), the Fleet Manager agent (a command line holding `dataiku-fm-agent`), the runtime PostgreSQL databases of
    a Cloud Stacks instance (`.../bin/postgres -D /data/pgsql/data`, with a worker whose title is rewritten, and
    Govern's `-D /data/pgsql-govern/data`) and the story service (`docker-compose ... --file <install
    dir>/story/docker-compose.yml`). Only the markers are documented: the rest of each command line (the
    Hadoop proxy's main class, the agent's paths, the postgres options) is illustrative. No file is written
    outside the fleet's directory (the database paths only appear in command lines)."""
    d = dip_home
    postgres = "/usr/lib/postgresql/15/bin/postgres"
    plain_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return [
        _supervisord(d, prefix + "supervisord", ("hproxy",)),
        ProcSpec(prefix + "hproxy", java_cmdline("hproxy", "com.dataiku.dip.hproxy.HProxyMain", d, xmx="1g"),
                 parent=prefix + "supervisord", comm="java", memory_mib=8, role="Hadoop proxy", cwd=d,
                 env=_dss_env(d)),
        ProcSpec(prefix + "fm-agent", ("/opt/dataiku-fm-agent/venv/bin/python3", "/opt/dataiku-fm-agent/agent.py",
                                       "--config", "/etc/dataiku-fm-agent/agent.yml"),
                 comm="python3", memory_mib=4, role="Fleet Manager agent", env=plain_env),
        ProcSpec(prefix + "postgres", (postgres, "-D", "/data/pgsql/data", "-c",
                                       "config_file=/data/pgsql/data/postgresql.conf"),
                 comm="postgres", memory_mib=6, role="runtime database (PostgreSQL)", env=plain_env),
        ProcSpec(prefix + "postgres-worker", ("postgres: background writer",), parent=prefix + "postgres",
                 comm="postgres", memory_mib=2, role="runtime database worker", env=plain_env),
        ProcSpec(prefix + "postgres-govern", (postgres, "-D", "/data/pgsql-govern/data"), comm="postgres",
                 memory_mib=4, role="Govern runtime database (PostgreSQL)", env=plain_env),
        ProcSpec(prefix + "story", ("/usr/local/bin/docker-compose", "--project-name", "dss-story", "--file",
                                    INSTALL_DIR + "/story/docker-compose.yml", "up"),
                 comm="docker-compose", memory_mib=2, role="story service", env=plain_env),
    ]


def sibling_dir(dip_home: str, name: str) -> str:
    """Another data directory next to `dip_home` (same temporary base, removed with the fleet)."""
    return os.path.join(os.path.dirname(dip_home), name)


def full_layout(dip_home: str) -> List[ProcSpec]:
    """Everything: the demo node with the extra roles, a second instance, a Govern node, an API node and the
    platform companions (Hadoop proxy, Fleet Manager agent, runtime databases, story service)."""
    return (demo_layout(dip_home) + extra_roles_layout(dip_home)
            + second_instance_layout(sibling_dir(dip_home, "dss2_data"))
            + govern_layout(sibling_dir(dip_home, "govern_data")) + api_node_layout(sibling_dir(dip_home, "api_data"))
            + platform_layout(sibling_dir(dip_home, "platform_data")))


LAYOUTS: Dict[str, Layout] = {
    "demo": demo_layout,
    "demo+extras": lambda d: demo_layout(d) + extra_roles_layout(d),
    "two-instances": lambda d: demo_layout(d) + second_instance_layout(sibling_dir(d, "dss2_data")),
    "govern": govern_layout,
    "api-node": api_node_layout,
    "platform": platform_layout,
    "full": full_layout,
}


# --------------------------------------------------------------------------------------------------------------
# The controller
# --------------------------------------------------------------------------------------------------------------

def validate(specs: Sequence[ProcSpec]) -> None:
    """Raise FleetError naming the spec when names repeat, a parent is unknown, the tree has a cycle, a command
    line is too short for the launcher, or a comm name is too long."""
    names = {}
    for spec in specs:
        if spec.name in names:
            raise FleetError("%s: duplicate process name" % spec.name)
        names[spec.name] = spec
        if not spec.cmdline:
            raise FleetError("%s: empty command line" % spec.name)
        if len(spec.cmdline_bytes) < MIN_CMDLINE_BYTES:
            raise FleetError("%s: command line is %d bytes, the launcher needs at least %d"
                             % (spec.name, len(spec.cmdline_bytes), MIN_CMDLINE_BYTES))
        if spec.comm is not None and len(os.fsencode(spec.comm)) > 15:
            raise FleetError("%s: comm %r is longer than 15 bytes" % (spec.name, spec.comm))
        if spec.memory_mib < 0:
            raise FleetError("%s: memory_mib must be >= 0" % spec.name)
    for spec in specs:
        seen = {spec.name}
        parent = spec.parent
        while parent is not None:
            if parent not in names:
                raise FleetError("%s: unknown parent %r" % (spec.name, parent))
            if parent in seen:
                raise FleetError("%s: cycle in parents" % spec.name)
            seen.add(parent)
            parent = names[parent].parent


def _world_accessible(path: str) -> bool:
    """True when any user can execute `path`: every directory above it is o+x and the file is o+x."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def _interpreters() -> Tuple[str, Optional[str]]:
    """(interpreter for the controller's user, interpreter any user can run or None)."""
    own = os.path.realpath(sys.executable)
    candidates = [own, os.path.realpath(getattr(sys, "_base_executable", own)), "/usr/bin/python3",
                  "/usr/local/bin/python3"]
    return own, next((c for c in candidates if os.path.exists(c) and _world_accessible(c)), None)


def _ensure_user(name: str) -> Tuple[int, int]:
    """uid, gid of `name`, creating a system user without home when missing (root only)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                                capture_output=True, text=True, check=False)
        if result.returncode not in (0, 9):  # 9: exists (created concurrently)
            raise FleetError("cannot create user %s: %s" % (name, result.stderr.strip())) from None
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


_live_fleets = set()  # fleets to stop at exit or on SIGTERM/SIGHUP (module state: exit hooks are process-wide)
_hooks_lock = threading.Lock()
_hooks_installed = False


def _stop_live_fleets() -> None:
    for fleet in list(_live_fleets):
        fleet.stop()


def _on_terminate(signum, _frame) -> None:
    _stop_live_fleets()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_exit_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        atexit.register(_stop_live_fleets)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(signum) in (signal.SIG_DFL, None):
                    signal.signal(signum, _on_terminate)


class Fleet:
    """Start, inspect and stop a tree of DSS-shaped processes. See the module docstring."""

    def __init__(self, specs: Union[Sequence[ProcSpec], Layout], memory_scale: float = 1.0,
                 dip_home: Optional[str] = None, start_timeout: float = 60.0, grace_seconds: float = 5.0):
        """`specs`: a list of ProcSpec, or a layout callable `f(dip_home) -> list` (e.g. `demo_layout`).
        `dip_home`: the DSS data directory (`fleet.dip_home`): for a layout, by default `<a new temp dir>/dss_data`
        (removed on stop); for a list, by default the first `DIP_HOME` in the specs' environments.
        `memory_scale` multiplies every `memory_mib`. `start_timeout` (s) bounds the readiness wait;
        `grace_seconds` is how long a process waits for its children after SIGTERM before SIGKILL."""
        if memory_scale < 0:
            raise FleetError("memory_scale must be >= 0")
        self._specs_or_layout = specs
        self.memory_scale = memory_scale
        self.start_timeout = start_timeout
        self.grace_seconds = grace_seconds
        self._given_dip_home = dip_home
        self.base: Optional[str] = None
        self.dip_home: Optional[str] = None
        self.specs: List[ProcSpec] = []
        self._by_name: Dict[str, ProcSpec] = {}
        self._pids: Dict[str, int] = {}
        self._create_times: Dict[str, float] = {}
        self._users: Dict[str, str] = {}
        self._roots: Dict[str, subprocess.Popen] = {}
        self._lifeline_w: Optional[int] = None
        self._ready_r: Optional[int] = None
        self._log = None
        self._shared_interpreter: Optional[str] = None
        self._state = "new"

    # -- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Fleet":
        """Start every process and wait until each has rewritten its title and allocated its memory."""
        if self._state != "new":
            raise FleetError("a fleet starts once")
        self._state = "starting"
        self.base = tempfile.mkdtemp(prefix="pt-fleet-")
        os.chmod(self.base, 0o755)  # processes running as another user go through it
        specs = self._specs_or_layout
        if callable(specs):
            self.dip_home = self._given_dip_home or os.path.join(self.base, "dss_data")
            self.specs = list(specs(self.dip_home))
        else:
            self.specs = list(specs)
            self.dip_home = self._given_dip_home or next(
                (s.env["DIP_HOME"] for s in self.specs if s.env.get("DIP_HOME")), os.path.join(self.base, "dss_data"))
        _live_fleets.add(self)
        _install_exit_hooks()
        try:
            validate(self.specs)
            self._by_name = {s.name: s for s in self.specs}
            self._prepare_files()
            self._launch()
            self._wait_ready()
            self._write_pidfiles()
        except BaseException:
            self.stop()
            raise
        self._state = "running"
        return self

    def _prepare_files(self) -> None:
        """Create the data directories (DIP_HOME and every spec's DIP_HOME env), the working directories inside
        them, the specs' files, and the launcher (fleet_proc.py and interpreter links) in the base directory."""
        homes = {self.dip_home} | {s.env["DIP_HOME"] for s in self.specs if s.env.get("DIP_HOME")}
        for home in homes:
            os.makedirs(home, exist_ok=True)
        for spec in self.specs:
            for path, text in spec.files:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
            if any(spec.cwd.startswith(home + os.sep) for home in homes):
                os.makedirs(spec.cwd, exist_ok=True)
        shutil.copyfile(PROC_PROGRAM, os.path.join(self.base, "fleet_proc.py"))
        own, shared = _interpreters()
        os.symlink(own, os.path.join(self.base, "py"))
        if shared:
            os.symlink(shared, os.path.join(self.base, "pyw"))
        self._shared_interpreter = shared

    def _node(self, spec: ProcSpec, children: Dict[Optional[str], List[ProcSpec]]) -> dict:
        uid = gid = None
        launcher = "./py"
        self._users[spec.name] = pwd.getpwuid(os.geteuid()).pw_name
        if spec.user and os.geteuid() == 0:
            uid, gid = _ensure_user(spec.user)
            self._users[spec.name] = spec.user
            if uid != 0:
                if not self._shared_interpreter:
                    raise FleetError("%s: no Python interpreter that user %s can run" % (spec.name, spec.user))
                launcher = "./pyw"
        fixed = len(launcher) + 1 + len(MODULE_ARG) + 1 + 1
        padding = "x" * (len(spec.cmdline_bytes) - fixed)
        return {
            "name": spec.name, "argv": list(spec.cmdline), "comm": spec.comm_name,
            "memory_bytes": int(spec.memory_mib * self.memory_scale * 1024 * 1024),
            "launch": [launcher, MODULE_ARG, padding], "env": dict(spec.env), "cwd": spec.cwd,
            "uid": uid, "gid": gid, "process_group": spec.process_group,
            "children": [self._node(child, children) for child in children.get(spec.name, [])],
        }

    def _launch(self) -> None:
        children: Dict[Optional[str], List[ProcSpec]] = {}
        for spec in self.specs:
            children.setdefault(spec.parent, []).append(spec)
        lifeline_r, self._lifeline_w = os.pipe()
        self._ready_r, ready_w = os.pipe()
        shared = {"base": self.base, "lifeline": lifeline_r, "ready": ready_w, "grace_seconds": self.grace_seconds}
        self._log = open(os.path.join(self.base, "fleet.log"), "ab")
        try:
            for spec in children.get(None, []):
                node = self._node(spec, children)
                node["parent_pid"] = os.getpid()
                kwargs = {}
                if node["uid"] is not None:
                    kwargs.update(user=node["uid"], group=node["gid"], extra_groups=[])
                if node["process_group"]:
                    kwargs["process_group"] = 0  # Python 3.11+
                popen = subprocess.Popen(node["launch"], executable=node["launch"][0], cwd=self.base,
                                         env=node["env"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._log, pass_fds=(lifeline_r, ready_w), **kwargs)
                self._roots[spec.name] = popen
                popen.stdin.write(json.dumps({"fleet": shared, "node": node}).encode())
                popen.stdin.close()
        finally:
            os.close(lifeline_r)
            os.close(ready_w)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        buffer, errors = b"", []
        while len(self._pids) < len(self.specs) and not errors:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._ready_r], [], [], remaining)[0]:
                missing = sorted(set(self._by_name) - set(self._pids))
                raise FleetError("fleet not ready after %.1f s; waiting for %s" % (self.start_timeout,
                                                                                   ", ".join(missing)))
            chunk = os.read(self._ready_r, 65536)
            if not chunk:
                errors.append("every process closed the readiness pipe before all were ready (see %s/fleet.log)"
                              % self.base)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                kind, name, text = (line.decode("utf-8", "replace").split(" ", 2) + ["", ""])[:3]
                if kind == "ready" and name in self._by_name:
                    self._pids[name] = int(text)
                else:
                    errors.append("%s: %s" % (name, text))
        if errors:
            raise FleetError("fleet failed to start: " + "; ".join(errors))
        for name, pid in self._pids.items():
            self._create_times[name] = psutil.Process(pid).create_time()

    def _write_pidfiles(self) -> None:
        for spec in self.specs:
            if spec.pidfile:
                os.makedirs(os.path.dirname(spec.pidfile), exist_ok=True)
                with open(spec.pidfile, "w") as f:
                    f.write("%d\n" % self._pids[spec.name])

    def stop(self) -> None:
        """Stop every process (each terminates and reaps its own children), remove the temporary directory.
        Idempotent. Raises FleetError if a process is still alive after SIGKILL."""
        if self._state in ("new", "stopped"):
            return
        self._state = "stopped"
        _live_fleets.discard(self)
        # A second Ctrl-C (or `timeout -s INT`, which signals the process and then its group) must not cut the
        # teardown short.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
        try:
            if self._lifeline_w is not None:
                os.close(self._lifeline_w)  # every process sees EOF and tears its subtree down
                self._lifeline_w = None
            for popen in self._roots.values():
                if popen.poll() is None:
                    popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_seconds + 5
            for popen in self._roots.values():
                try:
                    popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            for name in self._pids:
                self._signal(name, signal.SIGKILL)
            for popen in self._roots.values():
                popen.wait()
            # A zombie here is an orphan whose new parent (init) does not reap: it holds no memory any more.
            left = [name for name in self._pids if not self._wait_gone(name, 5.0, zombie_ok=True)]
            if left:
                raise FleetError("processes still alive after stop: " + ", ".join(left))
        finally:
            if self._ready_r is not None:
                os.close(self._ready_r)
                self._ready_r = None
            if self._log is not None:
                self._log.close()
                self._log = None
            if self.base:
                shutil.rmtree(self.base, ignore_errors=True)
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_sigint)

    # -- inspection -----------------------------------------------------------------------------------------
    @property
    def pids(self) -> Dict[str, int]:
        """{name: pid} of every process started (killed ones keep their last pid)."""
        return dict(self._pids)

    @property
    def names(self) -> List[str]:
        return [s.name for s in self.specs]

    def pid(self, name: str) -> int:
        if name not in self._pids:
            raise KeyError("no fleet process named %r (known: %s)" % (name, ", ".join(self._pids)))
        return self._pids[name]

    def create_time(self, name: str) -> float:
        """psutil's create_time of the process (epoch seconds): with the pid, its identity."""
        self.pid(name)
        return self._create_times[name]

    def spec(self, name: str) -> ProcSpec:
        return self._by_name[name]

    def username(self, name: str) -> str:
        """The unix user the process runs as (its spec's user only when the fleet runs as root)."""
        self.pid(name)
        return self._users[name]

    def memory_bytes(self, name: str) -> int:
        """The anonymous memory the process allocated on top of the interpreter's own, in bytes."""
        return int(self._by_name[name].memory_mib * self.memory_scale * 1024 * 1024)

    def descendants(self, name: str) -> List[str]:
        """Names of the process's descendants, parents before children."""
        out = []
        for spec in self.specs:
            if spec.parent == name:
                out.append(spec.name)
                out.extend(self.descendants(spec.name))
        return out

    def alive(self, name: str) -> bool:
        """True while the very process started under that name runs (same pid and create time, not a zombie)."""
        try:
            proc = psutil.Process(self.pid(name))
            return proc.create_time() == self._create_times[name] and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    # -- acting ---------------------------------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """Make the process and its descendants vanish (SIGKILL, deepest first, each reaped by its parent before
        the next), as when DSS or the OOM killer ends them. Their pids stay in `pids`."""
        for victim in list(reversed(self.descendants(name))) + [name]:
            self._signal(victim, signal.SIGKILL)
            if victim in self._roots:
                self._roots[victim].wait()
            if not self._wait_gone(victim, 10.0):
                raise FleetError("%s (pid %d) did not vanish after SIGKILL" % (victim, self._pids[victim]))

    def _signal(self, name: str, signum: int) -> None:
        if self.alive(name):
            try:
                os.kill(self._pids[name], signum)
            except ProcessLookupError:
                pass

    def _wait_gone(self, name: str, timeout: float, zombie_ok: bool = False) -> bool:
        """Wait until the process no longer exists (reaped), or with `zombie_ok` until it is at least a zombie."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                proc = psutil.Process(self._pids[name])
                gone = proc.create_time() != self._create_times[name] or (
                    zombie_ok and proc.status() == psutil.STATUS_ZOMBIE)
            except psutil.NoSuchProcess:
                gone = True
            if gone or time.monotonic() > deadline:
                return gone
            time.sleep(0.005)


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.fleet", description="Run a fleet of DSS-shaped processes "
                                     "until Ctrl-C (or SIGTERM); prints `name pid` lines once all are ready.")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="demo")
    parser.add_argument("--memory-scale", type=float, default=1.0, help="multiplies every process's memory")
    parser.add_argument("--dip-home", help="DSS data directory to use (default: a temporary one, removed at exit)")
    parser.add_argument("--json", action="store_true", help="print {dip_home, pids} as one JSON line instead")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stop_requested = threading.Event()  # Ctrl-C sets it (no KeyboardInterrupt can cut the teardown short)
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())
    with Fleet(LAYOUTS[args.layout], memory_scale=args.memory_scale, dip_home=args.dip_home) as fleet:
        if args.json:
            print(json.dumps({"dip_home": fleet.dip_home, "pids": fleet.pids}), flush=True)
        else:
            print("dip_home %s" % fleet.dip_home)
            for name, pid in fleet.pids.items():
                print("%s %d" % (name, pid))
            print("ready: %d processes in %.2f s; Ctrl-C stops them" % (len(fleet.pids), time.monotonic() - started),
                  flush=True)
        while not stop_requested.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
