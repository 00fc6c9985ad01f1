"""Writes DSS-style compute-resource-usage (CRU) events into a DIP_HOME's audit log, for tests and the demo fleet.

The message is DSS's documented one (dss-reference.md section 4). The envelope around it on a line is not
documented: `ENVELOPES` holds the shapes written here (a hypothesis), and the reader accepts the message at the top
level or nested. File names (`audit.log`, rotated to `audit.log.1`, ...) are an assumption too: the reader reads
every file of the folder.

    log = AuditLog(dip_home)                       # <dip_home>/run/audit/audit.log
    log.write(cru_message("start", "cru-1", pid, started_at, {"type": "JOB_ACTIVITY", "projectKey": "P"}))
    log.rotate(); log.truncate()
    write_fleet_events(fleet)                      # start events for the demo fleet's processes (DEMO_CONTEXTS)
    cgroups = DemoCgroups(fleet).create()          # as root: DSS-style cgroups for some processes, one OOM kill
    ...; cgroups.remove()

DSS-style cgroups (`DemoCgroups`) need root and a writable memory controller (v1 `<root>/memory`, or v2 with the
memory controller): elsewhere `create()` does nothing and says why (`note`). The paths follow the templates it
writes in the DIP_HOME's `config/general-settings.json` (key names assumed, as cgroup_context.py's docstring says),
under `/DSS/<a token of this fleet>/` so that two demos on one host never share a cgroup.
"""
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Dict, Iterable, Mapping, Optional

AUDIT_FILE = "audit.log"
ENVELOPES = ("nested", "top")

# demo fleet process -> its CRU context; consistent with dev/instances/demo.json (projects, jobs, webapp ids)
DEMO_CONTEXTS: Dict[str, Dict[str, str]] = {
    "jek-1": {"type": "JOB_MAIN_PROCESS", "projectKey": "CHURN", "authIdentifier": "alice",
              "jobId": "Build_churn_scored_2026-11-25T09-41-12.304"},
    "recipe-1": {"type": "JOB_ACTIVITY", "projectKey": "CHURN", "authIdentifier": "alice",
                 "jobId": "Build_churn_scored_2026-11-25T09-41-12.304", "activityId": "compute_churn_scored_NP"},
    "jek-2": {"type": "JOB_MAIN_PROCESS", "projectKey": "SALES", "authIdentifier": "bob",
              "jobId": "Build_sales_monthly_2026-11-25T08-02-51.663"},
    "spark-1": {"type": "JOB_ACTIVITY", "projectKey": "SALES", "authIdentifier": "bob",
                "jobId": "Build_sales_monthly_2026-11-25T08-02-51.663", "activityId": "compute_sales_monthly_NP"},
    "ml-1": {"type": "ANALYSIS_ML_TRAIN", "projectKey": "CHURN", "authIdentifier": "alice", "analysisId": "aN7cQ2",
             "mlTaskId": "t4Kp9"},
    "webapp-1": {"type": "WEBAPP_BACKEND", "projectKey": "CHURN", "authIdentifier": "alice", "webappId": "Xb3k9Qa"},
    "kernel-1": {"type": "JUPYTER_NOTEBOOK_KERNEL", "projectKey": "CHURN", "authIdentifier": "alice"},
    "kernel-2": {"type": "JUPYTER_NOTEBOOK_KERNEL", "projectKey": "FRAUD", "authIdentifier": "bob"},
    "kernel-3": {"type": "JUPYTER_NOTEBOOK_KERNEL", "projectKey": "SALES", "authIdentifier": "alice"},
    "kernel-4": {"type": "JUPYTER_NOTEBOOK_KERNEL", "projectKey": "MARKETING", "authIdentifier": "bob"},
}


def cru_message(phase: str, item_id: str, pid: int, started_at: float, context: Mapping[str, object],
                rss_anon_mb: Optional[float] = None, end_time: Optional[float] = None,
                item_type: str = "LOCAL_PROCESS") -> Dict[str, object]:
    """DSS's documented CRU message: `phase` start, update or complete; times in epoch seconds (written in ms)."""
    cru = {"id": item_id, "type": item_type, "startTime": int(started_at * 1000), "context": dict(context),
           "localProcess": {"pid": pid, "commandName": "python", "rssAnonMB": rss_anon_mb or 0.0}}
    if end_time is not None:
        cru["endTime"] = int(end_time * 1000)
    return {"msgType": "compute-resource-usage-" + phase, "computeResourceUsage": cru}


def audit_line(message: Mapping[str, object], envelope: str = "nested", at: Optional[float] = None) -> bytes:
    """One audit log line: the message nested in an envelope (assumed shape) or at the top level."""
    if envelope == "top":
        record = dict(message)
    else:
        record = {"timestamp": int((at or time.time()) * 1000), "topic": "compute-resource-usage",
                  "severity": "INFO", "message": dict(message)}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


class AuditLog:
    """The audit folder of one DIP_HOME, written the way a rotating logger would."""

    def __init__(self, dip_home: str, name: str = AUDIT_FILE):
        self.folder = os.path.join(dip_home, "run", "audit")
        self.path = os.path.join(self.folder, name)
        os.makedirs(self.folder, exist_ok=True)

    def write(self, *messages, envelope: str = "nested") -> None:
        self.write_raw(b"".join(audit_line(m, envelope) for m in messages))

    def write_raw(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(data)

    def rotate(self, keep: int = 20) -> None:
        """audit.log -> audit.log.1 -> ... (renames: inodes kept), then a new empty audit.log."""
        for n in range(keep - 1, 0, -1):
            older = "%s.%d" % (self.path, n)
            if os.path.exists(older):
                os.replace(older, "%s.%d" % (self.path, n + 1))
        if os.path.exists(self.path):
            os.replace(self.path, self.path + ".1")
        open(self.path, "ab").close()

    def truncate(self) -> None:
        with open(self.path, "wb"):
            pass


def write_fleet_events(fleet, contexts: Mapping[str, Mapping[str, str]] = None, names: Iterable[str] = None,
                       envelope: str = "nested") -> Dict[str, str]:
    """Start events for the fleet's processes named in `contexts` (default DEMO_CONTEXTS) into the fleet's
    DIP_HOME audit log, with their real pids and start times. Returns {process name: CRU item id}."""
    contexts = DEMO_CONTEXTS if contexts is None else contexts
    wanted = [n for n in (names or contexts) if n in contexts and n in fleet.pids]
    log, ids, messages = AuditLog(fleet.dip_home), {}, []
    for name in wanted:
        ids[name] = "cru-%s-%d" % (name, fleet.pid(name))
        messages.append(cru_message("start", ids[name], fleet.pid(name), fleet.create_time(name), contexts[name],
                                    rss_anon_mb=fleet.memory_bytes(name) / 1048576.0))
    if messages:
        log.write(*messages, envelope=envelope)
    return ids


# demo fleet process -> (workload, the user or project its cgroup path names); templates in DemoCgroups.settings
DEMO_CGROUPS = {"ml-1": ("mlKernels", "alice"), "recipe-1": ("pythonRRecipes", "CHURN"),
                "kernel-1": ("jupyterKernels", "alice")}
OOM_PROCESS = "recipe-1"  # in its cgroup (limited), a short-lived process is killed by the kernel for lack of memory
OOM_LIMIT_BYTES = 24 << 20
_VARIABLE = {"mlKernels": "user", "jupyterKernels": "user", "pythonRRecipes": "projectKey"}


class DemoCgroups:
    """DSS-style memory cgroups for some of a fleet's processes (`DEMO_CGROUPS`) and one real OOM kill, as root."""

    def __init__(self, fleet, cgroup_root: str = "/sys/fs/cgroup", token: Optional[str] = None):
        self.fleet = fleet
        self.root = cgroup_root
        self.token = token or "demo-" + uuid.uuid4().hex[:8]
        self.base = None  # the memory hierarchy's mount (v1 <root>/memory, v2 <root>)
        self.version = None
        self.made = []  # directories made, parents first
        self.note = ""

    def template(self, workload: str) -> str:
        return "memory/DSS/%s/${%s}/%s" % (self.token, _VARIABLE[workload], workload)

    def path(self, workload: str, who: str) -> str:
        """The cgroup path (as /proc/<pid>/cgroup shows it) of a workload for a user or project."""
        return "/DSS/%s/%s/%s" % (self.token, who, workload)

    def settings(self) -> Dict[str, object]:
        workloads = sorted({w for w, _ in DEMO_CGROUPS.values()})
        body = {w: {"targets": [{"cgroupPathTemplate": self.template(w)}]} for w in workloads}
        body.update(enabled=True, cgroupsVersion="CGROUPS_V%d" % (self.version or 1))
        return {"cgroupSettings": body}

    def create(self) -> bool:
        """Make the cgroups, move the processes in, write the settings, cause one OOM kill. False (and `note`)
        when this host does not allow it."""
        self.base, self.version = _memory_hierarchy(self.root)
        if os.geteuid() != 0 or self.base is None:
            self.note = "no DSS-style cgroups: needs root and a writable memory cgroup controller"
            return False
        try:
            for name, (workload, who) in DEMO_CGROUPS.items():
                if name in self.fleet.pids:
                    _write(os.path.join(self._make(self.path(workload, who)), "cgroup.procs"), self.fleet.pid(name))
            if OOM_PROCESS in self.fleet.pids:
                self._oom_kill(self._make(self.path(*DEMO_CGROUPS[OOM_PROCESS])))
        except OSError as exc:
            self.note = "DSS-style cgroups failed (%s); removed" % (exc.strerror or exc.__class__.__name__)
            self.remove()
            return False
        config = os.path.join(self.fleet.dip_home, "config")
        os.makedirs(config, exist_ok=True)
        with open(os.path.join(config, "general-settings.json"), "w") as f:
            json.dump(self.settings(), f)
        return True

    def _make(self, path):
        folder = self.base
        for part in path.strip("/").split("/"):
            folder = os.path.join(folder, part)
            if not os.path.isdir(folder):
                os.mkdir(folder)
                self.made.append(folder)
                if self.version == 2:  # children of a v2 cgroup get the memory controller only when asked
                    _write(os.path.join(os.path.dirname(folder), "cgroup.subtree_control"), "+memory", quiet=True)
        return folder

    def _oom_kill(self, folder):
        """Limit the cgroup to OOM_LIMIT_BYTES (the fleet's process in it is charged ~nothing there: its memory was
        touched before it moved in) and start a process in it that touches 4 times as much, first in line for the
        OOM killer (oom_score_adj 1000): the kernel kills it and counts it in the cgroup's oom_kill."""
        _write(os.path.join(folder, "memory.limit_in_bytes" if self.version == 1 else "memory.max"), OOM_LIMIT_BYTES)
        code = ("import os, sys; open('/proc/self/oom_score_adj', 'w').write('1000')\n"
                "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
                "b = bytearray(%d)\nfor i in range(0, len(b), 4096): b[i] = 1\n" % (OOM_LIMIT_BYTES * 4))
        subprocess.run([sys.executable, "-c", code, os.path.join(folder, "cgroup.procs")], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def remove(self) -> None:
        """Move the processes back to this process's own memory cgroup, then remove the cgroups made."""
        home = _own_memory_cgroup(self.base, self.version)
        for folder in reversed(self.made):
            try:
                with open(os.path.join(folder, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        _write(os.path.join(home, "cgroup.procs"), pid, quiet=True)
                os.rmdir(folder)
            except OSError:
                pass
        self.made = []


def _write(path, value, quiet=False):
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError:
        if not quiet:
            raise


def _memory_hierarchy(root):
    """(mount of the memory controller, cgroup version) when it is writable here, else (None, None)."""
    v1 = os.path.join(root, "memory")
    if os.path.isfile(os.path.join(v1, "cgroup.procs")) and os.access(v1, os.W_OK):
        return v1, 1
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            if "memory" in f.read().split() and os.access(root, os.W_OK):
                return root, 2
    except OSError:
        pass
    return None, None


def _own_memory_cgroup(base, version):
    with open("/proc/self/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            if (version == 1 and "memory" in controllers.split(",")) or (version == 2 and controllers == ""):
                return os.path.join(base, path.lstrip("/"))
    return base


def write_demo_records(fleet, stack, contexts=None) -> str:
    """What the demo's DSS would have recorded about its fleet: CRU start events (`write_fleet_events`, with
    `contexts`, default DEMO_CONTEXTS) and, as root, DSS-style cgroups with one OOM kill (`DemoCgroups`, removed
    when `stack`, an ExitStack, closes). Returns a note when the cgroups could not be made ("" otherwise)."""
    write_fleet_events(fleet, contexts)
    cgroups = DemoCgroups(fleet)
    if not cgroups.create():
        return cgroups.note
    stack.callback(cgroups.remove)
    return ""
