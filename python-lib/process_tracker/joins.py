"""Host processes x DSS activities: which activity explains each process, which DSS processes none explains.

Pure: takes a `host.Snapshot`, an `activities.Inventory` and optionally the DSS context of processes read from
DSS's own records without the API (`contexts`: {pid: context.Context}, from the compute-resource-usage reader and
the cgroup paths), returns a `Joined` record.

Sources, first that applies (`Match.source`):
- "api"     DSS's public API names the process (a pid or a kernel id, below);
- "cru"     a compute-resource-usage item of DSS's audit log names the pid with the process's start time, and its
            context names a listed activity (a job, a webapp backend); a context without such an activity is
            still the process's `Match.context`;
- "cgroup"  the process sits in a DSS cgroup whose path names its workload and user or project (context only);
- "tree"    the process carries the activity or context of its nearest explained ancestor, or a wrapper carries
            what it wraps.

How a process gets its activity (`Match.via`), first that applies:
- "session_pid"  a notebook session's `kernelPid` is the process's pid;
- "job_pid"      a running job's `kernelPid` (the JEK) is the process's pid;
- "webapp_pid"   a webapp backend's `futureInfo.payload.extras.pid` is the process's pid;
- "pid"          any other activity kind that names a pid;
- "kernel_id"    the kernel id in the process's connection file (`kernel-<id>.json`) is a session's kernel id;
- "cru"          DSS's compute-resource-usage item for this pid and start time names the activity;
- "ancestor"     a process with none of the above carries the activity of its nearest joined ancestor (a recipe
                 or a Spark driver under a joined JEK, a kernel's children, ...); `via_pid` is that ancestor;
- "wrapped"      a transparent wrapper (sudo / execwrapper.sh / exec.py / shell, `ProcessRecord.link`) with no
                 activity of its own carries the activity of the process it wraps.
Pid joins only apply to processes of a DSS role (a pid DSS gives that now belongs to a non-DSS process was
reused, or lives on another host), and a session's pid join is refused when the process's kernel id is another
one (the pid was reused by another kernel). `instance=` restricts the joins to the processes of one DIP_HOME.

Verified session joins: anyone on the host can start `python -m ipykernel_launcher -f .../kernel-<id>.json` with
another user's kernel id (ids show in `ps`). A process is joined to a notebook session (by kernel id or by
kernelPid) only when (1) it is a child of that instance's Jupyter server, through transparent wrappers only (the
UIF chain sudo -> execwrapper.sh -> exec.py), and (2) the unix user of the kernel (the wrapped process, for a
wrapper) is the session's `unix_owner` (DSS's `sessionUnixOwner`) or the unix user running that Jupyter server
(the DSS unix user: without UIF every kernel runs as it, and what `sessionUnixOwner` then holds is unconfirmed;
a process of that user directly under the server was started by DSS, or by someone who already owns the instance).
Under UIF another user's kernel (or a process it exec()s) runs as that other user and fails (2); anything started
outside the server's tree fails (1); a kernel started from inside another kernel fails (1) and is that kernel's
process (the tree). A claim failing this is status "unverified" with `Match.claim` set and no activity: it is never
charged to the session (memory sums, `freeMemoryGB`, `failIfMoreThanGB` and the webapp's figures use `matches`,
which hold verified joins only), and it is not an orphan either (it is nobody's kernel DSS forgot).

Statuses (`Match.status`):
- "joined":     an activity explains the process (`via` says how, `source` from where);
- "explained":  no activity, but DSS's own records (CRU, cgroup, or an ancestor's) say what it is (`context`);
                for a kernel or a webapp backend only a CRU item does (a cgroup path does not make it DSS's);
- "unverified": it claims a session's kernel id (or holds its kernelPid) but fails the checks above;
- "orphan":     a process of an ORPHAN_ROLES role (jupyter_kernel: explained by a notebook session; webapp_backend:
                by a webapp) that no source explains, while the inventory listed that kind without error. Every
                process of such a subtree is "orphan"; `Joined.orphans` holds one record per orphan unit: the kernel
                or webapp backend itself, not its wrappers nor its children;
- "unknown":    the same, but listing the explaining kind failed (a FailedListing for it): cannot tell;
- "pool":       a JEK no running job explains (DSS pre-starts idle JEKs): not an orphan;
- "unjoined":   any other DSS process with no activity (supervisord, nginx, backend, FEKs, Jupyter server, ...:
                DSS's API names no pid for them);
- "not_dss":    not a DSS process.
`Joined.not_on_host`: activities that name a pid or a session kernel id, when neither is a (joinable, verified) DSS
process of this snapshot: they run on another host or in a container, or their process is gone. Activities that
name neither are never listed there.
"""
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Tuple

from .activities import Activity, Inventory
from .context import Context, activity_keys
from .host import ProcessRecord, Snapshot

ORPHAN_ROLES = {"jupyter_kernel": ("notebook_session",), "webapp_backend": ("webapp",)}
POOL_ROLES = ("jek",)
PID_VIA = {"notebook_session": "session_pid", "job": "job_pid", "webapp": "webapp_pid"}
# when two activities name the same pid, the first kind here wins (then the other kinds, by kind name)
PID_PRIORITY = ("notebook_session", "job", "webapp", "continuous_activity", "code_studio", "scenario", "future")
STATUSES = ("joined", "explained", "unverified", "orphan", "unknown", "pool", "unjoined", "not_dss")
SERVER_ROLE = "jupyter_server"  # a session's kernel is a child of this (through wrappers only)
MAX_HOPS = 64


@dataclass(frozen=True)
class Match:
    """One process of the snapshot with the activity that explains it (None if none) and how."""

    process: ProcessRecord
    activity: Optional[Activity]
    via: Optional[str]  # session_pid, job_pid, webapp_pid, pid, kernel_id, cru, ancestor, wrapped; None without
    via_pid: Optional[int]  # the process whose pid or kernel id made the join (itself, an ancestor, the wrapped one)
    status: str  # one of STATUSES
    source: Optional[str] = None  # api, cru, cgroup, tree (of the activity, else of the context); None: nothing
    context: Optional[Context] = None  # what DSS's own records (CRU, cgroup, an ancestor's) say it is
    claim: Optional[Activity] = None  # "unverified": the session it claims and may not be charged to

    @property
    def verified(self) -> bool:
        """True when an activity explains the process through a verified join (every `activity` is verified)."""
        return self.activity is not None


@dataclass(frozen=True)
class Joined:
    rows: Tuple[Match, ...]  # one per process of the snapshot, in the snapshot's order
    matches: Tuple[Match, ...]  # the rows with an activity (verified joins only: what memory is charged from)
    orphans: Tuple[ProcessRecord, ...]  # one per orphan unit (see the module docstring)
    pool: Tuple[ProcessRecord, ...]  # JEKs no job explains
    not_on_host: Tuple[Activity, ...]  # activities naming a pid or kernel id that explain no process here
    unverified: Tuple[Match, ...] = ()  # processes claiming a session they fail the checks for

    def for_activity(self, kind: str, activity_id: str) -> Tuple[Match, ...]:
        """The rows an activity explains (its process, its descendants, its wrappers)."""
        return tuple(m for m in self.matches if m.activity.kind == kind and m.activity.id == activity_id)


def _priority(activity):
    kind = activity.kind
    return (PID_PRIORITY.index(kind) if kind in PID_PRIORITY else len(PID_PRIORITY), kind, activity.id)


def _kernel_id(activity):
    kernel_id = (activity.details or {}).get("kernel_id") if activity.kind == "notebook_session" else None
    return str(kernel_id).lower() if kernel_id else None


def _index(activities: Iterable[Activity]):
    by_pid, by_kernel, by_key = {}, {}, {}
    for a in sorted(activities, key=_priority):
        if a.pid is not None and a.pid not in by_pid:
            by_pid[a.pid] = a
        kernel_id = _kernel_id(a)
        if kernel_id and kernel_id not in by_kernel:
            by_kernel[kernel_id] = a
        by_key.setdefault((a.kind, a.project_key, a.id), a)
    return by_pid, by_kernel, by_key


class _Tree:
    """The snapshot's processes by pid and their children, built once."""

    def __init__(self, snapshot: Snapshot):
        self.by_pid = {p.pid: p for p in snapshot.processes}
        self.children = snapshot.children()

    def parent(self, p):
        return self.by_pid.get(p.ppid) if p.ppid != p.pid else None

    def wrapped(self, p):
        """The process a wrapper wraps: down through children of its role until a non-wrapper (p itself if none)."""
        hops = 0
        while p.link and hops < MAX_HOPS:
            kids = [self.by_pid[c] for c in self.children.get(p.pid, ()) if self.by_pid[c].role == p.role]
            if not kids:
                break
            p, hops = kids[0], hops + 1
        return p

    def server_above(self, p):
        """The first non-wrapper ancestor of `p` (through wrappers only), None when there is none."""
        parent, hops = self.parent(p), 0
        while parent is not None and parent.link and hops < MAX_HOPS:
            parent, hops = self.parent(parent), hops + 1
        return parent


def verified_session(tree: _Tree, p: ProcessRecord, session: Activity) -> bool:
    """True when `p` may be charged to `session`: a child of its instance's Jupyter server through wrappers
    only, run by the session's unix owner or by the Jupyter server's own unix user. See the module docstring."""
    server = tree.server_above(p)
    if server is None or server.role != SERVER_ROLE or server.instance is None or server.instance != p.instance:
        return False
    user = tree.wrapped(p).user
    owner = (session.details or {}).get("unix_owner")
    return user is not None and user in (owner, server.user)


def _api_joins(processes, tree, by_pid, by_kernel, joinable):
    """{pid: (activity, via, via_pid, source)} from the API's pids and kernel ids, and {pid: claimed session}."""
    found, claims = {}, {}
    for p in processes:
        if not joinable(p):
            continue
        a = by_pid.get(p.pid)
        if a is not None and _kernel_ids_differ(a, p):
            a = None
        kernel_id = p.ids.get("kernel_id") if not p.link else None
        via = PID_VIA.get(a.kind, "pid") if a is not None else None
        if a is None and kernel_id and str(kernel_id).lower() in by_kernel:
            a, via = by_kernel[str(kernel_id).lower()], "kernel_id"
        if a is None:
            continue
        if a.kind == "notebook_session" and not verified_session(tree, p, a):
            claims[p.pid] = a
            continue
        found[p.pid] = (a, via, p.pid, "api")
    return found, claims


def _cru_joins(processes, found, contexts, by_key, joinable):
    """Add {pid: (activity, "cru", pid, "cru")} for processes whose CRU context names a listed activity (an item of
    the audit log of the process's own instance: two instances may use the same project keys and ids)."""
    for p in processes:
        ctx = contexts.get(p.pid)
        if p.pid in found or ctx is None or ctx.source != "cru" or not joinable(p):
            continue
        if ctx.instance is not None and p.instance is not None and ctx.instance != p.instance:
            continue
        for key in activity_keys(ctx):
            if key in by_key:
                found[p.pid] = (by_key[key], "cru", p.pid, "cru")
                break


def _tree_order(processes, tree):
    """Pids, parents before children (roots first, then anything only reachable through a parent cycle)."""
    roots = [p.pid for p in processes if p.ppid not in tree.by_pid or p.ppid == p.pid]
    order, seen = [], set()
    for start in sorted(roots) + sorted(tree.by_pid):
        stack = [start]
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            order.append(pid)
            stack.extend(reversed(tree.children.get(pid, ())))
    return order


def _inherit(order, tree, found, claims, joinable):
    """Descendants carry their nearest joined ancestor's activity; wrappers carry what they wrap."""
    for pid in order:  # parents first
        inherited, claim = found.get(pid), claims.get(pid)
        for child in tree.children.get(pid, ()):
            if child in found or not joinable(tree.by_pid[child]):
                continue
            if inherited is not None:  # a claim inside a joined tree is that activity's process
                found[child] = (inherited[0], "ancestor", inherited[2], "tree")
            elif claim is not None and child not in claims:
                claims[child] = claim  # the children of an unverified claim are part of it
    for pid in reversed(order):  # children first
        p = tree.by_pid[pid]
        if not p.link or pid in found or not joinable(p):
            continue
        for child in tree.children.get(pid, ()):
            got = found.get(child)
            if got is not None and tree.by_pid[child].role == p.role:
                found[pid] = (got[0], "wrapped", got[2], "tree")
                break
            if child in claims and tree.by_pid[child].role == p.role:
                claims[pid] = claims[child]  # a wrapper of an unverified claim is part of it
                break


def join(snapshot: Snapshot, inventory: Inventory, instance: Optional[str] = None,
         contexts: Optional[Mapping[int, Context]] = None) -> Joined:
    """Join the processes of `snapshot` to the activities of `inventory` (see the module docstring).

    `instance`: when given (a DIP_HOME), only processes of that instance are joined; use it when several DSS
    instances share the host and the inventory comes from one of them.
    `contexts`: {pid: context.Context} from DSS's own records (`context.read_contexts`): CRU items join a process
    to a listed job or webapp; every context is kept on its row and explains a process no activity explains.
    """
    processes = snapshot.processes
    tree = _Tree(snapshot)
    by_pid, by_kernel, by_key = _index(inventory.activities)
    contexts = contexts or {}
    failed_kinds = {e.kind for e in inventory.errors}

    def joinable(p):
        return p.role != "not_dss" and (instance is None or p.instance == instance)

    found, claims = _api_joins(processes, tree, by_pid, by_kernel, joinable)
    _cru_joins(processes, found, contexts, by_key, joinable)
    order = _tree_order(processes, tree)
    _inherit(order, tree, found, claims, joinable)

    statuses = {}
    for pid in order:
        p = tree.by_pid[pid]
        if pid in claims and pid not in found and joinable(p):
            statuses[pid] = "unverified"
            continue
        explained = _explains(p, contexts.get(pid), statuses.get(p.ppid))
        statuses[pid] = _status(p, found.get(pid), failed_kinds, statuses.get(p.ppid), joinable(p), explained)
    _settle_orphan_wrappers(order, tree, statuses)
    rows = tuple(_row(p, found.get(p.pid), statuses.get(p.pid, "not_dss"), contexts.get(p.pid), claims.get(p.pid))
                 for p in processes)
    orphans = tuple(m.process for m in rows if m.status == "orphan" and not m.process.link
                    and not _orphan_parent(m.process, tree.by_pid, statuses))
    pool = tuple(m.process for m in rows if m.status == "pool")
    matches = tuple(m for m in rows if m.activity is not None)
    unverified = tuple(m for m in rows if m.status == "unverified")
    return Joined(rows, matches, orphans, pool, _not_on_host(inventory, matches), unverified)


def _row(p, got, status, ctx, claim):
    if got is not None:
        return Match(p, got[0], got[1], got[2], status, got[3], ctx, claim)
    return Match(p, None, None, None, status, ctx.source if ctx is not None else None, ctx, claim)


def _settle_orphan_wrappers(order, tree, statuses):
    """A wrapper above an orphan kernel is part of the orphan unit."""
    for pid in reversed(order):
        p = tree.by_pid[pid]
        if p.link and statuses[pid] == "unjoined" and p.role in ORPHAN_ROLES:
            kids = [statuses.get(c) for c in tree.children.get(pid, ()) if tree.by_pid[c].role == p.role]
            if kids and kids[0] in ("orphan", "unknown"):
                statuses[pid] = kids[0]


def _not_on_host(inventory, matches):
    """Activities naming a pid or a kernel id whose process is not among the verified joins (by pid or kernel)."""
    here_pids = {m.process.pid for m in matches}
    here_kernels = {str(m.process.ids["kernel_id"]).lower() for m in matches
                    if not m.process.link and m.process.ids.get("kernel_id")}
    out = []
    for a in inventory.activities:
        kernel_id = _kernel_id(a)
        if a.pid is None and not kernel_id:
            continue
        if (a.pid is not None and a.pid in here_pids) or (kernel_id and kernel_id in here_kernels):
            continue
        out.append(a)
    return tuple(out)


def _kernel_ids_differ(activity, process):
    """True when a session's pid now belongs to a kernel with another kernel id: the pid was reused (the listing
    and the scan are not taken at the same instant), so the pid says nothing about this session."""
    if activity.kind != "notebook_session":
        return False
    listed = (activity.details or {}).get("kernel_id")
    running = process.ids.get("kernel_id")
    return bool(listed and running) and str(listed).lower() != str(running).lower()


def _explains(p, ctx, parent_status):
    """Whether a context (no activity) explains the process. For a kernel or a webapp backend (ORPHAN_ROLES) only
    a live CRU item does (DSS still tracks it), or its parent's: DSS's cgroups integration places every kernel in
    a cgroup, so a cgroup path alone would hide every orphan kernel."""
    if ctx is None:
        return False
    if p.role not in ORPHAN_ROLES:
        return True
    return ctx.source == "cru" or (ctx.source == "tree" and parent_status == "explained")


def _status(p, got, failed_kinds, parent_status, joinable, explained=False):
    if p.role == "not_dss":
        return "not_dss"
    if got is not None:
        return "joined"
    if not joinable:
        return "unjoined"
    if explained:
        return "explained"
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
