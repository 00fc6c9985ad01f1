"""Plotly figures from records and history series, as JSON-safe dicts (`fig.to_plotly_json()`).

Every function takes records (host processes, activities, cgroups, `history.RoleSeries`) and returns a figure
dict the page passes to `Plotly.react(div, fig.data, fig.layout)`. Figures carry labels, pids, ids and
numbers only: never a command line. Text that comes from users (notebook names, projects, logins) is
HTML-escaped, because plotly.js interprets a subset of HTML in text and hover labels.
Memory is shown in MiB (treemap boxes with their unit: "1.2 GiB"), times as epoch milliseconds on date axes,
shown in UTC on a 24-hour clock like every time of the webapp; activity states in sentence case ("Running").
"""
import functools
import html

from . import roles as catalogue
from .identifiers import safe_text
from .render import format_bytes

MIB = 1024.0 * 1024.0
HIDDEN_ROLES = ("not_dss",)  # processes that are not DSS's: scanned, stored, not charted
KERNEL_ROLES = ("jupyter_kernel",)
TEMPLATE = "plotly_white"
_FALLBACK_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
)


@functools.lru_cache(maxsize=256)
def role_style(role):
    """(display name, colour) of a role id, from the role catalogue; stable for ids it does not know. A pod
    series ("pod:<role>", pods.series_role) is "<the role's name> (pods)" in the role's colour."""
    from .pods import base_role

    base = base_role(role)
    if base is not None:
        display, colour = role_style(base)
        return "%s (pods)" % display, colour
    try:
        display, colour = catalogue.role_style(role)
        return str(display), str(colour)
    except KeyError:
        pass
    display = str(role).replace("_", " ")
    index = sum(ord(c) for c in str(role)) % len(_FALLBACK_PALETTE)
    return display, _FALLBACK_PALETTE[index]


def _esc(value):
    """Text from DSS or the host for a figure: control and bidi characters escaped, cut, then HTML-escaped."""
    return html.escape(safe_text("" if value is None else str(value), 120), quote=False)


def _mib(value):
    return None if value is None else round(value / MIB, 1)


def state_label(state):
    """An activity state in the one casing the webapp shows: "RUNNING", "idle" -> "Running", "Idle"."""
    text = str(state or "").replace("_", " ").strip().lower()
    return text[:1].upper() + text[1:]


# Date axes: UTC, 24-hour, the zone in the title and in every hover label.
TIME_AXIS = {"type": "date", "title": {"text": "time (UTC)"}, "tickformat": "%H:%M\n%b %d",
             "hoverformat": "%Y-%m-%d %H:%M:%S UTC"}
# The same legend order in every history chart (plotly reverses it for stacked areas by default).
LEGEND = {"traceorder": "normal"}


def _figure(data, layout):
    """Validate through plotly.graph_objects, then attach the template as plain JSON (validating the template
    inside each figure would cost ~10 ms a figure for no benefit: it is plotly's own)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    base = {"template": "none", "margin": {"l": 60, "r": 20, "t": 40, "b": 40}, "font": {"size": 12}}
    base.update(layout)
    fig = go.Figure(data=data, layout=base).to_plotly_json()
    fig["layout"]["template"] = pio.templates[TEMPLATE].to_plotly_json()
    return fig


def _charted(processes):
    return [p for p in processes if p.role not in HIDDEN_ROLES]


def treemap(processes, top_n=8, title="Memory by role now (RssAnon)"):
    """Instance -> role -> process treemap sized by RssAnon, the `top_n` biggest per role plus "other"."""
    ids, labels, parents, values, colours, hover = [], [], [], [], [], []
    tree = {}
    for p in _charted(processes):
        tree.setdefault(p.instance or "unknown instance", {}).setdefault(p.role, []).append(p)
    for instance in sorted(tree):
        inst_id = "i:%s" % instance
        inst_total = 0.0
        inst_index = len(ids)
        ids.append(inst_id), labels.append(_esc(instance)), parents.append(""), values.append(0.0)
        colours.append("#eeeeee"), hover.append(_esc(instance))
        for role in sorted(tree[instance]):
            procs = sorted(tree[instance][role], key=lambda p: (-(p.rss_anon_bytes or 0), p.pid))
            display, colour = role_style(role)
            role_id = "%s/r:%s" % (inst_id, role)
            role_total = sum((p.rss_anon_bytes or 0) for p in procs) / MIB
            inst_total += role_total
            ids.append(role_id), labels.append(_esc(display)), parents.append(inst_id)
            values.append(round(role_total, 1)), colours.append(colour)
            hover.append("%s: %d processes" % (_esc(display), len(procs)))
            for p in procs[:top_n]:
                ids.append("%s/p:%d" % (role_id, p.pid))
                labels.append("%s %d" % (_esc(p.label), p.pid))
                parents.append(role_id)
                values.append(_mib(p.rss_anon_bytes or 0))
                colours.append(colour)
                hover.append("pid %d, user %s" % (p.pid, _esc(p.user or "?")))
            rest = procs[top_n:]
            if rest:
                ids.append("%s/other" % role_id)
                labels.append("other (%d)" % len(rest))
                parents.append(role_id)
                values.append(round(sum((p.rss_anon_bytes or 0) for p in rest) / MIB, 1))
                colours.append(colour)
                hover.append("%d smaller processes" % len(rest))
            # parents must be at least the sum of their children once rounded
            values[ids.index(role_id)] = round(sum(v for i, v in zip(parents, values) if i == role_id), 1)
        values[inst_index] = round(sum(v for i, v in zip(parents, values) if i == inst_id), 1)
    sizes = [format_bytes(int(v * MIB)) for v in values]  # every box with its unit: "1.2 GiB"
    branches = set(parents)
    # plotly writes a parent's header with its label only: a role's size goes in its label, a process's in its
    # text; an instance (or node) keeps its path as label, its total in the hover
    labels = ["%s \u00b7 %s" % (label, size) if i in branches and parent else label
              for i, parent, label, size in zip(ids, parents, labels, sizes)]
    trace = {
        "type": "treemap",
        "ids": ids,
        "labels": labels,
        "parents": parents,
        "values": values,
        "text": sizes,
        "branchvalues": "total",
        "marker": {"colors": colours},
        "customdata": hover,
        "hovertemplate": "<b>%{label}</b><br>%{text} RssAnon<br>%{customdata}<extra></extra>",
        "texttemplate": ["%{label}" if i in branches else "%{label} \u00b7 %{text}" for i in ids],
    }
    return _figure([trace], {"title": {"text": title}, "margin": {"l": 5, "r": 5, "t": 40, "b": 5}})


def java_xmx(processes, limit=40, title="Java processes: RSS against -Xmx"):
    """One bar per Java process with a known -Xmx (ids["xmx_bytes"]): its RSS, and its -Xmx as a marker; the
    `limit` biggest by RSS (a host with hundreds of JEKs would give an unreadable chart)."""
    javas = sorted(
        (p for p in _charted(processes) if p.ids.get("xmx_bytes")),
        key=lambda p: (-(p.rss_bytes or 0), p.pid),
    )[:limit]
    names = ["%s %d" % (_esc(p.label), p.pid) for p in javas]
    colours = [role_style(p.role)[1] for p in javas]
    data = [
        {"type": "bar", "name": "RSS", "x": names, "y": [_mib(p.rss_bytes) for p in javas],
         "marker": {"color": colours}, "hovertemplate": "%{x}<br>RSS %{y:,.0f} MiB<extra></extra>"},
        {"type": "scatter", "mode": "markers", "name": "-Xmx", "x": names, "y": [_mib(p.ids["xmx_bytes"]) for p in javas],
         "marker": {"symbol": "line-ew-open", "size": 28, "color": "#333", "line": {"width": 3}},
         "hovertemplate": "%{x}<br>-Xmx %{y:,.0f} MiB<extra></extra>"},
    ]
    return _figure(data, {"title": {"text": title}, "yaxis": {"title": {"text": "MiB"}}, "showlegend": True})


def _kernel_points(joined):
    """(listed, orphans, other) kernel points of a host join: (process, session or None, memory bytes) each.

    `joins.Joined` holds the one orphan definition every view uses: `listed` has one point per notebook session
    with a process here (its kernel, with the memory of the whole unit: the kernel, its UIF wrappers, its
    children); `orphans` the kernel processes of `joined.orphans` (the Orphans tab's list); `other` the kernels
    that are neither (an unverified claim, or DSS's listing of sessions failed: cannot tell). A UIF wrapper
    (sudo, exec.py) is never a point of its own."""
    units = {}
    for m in joined.matches:
        if m.activity.kind == "notebook_session" and m.process.role not in HIDDEN_ROLES:
            units.setdefault((m.activity.project_key, m.activity.id), []).append(m)
    listed = []
    for unit in units.values():
        main = next((m for m in unit if m.via not in ("ancestor", "wrapped")), unit[0])
        listed.append((main.process, main.activity, sum((m.process.rss_anon_bytes or 0) for m in unit)))
    orphans = [(p, None, p.rss_anon_bytes) for p in joined.orphans if p.role in KERNEL_ROLES]
    other = [(m.process, None, m.process.rss_anon_bytes) for m in joined.rows
             if m.status in ("unverified", "unknown") and m.process.role in KERNEL_ROLES and not m.process.link]
    return listed, orphans, other


def kernels_idle_memory(joined, now, title="Jupyter kernels: idle time against memory"):
    """One point per kernel of `joined` (a `joins.Joined`, see `_kernel_points`): x idle hours (from its
    session's last activity; an orphan's whole life), y RssAnon MiB, hover with project, notebook and user.
    Orphan kernels (exactly the Orphans tab's) are in red; kernels that are neither listed nor orphans in grey."""

    def trace(points, name, colour, note=""):
        xs, ys, hover = [], [], []
        for p, a, memory in points:
            idle = None
            if a is not None and a.last_activity_at is not None:
                idle = max(0.0, now - a.last_activity_at) / 3600.0
            elif a is None and p.age_seconds is not None:
                idle = p.age_seconds / 3600.0  # not listed by DSS: its whole life counts as idle
            xs.append(None if idle is None else round(idle, 3))
            ys.append(_mib(memory))
            if a is not None:
                hover.append("%s / %s<br>user %s, pid %d, %s" % (
                    _esc(a.project_key), _esc(a.name), _esc(a.owner), p.pid, _esc(state_label(a.state))))
            else:
                hover.append("%s<br>pid %d, user %s" % (note, p.pid, _esc(p.user or "?")))
        return {"type": "scatter", "mode": "markers", "name": name, "x": xs, "y": ys, "customdata": hover,
                "marker": {"size": 11, "color": colour},
                "hovertemplate": "%{customdata}<br>idle %{x:.1f} h, %{y:,.0f} MiB<extra></extra>"}

    listed, orphans, other = _kernel_points(joined)
    data = [trace(listed, "sessions DSS lists", role_style(KERNEL_ROLES[0])[1]),
            trace(orphans, "orphan kernels", "#d62728", "orphan: no session DSS lists explains it")]
    if other:
        data.append(trace(other, "not verified or not listed", "#999999",
                          "not charged to a session: unverified, or DSS's listing of sessions failed"))
    return _figure(data, {"title": {"text": title}, "xaxis": {"title": {"text": "idle (hours)"}},
                          "yaxis": {"title": {"text": "RssAnon (MiB)"}}})


def cgroups(cgroup_records, title="DSS cgroups: memory against limit"):
    """Usage bars and limit markers per DSS cgroup; None when there is no DSS cgroup."""
    records = sorted(cgroup_records, key=lambda c: c.path)
    if not records:
        return None
    names = [_esc(c.path) for c in records]
    data = [
        {"type": "bar", "orientation": "h", "name": "usage", "y": names, "x": [_mib(c.usage_bytes) for c in records],
         "marker": {"color": "#3182bd"}, "hovertemplate": "%{y}<br>usage %{x:,.0f} MiB<extra></extra>"},
        {"type": "scatter", "mode": "markers", "name": "limit", "y": names, "x": [_mib(c.limit_bytes) for c in records],
         "marker": {"symbol": "line-ns-open", "size": 24, "color": "#d62728", "line": {"width": 3}},
         "hovertemplate": "%{y}<br>limit %{x:,.0f} MiB<extra></extra>"},
    ]
    return _figure(data, {"title": {"text": title}, "xaxis": {"title": {"text": "MiB"}},
                          "margin": {"l": 200, "r": 20, "t": 40, "b": 40}})


def _series_traces(series, metric, scale, stacked):
    times = [int(t * 1000) for t in series.times]
    data = []
    for role in sorted(series.roles, key=lambda r: role_style(r)[0]):
        if role in HIDDEN_ROLES:
            continue
        display, colour = role_style(role)
        values = series.roles[role][metric]
        trace = {"type": "scatter", "mode": "lines", "name": _esc(display), "x": times,
                 "y": [round(v / scale, 1) for v in values], "line": {"color": colour, "width": 1.5}}
        if stacked:
            trace["stackgroup"] = "memory"
            trace["fillcolor"] = colour
        data.append(trace)
    return data


def memory_by_role(series, title=None):
    """Stacked area of the average RssAnon (MiB) of each role over the window, stable colour per role."""
    return _figure(
        _series_traces(series, "rss_anon_bytes", MIB, stacked=True),
        {"title": {"text": title or "Memory by role, last %s (RssAnon)" % series.window},
         "xaxis": dict(TIME_AXIS), "yaxis": {"title": {"text": "MiB"}}, "legend": dict(LEGEND),
         "hovermode": "x unified"},
    )


def count_by_role(series, title=None):
    """Lines of the average process count of each role over the window (the JEK pool, kernels piling up)."""
    return _figure(
        _series_traces(series, "count", 1.0, stacked=False),
        {"title": {"text": title or "Processes by role, last %s" % series.window},
         "xaxis": dict(TIME_AXIS), "yaxis": {"title": {"text": "processes"}}, "legend": dict(LEGEND),
         "hovermode": "x unified"},
    )


def role_rows(processes):
    """The per-role summary rows of /api/snapshot from process records, biggest RssAnon first (totals as
    host.role_totals makes them: a UIF wrapper adds memory to its role, not a process)."""
    from .host import role_totals

    rows = []
    for role, t in role_totals(processes).items():
        display, colour = role_style(role)
        rows.append({"role": role, "display": display, "colour": colour, "count": t.count,
                     "rss_anon_bytes": t.rss_anon_bytes, "rss_bytes": t.rss_bytes,
                     "cpu_percent": round(t.cpu_percent, 1)})
    return sorted(rows, key=lambda r: (-r["rss_anon_bytes"], r["role"]))


__all__ = ["role_style", "treemap", "java_xmx", "kernels_idle_memory", "cgroups", "memory_by_role",
           "count_by_role", "role_rows"]


def oom_label(path, labels):
    """A DSS cgroup's name in the OOM chart: its path, then the workload and the user or project it stands for."""
    labels = labels or {}
    who = ", ".join(v for v in (labels.get("user"), labels.get("project_key")) if v)
    what = " ".join(v for v in (labels.get("workload"), "(%s)" % who if who else "") if v)
    return _esc(path) + (" \u00b7 " + _esc(what) if what else "")


def oom_kills(series, title=None):
    """The kernel's OOM-kill counter of each DSS cgroup over the window (`history.OomSeries`), one step line per
    cgroup named by its path, workload and user or project; None when no cgroup has a readable counter."""
    if not series.oom_kills:
        return None
    times = [int(t * 1000) for t in series.times]
    data = [{"type": "scatter", "mode": "lines+markers", "name": oom_label(path, series.labels.get(path)),
             "x": times, "y": list(values), "line": {"shape": "hv", "width": 1.5}, "connectgaps": True,
             "hovertemplate": "%{y} OOM kills<extra>%{fullData.name}</extra>"}
            for path, values in sorted(series.oom_kills.items())]
    return _figure(data, {"title": {"text": title or "OOM kills per DSS cgroup, last %s" % series.window},
                          "xaxis": {"type": "date", "title": {"text": "time (UTC)"}},
                          "yaxis": {"title": {"text": "OOM kills (kernel counter)"}, "rangemode": "tozero"},
                          "legend": {"orientation": "h"}, "hovermode": "x unified"})


def history_body(window, series, oom=None):
    """The /api/history body for `series` (a role series from SQLite or Prometheus): points, step and figures;
    `oom` (a history.OomSeries) adds the OOM kills per DSS cgroup."""
    figures = {"memory_by_role": memory_by_role(series), "count_by_role": count_by_role(series)}
    if oom is not None:
        figures["oom_kills"] = oom_kills(oom)
    return {"window": window, "points": series.points, "step_seconds": series.step_seconds, "figures": figures}
