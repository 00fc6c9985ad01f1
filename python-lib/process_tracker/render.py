"""Result rows for the macros and the CLI: one place for the columns, the units and the summary.

Rows are lists of dicts with stable keys (the column names below). The macros turn them into a DSS
`ResultTable` (`to_result_table`, which imports `dataiku.runnables` lazily); the CLI prints them as a plain-text
table (`to_text`) or as JSON (`to_json`). All three show the same rows.

Cells are plain strings (DSS's result table renders text, not HTML; JSON escapes nothing). Numbers are
rendered with their unit: durations as "9.2 d", memory as "1.5 GiB".

Every cell, title and header is safe text (`safe`): text from DSS or the host (a notebook name, a login, an error
body) has its control and bidi characters escaped (`\x1b`, `\n`, `\u202e`) and its length bounded, so it
cannot rewrite a row on a terminal, retitle a window or forge a line; an error that carries an HTML page (a proxy's
502) reads "DSS answered an HTML page (HTTP 502)".
"""
import json
import re
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .identifiers import safe_text

# (name, display name): the columns of the tables of the macros that act, in order.
ACTION_COLUMNS = (
    ("outcome", "Outcome"),
    ("kind", "Kind"),
    ("project", "Project"),
    ("name", "Name"),
    ("owner", "Owner"),
    ("state", "State"),
    ("started", "Started (UTC)"),
    ("running", "Running for"),
    ("idle", "Idle for"),
    ("memory", "Memory"),
    ("pid", "PID"),
    ("where", "Where"),
    ("reason", "Reason"),
    ("message", "Message"),
    ("id", "Id"),
)

# The columns of the read-only inventory ("running-activities" / `process-tracker activities`).
INVENTORY_COLUMNS = (
    ("kind", "Kind"),
    ("project", "Project"),
    ("name", "Name"),
    ("owner", "Owner"),
    ("state", "State"),
    ("started", "Started (UTC)"),
    ("running", "Running for"),
    ("idle", "Idle for"),
    ("pid", "PID"),
    ("where", "Where"),
    ("role", "Host role"),
    ("memory", "Memory"),
    ("note", "Note"),
    ("id", "Id"),
)

# Outcomes in the order the summary lists them (actions.OUTCOMES plus the rows that are not activities).
OUTCOME_ORDER = (
    "aborted",
    "abort_requested",
    "finished_before_abort",
    "already_finished",
    "failed",
    "would_act",
    "spared",
    "created",
    "updated",
    "would_create",
    "would_update",
    "unchanged",
    "listed",
    "orphan",
    "error",
    "warning",
)

MAX_CELL = 300  # characters of one cell (an error message included)
MAX_HEADER = 1000
_HTML = re.compile(r"<\s*(!doctype\b|html\b)", re.IGNORECASE)
_HTML_STATUS = re.compile(r"<title>\s*(\d{3})\b|\bHTTP[ /](\d{3})\b", re.IGNORECASE)
_FILLER = re.compile(r"(\s*(:|-)?\s*(unknown error|error|http error)?\s*[:\-]?\s*)$", re.IGNORECASE)


def readable_error(message: str, status: Optional[int] = None) -> str:
    """`message` with an HTML page in it (a proxy's or a server's error page) replaced by "DSS answered an HTML
    page (HTTP 502)"; what came before the page (what was being done) is kept. Other messages unchanged."""
    found = _HTML.search(message)
    if not found:
        return message
    page = message[found.start():]
    if status is None:
        code = _HTML_STATUS.search(page)
        status = int(code.group(1) or code.group(2)) if code else None
    what = _FILLER.sub("", message[: found.start()])
    said = "DSS answered an HTML page" + (" (HTTP %d)" % status if status else "")
    return "%s: %s" % (what, said) if what else said


def safe(value, limit: Optional[int] = MAX_CELL) -> str:
    """Any value as safe text for a terminal, a table cell or a log line: control and bidi characters escaped, cut
    to `limit` characters. None is ""."""
    if value is None:
        return ""
    return safe_text(value if isinstance(value, str) else str(value), limit)


def safe_message(value, limit: Optional[int] = MAX_CELL, status: Optional[int] = None) -> str:
    """An error or note as safe text, an HTML page in it told in one phrase (`readable_error`). Only for messages:
    a name that happens to hold "<html" is data, shown as is (escaped)."""
    if value is None:
        return ""
    return safe(readable_error(value if isinstance(value, str) else str(value), status), limit)


def error_text(exc, limit: Optional[int] = MAX_HEADER) -> str:
    """The message of an exception as safe text (its HTTP status, when known, names an HTML page's)."""
    return safe_message(str(exc) or exc.__class__.__name__, limit, getattr(exc, "status", None))


_MESSAGE_COLUMNS = ("message", "note")


_DURATION_UNITS = (("d", 86400.0), ("h", 3600.0), ("min", 60.0))
_UNITS_B = (("TiB", 1024.0**4), ("GiB", 1024.0**3), ("MiB", 1024.0**2), ("KiB", 1024.0))


def format_duration(seconds: Optional[float]) -> str:
    """A duration in seconds as "9.2 d", "5.0 h", "12 min" or "30 s"; "" when unknown."""
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    for unit, size in _DURATION_UNITS:
        if seconds >= size:
            value = seconds / size
            if unit != "min":
                return "%.1f %s" % (value, unit)
            return ("%d min" % round(value)) if round(value) < 60 else "1.0 h"
    return ("%d s" % round(seconds)) if round(seconds) < 60 else "1 min"


def format_hours(hours: float) -> str:
    """A threshold in hours as the user typed it: "24 h", "0.5 h"."""
    return ("%g h" % hours) if hours < 1e6 else ("%.0f h" % hours)


def format_bytes(n: Optional[int]) -> str:
    """A byte count as "1.5 GiB", "300.0 MiB", "512 B"; "" when unknown."""
    if n is None:
        return ""
    for unit, size in _UNITS_B:
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d B" % n


def format_time(epoch_seconds: Optional[float]) -> str:
    """An epoch time as "2024-05-01 12:00 UTC"; "" when unknown."""
    if epoch_seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch_seconds))


@dataclass(frozen=True)
class Report:
    """What a macro run shows: a name, a one-line header summarising counts, and the rows."""

    name: str
    header: str
    columns: Tuple[Tuple[str, str], ...]
    rows: Tuple[Dict[str, str], ...]

    def counts(self) -> Dict[str, int]:
        return count_outcomes(self.rows)


def _key_of(activity) -> Tuple[str, str]:
    return (activity.kind, activity.id)


def activity_cells(activity, now: float, memory: Optional[Mapping] = None, role: Optional[str] = None,
                   where: Optional[Mapping] = None) -> Dict[str, str]:
    """The descriptive cells of one activity (everything but outcome, reason and message). `where`: (kind, id)
    -> where its process runs (the host's name, or `pod <namespace>/<name> on <node>`)."""
    memory = memory or {}
    running = (now - activity.started_at) if activity.started_at is not None else None
    idle = (now - activity.last_activity_at) if activity.last_activity_at is not None else None
    return {
        "kind": activity.kind,
        "project": activity.project_key or "",
        "name": activity.name or "",
        "owner": activity.owner or "",
        "state": activity.state or "",
        "started": format_time(activity.started_at),
        "running": format_duration(running),
        "idle": format_duration(idle),
        "memory": format_bytes(memory.get(_key_of(activity))),
        "pid": "" if activity.pid is None else str(activity.pid),
        "id": activity.id,
        "role": role or "",
        "where": (where or {}).get(_key_of(activity), ""),
    }


def _cell(name, value) -> str:
    return safe_message(value) if name in _MESSAGE_COLUMNS else safe(value)


def _row(columns, cells) -> Dict[str, str]:
    return {name: _cell(name, cells.get(name, "") or "") for name, _ in columns}


def decision_rows(decisions: Sequence, now: float, memory: Optional[Mapping] = None,
                  where: Optional[Mapping] = None) -> List[Dict[str, str]]:
    """Rows for policy decisions before any action: "would_act" or "spared", with the reason."""
    rows = []
    for d in decisions:
        cells = activity_cells(d.activity, now, memory, where=where)
        cells.update(outcome="would_act" if d.act else "spared", reason=d.reason)
        rows.append(_row(ACTION_COLUMNS, cells))
    return rows


def result_rows(results: Sequence, now: float, memory: Optional[Mapping] = None,
                where: Optional[Mapping] = None) -> List[Dict[str, str]]:
    """Rows for `actions.ActionResult`s: one per activity, acted on and spared alike."""
    rows = []
    for r in results:
        cells = activity_cells(r.activity, now, memory, where=where)
        cells.update(outcome=r.outcome, reason=r.reason or "", message=r.message or "")
        rows.append(_row(ACTION_COLUMNS, cells))
    return rows


def error_rows(errors: Sequence, columns=ACTION_COLUMNS) -> List[Dict[str, str]]:
    """Rows for `activities.FailedListing`s (a failing project or call).

    In action tables the outcome is "error" and the message says what failed; in the inventory the kind is
    "error", the name says which listing failed and the note carries the message.
    """
    rows = []
    for e in errors:
        if columns is INVENTORY_COLUMNS:
            cells = {"kind": "error", "project": e.project_key or "", "name": "listing %s" % e.kind, "note": e.message}
        else:
            cells = {"outcome": "error", "kind": e.kind, "project": e.project_key or "", "message": e.message}
        rows.append(_row(columns, cells))
    return rows


def warning_rows(messages: Sequence[str], columns=ACTION_COLUMNS) -> List[Dict[str, str]]:
    """Rows for warnings about the run itself (an excluded project DSS does not know): outcome "warning" in action
    tables, kind "warning" in the inventory; the text in the message (note) column."""
    if columns is INVENTORY_COLUMNS or "outcome" not in dict(columns):
        return [_row(columns, {"kind": "warning", "note": m}) for m in messages]
    return [_row(columns, {"outcome": "warning", "message": m}) for m in messages]


def inventory_rows(activities: Sequence, now: float, memory: Optional[Mapping] = None,
                   roles: Optional[Mapping] = None, notes: Optional[Mapping] = None,
                   where: Optional[Mapping] = None) -> List[Dict[str, str]]:
    """Rows of the read-only inventory: one per activity, with its host role and memory where joined."""
    roles = roles or {}
    notes = notes or {}
    rows = []
    for a in activities:
        cells = activity_cells(a, now, memory, roles.get(_key_of(a)), where=where)
        cells["note"] = notes.get(_key_of(a), "")
        rows.append(_row(INVENTORY_COLUMNS, cells))
    return rows


def orphan_rows(processes: Sequence, now: float, note: str) -> List[Dict[str, str]]:
    """Rows for host processes of a DSS role that no activity explains (`host.ProcessRecord`s)."""
    rows = []
    for p in processes:
        memory = p.rss_anon_bytes if p.rss_anon_bytes is not None else p.rss_bytes
        cells = {
            "kind": "orphan",
            "name": p.label,
            "owner": p.user or "",
            "started": format_time(p.created_at),
            "running": format_duration(now - p.created_at),
            "pid": str(p.pid),
            "role": p.role,
            "memory": format_bytes(memory),
            "note": note,
            "id": str(p.ids.get("kernel_id", "")) if p.ids else "",
        }
        rows.append(_row(INVENTORY_COLUMNS, cells))
    return rows


def pod_rows(matches: Sequence, now: float) -> List[Dict[str, str]]:
    """Inventory rows for DSS's pods no listed activity explains (`pod_joins.PodMatch`): kind "orphan" (DSS no
    longer lists its activity) or "pod" (unjoined, or unknown), where it runs, and why in the note."""
    from .pods import where_text

    rows = []
    for m in matches:
        p = m.process
        memory = p.rss_anon_bytes if p.rss_anon_bytes is not None else p.memory_request_bytes
        cells = {
            "kind": "orphan" if m.status == "orphan" else "pod",
            "project": (p.labels or {}).get("dku-project-key", ""),
            "name": p.label,
            "owner": p.user or "",
            "state": p.phase,
            "started": format_time(p.created_at),
            "running": format_duration(now - p.created_at),
            "where": where_text(p),
            "role": p.role,
            "memory": format_bytes(memory) + ("" if p.rss_anon_bytes is not None or memory is None else " (request)"),
            "note": m.reason,
            "id": "%s/%s" % (p.namespace, p.pod_name),
        }
        rows.append(_row(INVENTORY_COLUMNS, cells))
    return rows


def count_outcomes(rows: Sequence[Mapping[str, str]]) -> Dict[str, int]:
    """Rows per outcome (the "kind" of inventory rows: listed, orphan, error)."""
    counts = {}
    for row in rows:
        key = row.get("outcome") or (row.get("kind") if row.get("kind") in ("error", "orphan", "warning") else "listed")
        counts[key] = counts.get(key, 0) + 1
    return counts


def summary(counts: Mapping[str, int], applied: Optional[bool] = None) -> str:
    """One line: "Dry run (nothing was done): 3 would_act, 5 spared, 1 error." ; outcomes in a fixed order."""
    parts = ["%d %s" % (counts[k], k) for k in OUTCOME_ORDER if counts.get(k)]
    parts += ["%d %s" % (v, k) for k, v in sorted(counts.items()) if k not in OUTCOME_ORDER and v]
    body = ", ".join(parts) if parts else "nothing found"
    if applied is None:
        return body + "."
    if applied:
        return "Applied: %s." % body
    return "Dry run (nothing was done): %s." % body


def make_report(name: str, rows: Sequence[Mapping[str, str]], columns=ACTION_COLUMNS, applied=None,
                extra: str = "") -> Report:
    """A Report whose header summarises the rows' outcomes (and `extra`, a sentence appended as is)."""
    header = summary(count_outcomes(rows), applied)
    if extra:
        header = "%s %s" % (header, extra)
    rows = tuple({k: _cell(k, v) for k, v in r.items()} for r in rows)
    return Report(name=safe(name), header=safe_message(header, MAX_HEADER), columns=tuple(columns), rows=rows)


def to_result_table(report: Report):
    """A `dataiku.runnables.ResultTable` for a macro (imported here, lazily: python-lib imports outside DSS)."""
    from dataiku.runnables import ResultTable

    table = ResultTable()
    table.set_name(report.name)
    table.set_header(report.header)
    for name, display in report.columns:
        table.add_column(name, display, "STRING")
    for row in report.rows:
        table.add_record([row.get(name, "") for name, _ in report.columns])
    return table


def to_json(report: Report) -> str:
    """The report as JSON for the CLI's --json: name, header, counts and the same rows the macro shows."""
    return json.dumps(
        {"name": report.name, "header": report.header, "counts": report.counts(), "rows": list(report.rows)},
        indent=2,
        sort_keys=False,
    )


def to_text(report: Report, max_cell: int = 60) -> str:
    """A plain-text table: the header line, then aligned columns (empty columns are left out)."""
    names = [(n, d) for n, d in report.columns if any(row.get(n) for row in report.rows)]

    def cut(value):
        value = str(value).replace("\n", " ")
        return value if len(value) <= max_cell else value[: max_cell - 1] + "…"

    lines = [report.header]
    if not report.rows:
        return "\n".join(lines)
    cells = [[cut(row.get(n, "")) for n, _ in names] for row in report.rows]
    widths = [max([len(d)] + [len(c[i]) for c in cells]) for i, (_, d) in enumerate(names)]
    lines.append("  ".join(d.ljust(w) for (_, d), w in zip(names, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    return "\n".join(lines)
