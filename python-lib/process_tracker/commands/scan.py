"""`process-tracker scan`: the DSS processes of this host by role, with their memory. Needs no DSS connection.

Default: a table grouped by role (count, RssAnon, RSS, CPU) with the top processes of each role (pid, label,
user, RssAnon, RSS). `--json`: `host.snapshot_to_json` (processes, roles, stats), each process with its `context`
from DSS's own records (`context.snapshot_to_json`: CRU events, cgroup paths, the tree). `--all` adds the
processes that are not DSS's (left out by default). `--pss` also reads PSS/USS (slower; same user or root).
`--interval S` scans twice, S seconds apart, so that CPU percentages are measured (otherwise null).
"""
import json
import sys
import time

from ..errors import ConfigError
from ..render import format_bytes


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
    if args.top < 0:
        raise ConfigError("--top", "must be >= 0, got %d" % args.top)
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
        out.write(format_table(snapshot, include_not_dss=args.all, top=args.top))
    return 0


def _cpu(value):
    return "" if value is None else "%.1f%%" % value


def format_table(snapshot, include_not_dss=False, top=3):
    """The scan as text: one line per role (count, RssAnon, RSS, CPU), then its top processes by RssAnon."""
    processes = [p for p in snapshot.processes if include_not_dss or p.role != "not_dss"]
    by_role = {}
    for p in processes:
        by_role.setdefault(p.role, []).append(p)
    lines = ["%-22s %6s %11s %11s %7s" % ("ROLE", "COUNT", "RSSANON", "RSS", "CPU")]
    order = sorted(by_role, key=lambda r: (-snapshot.roles[r].rss_anon_bytes, r))
    for role in order:
        totals = snapshot.roles[role]
        lines.append("%-22s %6d %11s %11s %7s" % (role, totals.count, format_bytes(totals.rss_anon_bytes),
                                                  format_bytes(totals.rss_bytes), _cpu(totals.cpu_percent)))
        members = sorted(by_role[role], key=lambda p: (-(p.rss_anon_bytes or 0), p.pid))
        for p in members[:top]:
            lines.append("  %8d  %-28s %-12s %11s %11s" % (
                p.pid, p.label[:28], (p.user or "?")[:12], format_bytes(p.rss_anon_bytes), format_bytes(p.rss_bytes)))
        if len(members) > top:
            lines.append("  %8s  (%d more)" % ("", len(members) - top))
    if not by_role:
        lines.append("(no DSS process found on this host; --all lists every process)")
    instances = sorted({p.instance for p in processes if p.instance})
    stats = snapshot.stats
    lines.append("")
    lines.append("instances: %s" % (", ".join(instances) or "-"))
    lines.append("scan: %d processes, %d DSS, %.0f ms CPU, %d unreadable, %d vanished" % (
        stats.seen, stats.classified, stats.cpu_seconds * 1000, stats.access_denied, stats.vanished))
    for c in snapshot.cgroups:
        lines.append("cgroup %s: %s of %s" % (c.path, format_bytes(c.usage_bytes),
                                              format_bytes(c.limit_bytes) if c.limit_bytes else "no limit"))
    return "\n".join(lines) + "\n"
