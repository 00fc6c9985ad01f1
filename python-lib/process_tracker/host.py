"""The host side: one psutil pass -> a Snapshot of frozen process records, the tree, roles and memory.

Records are the contract with the rest of the code (policy, joins, charts, rendering): no psutil object and no
raw command line ever leaves this module. Units are in field names.
"""
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple


@dataclass(frozen=True)
class ProcessRecord:
    """One process as seen in one scan. Identified by (pid, create_time): pids are reused."""

    pid: int
    ppid: int
    create_time: float  # epoch seconds, as psutil gives it
    name: str  # comm / process title's first word, never the full command line
    role: str  # a role id from roles.py (e.g. "jek", "jupyter_kernel", "not_dss")
    label: str  # short human label, e.g. "JEK", "kernel py-dku-venv-foo", "nginx worker"
    user: Optional[str]  # unix user, None when unreadable
    instance: Optional[str]  # DSS data directory (DIP_HOME) the process belongs to, None when not known
    rss_bytes: Optional[int]
    rss_anon_bytes: Optional[int]  # RssAnon: what DSS reports itself; never sum plain RSS as "used"
    pss_bytes: Optional[int] = None  # only when PSS/USS collection is on and readable
    uss_bytes: Optional[int] = None
    swap_bytes: Optional[int] = None
    cpu_percent: Optional[float] = None  # between this scan and the previous one; None on first sight
    num_threads: Optional[int] = None
    age_seconds: Optional[float] = None
    cgroup: Optional[str] = None  # the memory cgroup path from /proc/<pid>/cgroup
    ids: Mapping[str, object] = field(default_factory=dict)  # kernel_id, dip_home, xmx_bytes, port, ...

    @property
    def key(self) -> Tuple[int, float]:
        return (self.pid, self.create_time)


@dataclass(frozen=True)
class RoleTotals:
    count: int
    rss_anon_bytes: int
    rss_bytes: int
    cpu_percent: float


@dataclass(frozen=True)
class CgroupRecord:
    """A DSS cgroup's own memory figures: a separate series, never added to process sums."""

    path: str
    usage_bytes: Optional[int]
    limit_bytes: Optional[int]  # None when unlimited
    version: int  # 1 or 2


@dataclass(frozen=True)
class ScanStats:
    wall_seconds: float
    cpu_seconds: float
    seen: int
    new: int
    classified: int  # processes given a DSS role
    access_denied: int
    vanished: int  # processes that exited during the scan ("lost the race": counted, not an error)


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # epoch seconds
    hostname: str
    processes: Tuple[ProcessRecord, ...]
    roles: Dict[str, RoleTotals]
    cgroups: Tuple[CgroupRecord, ...]
    stats: ScanStats
