"""Writes DSS-style compute-resource-usage (CRU) events into a DIP_HOME's audit log, for tests and the demo fleet.

The message is DSS's documented one (dss-reference.md section 4). The envelope around it on a line is not
documented: `ENVELOPES` holds the shapes written here (a hypothesis), and the reader accepts the message at the top
level or nested. File names (`audit.log`, rotated to `audit.log.1`, ...) are an assumption too: the reader reads
every file of the folder.

    log = AuditLog(dip_home)                       # <dip_home>/run/audit/audit.log
    log.write(cru_message("start", "cru-1", pid, started_at, {"type": "JOB_ACTIVITY", "projectKey": "P"}))
    log.rotate(); log.truncate()
    write_fleet_events(fleet)                      # start events for the demo fleet's processes (DEMO_CONTEXTS)
"""
import json
import os
import time
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
