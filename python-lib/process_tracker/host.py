"""The host side: one psutil pass -> a Snapshot of frozen process records, the tree, roles and memory.

Records are the contract with the rest of the code (policy, joins, charts, rendering): no psutil object and no
raw command line ever leaves this module. Units are in field names.

How a scan works (`Scanner.scan()`):
- ONE `psutil.process_iter(attrs=ATTRS, ad_value=None)` pass. ATTRS are what changes between scans and all come
  from one small /proc file (stat); memory is read after classification, from /proc/<pid>/statm or, for DSS
  processes, from /proc/<pid>/status (see below). What does not change for a process (its command line,
  name, user and parent) is read only when the scanner meets a new identity `(pid, create_time)`, and again on
  every scan while the process is younger than `young_seconds` (a title rewritten after start, a uid changed by a
  wrapper); the parent is re-read when the parent exits (re-parenting).
- The classification (roles.analyse) is cached per identity; roles are resolved over the tree (built once per
  scan from ppid) with roles.resolve, and a process's resolution is kept once it is past its young age: a DSS
  process re-parented to init (its JEK died) keeps its role.
- psutil caches `create_time` on the Process objects process_iter keeps between calls, so a pid reused between
  two scans would keep the old identity. Linux hands out pids cyclically: from /proc/sys/kernel/ns_last_pid and
  the fork count of /proc/stat, the scanner knows which pids may have been handed out since its previous scan,
  checks those with `Process.is_running()` (which re-reads the start time), and gives a reused pid a fresh
  identity and classification. When those files are unreadable, every pid is checked.
- For DSS processes (option `details="dss"`, the default), ONE read of /proc/<pid>/status every scan gives rss,
  RssAnon, swap and threads (statm is then not read), and /proc/<pid>/cgroup is read while the process is young
  (DSS places a process in its cgroup when it starts). `details="all"` does the same for every process. Other
  processes get rss and RssAnon from /proc/<pid>/statm. All three are world-readable and read with raw system
  calls (a third of the cost of psutil's memory_info).
- Memory: rss (VmRSS) and RssAnon (status's RssAnon, or resident - shared from statm: the same kernel counters,
  what DSS reports itself; statm also when status has no RssAnon line, kernels before 4.5), swap (VmSwap),
  optional PSS/USS (smaps_rollup through psutil's memory_full_info; off by default, same-uid or root only,
  ~10 ms per resident GiB), restricted to the top N DSS processes by RssAnon and/or to every Nth scan.
- A vanished process is counted (`vanished`), AccessDenied is counted (`access_denied`, processes with at least
  one unreadable value), zombies are counted; none of them fails the scan.
"""
import os
import pwd
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from . import roles as catalogue
from .errors import ConfigError

# what the psutil pass reads for every process: /proc/<pid>/stat (ppid, create_time, cpu_times, status). Memory
# comes after classification: /proc/<pid>/status for DSS processes, /proc/<pid>/statm for the others.
ATTRS = ("cpu_times", "status")
DETAILS_CHOICES = ("dss", "all")
UNLIMITED_BYTES = 1 << 60  # cgroup v1 reports "no limit" as a huge number
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")  # the unit of /proc/<pid>/statm


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
    ids: Mapping[str, object] = field(default_factory=dict)  # kernel_id, dip_home, xmx_bytes, port, code_env
    link: bool = False  # a transparent wrapper (sudo, execwrapper.sh, exec.py, sh/bash): its role is what it wraps
    zombie: bool = False

    @property
    def key(self) -> Tuple[int, float]:
        return (self.pid, self.create_time)


@dataclass(frozen=True)
class RoleTotals:
    count: int
    rss_anon_bytes: int
    rss_bytes: int
    cpu_percent: float
    swap_bytes: int = 0


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
    cpu_seconds: float  # CPU time of the scanning thread's process during the scan
    seen: int
    new: int  # identities (pid, create_time) not seen by the previous scans
    classified: int  # processes given a DSS role
    access_denied: int  # processes with at least one value unreadable for lack of privilege
    vanished: int  # processes that exited during the scan ("lost the race": counted, not an error)
    analysed: int = 0  # command lines read and classified this scan (new and young processes)
    pid_reused: int = 0  # pids found reused since the previous scan
    zombies: int = 0
    pss_collected: int = 0  # processes whose PSS/USS was read this scan
    scan_number: int = 0  # 1 for the scanner's first scan


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # epoch seconds
    hostname: str
    processes: Tuple[ProcessRecord, ...]
    roles: Dict[str, RoleTotals]
    cgroups: Tuple[CgroupRecord, ...]
    stats: ScanStats

    def by_pid(self) -> Dict[int, ProcessRecord]:
        return {p.pid: p for p in self.processes}

    def children(self) -> Dict[int, Tuple[int, ...]]:
        """{ppid: (child pids, ascending)} for the processes of this snapshot."""
        kids = {}
        for p in self.processes:
            if p.ppid != p.pid:
                kids.setdefault(p.ppid, []).append(p.pid)
        return {k: tuple(sorted(v)) for k, v in kids.items()}


@dataclass(frozen=True)
class ScanOptions:
    """Scanner options (keyword arguments of `Scanner`).

    pss: read PSS/USS (psutil memory_full_info, smaps_rollup) for DSS processes; off by default (cost ~10 ms per
      resident GiB, same-uid or root only).
    pss_top_n: only for the N DSS processes with the most RssAnon (None: all DSS processes).
    pss_every: only every Nth scan (1: every scan).
    young_seconds: processes younger than this are re-read and re-classified on every scan.
    details: "dss" (swap, threads, cgroup of DSS processes only) or "all" (every process).
    proc_root, cgroup_root: where /proc and the cgroup mount are, for the scanner's own reads (status, statm,
      cgroup, pid allocation; psutil itself reads psutil.PROCFS_PATH); tests point them at fake trees.
    cgroup_markers: a cgroup is a DSS cgroup when one of its path components is one of these (case-insensitive).
    """

    pss: bool = False
    pss_top_n: Optional[int] = None
    pss_every: int = 1
    young_seconds: float = 30.0
    details: str = "dss"
    proc_root: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    cgroup_markers: Tuple[str, ...] = ("DSS",)

    def __post_init__(self):
        if self.pss_top_n is not None and (not isinstance(self.pss_top_n, int) or self.pss_top_n < 1):
            raise ConfigError("pss_top_n", "must be a positive integer or None, got %r" % (self.pss_top_n,))
        if not isinstance(self.pss_every, int) or self.pss_every < 1:
            raise ConfigError("pss_every", "must be an integer >= 1, got %r" % (self.pss_every,))
        if not isinstance(self.young_seconds, (int, float)) or self.young_seconds < 0:
            raise ConfigError("young_seconds", "must be a number of seconds >= 0, got %r" % (self.young_seconds,))
        if self.details not in DETAILS_CHOICES:
            raise ConfigError("details", "must be one of %s, got %r" % (", ".join(DETAILS_CHOICES), self.details))
        if isinstance(self.cgroup_markers, str) or not all(isinstance(m, str) and m for m in self.cgroup_markers):
            raise ConfigError("cgroup_markers", "must be a tuple of non-empty strings")


# --- /proc and cgroup readers (pure over a root path, testable on fake trees) -----------------------------------


def _read_small(path: str, size: int = 16384) -> bytes:
    """The whole content of a small /proc file, with raw system calls (half the cost of open().read())."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size)
        if len(data) == size:  # larger than expected: read the rest
            chunks = [data]
            while True:
                chunk = os.read(fd, size)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def _status_field(data: bytes, key: bytes) -> Optional[int]:
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b"\n", start)
    try:
        return int(data[start:end if end >= 0 else None].split()[0])
    except (ValueError, IndexError):
        return None


def parse_status(data: bytes) -> Dict[str, int]:
    """Selected /proc/<pid>/status fields: threads, swap_bytes, rss_anon_bytes (kB lines converted to bytes)."""
    out = {}
    threads = _status_field(data, b"\nThreads:")
    if threads is not None:
        out["threads"] = threads
    for key, name in ((b"\nVmSwap:", "swap_bytes"), (b"\nRssAnon:", "rss_anon_bytes")):
        kib = _status_field(data, key)
        if kib is not None:
            out[name] = kib * 1024
    return out


def parse_proc_cgroup(data: bytes) -> Tuple[Optional[str], int]:
    """(memory cgroup path, version) from /proc/<pid>/cgroup: the v1 memory controller line, else the v2 line."""
    unified = None
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "memory" in controllers.split(","):
            return path, 1
        if hierarchy == "0" and controllers == "":
            unified = path
    return unified, 2


def _read_int_file(path) -> Optional[int]:
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == b"max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_cgroup(cgroup_root: str, path: str, version: int) -> Optional[CgroupRecord]:
    """The memory usage and limit of one cgroup: v1 memory.usage_in_bytes/limit_in_bytes under
    `<root>/memory/<path>`, v2 memory.current/memory.max under `<root>/<path>`. None when unreadable."""
    rel = path.lstrip("/")
    if version == 1:
        base = os.path.join(cgroup_root, "memory", rel)
        usage = _read_int_file(os.path.join(base, "memory.usage_in_bytes"))
        limit = _read_int_file(os.path.join(base, "memory.limit_in_bytes"))
    else:
        base = os.path.join(cgroup_root, rel)
        usage = _read_int_file(os.path.join(base, "memory.current"))
        limit = _read_int_file(os.path.join(base, "memory.max"))
    if usage is None and limit is None:
        return None
    if limit is not None and limit >= UNLIMITED_BYTES:
        limit = None
    return CgroupRecord(path=path, usage_bytes=usage, limit_bytes=limit, version=version)


def is_dss_cgroup(path: Optional[str], markers: Sequence[str]) -> bool:
    if not path:
        return False
    wanted = {m.lower() for m in markers}
    return any(part.lower() in wanted for part in path.split("/") if part)


def cgroup_totals(paths: Mapping[str, int], cgroup_root: str = "/sys/fs/cgroup") -> Tuple[CgroupRecord, ...]:
    """CgroupRecords for {cgroup path: version}, sorted by path; unreadable cgroups are left out."""
    out = []
    for path in sorted(paths):
        record = read_cgroup(cgroup_root, path, paths[path])
        if record is not None:
            out.append(record)
    return tuple(out)


# --- the scanner ---------------------------------------------------------------------------------------------


def read_allocations(proc_root: str = "/proc") -> Optional[Tuple[int, int, int]]:
    """(last pid allocated in this pid namespace, tasks forked since boot, pid_max), or None when unreadable."""
    try:
        with open(proc_root + "/sys/kernel/ns_last_pid", "rb") as f:
            last = int(f.read())
        with open(proc_root + "/sys/kernel/pid_max", "rb") as f:
            pid_max = int(f.read())
        forks = None
        with open(proc_root + "/stat", "rb") as f:
            for line in f:
                if line.startswith(b"processes "):
                    forks = int(line.split()[1])
                    break
    except (OSError, ValueError):
        return None
    if forks is None:
        return None
    return last, forks, pid_max


def reusable_pids(before, after):
    """Which pids may have been handed to a new task between two `read_allocations()` readings.

    Linux allocates pids cyclically (the next free pid after the last one, wrapping at pid_max to 300): a pid
    alive at the first reading can belong to another process at the second one only if the allocator passed
    it. Returns a predicate pid -> bool, or None when any pid may have been reused (a reading is missing, or
    enough tasks were forked to wrap around).
    """
    if before is None or after is None:
        return None
    last0, forks0, _ = before
    last1, forks1, pid_max = after
    if forks1 - forks0 >= pid_max - 301 or forks1 < forks0:
        return None
    if last1 >= last0:
        return lambda pid: last0 < pid <= last1
    return lambda pid: pid > last0 or pid <= last1


class _Known:
    """What the scanner keeps about one identity (pid, create_time) between scans. Never leaves this module."""

    __slots__ = ("create_time", "traits", "user", "resolved", "cpu_total", "ppid", "parent_start", "node", "cgroup")

    def __init__(self, create_time):
        self.create_time = create_time
        self.traits = None
        self.user = None
        self.resolved = None
        self.cpu_total = None
        self.ppid = 0
        self.parent_start = None
        self.node = None
        self.cgroup = None  # (path, version, DSS cgroup?) read while young, then kept


def _record(values):
    """A ProcessRecord from a dict of all its fields, without the generated __init__'s per-field setattr
    (3x faster at thousands per scan); the result equals ProcessRecord(**values) and stays frozen."""
    record = object.__new__(ProcessRecord)
    object.__setattr__(record, "__dict__", values)
    return record


class Scanner:
    """Scans the host. Keeps, between scans, per identity (pid, create_time): the classification, the user, the
    parent and the CPU times (for cpu_percent); nothing else. Not thread-safe: one scanner per sampling loop.

    `Scanner(pss=True, pss_top_n=10)` or `Scanner(ScanOptions(...))`. `clock` (epoch seconds) gives the
    snapshot's `taken_at` (injectable); process ages always use the real clock, as psutil's create_time does.
    """

    def __init__(self, options: Optional[ScanOptions] = None, clock: Callable[[], float] = time.time, **kwargs):
        if options is not None and kwargs:
            raise ConfigError("options", "give either a ScanOptions or keyword options, not both")
        if options is None:
            known = set(ScanOptions.__dataclass_fields__)
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise ConfigError(unknown[0], "unknown scanner option (known: %s)" % ", ".join(sorted(known)))
            options = ScanOptions(**kwargs)
        self.options = options
        self._clock = clock
        self._known = {}  # pid -> _Known
        self._users = {}  # uid -> name
        self._last_mono = None
        self._allocations = None
        self._scans = 0
        self._last_nodes = None
        self._last_resolved = None
        self._hostname = socket.gethostname()

    # -- per-process reads ------------------------------------------------------------------------------------

    def _user(self, uid):
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _read_static(self, proc, known, psutil):
        """Read the command line, name, user and parent of a new or young process, and classify it.

        Returns True when something was unreadable (AccessDenied). Raises psutil.NoSuchProcess when it is gone.
        """
        denied = False
        try:
            argv = proc.cmdline()
        except psutil.ZombieProcess:
            argv = []
        except psutil.AccessDenied:
            argv, denied = [], True
        try:
            name = proc.name()
        except (psutil.AccessDenied, psutil.ZombieProcess):
            name, denied = "", True
        try:
            known.user = self._user(proc.uids().real)
        except (psutil.AccessDenied, psutil.ZombieProcess):
            known.user, denied = None, True
        try:
            known.ppid = proc.ppid()
        except psutil.ZombieProcess:
            known.ppid = 0
        known.traits = catalogue.analyse(argv, name)
        known.resolved = None
        del argv  # the raw command line stops here
        return denied

    def _refresh(self, proc, known, check_identity, young_after, psutil):
        """Identity check and static reads of a new, young or possibly reused process.

        psutil keeps its Process objects (and their cached create_time) across process_iter calls: a pid the
        kernel handed to another process is checked with is_running() and read through a fresh Process. psutil
        may also find the reuse itself (NoSuchProcess on a live pid): then the same, once.
        Returns (proc, known, reused, analysed, denied). Raises psutil.NoSuchProcess when the process is gone.
        """
        pid = proc.pid
        original = known
        for attempt in (0, 1):
            known, reused = original, False
            try:
                if check_identity:
                    if not proc.is_running():
                        proc = psutil.Process(pid)
                    create_time = proc.create_time()
                    if known is not None and known.create_time != create_time:
                        known, reused = None, True
                if known is None:
                    known = _Known(create_time)
                denied = analysed = False
                if known.traits is None or known.create_time > young_after:
                    denied, analysed = self._read_static(proc, known, psutil), True
                return proc, known, reused, analysed, denied
            except psutil.NoSuchProcess:
                if attempt:
                    raise
                proc = psutil.Process(pid)  # NoSuchProcess again when the process is really gone
                check_identity = True
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_status(self, pid):
        """(rss bytes, RssAnon bytes, swap bytes, threads, denied) from ONE read of /proc/<pid>/status (VmRSS,
        RssAnon, VmSwap, Threads). rss and RssAnon are None when a line is missing (no RssAnon before Linux 4.5,
        no memory lines in a kernel thread): the caller then reads statm. Raises FileNotFoundError when gone."""
        try:
            data = _read_small("%s/%d/status" % (self.options.proc_root, pid))
        except PermissionError:
            return None, None, None, None, True
        rss, anon = _status_field(data, b"\nVmRSS:"), _status_field(data, b"\nRssAnon:")
        if rss is None or anon is None:
            rss = anon = None
        else:
            rss, anon = rss * 1024, anon * 1024
        swap = _status_field(data, b"\nVmSwap:")
        return rss, anon, (swap * 1024 if swap is not None else None), _status_field(data, b"\nThreads:"), False

    def _read_statm(self, pid):
        """(rss bytes, RssAnon bytes, denied) from /proc/<pid>/statm (what psutil's memory_info reads): resident
        and shared pages, RssAnon = resident - shared (shared = RssFile + RssShmem: the kernel counters of status).
        Raises FileNotFoundError when the process is gone."""
        try:
            fields = _read_small("%s/%d/statm" % (self.options.proc_root, pid)).split()
        except PermissionError:
            return None, None, True
        try:
            rss, shared = int(fields[1]) * PAGE_BYTES, int(fields[2]) * PAGE_BYTES
        except (ValueError, IndexError):
            return None, None, False
        return rss, max(rss - shared, 0), False

    def _read_cgroup(self, pid):
        """(path, version, DSS cgroup?, denied) from /proc/<pid>/cgroup. Raises FileNotFoundError when gone."""
        try:
            with open("%s/%d/cgroup" % (self.options.proc_root, pid), "rb") as f:
                path, version = parse_proc_cgroup(f.read())
        except PermissionError:
            return None, 2, False, True
        return path, version, is_dss_cgroup(path, self.options.cgroup_markers), False

    # -- the scan ---------------------------------------------------------------------------------------------

    def scan(self) -> Snapshot:
        """One pass over the host's processes. Never raises for a process that vanishes or is unreadable."""
        import psutil

        opts = self.options
        wall0, cpu0 = time.perf_counter(), time.process_time()
        taken_at, now, mono = self._clock(), time.time(), time.monotonic()  # ages use the real clock
        interval = None if self._last_mono is None else max(mono - self._last_mono, 1e-6)
        self._scans += 1
        allocations = read_allocations(opts.proc_root)
        may_be_reused = reusable_pids(self._allocations, allocations)
        self._allocations = allocations
        listed = set(psutil.pids())
        previous, current, yielded = self._known, {}, []
        rows = []  # (pid, proc, known, info, zombie, denied)
        young_after = now - opts.young_seconds
        new = analysed = reused = denied_count = zombies = vanished = 0

        for proc in psutil.process_iter(attrs=ATTRS, ad_value=None):
            info = proc.info
            pid = proc.pid
            yielded.append(pid)
            known = previous.get(pid)
            denied = None in info.values()
            suspect = known is None or may_be_reused is None or may_be_reused(pid)
            if suspect or known.create_time > young_after:
                try:
                    proc, known, was_reused, was_analysed, static_denied = self._refresh(
                        proc, known, suspect, young_after, psutil)
                except psutil.NoSuchProcess:
                    vanished += 1
                    continue
                if was_reused:
                    reused += 1
                if known.node is None:
                    new += 1
                analysed += was_analysed
                denied = denied or static_denied
            zombie = info["status"] == psutil.STATUS_ZOMBIE
            if zombie:
                zombies += 1
                denied = False
            current[pid] = known
            rows.append((pid, proc, known, info, zombie, denied))
        vanished += len(listed.difference(yielded))  # listed by psutil, gone before it read them
        self._known = current

        # the tree, once. A parent that exited re-parents its children (re-read their ppid); a parent younger
        # than its child is a reused pid, not the parent.
        nodes, settled, dropped = {}, {}, set()
        for pid, proc, known, _info, _zombie, _denied in rows:
            ppid = known.ppid
            parent = current.get(ppid) if ppid else None
            parent_start = parent.create_time if parent is not None else None
            if ppid and parent_start != known.parent_start and known.node is not None:
                try:
                    ppid = known.ppid = proc.ppid()
                except psutil.ZombieProcess:
                    ppid = known.ppid = 0
                except psutil.NoSuchProcess:
                    dropped.add(pid)
                    continue
                parent = current.get(ppid) if ppid else None
                parent_start = parent.create_time if parent is not None else None
            known.parent_start = parent_start
            tree_ppid = ppid if parent_start is not None and parent_start <= known.create_time + 1.0 else 0
            node = known.node
            if node is None or node.ppid != tree_ppid or node.traits is not known.traits:
                node = known.node = catalogue.Node(tree_ppid, known.traits)
            nodes[pid] = node
            if known.resolved is not None:
                settled[pid] = known.resolved
        if nodes == self._last_nodes:
            resolved = self._last_resolved  # same tree, same traits: same roles
        else:
            resolved = catalogue.resolve(nodes, settled)
            self._last_nodes, self._last_resolved = nodes, resolved

        records, details_for_all = [], opts.details == "all"
        cgroup_paths, totals = {}, {}
        per_cpu_second = 100.0 / interval if interval is not None else None
        for pid, _proc, known, info, zombie, denied in rows:
            if pid in dropped:
                vanished += 1
                continue
            res = resolved[pid]
            create_time = known.create_time
            if known.resolved is None and not res.link and create_time <= young_after:
                known.resolved = res  # settled: kept while this identity lives, even if re-parented
            cpu = info["cpu_times"]
            cpu_total = (cpu.user + cpu.system) if cpu is not None else None
            cpu_percent = None
            if per_cpu_second is not None and cpu_total is not None and known.cpu_total is not None:
                cpu_percent = max(cpu_total - known.cpu_total, 0.0) * per_cpu_second
            known.cpu_total = cpu_total
            rss = anon = swap = threads = cgroup = None
            is_dss = res.role != "not_dss"
            details = (is_dss or details_for_all) and not zombie
            try:
                if details:  # rss, RssAnon, swap and threads from one read of status
                    rss, anon, swap, threads, status_denied = self._read_status(pid)
                    denied = denied or status_denied
                    if known.cgroup is None or create_time > young_after:  # DSS places processes at start
                        path, version, dss_cgroup, cgroup_denied = self._read_cgroup(pid)
                        known.cgroup = (path, version, dss_cgroup)
                        denied = denied or cgroup_denied
                if rss is None:  # not DSS, or status without memory lines: statm
                    rss, anon, statm_denied = self._read_statm(pid)
                    denied = denied or statm_denied
            except (FileNotFoundError, ProcessLookupError):
                vanished += 1
                continue
            if denied:
                denied_count += 1
            if details:
                cgroup, version, dss_cgroup = known.cgroup
                if is_dss and dss_cgroup:
                    cgroup_paths[cgroup] = version
            traits = known.traits
            role = res.role
            t = totals.get(role)
            if t is None:
                t = totals[role] = [0, 0, 0, 0.0, 0]
            t[0] += 0 if res.link else 1  # as in role_totals: a wrapper is not one more process of its role
            t[1] += anon or 0
            t[2] += rss or 0
            t[3] += cpu_percent or 0.0
            t[4] += swap or 0
            records.append(_record({
                "pid": pid, "ppid": known.ppid, "create_time": create_time, "name": traits.name, "role": role,
                "label": res.label, "user": known.user, "instance": res.instance, "rss_bytes": rss,
                "rss_anon_bytes": anon, "pss_bytes": None, "uss_bytes": None, "swap_bytes": swap,
                "cpu_percent": cpu_percent, "num_threads": threads, "age_seconds": max(now - create_time, 0.0),
                "cgroup": cgroup, "ids": traits.ids, "link": res.link, "zombie": zombie,
            }))

        pss_collected = 0
        if opts.pss and (self._scans - 1) % opts.pss_every == 0:
            records, pss_collected, pss_denied = self._collect_pss(records, psutil)
            denied_count += pss_denied
        self._last_mono = mono
        cgroups = cgroup_totals(cgroup_paths, opts.cgroup_root)
        stats = ScanStats(
            wall_seconds=round(time.perf_counter() - wall0, 6), cpu_seconds=round(time.process_time() - cpu0, 6),
            seen=len(records), new=new, classified=sum(1 for r in records if r.role != "not_dss"),
            access_denied=denied_count, vanished=vanished, analysed=analysed, pid_reused=reused,
            zombies=zombies, pss_collected=pss_collected, scan_number=self._scans,
        )
        return Snapshot(taken_at=taken_at, hostname=self._hostname, processes=tuple(records), roles=_totals(totals),
                        cgroups=cgroups, stats=stats)

    def _collect_pss(self, records, psutil):
        """PSS/USS for the chosen DSS processes. Returns (records, collected, access denied)."""
        candidates = [r for r in records if r.role != "not_dss" and not r.zombie]
        if self.options.pss_top_n is not None:
            candidates.sort(key=lambda r: -(r.rss_anon_bytes or 0))
            candidates = candidates[: self.options.pss_top_n]
        values, denied = {}, 0
        for record in candidates:
            try:
                proc = psutil.Process(record.pid)
                if proc.create_time() != record.create_time:
                    continue
                full = proc.memory_full_info()
            except psutil.AccessDenied:
                denied += 1
                continue
            except psutil.NoSuchProcess:  # includes zombies
                continue
            values[record.pid] = (getattr(full, "pss", None), getattr(full, "uss", None))
        if not values:
            return records, 0, denied
        out = []
        for r in records:
            got = values.get(r.pid)
            if got is not None:
                r = replace(r, pss_bytes=got[0], uss_bytes=got[1])
            out.append(r)
        return out, len(values), denied


def role_totals(records: Sequence[ProcessRecord]) -> Dict[str, RoleTotals]:
    """Per-role count, RssAnon, RSS, CPU% and swap totals of `records`, roles in catalogue order.

    Transparent wrappers (`link`: sudo, execwrapper.sh, exec.py, shells) add their memory and CPU to the role
    they wrap but are not counted as processes of it: a UIF kernel is one kernel, not three.
    """
    acc = {}
    for r in records:
        t = acc.get(r.role)
        if t is None:
            t = acc[r.role] = [0, 0, 0, 0.0, 0]
        t[0] += 0 if r.link else 1
        t[1] += r.rss_anon_bytes or 0
        t[2] += r.rss_bytes or 0
        t[3] += r.cpu_percent or 0.0
        t[4] += r.swap_bytes or 0
    return _totals(acc)


def _totals(acc):
    return {role: RoleTotals(acc[role][0], acc[role][1], acc[role][2], round(acc[role][3], 2), acc[role][4])
            for role in catalogue.sequence_roles(acc)}


# --- the documented JSON shape ---------------------------------------------------------------------------------


def process_to_json(p: ProcessRecord) -> Dict[str, object]:
    """The documented JSON of one process (ids restricted to the catalogue's id names)."""
    return {
        "pid": p.pid, "ppid": p.ppid, "create_time": p.create_time, "role": p.role, "label": p.label,
        "user": p.user, "instance": p.instance, "rss_bytes": p.rss_bytes, "rss_anon_bytes": p.rss_anon_bytes,
        "pss_bytes": p.pss_bytes, "cpu_percent": p.cpu_percent, "ids": catalogue.ids_dict(p.ids),
    }


def snapshot_to_json(snapshot: Snapshot, include_not_dss: bool = False) -> Dict[str, object]:
    """Exactly `{"processes": [...], "roles": {role: {count, rss_anon_bytes, rss_bytes}}, "stats": {...}}`.

    Each process has pid, ppid, create_time, role, label, user, instance, rss_bytes, rss_anon_bytes, pss_bytes
    (null unless collected), cpu_percent (null on a first scan) and ids. not_dss processes (and their role
    total) are left out unless `include_not_dss`. `stats` is the ScanStats.
    """
    processes = [p for p in snapshot.processes if include_not_dss or p.role != "not_dss"]
    roles = {
        role: {"count": t.count, "rss_anon_bytes": t.rss_anon_bytes, "rss_bytes": t.rss_bytes}
        for role, t in snapshot.roles.items() if include_not_dss or role != "not_dss"
    }
    return {"processes": [process_to_json(p) for p in processes], "roles": roles, "stats": asdict(snapshot.stats)}
