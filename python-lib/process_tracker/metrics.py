"""Prometheus metric families from records: a Snapshot (host), a Joined (host x DSS) and an Inventory (DSS).

Pure: no HTTP, no threads, no psutil. `families(view)` returns `prometheus_client` metric families; the exporter
(exporter.py) builds them once per scan or listing and every scrape serves the same objects.

Labels are bounded by construction (docs/prometheus.md, "Label cardinality"):
- never a pid; a DSS data directory is `dss_datadir` (never `instance`, which Prometheus sets per target);
- `role` comes from the role catalogue (roles.py, ~18 values); `kind` and `state` from DSS's activity kinds;
- activities (`project`, `kind`, `activity`, `user`) are the top `max_activity_series` by RssAnon; the rest are
  summed per kind into `activity="other"` (project and user empty), so there are at most
  `max_activity_series + len(kinds)` activity series per metric;
- cgroups are DSS cgroups only (a marker in their path, host.ScanOptions.cgroup_markers);
- DSS's pods on Kubernetes (pods.py, when configured) count in the per-role families with `where="pod"` (host
  processes: `where="host"`) and an empty `dss_datadir`; per node only in `dss_node_pods` and
  `dss_node_pod_rss_anon_bytes`, the top `max_pod_nodes` nodes by memory, the rest summed into node="other".
Every text label value passes `identifiers.safe_text` (control characters escaped, length bounded).
"""
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__
from .activities import Inventory
from .host import CgroupRecord, ProcessRecord, role_totals
from .identifiers import safe_text

OTHER = "other"
LABEL_CHARS = 120  # bound of a free-text label value (activity names)

ROLE_LABELS = ("dss_datadir", "role", "where")
HOST, POD = "host", "pod"  # the `where` label's values

# name -> (type, help, label names). The one table of what the exporter exposes (docs/prometheus.md lists it).
METRICS = {
    "dss_processes": ("gauge", "DSS processes (where=host; wrappers such as sudo are not counted) and DSS's pods "
                      "(where=pod) by data directory and role", ROLE_LABELS),
    "dss_process_rss_anon_bytes": ("gauge", "Anonymous resident memory (RssAnon, what DSS reports) of the "
                                   "role's processes; a pod's working set from the metrics API", ROLE_LABELS),
    "dss_process_rss_bytes": ("gauge", "Resident memory (VmRSS, shared pages counted in every process) of the "
                              "role's processes; a pod's working set from the metrics API", ROLE_LABELS),
    "dss_process_swap_bytes": ("gauge", "Swapped-out memory (VmSwap) of the role's processes (pods: 0)",
                               ROLE_LABELS),
    "dss_process_cpu_seconds": ("counter", "CPU time (user+system) used by the role's processes, measured between "
                                "the exporter's scans (pods: their CPU usage between pod listings)", ROLE_LABELS),
    "dss_jvm_xmx_bytes": ("gauge", "Largest -Xmx among the role's JVMs", ("dss_datadir", "role")),
    "dss_jvm_rss_to_xmx_ratio": ("gauge", "Highest RSS / -Xmx among the role's JVMs", ("dss_datadir", "role")),
    "dss_orphan_processes": ("gauge", "Kernels and webapp backends (processes, or pods) no DSS activity explains "
                             "(needs the DSS listing)", ROLE_LABELS),
    "dss_orphan_rss_anon_bytes": ("gauge", "RssAnon of the orphan processes and their children (a pod's working "
                                  "set)", ROLE_LABELS),
    "dss_node_pods": ("gauge", "DSS's pods per Kubernetes node (top nodes by memory; the rest as node=\"other\")",
                      ("node",)),
    "dss_node_pod_rss_anon_bytes": ("gauge", "Working set of DSS's pods per Kubernetes node (metrics API)",
                                    ("node",)),
    "dss_activity_rss_anon_bytes": ("gauge", "RssAnon of the processes of a DSS activity (top activities; the rest "
                                    "summed per kind as activity=\"other\")",
                                    ("dss_datadir", "project", "kind", "activity", "user")),
    "dss_activity_idle_seconds": ("gauge", "Seconds since a DSS activity's last activity (kernels), top "
                                  "activities only", ("dss_datadir", "project", "kind", "activity", "user")),
    "dss_activities": ("gauge", "DSS activities listed, by kind and state", ("dss_datadir", "kind", "state")),
    "dss_cgroup_memory_usage_bytes": ("gauge", "Memory usage of a DSS cgroup (its own figure, not a sum of "
                                      "processes)", ("cgroup",)),
    "dss_cgroup_memory_limit_bytes": ("gauge", "Memory limit of a DSS cgroup (absent when unlimited)", ("cgroup",)),
    "dss_cgroup_oom_kills": ("counter", "Processes the kernel's OOM killer killed in a DSS cgroup",
                             ("cgroup",)),
    "process_tracker_exporter_build_info": ("gauge", "The exporter's version (always 1)", ("version",)),
    "process_tracker_exporter_scans": ("counter", "Scans of the host's processes", ()),
    "process_tracker_exporter_scan_errors": ("counter", "Scans that failed (the previous scan is served)", ()),
    "process_tracker_exporter_scan_duration_seconds": ("gauge", "Wall time of the last scan", ()),
    "process_tracker_exporter_scan_cpu_seconds": ("counter", "CPU time spent scanning", ()),
    "process_tracker_exporter_last_scan_timestamp_seconds": ("gauge", "When the last scan was taken", ()),
    "process_tracker_exporter_scanned_processes": ("gauge", "Processes seen by the last scan (every process of "
                                                   "the host)", ()),
    "process_tracker_exporter_listings": ("counter", "Listings of DSS activities", ()),
    "process_tracker_exporter_listing_errors": ("counter", "Listings that failed or had failing calls", ()),
    "process_tracker_exporter_listing_age_seconds": ("gauge", "Age of the DSS listing used by the last scan", ()),
    "process_tracker_exporter_folded_activities": ("gauge", "Activities summed into activity=\"other\" to bound "
                                                   "the series", ()),
    "process_tracker_exporter_pod_listings": ("counter", "Listings of DSS's pods on Kubernetes", ()),
    "process_tracker_exporter_pod_listing_errors": ("counter", "Pod listings that failed, were refused or could not "
                                                    "reach the cluster (the last good pods are served)", ()),
    "process_tracker_exporter_pods_reachable": ("gauge", "1 when the last pod listing reached the cluster", ()),
}


@dataclass(frozen=True)
class Counters:
    """The exporter's running totals, as of one build of the families."""

    scans: int = 0
    scan_errors: int = 0
    scan_cpu_seconds: float = 0.0
    listings: int = 0
    listing_errors: int = 0
    pod_listings: int = 0
    pod_listing_errors: int = 0
    cpu_seconds: Mapping[Tuple[str, str, str], float] = field(default_factory=dict)  # (datadir, role, where) -> s
    oom_kills: Mapping[str, int] = field(default_factory=dict)  # cgroup path -> kills (the kernel's counter)


@dataclass(frozen=True)
class View:
    """Everything one build of the families reads. `records` are the DSS processes the exporter reports."""

    now: float
    records: Tuple[ProcessRecord, ...] = ()
    cgroups: Tuple[CgroupRecord, ...] = ()
    joined: Optional[object] = None  # joins.Joined when DSS was listed
    inventory: Optional[Inventory] = None
    listing_datadir: str = ""
    max_activity_series: int = 200
    counters: Counters = Counters()
    last_scan: Optional[object] = None  # host.ScanStats of the last scan
    last_scan_at: Optional[float] = None
    pods: Tuple[ProcessRecord, ...] = ()  # pods.PodRecord of DSS's pods (when the exporter lists them)
    pods_reachable: Optional[bool] = None  # None: pods are not listed
    pod_listed_at: Optional[float] = None  # when the last good pod listing was taken
    max_pod_nodes: int = 50

    @property
    def reported(self) -> Tuple[ProcessRecord, ...]:
        """The host's DSS processes, then DSS's pods."""
        return tuple(self.records) + tuple(self.pods)


def family(name):
    kind, doc, labels = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


def label(value):
    """A label value from host- or DSS-provided text: control characters escaped, bounded."""
    return safe_text(value, LABEL_CHARS) if value else ""


def datadir(record):
    return label(record.instance)


def where(record):
    """The `where` label: "pod" for a pod record (pods.PodRecord: it has a `pod_name`), else "host"."""
    return POD if getattr(record, "pod_name", None) else HOST


def role_key(record):
    """(dss_datadir, role, where) of a record: the key of the per-role families."""
    return (datadir(record), record.role, where(record))


def role_families(records, cpu_seconds):
    """Count, RssAnon, RSS, swap and CPU seconds per (dss_datadir, role, where) (host.role_totals per group)."""
    names = ("dss_processes", "dss_process_rss_anon_bytes", "dss_process_rss_bytes", "dss_process_swap_bytes")
    out = {name: family(name) for name in names}
    groups = {}
    for r in records:
        groups.setdefault((datadir(r), where(r)), []).append(r)
    for directory, place in sorted(groups):
        for role, t in role_totals(groups[(directory, place)]).items():
            key = [directory, role, place]
            out["dss_processes"].add_metric(key, t.count)
            out["dss_process_rss_anon_bytes"].add_metric(key, t.rss_anon_bytes)
            out["dss_process_rss_bytes"].add_metric(key, t.rss_bytes)
            out["dss_process_swap_bytes"].add_metric(key, t.swap_bytes)
    cpu = family("dss_process_cpu_seconds")
    for key, seconds in sorted(cpu_seconds.items()):
        cpu.add_metric(list(key), seconds)
    return list(out.values()) + [cpu]


def jvm_families(records):
    """The largest -Xmx and the highest RSS/-Xmx of each role's JVMs (processes whose command line gave -Xmx)."""
    xmx, ratio = {}, {}
    for r in records:
        limit = r.ids.get("xmx_bytes") if r.ids else None
        if not isinstance(limit, int) or limit <= 0:
            continue
        key = (datadir(r), r.role)
        xmx[key] = max(xmx.get(key, 0), limit)
        if r.rss_bytes is not None:
            ratio[key] = max(ratio.get(key, 0.0), r.rss_bytes / limit)
    xmx_family, ratio_family = family("dss_jvm_xmx_bytes"), family("dss_jvm_rss_to_xmx_ratio")
    for key in sorted(xmx):
        xmx_family.add_metric(list(key), xmx[key])
        if key in ratio:
            ratio_family.add_metric(list(key), round(ratio[key], 6))
    return [xmx_family, ratio_family]


def orphan_families(joined, records):
    """Orphan units per role, and the RssAnon of their subtrees (the orphan rows of the join)."""
    count, memory = family("dss_orphan_processes"), family("dss_orphan_rss_anon_bytes")
    if joined is None:
        return [count, memory]
    wanted = {r.key for r in records}
    counts, sizes = {}, {}
    for p in joined.orphans:
        if p.key in wanted:
            key = role_key(p)
            counts[key] = counts.get(key, 0) + 1
            sizes.setdefault(key, 0)
    for m in joined.rows:
        p = m.process
        if m.status == "orphan" and p.key in wanted:
            key = role_key(p)
            sizes[key] = sizes.get(key, 0) + (p.rss_anon_bytes or 0)
            counts.setdefault(key, 0)
    for key in sorted(counts):
        count.add_metric(list(key), counts[key])
        memory.add_metric(list(key), sizes[key])
    return [count, memory]


def activity_totals(joined, records, now):
    """{(project, kind, activity, user): [rss_anon_bytes, idle_seconds or None]} for the activities that explain
    reported processes (an activity's processes: its own, its descendants and its wrappers)."""
    wanted = {r.key for r in records}
    by_activity = {}
    for m in joined.matches:
        if m.process.key not in wanted:
            continue
        a = m.activity
        entry = by_activity.setdefault((a.kind, a.project_key, a.id), [a, 0])
        entry[1] += m.process.rss_anon_bytes or 0
    totals = {}
    for a, rss in by_activity.values():
        key = (label(a.project_key), a.kind, label(a.name) or label(a.id), label(a.owner))
        idle = max(now - a.last_activity_at, 0.0) if a.last_activity_at else None
        t = totals.setdefault(key, [0, None])  # two sessions of one notebook: one series, summed memory
        t[0] += rss
        if idle is not None:
            t[1] = idle if t[1] is None else min(t[1], idle)
    return totals


def activity_families(view):
    """The top activities by RssAnon with their idle time; the rest summed per kind into activity="other".
    Returns (families, folded count)."""
    memory, idle = family("dss_activity_rss_anon_bytes"), family("dss_activity_idle_seconds")
    if view.joined is None:
        return [memory, idle], 0
    totals = activity_totals(view.joined, view.reported, view.now)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    top, rest = ranked[:view.max_activity_series], ranked[view.max_activity_series:]
    directory = label(view.listing_datadir)
    for (project, kind, name, user), (rss, idle_seconds) in top:
        key = [directory, project, kind, name, user]
        memory.add_metric(key, rss)
        if idle_seconds is not None:
            idle.add_metric(key, round(idle_seconds, 3))
    other = {}
    for (_project, kind, _name, _user), (rss, _idle) in rest:
        other[kind] = other.get(kind, 0) + rss
    for kind in sorted(other):
        memory.add_metric([directory, "", kind, OTHER, ""], other[kind])
    return [memory, idle], len(rest)


def inventory_families(inventory, directory):
    """Counts of listed DSS activities by kind and state."""
    out = family("dss_activities")
    if inventory is None:
        return [out]
    counts = {}
    for a in inventory.activities:
        key = (a.kind, label(a.state) or "unknown")
        counts[key] = counts.get(key, 0) + 1
    for (kind, state) in sorted(counts):
        out.add_metric([directory, kind, state], counts[(kind, state)])
    return [out]


def node_families(pods, max_nodes):
    """DSS's pods and their working set per node: the top `max_nodes` nodes by memory, the rest as "other"."""
    count, memory = family("dss_node_pods"), family("dss_node_pod_rss_anon_bytes")
    totals = {}
    for p in pods:
        t = totals.setdefault(label(p.node) or "unscheduled", [0, 0])
        t[0] += 1
        t[1] += p.rss_anon_bytes or 0
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))
    shown = dict(ranked[:max_nodes])
    rest = ranked[max_nodes:]
    if rest:
        shown[OTHER] = [sum(t[0] for _, t in rest), sum(t[1] for _, t in rest)]
    for node in sorted(shown):
        count.add_metric([node], shown[node][0])
        memory.add_metric([node], shown[node][1])
    return [count, memory]


def cgroup_families(cgroups, oom_kills):
    usage, limit = family("dss_cgroup_memory_usage_bytes"), family("dss_cgroup_memory_limit_bytes")
    kills = family("dss_cgroup_oom_kills")
    for c in cgroups:
        path = label(c.path)
        if c.usage_bytes is not None:
            usage.add_metric([path], c.usage_bytes)
        if c.limit_bytes is not None:
            limit.add_metric([path], c.limit_bytes)
        if c.path in oom_kills:
            kills.add_metric([path], oom_kills[c.path])
    return [usage, limit, kills]


def self_families(view, folded):
    """The exporter's own figures."""
    c = view.counters
    values = {
        "process_tracker_exporter_scans": c.scans,
        "process_tracker_exporter_scan_errors": c.scan_errors,
        "process_tracker_exporter_scan_cpu_seconds": round(c.scan_cpu_seconds, 6),
        "process_tracker_exporter_listings": c.listings,
        "process_tracker_exporter_listing_errors": c.listing_errors,
        "process_tracker_exporter_folded_activities": folded,
        "process_tracker_exporter_pod_listings": c.pod_listings,
        "process_tracker_exporter_pod_listing_errors": c.pod_listing_errors,
    }
    if view.pods_reachable is not None:
        values["process_tracker_exporter_pods_reachable"] = int(view.pods_reachable)
    if view.last_scan is not None:
        values["process_tracker_exporter_scan_duration_seconds"] = view.last_scan.wall_seconds
        values["process_tracker_exporter_scanned_processes"] = view.last_scan.seen
    if view.last_scan_at is not None:
        values["process_tracker_exporter_last_scan_timestamp_seconds"] = view.last_scan_at
    if view.inventory is not None:
        values["process_tracker_exporter_listing_age_seconds"] = round(max(view.now - view.inventory.taken_at, 0), 3)
    out = []
    for name, value in values.items():
        f = family(name)
        f.add_metric([], value)
        out.append(f)
    info = family("process_tracker_exporter_build_info")
    info.add_metric([__version__], 1)
    return out + [info]


def families(view: View) -> list:
    """Every metric family for one View, in a stable order."""
    activity, folded = activity_families(view)
    return (role_families(view.reported, view.counters.cpu_seconds) + jvm_families(view.records)
            + orphan_families(view.joined, view.reported) + activity + node_families(view.pods, view.max_pod_nodes)
            + inventory_families(view.inventory, label(view.listing_datadir))
            + cgroup_families(view.cgroups, view.counters.oom_kills) + self_families(view, folded))


def series_count(fams: Sequence) -> int:
    return sum(len(f.samples) for f in fams)


def oom_kills(cgroup_root: str, record: CgroupRecord) -> Optional[int]:
    """The kernel's OOM-kill counter of a cgroup: `oom_kill` in memory.oom_control (v1) or memory.events (v2).
    None when unreadable or absent (kernels before 4.13)."""
    rel = record.path.lstrip("/")
    if record.version == 1:
        path = os.path.join(cgroup_root, "memory", rel, "memory.oom_control")
    else:
        path = os.path.join(cgroup_root, rel, "memory.events")
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("ascii", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "oom_kill" and parts[1].isdigit():
            return int(parts[1])
    return None

