"""The webapp's table rows: host processes joined to DSS activities (/api/table, the preview's row).

Text that comes from DSS or the host (names, owners, states, labels, users, error messages) passes
`identifiers.safe_text`: control and bidi characters arrive on the page escaped, and long values cut.
"""
from . import charts
from .identifiers import safe_text
from .webapp_actions import ACTION_KINDS

__all__ = ["process_row", "activity_row", "activity_unit_row", "host_join", "join_table", "error_rows"]


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


def host_join(processes, inventory, as_of, instance=None, contexts=None):
    """joins.join of stored processes and a listing: the one join (and orphan definition) behind the table, the
    Orphans tab and the Kernels chart. `inventory` None (nothing listed yet): no process can be called an orphan
    (their kinds count as failed listings: "unknown"). `contexts`: {pid: context.Context} stored with the sample
    (DSS's own records: CRU items, cgroup paths, the tree)."""
    from . import joins
    from .activities import FailedListing, Inventory
    from .host import Snapshot

    if inventory is None:
        kinds = sorted({k for explained_by in joins.ORPHAN_ROLES.values() for k in explained_by})
        inventory = Inventory(taken_at=as_of, activities=(),
                              errors=tuple(FailedListing(k, None, "not listed yet") for k in kinds))
    snap = Snapshot(taken_at=as_of, hostname="", processes=tuple(processes), roles={}, cgroups=(), stats=None)
    return joins.join(snap, inventory, instance=instance, contexts=contexts)


def _process_entry(m):
    """One process of an activity's row (`processes`): what it is and how it was joined."""
    p = m.process
    return {"pid": p.pid, "role": p.role, "role_display": charts.role_style(p.role)[0], "label": safe_text(p.label),
            "user": safe_text(p.user), "via": m.via, "source": m.source, "rss_anon_bytes": p.rss_anon_bytes, "rss_bytes": p.rss_bytes}


def _sum(values):
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def activity_unit_row(unit, as_of):
    """The one row of an activity with processes here (`unit`: its joins.Match rows, in snapshot order): the
    process it names (else the first) with the activity and its action, the memory of all its processes summed,
    and every process of it (the JEK and its children, a kernel and its UIF wrappers) under `processes`."""
    main = next((m for m in unit if m.via not in ("ancestor", "wrapped")), unit[0])
    row = process_row(main.process, main.activity, as_of)
    row["status"], row["via"] = main.status, main.via
    _context_fields(row, main)
    row["actionable"] = main.activity.kind in ACTION_KINDS
    row["rss_anon_bytes"] = _sum(m.process.rss_anon_bytes for m in unit)
    row["rss_bytes"] = _sum(m.process.rss_bytes for m in unit)
    row["processes"] = [_process_entry(main)] + [_process_entry(m) for m in unit if m is not main]
    return row


def join_table(processes, inventory, as_of, instance=None, contexts=None):
    """(rows, orphans, activities_without_process) for /api/table, from `host_join`: one row per activity with
    processes here (its processes under `processes`, their memory summed: one row, one action), one row per DSS
    process no activity explains (`status` says what it is), the orphan units (kernels or webapp backends no
    activity explains: `joins.Joined.orphans`), and the activities that explain no visible process. `status`,
    `via` and `source` say how each row is known (`contexts`: see `host_join`)."""
    joined = host_join(processes, inventory, as_of, instance=instance, contexts=contexts)
    orphan_pids = {p.pid for p in joined.orphans}
    units, rows, orphans = {}, [], []
    for m in joined.rows:
        if m.status == "not_dss":
            continue
        if m.activity is not None:
            key = (m.activity.kind, m.activity.project_key, m.activity.id)
            if key not in units:
                units[key] = []
                rows.append(key)  # the activity's row takes the place of its first process
            units[key].append(m)
            continue
        row = process_row(m.process, None, as_of)
        row["status"], row["via"] = m.status, m.via
        _context_fields(row, m)
        (orphans if m.process.pid in orphan_pids else rows).append(row)
    rows = [activity_unit_row(units[r], as_of) if isinstance(r, tuple) else r for r in rows]
    explained = {(m.activity.kind, m.activity.id) for m in joined.matches}
    without = [activity_row(a, as_of) for a in inventory.activities if (a.kind, a.id) not in explained] \
        if inventory is not None else []
    return rows, orphans, without
