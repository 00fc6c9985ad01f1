"""`process-tracker scan`: the DSS processes of this host by role, with their memory. Needs no DSS connection.

Default: a table grouped by role (count, RssAnon, RSS, CPU) with the top processes of each role (pid, label,
user, RssAnon, RSS). `--json`: `host.snapshot_to_json` (processes, roles, stats), each process with its `context`
from DSS's own records (`context.snapshot_to_json`: CRU events, cgroup paths, the tree). `--all` adds the
processes that are not DSS's (left out by default). `--pss` also reads PSS/USS (slower; same user or root).
`--interval S` scans twice, S seconds apart, so that CPU percentages are measured (otherwise null).
"""
import json
import shutil
import sys
import textwrap
import time

from ..errors import ConfigError
from ..render import format_bytes, safe

MAX_TOP = 1000  # processes shown per role: more is a typo (the JSON output has them all)


def register(subparsers):
    parser = subparsers.add_parser(
        "scan", help="DSS processes on this host by role, with memory (no DSS connection needed)",
        description="List the DSS processes of this host by role with their memory (RssAnon: anonymous resident "
        "memory, what DSS itself reports; RSS counts shared pages in every process, never sum it as 'used').")
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.add_argument("--all", action="store_true", help="include processes that are not DSS's")
    parser.add_argument("--pss", action="store_true", help="also read PSS/USS (costs ~10 ms per resident GiB)")
    parser.add_argument("--top", type=int, default=3, help="processes shown per role in the table (default 3)")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds between two scans to measure CPU percent (default 0: one scan, no CPU)")
    parser.set_defaults(func=run)
    return parser


def run(args, make_client=None, out=None):
    """Scan and print. `make_client` is unused: the scan reads the host only."""
    from .. import context
    from ..host import Scanner

    out = out or sys.stdout
    if not 0 <= args.top <= MAX_TOP:
        raise ConfigError("--top", "must be a whole number between 0 and %d, got %d" % (MAX_TOP, args.top))
    if not 0 <= args.interval <= 600:
        raise ConfigError("--interval", "must be between 0 and 600 seconds, got %s" % args.interval)
    scanner = Scanner(pss=bool(args.pss))
    snapshot = scanner.scan()
    if args.interval:
        time.sleep(args.interval)
        snapshot = scanner.scan()
    if args.json:
        out.write(json.dumps(context.snapshot_to_json(snapshot, include_not_dss=args.all), sort_keys=True) + "\n")
    else:
        text = format_table(snapshot, include_not_dss=args.all, top=args.top, pss=bool(args.pss))
        out.write(fit_to_terminal(text, out))
    return 0


def fit_to_terminal(text, out):
    """On a terminal, lines longer than its width wrapped (continuations indented); elsewhere `text` unchanged."""
    try:
        if not out.isatty():
            return text
    except (AttributeError, ValueError):
        return text
    width = max(20, shutil.get_terminal_size().columns)
    lines = []
    for line in text.splitlines():
        lines.extend(textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False) if len(line) > width
                     else [line])
    return "\n".join(lines) + "\n"


def _cpu(value):
    return "" if value is None else "%.1f%%" % value


def format_table(snapshot, include_not_dss=False, top=3, pss=False):
    """The scan as text: one line per role (count, RssAnon, RSS, CPU), then its top processes by RssAnon.

    The count is the role's processes; transparent wrappers (sudo, exec.py, shells: their memory counts in the
    role they wrap) are listed apart on one line, so the processes listed add up to the count. `pss`: PSS and USS
    of each process listed (and their sum per role) when they could be read."""
    processes = [p for p in snapshot.processes if include_not_dss or p.role != "not_dss"]
    by_role = {}
    for p in processes:
        by_role.setdefault(p.role, []).append(p)
    lines = ["%-22s %6s %11s %11s %7s" % ("ROLE", "COUNT", "RSSANON", "RSS", "CPU")]
    order = sorted(by_role, key=lambda r: (-snapshot.roles[r].rss_anon_bytes, r))
    for role in order:
        lines += _role_lines(role, snapshot.roles[role], by_role[role], top, pss)
    if not by_role:
        lines.append("(no DSS process found on this host; --all lists every process)")
    instances = sorted({safe(p.instance) for p in processes if p.instance})
    stats = snapshot.stats
    lines.append("")
    lines.append("instances: %s" % (", ".join(instances) or "-"))  # wrapped on a terminal: fit_to_terminal
    lines.append("scan: %d processes, %d DSS, %.0f ms CPU, %d unreadable, %d vanished" % (
        stats.seen, stats.classified, stats.cpu_seconds * 1000, stats.access_denied, stats.vanished))
    for c in snapshot.cgroups:
        lines.append("cgroup %s: %s of %s" % (safe(c.path), format_bytes(c.usage_bytes),
                                              format_bytes(c.limit_bytes) if c.limit_bytes else "no limit"))
    return "\n".join(lines) + "\n"


def _pss_text(records):
    pss = [p.pss_bytes for p in records if p.pss_bytes is not None]
    uss = [p.uss_bytes for p in records if p.uss_bytes is not None]
    return "  PSS %s  USS %s" % (format_bytes(sum(pss)) if pss else "?", format_bytes(sum(uss)) if uss else "?")


def _role_lines(role, totals, members, top, pss):
    own = sorted((p for p in members if not p.link), key=lambda p: (-(p.rss_anon_bytes or 0), p.pid))
    wrappers = [p for p in members if p.link]
    lines = ["%-22s %6d %11s %11s %7s%s" % (safe(role), totals.count, format_bytes(totals.rss_anon_bytes),
                                            format_bytes(totals.rss_bytes), _cpu(totals.cpu_percent),
                                            _pss_text(members) if pss else "")]
    for p in own[:top]:
        lines.append("  %8d  %-28s %-12s %11s %11s%s" % (
            p.pid, safe(p.label, 28), safe(p.user or "?", 12), format_bytes(p.rss_anon_bytes),
            format_bytes(p.rss_bytes), _pss_text([p]) if pss else ""))
    if len(own) > top:
        lines.append("  %8s  (%d more)" % ("", len(own) - top))
    if wrappers:
        names = sorted({safe(p.label, 28) for p in wrappers})
        lines.append("  %8s  + %d wrapper%s (%s): not counted, memory %s included above" % (
            "", len(wrappers), "s"[: len(wrappers) > 1], ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""),
            format_bytes(sum(p.rss_anon_bytes or 0 for p in wrappers))))
    return lines
