"""DSS's pods x DSS activities: which activity a pod runs, which pods DSS no longer explains (orphans).

Pure: takes `pods.PodRecord`s and an `activities.Inventory` (records only) and returns the same `joins.Joined`
record as the host join, with `PodMatch` rows (a `joins.Match` with a readable `reason`). Given the host's
`Joined`, `join_pods(..., host=joined)` returns ONE Joined for both: host rows then pod rows, orphans of both,
and `not_on_host` without the activities a pod explains (they run in the cluster).

How a pod gets its activity (`Match.via`), by DSS's labels (values are lower-cased by DSS: every comparison is
case-insensitive, and ids are compared on their letters and digits only, since a label value cannot hold every
character a DSS id can; how DSS maps those characters is unconfirmed):
- "pod_kernel_id"  a kernel pod whose execution id (or the id ending its name `dataiku-exec-remote-notebook-<id>`)
                   is a session's kernel id or session id, in the same project (assumed: unconfirmed that DSS
                   uses either id there; when it does not, the next rule applies);
- "pod_labels"     a kernel pod and the ONE notebook session of the same project by the same user (the pod's
                   `dku-exec-submitter`) that no host process and no other pod explains; several such sessions
                   is "unknown" (cannot tell which: never guessed);
- "pod_job_id"     a recipe or Spark pod whose `dku-job-id` is a running job of the same project;
- "pod_webapp_id"  a webapp backend pod whose `dku-webapp-id` is a running webapp backend of the same project;
- "pod_target"     an ML training pod whose `dku-mltask-id` or `dku-analysis-id` is a target of a running future
                   of the same project (assumed: unconfirmed that a training future targets them).
Statuses: "joined"; "orphan" (a kernel, recipe or webapp pod, while DSS listed that kind without error and
nothing explains it: DSS no longer knows it; the reason says what is missing); "unknown" (listing that kind failed,
or the join is ambiguous); "unjoined" (DSS's public API lists nothing for such pods: API deployments, ML
trainings without a matching future, pods of an unknown execution type).
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .activities import Activity, Inventory
from .joins import Joined, Match
from .pods import PodRecord, dss_label

ORPHAN_KINDS = ("notebook_session", "job", "webapp")  # kinds whose pods are orphans when DSS no longer lists them
KERNEL_POD_PREFIX = "dataiku-exec-remote-notebook-"
KIND_NAMES = {"notebook_session": "notebook session", "job": "running job", "webapp": "running webapp backend",
              "future": "running task"}
_NOT_ID = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class PodMatch(Match):
    """A pod's row: `process` is the PodRecord; `reason` says how it was joined, or why not."""

    reason: str = ""


def _norm(value) -> Optional[str]:
    """An id as compared with a label value: lower-cased letters and digits only (None when empty)."""
    if value is None:
        return None
    out = _NOT_ID.sub("", str(value).lower())
    return out or None


def _same(a, b):
    na = _norm(a)
    return na is not None and na == _norm(b)


def _kernel_ids(pod):
    ids = {_norm(dss_label(pod, "dku-execution-id"))}
    if pod.pod_name.startswith(KERNEL_POD_PREFIX):
        ids.add(_norm(pod.pod_name[len(KERNEL_POD_PREFIX):]))
    ids.discard(None)
    return ids


def _session_by_id(pod, sessions):
    ids = _kernel_ids(pod)
    for s in sessions:
        if _same(s.project_key, dss_label(pod, "dku-project-key")) and (
                _norm((s.details or {}).get("kernel_id")) in ids or _norm(s.id) in ids):
            return s
    return None


def _by_label(pod, activities, label):
    """Activities of the pod's project whose id is the pod's `label` value."""
    value = dss_label(pod, label)
    return [a for a in activities if value and _same(a.project_key, dss_label(pod, "dku-project-key"))
            and _same(a.id, value)]


def _by_target(pod, futures):
    wanted = {_norm(dss_label(pod, "dku-mltask-id")), _norm(dss_label(pod, "dku-analysis-id"))} - {None}
    found = []
    for f in futures:
        for t in (f.details or {}).get("targets") or ():
            if isinstance(t, dict) and _same(t.get("project_key"), dss_label(pod, "dku-project-key")) \
                    and _norm(t.get("id")) in wanted:
                found.append(f)
                break
    return found


def _describe(pod):
    project = dss_label(pod, "dku-project-key") or "?"
    user = dss_label(pod, "dku-exec-submitter") or "?"
    kind = pod.explained_by
    if kind == "job":
        return "job %s of project %s" % (dss_label(pod, "dku-job-id") or "(no job id label)", project)
    if kind == "webapp":
        return "webapp %s of project %s" % (dss_label(pod, "dku-webapp-id") or "(no webapp id label)", project)
    return "%s of project %s by %s" % (KIND_NAMES.get(kind, kind), project, user)


def _key(activity):
    return (activity.kind, activity.project_key, activity.id)


# activity kind -> (via, the pod label naming its id) for the kinds joined on one label
VIA_BY_LABEL = {"job": ("pod_job_id", "dku-job-id"), "webapp": ("pod_webapp_id", "dku-webapp-id")}


def _unexplained(pod, failed_kinds):
    kind = pod.explained_by
    if kind in failed_kinds:
        return "unknown", "listing DSS's %ss failed: cannot tell whether DSS still runs this pod" % KIND_NAMES[kind]
    if kind in ORPHAN_KINDS:
        return "orphan", "DSS lists no %s any more (pod phase %s)" % (_describe(pod), pod.phase or "?")
    if kind is None:
        return "unjoined", "DSS's public API lists no activity for a %s" % pod.label
    return "unjoined", "no %s names this pod's ids" % KIND_NAMES.get(kind, kind)


def _match(pod, activity, via, reason):
    return PodMatch(pod, activity, via, pod.pid, "joined", source="api", reason=reason)


def _not_joined(pod, failed_kinds):
    status, reason = _unexplained(pod, failed_kinds)
    return PodMatch(pod, None, None, None, status, reason=reason)


def _ambiguous(pod, reason):
    return PodMatch(pod, None, None, None, "unknown", reason=reason)


def _join_kernels(kernels, sessions, claimed, failed_kinds, rows):
    """Kernel pods: by id first, then by project and user when exactly one session and one pod fit."""
    rest = []
    for p in kernels:
        s = _session_by_id(p, sessions)
        if s is not None and _key(s) not in claimed:
            claimed.add(_key(s))
            rows[p.uid] = _match(p, s, "pod_kernel_id", "its id is session %s's" % s.id)
        else:
            rest.append(p)
    wanted: Dict[Tuple, int] = {}
    candidates = {}
    for p in rest:
        found = [s for s in sessions if _key(s) not in claimed
                 and _same(s.project_key, dss_label(p, "dku-project-key")) and _same(s.owner, p.user)]
        candidates[p.uid] = found
        for s in found:
            wanted[_key(s)] = wanted.get(_key(s), 0) + 1
    for p in rest:
        found = candidates[p.uid]
        if len(found) == 1 and wanted[_key(found[0])] == 1:
            rows[p.uid] = _match(p, found[0], "pod_labels", "the only session of project %s by %s"
                                 % (found[0].project_key, found[0].owner))
        elif len(found) > 1:
            rows[p.uid] = _ambiguous(p, "%d notebook sessions of its project by its user could be this pod's: "
                                        "cannot tell which" % len(found))
        elif found:
            rows[p.uid] = _ambiguous(p, "%d kernel pods of its project by its user could run session %s: "
                                        "cannot tell which" % (wanted[_key(found[0])], found[0].id))
        else:
            rows[p.uid] = _not_joined(p, failed_kinds)


def _join_other(pod, by_kind, failed_kinds):
    kind = pod.explained_by
    if kind in VIA_BY_LABEL:
        via, label = VIA_BY_LABEL[kind]
        found = _by_label(pod, by_kind.get(kind, ()), label)
    elif kind == "future":
        via, found = "pod_target", _by_target(pod, by_kind.get("future", ()))
    else:
        via, found = None, []
    if found:
        return _match(pod, found[0], via, "its %s" % _describe(pod))
    return _not_joined(pod, failed_kinds)


def join_pods(pods: Sequence[PodRecord], inventory: Inventory, host: Optional[Joined] = None,
              claimed: Iterable[Tuple[str, Optional[str], str]] = ()) -> Joined:
    """Join pods to the inventory's activities (see the module docstring). With `host` (the host's Joined from
    joins.join over the same inventory), the result holds both: sessions a host process explains are not
    candidates for pods, and `not_on_host` loses the activities pods explain. `claimed`: more (kind,
    project key, id) of activities that host processes explain (when the caller has rows, not a Joined)."""
    by_kind: Dict[str, List[Activity]] = {}
    for a in inventory.activities:
        by_kind.setdefault(a.kind, []).append(a)
    failed_kinds = {e.kind for e in inventory.errors}
    claimed = set(claimed) | ({_key(m.activity) for m in host.matches} if host is not None else set())
    rows: Dict[str, PodMatch] = {}
    kernels = [p for p in pods if p.explained_by == "notebook_session"]
    _join_kernels(kernels, by_kind.get("notebook_session", []), claimed, failed_kinds, rows)
    for p in pods:
        if p.uid not in rows:
            rows[p.uid] = _join_other(p, by_kind, failed_kinds)
    pod_rows = tuple(rows[p.uid] for p in pods)
    return merge(host, pod_rows)


def merge(host: Optional[Joined], pod_rows: Iterable[PodMatch]) -> Joined:
    """One Joined from the host's and the pods' rows (host first)."""
    pod_rows = tuple(pod_rows)
    explained = {_key(m.activity) for m in pod_rows if m.activity is not None}
    pod_matches = tuple(m for m in pod_rows if m.activity is not None)
    pod_orphans = tuple(m.process for m in pod_rows if m.status == "orphan")
    if host is None:
        return Joined(pod_rows, pod_matches, pod_orphans, (), ())
    return Joined(host.rows + pod_rows, host.matches + pod_matches, host.orphans + pod_orphans, host.pool,
                  tuple(a for a in host.not_on_host if _key(a) not in explained),
                  unverified=getattr(host, "unverified", ()))


def reasons(joined: Joined) -> Dict[int, str]:
    """{pid: reason} of the pod rows of a Joined (host rows have none)."""
    return {m.process.pid: m.reason for m in joined.rows if isinstance(m, PodMatch)}


def pod_rows(joined: Joined):
    """One plain dict per pod row of a Joined, for tables and JSON: where it runs, what it is, what DSS says it
    runs (or why nothing), memory with its source, requests and limits. Text from labels is made safe."""
    from .identifiers import safe_text

    out = []
    for m in joined.rows:
        p = m.process
        if not isinstance(m, PodMatch):
            continue
        a = m.activity
        out.append({
            "where": p.where, "namespace": p.namespace, "pod": p.pod_name, "node": p.node, "phase": p.phase,
            "role": p.role, "label": p.label, "user": safe_text(p.user), "project": safe_text(
                a.project_key if a else dss_label(p, "dku-project-key")),
            "status": m.status, "via": m.via, "reason": safe_text(m.reason, 300),
            "activity": None if a is None else {"kind": a.kind, "id": safe_text(a.id), "name": safe_text(a.name),
                                                "owner": safe_text(a.owner), "state": safe_text(a.state)},
            "rss_anon_bytes": p.rss_anon_bytes, "cpu_percent": p.cpu_percent, "memory_source": p.memory_source,
            "memory_request_bytes": p.memory_request_bytes, "memory_limit_bytes": p.memory_limit_bytes,
            "age_seconds": p.age_seconds, "pid": p.pid,
        })
    return out
