"""The webapp's table rows: host processes joined to DSS activities (/api/table, the preview's row).

Text that comes from DSS or the host (names, owners, states, labels, users, error messages) passes
`identifiers.safe_text`: control and bidi characters arrive on the page escaped, and long values cut.
"""
from . import charts
from .identifiers import safe_text
from .webapp_actions import ACTION_KINDS

__all__ = ["process_row", "activity_row", "join_table", "error_rows"]


def _activity_fields(a, as_of):
    if a is None:
        return {"project_key": None, "activity_kind": None, "activity_id": None, "activity_name": None,
                "owner": None, "idle_seconds": None, "state": None, "actionable": False}
    idle = None
    if a.last_activity_at is not None:
        idle = round(max(0.0, as_of - a.last_activity_at), 1)
    return {"project_key": safe_text(a.project_key), "activity_kind": a.kind, "activity_id": safe_text(a.id),
            "activity_name": safe_text(a.name), "owner": safe_text(a.owner), "idle_seconds": idle,
            "state": safe_text(a.state), "actionable": a.kind in ACTION_KINDS}


def process_row(p, activity, as_of):
    """One table row for a stored process and the activity explaining it (or None). The process's age is as of
    its sample; the idle time as of `as_of` (epoch s: when the activities were listed)."""
    display, _ = charts.role_style(p.role)
    age = None if p.age_seconds is None else round(p.age_seconds, 1)
    row = {"pid": p.pid, "role": p.role, "role_display": display, "label": safe_text(p.label),
           "user": safe_text(p.user), "instance": safe_text(p.instance), "age_seconds": age,
           "rss_anon_bytes": p.rss_anon_bytes, "rss_bytes": p.rss_bytes}
    row.update(_activity_fields(activity, as_of))
    if p.link:  # a UIF wrapper (sudo, exec.py): the kernel's own row carries the action
        row["actionable"] = False
    return row


def activity_row(a, as_of):
    """A table row for an activity with no visible process; ages as of `as_of` (epoch s)."""
    age = None if a.started_at is None else round(max(0.0, as_of - a.started_at), 1)
    row = {"pid": a.pid, "role": None, "role_display": None, "label": None, "user": None, "instance": None,
           "age_seconds": age, "rss_anon_bytes": None, "rss_bytes": None}
    row.update(_activity_fields(a, as_of))
    return row


def error_rows(inventory):
    """The listing's failed calls as rows of the table's `errors` (messages safe and bounded)."""
    return [{"kind": e.kind, "project_key": safe_text(e.project_key), "message": safe_text(e.message, 300)}
            for e in inventory.errors]


def _context_fields(row, match):
    """`source` (api, cru, cgroup, tree: where what the row says comes from) and, for a process no activity
    explains, what DSS's own records say it is (`context_kind`, and the project and user they name)."""
    row["source"] = match.source
    ctx = match.context
    row["context_kind"] = safe_text(ctx.kind) if ctx is not None else None
    if match.activity is None and ctx is not None:
        row["project_key"] = safe_text(ctx.project_key)
        row["owner"] = safe_text(ctx.user)


def join_table(processes, inventory, as_of, instance=None, contexts=None):
    """(rows, orphans, activities_without_process) for /api/table, from joins.join: every DSS process with the
    activity that explains it (`status`, `via` and `source` say how), the orphan units (kernels or webapp backends
    no source explains), and the activities that explain no visible process. `contexts`: {pid: context.Context}
    stored with the sample (DSS's own records: CRU items, cgroup paths, the tree)."""
    from . import joins
    from .host import Snapshot

    snap = Snapshot(taken_at=as_of, hostname="", processes=tuple(processes), roles={}, cgroups=(), stats=None)
    joined = joins.join(snap, inventory, instance=instance, contexts=contexts)
    orphan_pids = {p.pid for p in joined.orphans}
    rows, orphans = [], []
    for m in joined.rows:
        if m.status == "not_dss":
            continue
        row = process_row(m.process, m.activity, as_of)
        row["status"], row["via"] = m.status, m.via
        _context_fields(row, m)
        (orphans if m.process.pid in orphan_pids else rows).append(row)
    explained = {(m.activity.kind, m.activity.id) for m in joined.matches}
    without = [activity_row(a, as_of) for a in inventory.activities if (a.kind, a.id) not in explained]
    return rows, orphans, without
