"""Host processes x DSS activities: which activity explains each process, which DSS processes none explains.

Pure: takes a `host.Snapshot` and an `activities.Inventory` (records only), returns a `Joined` record.

How a process gets its activity (`Match.via`), first that applies:
- "session_pid"  a notebook session's `kernelPid` is the process's pid;
- "job_pid"      a running job's `kernelPid` (the JEK) is the process's pid;
- "webapp_pid"   a webapp backend's `futureInfo.payload.extras.pid` is the process's pid;
- "pid"          any other activity kind that names a pid;
- "kernel_id"    the kernel id in the process's connection file (`kernel-<id>.json`) is a session's kernel id;
- "ancestor"     a process with none of the above carries the activity of its nearest joined ancestor (a recipe
                 or a Spark driver under a joined JEK, a kernel's children, ...); `via_pid` is that ancestor;
- "wrapped"      a transparent wrapper (sudo / execwrapper.sh / exec.py / shell, `ProcessRecord.link`) with no
                 activity of its own carries the activity of the process it wraps.
Pid joins only apply to processes of a DSS role (a pid DSS gives that now belongs to a non-DSS process was
reused, or lives on another host), and a session's pid join is refused when the process's kernel id is another
one (the pid was reused by another kernel). `instance=` restricts the joins to the processes of one DIP_HOME.

Statuses (`Match.status`):
- "joined":   an activity explains the process (`via` says how);
- "orphan":   a process of an ORPHAN_ROLES role (jupyter_kernel: explained by a notebook session; webapp_backend:
              by a webapp) that no activity explains, while the inventory listed that kind without error. Every
              process of such a subtree is "orphan"; `Joined.orphans` holds one record per orphan unit: the kernel
              or webapp backend itself, not its wrappers nor its children;
- "unknown":  the same, but listing the explaining kind failed (a ListingError for it): cannot tell;
- "pool":     a JEK no running job explains (DSS pre-starts idle JEKs): not an orphan;
- "unjoined": any other DSS process with no activity (supervisord, nginx, backend, FEKs, Jupyter server, ...:
              DSS's API names no pid for them);
- "not_dss":  not a DSS process.
`Joined.not_on_host`: activities that name a pid or a session kernel id, when neither is a (joinable) DSS process
of this snapshot: they run on another host or in a container, or their process is gone. Activities that name
neither are never listed there.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

from .activities import Activity, Inventory
from .host import ProcessRecord, Snapshot

ORPHAN_ROLES = {"jupyter_kernel": ("notebook_session",), "webapp_backend": ("webapp",)}
POOL_ROLES = ("jek",)
PID_VIA = {"notebook_session": "session_pid", "job": "job_pid", "webapp": "webapp_pid"}
# when two activities name the same pid, the first kind here wins (then the other kinds, by kind name)
PID_PRIORITY = ("notebook_session", "job", "webapp", "continuous_activity", "code_studio", "scenario", "future")
STATUSES = ("joined", "orphan", "unknown", "pool", "unjoined", "not_dss")


@dataclass(frozen=True)
class Match:
    """One process of the snapshot with the activity that explains it (None if none) and how."""

    process: ProcessRecord
    activity: Optional[Activity]
    via: Optional[str]  # session_pid, job_pid, webapp_pid, pid, kernel_id, ancestor, wrapped; None without activity
    via_pid: Optional[int]  # the process whose pid or kernel id made the join (itself, an ancestor, the wrapped one)
    status: str  # one of STATUSES


@dataclass(frozen=True)
class Joined:
    rows: Tuple[Match, ...]  # one per process of the snapshot, in the snapshot's order
    matches: Tuple[Match, ...]  # the rows with an activity
    orphans: Tuple[ProcessRecord, ...]  # one per orphan unit (see the module docstring)
    pool: Tuple[ProcessRecord, ...]  # JEKs no job explains
    not_on_host: Tuple[Activity, ...]  # activities naming a pid or kernel id that explain no process here

    def for_activity(self, kind: str, activity_id: str) -> Tuple[Match, ...]:
        """The rows an activity explains (its process, its descendants, its wrappers)."""
        return tuple(m for m in self.matches if m.activity.kind == kind and m.activity.id == activity_id)


def _priority(activity):
    kind = activity.kind
    return (PID_PRIORITY.index(kind) if kind in PID_PRIORITY else len(PID_PRIORITY), kind, activity.id)


def _index(activities: Iterable[Activity]):
    by_pid, by_kernel = {}, {}
    for a in sorted(activities, key=_priority):
        if a.pid is not None and a.pid not in by_pid:
            by_pid[a.pid] = a
        kernel_id = (a.details or {}).get("kernel_id") if a.kind == "notebook_session" else None
        if kernel_id and str(kernel_id).lower() not in by_kernel:
            by_kernel[str(kernel_id).lower()] = a
    return by_pid, by_kernel


def join(snapshot: Snapshot, inventory: Inventory, instance: Optional[str] = None) -> Joined:
    """Join the processes of `snapshot` to the activities of `inventory` (see the module docstring).

    `instance`: when given (a DIP_HOME), only processes of that instance are joined; use it when several DSS
    instances share the host and the inventory comes from one of them.
    """
    processes = snapshot.processes
    by_pid_proc = {p.pid: p for p in processes}
    children = snapshot.children()
    by_pid, by_kernel = _index(inventory.activities)
    failed_kinds = {e.kind for e in inventory.errors}

    def joinable(p):
        return p.role != "not_dss" and (instance is None or p.instance == instance)

    found: Dict[int, Tuple[Activity, str, int]] = {}  # pid -> (activity, via, via_pid)
    for p in processes:
        if not joinable(p):
            continue
        a = by_pid.get(p.pid)
        if a is not None and not _kernel_ids_differ(a, p):
            found[p.pid] = (a, PID_VIA.get(a.kind, "pid"), p.pid)
            continue
        kernel_id = p.ids.get("kernel_id") if not p.link else None
        if kernel_id and str(kernel_id).lower() in by_kernel:
            found[p.pid] = (by_kernel[str(kernel_id).lower()], "kernel_id", p.pid)

    # descendants carry their nearest joined ancestor's activity (parents before children)
    roots = [p.pid for p in processes if p.ppid not in by_pid_proc or p.ppid == p.pid]
    order, seen = [], set()
    # roots first, then anything only reachable through a parent cycle (a racy snapshot)
    for start in sorted(roots) + sorted(by_pid_proc):
        stack = [start]
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            order.append(pid)
            inherited = found.get(pid)
            for child in reversed(children.get(pid, ())):
                if inherited is not None and child not in found and joinable(by_pid_proc[child]):
                    found[child] = (inherited[0], "ancestor", inherited[2])
                stack.append(child)

    # wrappers carry what they wrap (children before parents)
    for pid in reversed(order):
        p = by_pid_proc[pid]
        if not p.link or pid in found or not joinable(p):
            continue
        for child in children.get(pid, ()):
            got = found.get(child)
            if got is not None and by_pid_proc[child].role == p.role:
                found[pid] = (got[0], "wrapped", got[2])
                break

    statuses = {}
    for pid in order:
        p = by_pid_proc[pid]
        statuses[pid] = _status(p, found.get(pid), failed_kinds, statuses.get(p.ppid), joinable(p))
    # a wrapper above an orphan kernel is part of the orphan unit
    for pid in reversed(order):
        p = by_pid_proc[pid]
        if p.link and statuses[pid] == "unjoined" and p.role in ORPHAN_ROLES:
            kids = [statuses.get(c) for c in children.get(pid, ()) if by_pid_proc[c].role == p.role]
            if kids and kids[0] in ("orphan", "unknown"):
                statuses[pid] = kids[0]

    rows, orphans, pool = [], [], []
    for p in processes:
        got = found.get(p.pid)
        status = statuses.get(p.pid, "not_dss")
        rows.append(Match(p, got[0] if got else None, got[1] if got else None, got[2] if got else None, status))
        if status == "pool":
            pool.append(p)
        elif status == "orphan" and not p.link and not _orphan_parent(p, by_pid_proc, statuses):
            orphans.append(p)

    here_pids = {p.pid for p in processes if joinable(p)}
    here_kernels = {str(p.ids["kernel_id"]).lower() for p in processes
                    if joinable(p) and not p.link and p.ids.get("kernel_id")}
    not_on_host = []
    for a in inventory.activities:
        kernel_id = (a.details or {}).get("kernel_id") if a.kind == "notebook_session" else None
        if a.pid is None and not kernel_id:
            continue
        if (a.pid is not None and a.pid in here_pids) or (kernel_id and str(kernel_id).lower() in here_kernels):
            continue
        not_on_host.append(a)
    matches = tuple(m for m in rows if m.activity is not None)
    return Joined(tuple(rows), matches, tuple(orphans), tuple(pool), tuple(not_on_host))


def _kernel_ids_differ(activity, process):
    """True when a session's pid now belongs to a kernel with another kernel id: the pid was reused (the listing
    and the scan are not taken at the same instant), so the pid says nothing about this session."""
    if activity.kind != "notebook_session":
        return False
    listed = (activity.details or {}).get("kernel_id")
    running = process.ids.get("kernel_id")
    return bool(listed and running) and str(listed).lower() != str(running).lower()


def _status(p, got, failed_kinds, parent_status, joinable):
    if p.role == "not_dss":
        return "not_dss"
    if got is not None:
        return "joined"
    if not joinable:
        return "unjoined"
    explained_by = ORPHAN_ROLES.get(p.role)
    if explained_by is not None:
        if p.link:
            return "unjoined"  # settled from what it wraps, below
        if parent_status in ("orphan", "unknown"):
            return parent_status
        return "unknown" if failed_kinds.intersection(explained_by) else "orphan"
    if p.role in POOL_ROLES:
        return "pool"
    return "unjoined"


def _orphan_parent(p, by_pid, statuses):
    """True when the nearest non-wrapper ancestor of `p` is itself an orphan (then `p` is part of its unit)."""
    parent = by_pid.get(p.ppid)
    hops = 0
    while parent is not None and parent.link and hops < 64:
        parent = by_pid.get(parent.ppid)
        hops += 1
    return parent is not None and parent.pid != p.pid and statuses.get(parent.pid) in ("orphan", "unknown")
