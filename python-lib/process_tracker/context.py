"""What DSS's own records say a process is, without the API: the `Context` record and how it reaches a scan.

Sources (each a module yielding {pid: Context} for a Snapshot, no DSS connection needed):
- "cru":    DSS's compute-resource-usage events in each instance's audit log (`cru.py`);
- "cgroup": the process's DSS cgroup path mapped back through the instance's cgroup templates (`cgroup_context.py`);
- "tree":   a process without its own context carries its nearest ancestor's (a recipe under a JEK's CRU item).
First that applies wins, in that order (`joins.join` puts the API before all three).

`add_context(snapshot, payload, ...)` adds `context` to each process of `host.snapshot_to_json`'s payload: what
`scan --json` prints. Values are validated (`identifiers`) and escaped where they enter (the readers), so a context
never carries control characters or ids that could steer a call.
"""
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

SOURCES = ("api", "cru", "cgroup", "tree")

# which context ids name an activity kind of `activities` (the ids the readers normalise to)
ACTIVITY_IDS = (("job_id", "job"), ("webapp_id", "webapp"))


@dataclass(frozen=True)
class Context:
    """What DSS's own records say a process is. `kind` is the CRU context type (JOB_ACTIVITY, ANALYSIS_ML_TRAIN,
    JUPYTER_NOTEBOOK_KERNEL, WEBAPP_BACKEND, EDA, ...) or the cgroup workload (e.g. jupyterKernels, notebooks)."""

    source: str  # one of SOURCES
    kind: Optional[str]
    project_key: Optional[str] = None
    user: Optional[str] = None  # a DSS login (authIdentifier) or the user a cgroup template names
    ids: Mapping[str, str] = field(default_factory=dict)  # job_id, activity_id, webapp_id, analysis_id, ...
    instance: Optional[str] = None  # the DIP_HOME whose records say it
    via_pid: Optional[int] = None  # "tree": the ancestor the context comes from

    def to_json(self) -> Dict[str, object]:
        out = {"source": self.source, "kind": self.kind, "project_key": self.project_key, "user": self.user,
               "ids": dict(self.ids)}
        if self.via_pid is not None:
            out["via_pid"] = self.via_pid
        return out

    def inherited(self, via_pid: int) -> "Context":
        return Context("tree", self.kind, self.project_key, self.user, self.ids, self.instance, via_pid)


def activity_keys(ctx: Context):
    """(kind, project_key, id) of the activities the context names (a job, a webapp backend)."""
    return [(kind, ctx.project_key, ctx.ids[name]) for name, kind in ACTIVITY_IDS if ctx.ids.get(name)]


def merge(*sources: Mapping[int, Context]) -> Dict[int, Context]:
    """{pid: Context}: the first source naming a pid wins (pass CRU before cgroup)."""
    out = {}
    for source in sources:
        for pid, ctx in source.items():
            out.setdefault(pid, ctx)
    return out


def with_tree(snapshot, contexts: Mapping[int, Context]) -> Dict[int, Context]:
    """`contexts` plus, for every DSS process without one, its nearest ancestor's (source "tree", `via_pid` the
    ancestor that has it from DSS's records). Non-DSS processes neither carry nor pass a context."""
    by_pid = snapshot.by_pid()
    out, without = dict(contexts), set()
    for p in snapshot.processes:
        chain, cur = [], p
        while (cur is not None and cur.pid not in out and cur.pid not in without and cur.role != "not_dss"
               and cur.pid not in chain and len(chain) < 64):
            chain.append(cur.pid)
            cur = by_pid.get(cur.ppid)
        ctx = out.get(cur.pid) if cur is not None else None
        if ctx is None:
            without.update(chain)
            continue
        via = ctx.via_pid if ctx.source == "tree" else cur.pid
        for pid in chain:
            out[pid] = ctx.inherited(via)
    return out


def read_contexts(snapshot, cru_reader=None, cgroup_maps: Optional[Sequence] = None) -> Dict[int, Context]:
    """{pid: Context} for a snapshot: CRU items first (`cru_reader`, a `cru.AuditReader`, polled here), then the
    cgroup paths (`cgroup_maps`, default: the maps of the instances running a backend in the snapshot), then the
    tree. Needs no DSS connection."""
    from . import cgroup_context

    cru = cru_reader.contexts(snapshot) if cru_reader is not None else {}
    maps = cgroup_context.maps_for(snapshot) if cgroup_maps is None else cgroup_maps
    return with_tree(snapshot, merge(cru, cgroup_context.contexts(snapshot, maps)))


def add_context(snapshot, payload: Dict[str, object], contexts: Mapping[int, Context]) -> Dict[str, object]:
    """`payload` (host.snapshot_to_json's) with `context` (Context.to_json or null) on each process."""
    for record in payload.get("processes", ()):
        ctx = contexts.get(record.get("pid"))
        record["context"] = ctx.to_json() if ctx is not None else None
    return payload


def snapshot_to_json(snapshot, include_not_dss: bool = False, cru_reader=None, cgroup_maps=None) -> Dict[str, object]:
    """`host.snapshot_to_json` with `context` on each process (null when no source explains it), from DSS's own
    records only (CRU and cgroup paths, then the tree): what `scan --json` prints. A reader is made when none is
    given (its first poll reads the tail of each instance's audit log)."""
    from .cru import AuditReader
    from .host import snapshot_to_json as plain

    contexts = read_contexts(snapshot, cru_reader if cru_reader is not None else AuditReader(), cgroup_maps)
    return add_context(snapshot, plain(snapshot, include_not_dss=include_not_dss), contexts)
