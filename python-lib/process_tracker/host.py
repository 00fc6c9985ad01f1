"""The host side: one /proc pass -> a Snapshot of frozen process records, the tree, roles and memory.

Records are the contract with the rest of the code (policy, joins, charts, rendering): no psutil object and no
raw command line ever leaves this module. Units are in field names.

How a scan works (`Scanner.scan()`):
- ONE read of /proc/<pid>/stat per listed process, with raw system calls (no psutil object): state, CPU times
  and start ticks, what changes between scans. Memory is read after classification, from /proc/<pid>/statm or,
  for DSS processes, from /proc/<pid>/status (see below). What does not change for a process (its command line,
  name, user and parent) is read through psutil only when the scanner meets a new identity: a pid not seen
  before, or a known pid whose start ticks changed (the pid was reused: a fresh identity and classification);
  again on every scan while the process is younger than `young_seconds` (a title rewritten after start, a uid
  changed by a wrapper); the parent is re-read when the parent exits (re-parenting). A process whose stat is
  unreadable (hidepid) goes through psutil every scan, which says what it can read.
- The classification (roles.analyse) is cached per identity; roles are resolved over the tree (built once per
  scan from ppid) with roles.resolve, and a process's resolution is kept once it is past its young age: a DSS
  process re-parented to init (its JEK died) keeps its role.
- The identity `(pid, created_at)` keeps psutil's create_time of the first sight; the start ticks read every
  scan are what tells a reused pid (psutil caches create_time on its Process objects, so a pid reused between
  two scans would keep the old identity there).
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
  one unreadable value), zombies are counted; none of them fails the scan. A process of which nothing can be read
  (not even its start time: another user's process under /proc's `hidepid`) is left out like a vanished one and
  counted (`unreadable`), with the reason (`unreadable_reason`, hidepid read from /proc/self/mountinfo).
- Names are the kernel's comm (/proc/<pid>/comm), never psutil's name(), which extends a 15-character comm with
  argv[0] (a program path may hold a key). A DIP_HOME named by a command line counts for the instance only when
  it looks like a DSS data directory (`looks_like_data_dir`, checked once per directory) or a DSS JVM names it.
- The phases of `scan()`: read (the stat pass, identities, static reads and classification of new and young
  processes) -> tree (ppid, re-parenting, roles.resolve) -> measure (memory, CPU, cgroups, role sums).
"""
import os
import pwd
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from . import roles as catalogue
from .errors import ConfigError

DETAILS_CHOICES = ("dss", "all")
UNLIMITED_BYTES = 1 << 60  # cgroup v1 reports "no limit" as a huge number
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")  # the unit of /proc/<pid>/statm


@dataclass(frozen=True)
class ProcessRecord:
    """One process as seen in one scan. Identified by (pid, created_at): pids are reused."""

    pid: int
    ppid: int
    created_at: float  # epoch seconds: psutil's create_time
    name: str  # the kernel's comm (15 bytes, safe charset), never argv[0] nor the command line
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
        return (self.pid, self.created_at)

    @property
    def username(self) -> Optional[str]:
        """The unix user (same as `user`), under the name psutil uses."""
        return self.user


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
    new: int  # identities (pid, created_at) not seen by the previous scans
    classified: int  # processes given a DSS role
    access_denied: int  # processes with at least one value unreadable for lack of privilege
    vanished: int  # processes that exited during the scan ("lost the race": counted, not an error)
    analysed: int = 0  # command lines read and classified this scan (new and young processes)
    pid_reused: int = 0  # pids found reused since the previous scan
    zombies: int = 0
    pss_collected: int = 0  # processes whose PSS/USS was read this scan
    scan_number: int = 0  # 1 for the scanner's first scan
    unreadable: int = 0  # processes listed but not readable at all (not even their identity): left out, counted
    # why processes were unreadable or hidden: "hidepid=noaccess" / "hidepid=invisible" / "hidepid=ptraceable"
    # (/proc hides other users' processes from this scanner; with invisible they are not even listed, so not
    # counted), "other users' processes" (unreadable without hidepid), "" (nothing hidden)
    unreadable_reason: str = ""


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
    proc_root, cgroup_root: where /proc and the cgroup mount are, for the scanner's own reads of status, statm
      and cgroup (the listing and the stat pass, psutil itself, the comm and the hidepid check read
      psutil.PROCFS_PATH); tests point them at fake trees.
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


def _read_small(path: str, size: int = 4096) -> bytes:
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's times


def _parse_stat(data: bytes) -> Tuple[bytes, float, bool]:
    """(start ticks, user + system CPU seconds, zombie?) from /proc/<pid>/stat. The CPU seconds are computed as
    psutil computes cpu_times().user + .system (same float operations, same value); the start ticks identify the
    process (they never change for a live process; a reused pid has new ones)."""
    fields = data[data.rfind(b")") + 2:].split()  # comm, in parentheses, may hold spaces and parentheses
    return fields[19], float(fields[11]) / CLOCK_TICKS + float(fields[12]) / CLOCK_TICKS, fields[0] == b"Z"


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
    """(last pid allocated in this pid namespace, tasks forked since boot, pid_max), or None when unreadable.

    With `reusable_pids`, what tells which pids may have been reused between two readings without reading each
    process. The Scanner no longer needs it (it reads every process's start ticks in its stat pass, an exact
    check); kept as a tested helper."""
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
    """What the scanner keeps about one identity (pid, created_at) between scans. Never leaves this module."""

    __slots__ = ("created_at", "start", "traits", "user", "resolved", "cpu_total", "ppid", "parent_start", "node",
                 "cgroup")

    def __init__(self, created_at):
        self.created_at = created_at
        self.start = None  # start ticks from /proc/<pid>/stat: the identity check of the steady scans
        self.traits = None
        self.user = None
        self.resolved = None
        self.cpu_total = None
        self.ppid = 0
        self.parent_start = None
        self.node = None
        self.cgroup = None  # (path, version, DSS cgroup?) read while young, then kept


class _Row:
    """One process within one scan, from the read phase to the measure phase (`proc`: the psutil Process when it
    was read through psutil this scan, else None; `cpu_total`: user + system CPU seconds, None when unreadable)."""

    __slots__ = ("pid", "proc", "known", "cpu_total", "zombie", "denied")

    def __init__(self, pid, proc, known, cpu_total, zombie, denied):
        self.pid, self.proc, self.known, self.cpu_total = pid, proc, known, cpu_total
        self.zombie, self.denied = zombie, denied


class _Counts:
    """The counters of one scan (ScanStats's per-process counts)."""

    __slots__ = ("new", "analysed", "reused", "denied", "zombies", "vanished", "unreadable")

    def __init__(self):
        self.new = self.analysed = self.reused = self.denied = self.zombies = self.vanished = self.unreadable = 0


class _RoleSums:
    """Per-role count, RssAnon, RSS, CPU% and swap sums: the one accumulator of `Scanner.scan` and `role_totals`.

    A transparent wrapper (`link`: sudo, execwrapper.sh, exec.py, shells) adds its memory and CPU to the role it
    wraps but is not one more process of it: a UIF kernel is one kernel, not three.
    """

    __slots__ = ("_sums",)

    def __init__(self):
        self._sums = {}

    def add(self, role, link, rss_anon_bytes, rss_bytes, cpu_percent, swap_bytes):
        s = self._sums.get(role)
        if s is None:
            s = self._sums[role] = [0, 0, 0, 0.0, 0]
        if not link:
            s[0] += 1
        s[1] += rss_anon_bytes or 0
        s[2] += rss_bytes or 0
        s[3] += cpu_percent or 0.0
        s[4] += swap_bytes or 0

    def totals(self) -> Dict[str, RoleTotals]:
        """{role: RoleTotals}, roles in catalogue order."""
        sums = self._sums
        return {role: RoleTotals(sums[role][0], sums[role][1], sums[role][2], round(sums[role][3], 2), sums[role][4])
                for role in catalogue.sequence_roles(sums)}


def _record(values):
    """A ProcessRecord from a dict of all its fields, without the generated __init__'s per-field setattr
    (3x faster at thousands per scan); the result equals ProcessRecord(**values) and stays frozen."""
    record = object.__new__(ProcessRecord)
    object.__setattr__(record, "__dict__", values)
    return record


def looks_like_data_dir(path: str) -> bool:
    """Does `path` look like a DSS data directory (it holds `install-support/` or `bin/env-default.sh`)? An
    unreadable directory does not (the catalogue still trusts one that a DSS JVM names in its classpath)."""
    return os.path.isdir(os.path.join(path, "install-support")) or os.path.isfile(
        os.path.join(path, "bin", "env-default.sh"))


HIDEPID_MODES = {"0": "off", "1": "noaccess", "2": "invisible", "4": "ptraceable"}


def read_hidepid(procfs_path: str = "/proc", euid: Optional[int] = None,
                 gids: Optional[Sequence[int]] = None) -> Optional[str]:
    """The hidepid mode of the proc file system mounted at `procfs_path` ("noaccess", "invisible", "ptraceable"),
    from its mount options in <procfs_path>/self/mountinfo; None when off, when this process is exempt (euid 0,
    or a member of the mount's `gid=` group; `euid` and `gids` default to this process's), or unreadable."""
    try:
        with open(os.path.join(procfs_path, "self", "mountinfo"), "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    where = os.path.realpath(procfs_path)
    for line in reversed(lines):  # the last mount on a path is the visible one
        fields = line.split(" ")
        if len(fields) < 10 or fields[4] != where or " - proc " not in line:
            continue
        options = dict(o.partition("=")[::2] for o in line.split(" - ", 1)[1].split(" ")[-1].split(","))
        mode = HIDEPID_MODES.get(options.get("hidepid", "0"), options.get("hidepid"))
        gid = int(options["gid"]) if options.get("gid", "").isdigit() else None
        euid = os.geteuid() if euid is None else euid
        gids = [os.getegid()] + os.getgroups() if gids is None else gids
        exempt = euid == 0 or (gid is not None and gid in gids)
        return None if mode in (None, "off") or exempt else mode
    return None


class Scanner:
    """Scans the host. Keeps, between scans, per identity (pid, created_at): the classification, the user, the
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
        self._data_dirs = {}  # path -> looks like a DSS data directory (checked once per directory)
        self._hidepid = None  # (procfs path, hidepid mode or None), read once
        self._last_mono = None
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

    def _data_dir(self, path):
        ok = self._data_dirs.get(path)
        if ok is None:
            if len(self._data_dirs) >= 4096:  # bounded: command lines may name any number of directories
                self._data_dirs.clear()
            ok = self._data_dirs[path] = looks_like_data_dir(path)
        return ok

    @staticmethod
    def _read_comm(pid, psutil):
        """The kernel's name of the process (/proc/<pid>/comm, 15 bytes), never psutil's name(), which extends a
        15-character comm with argv[0]. None when unreadable; raises psutil.NoSuchProcess when gone."""
        try:
            data = _read_small("%s/%d/comm" % (psutil.PROCFS_PATH, pid), 256)
        except PermissionError:
            return None
        except (FileNotFoundError, ProcessLookupError):
            raise psutil.NoSuchProcess(pid) from None
        return data.rstrip(b"\n")[:15].decode("utf-8", "ignore")

    def _read_static(self, proc, known, psutil):
        """Read the command line, name and user of a new or young process, and its parent when new, and classify it.
        (A young process's parent changes only when the parent exits: the tree phase re-reads it then.)

        Returns True when something was unreadable (AccessDenied). Raises psutil.NoSuchProcess when it is gone and
        psutil.AccessDenied when its parent cannot be read (then nothing of it can: hidepid).
        """
        denied = False
        new = known.traits is None
        try:
            argv = proc.cmdline()
        except psutil.ZombieProcess:
            argv = []
        except psutil.AccessDenied:
            argv, denied = [], True
        name = self._read_comm(proc.pid, psutil)
        if name is None:
            name, denied = "", True
        try:
            known.user = self._user(proc.uids().real)
        except (psutil.AccessDenied, psutil.ZombieProcess):
            known.user, denied = None, True
        if new:
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

        `proc` is a psutil Process made for the pid this scan; with `check_identity` it is checked with
        is_running() and its create_time compared with the known identity's (a different one: the pid was reused,
        a fresh identity). psutil may also find a reuse itself (NoSuchProcess on a live pid): then the same, once.
        Returns (proc, known, reused, analysed, denied). Raises psutil.NoSuchProcess when the process is gone,
        psutil.AccessDenied when its identity cannot be read (another user's process under hidepid).
        """
        pid = proc.pid
        original = known
        for attempt in (0, 1):
            known, reused = original, False
            try:
                if check_identity:
                    if not proc.is_running():
                        proc = psutil.Process(pid)
                    created_at = proc.create_time()
                    if known is not None and known.created_at != created_at:
                        known, reused = None, True
                if known is None:
                    known = _Known(created_at)
                denied = analysed = False
                if known.traits is None or known.created_at > young_after:
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

    # -- the scan: read -> tree -> measure ----------------------------------------------------------------------

    def scan(self) -> Snapshot:
        """One pass over the host's processes. Never raises for a process that vanishes or is unreadable."""
        import psutil

        opts = self.options
        wall0, cpu0 = time.perf_counter(), time.process_time()
        taken_at, now, mono = self._clock(), time.time(), time.monotonic()  # ages use the real clock
        interval = None if self._last_mono is None else max(mono - self._last_mono, 1e-6)
        self._scans += 1
        counts = _Counts()
        rows = self._read_phase(psutil, now - opts.young_seconds, counts)
        resolved = self._tree_phase(rows, psutil, counts)
        records, cgroup_paths, sums = self._measure_phase(rows, resolved, now, interval, counts)
        pss_collected = 0
        if opts.pss and (self._scans - 1) % opts.pss_every == 0:
            records, pss_collected, pss_denied = self._collect_pss(records, psutil)
            counts.denied += pss_denied
        self._last_mono = mono
        stats = ScanStats(
            wall_seconds=round(time.perf_counter() - wall0, 6), cpu_seconds=round(time.process_time() - cpu0, 6),
            seen=len(records), new=counts.new, classified=sum(1 for r in records if r.role != "not_dss"),
            access_denied=counts.denied, vanished=counts.vanished, analysed=counts.analysed,
            pid_reused=counts.reused, zombies=counts.zombies, pss_collected=pss_collected, scan_number=self._scans,
            unreadable=counts.unreadable, unreadable_reason=self._unreadable_reason(counts.unreadable, psutil),
        )
        return Snapshot(taken_at=taken_at, hostname=self._hostname, processes=tuple(records), roles=sums.totals(),
                        cgroups=cgroup_totals(cgroup_paths, opts.cgroup_root), stats=stats)

    def _read_phase(self, psutil, young_after, counts):
        """ONE read of /proc/<pid>/stat per listed process (state, CPU times, start ticks): a row per readable
        process. A known identity (same pid and start ticks) past its young age is taken as it is; a new, young
        or reused one, or one whose stat is unreadable, is read through psutil and classified (`_refresh`).
        Vanished and unreadable processes are counted."""
        procfs = psutil.PROCFS_PATH
        previous, current, rows = self._known, {}, []
        for pid in sorted(int(name) for name in os.listdir(procfs) if name.isdigit()):
            try:
                stat = _parse_stat(_read_small("%s/%d/stat" % (procfs, pid)))
            except (FileNotFoundError, ProcessLookupError):
                counts.vanished += 1
                continue
            except PermissionError:  # hidepid: read through psutil, which says what it can
                stat = None
            known = previous.get(pid)
            start, cpu_total, zombie = stat if stat is not None else (None, None, False)
            proc, static_denied = None, False
            if known is None or start is None or known.start != start or known.created_at > young_after:
                try:
                    proc, known, static_denied = self._slow_read(pid, known, start, young_after, psutil, counts)
                except psutil.NoSuchProcess:
                    counts.vanished += 1
                    continue
                except psutil.AccessDenied:  # nothing readable, not even its identity: left out, like a vanished one
                    counts.unreadable += 1
                    continue
            denied = stat is None or static_denied
            if zombie:
                counts.zombies += 1
                denied = False
            current[pid] = known
            rows.append(_Row(pid, proc, known, cpu_total, zombie, denied))
        self._known = current
        return rows

    def _slow_read(self, pid, known, start, young_after, psutil, counts):
        """A new, young or reused identity (or an unreadable stat) through psutil: identity check, static reads and
        classification. Returns (psutil Process, known, something unreadable?). Raises psutil.NoSuchProcess or
        psutil.AccessDenied as `_refresh` does."""
        suspect = known is None or start is None or known.start != start
        proc, known, reused, analysed, denied = self._refresh(psutil.Process(pid), known, suspect, young_after, psutil)
        known.start = start
        counts.reused += reused
        counts.new += known.node is None
        counts.analysed += analysed
        return proc, known, denied

    def _tree_phase(self, rows, psutil, counts):
        """{pid: Resolved} over the tree, built once from ppid. A parent that exited re-parents its children (their
        ppid is re-read; a row whose process vanished or became unreadable then is removed and counted); a parent
        younger than its child is a reused pid, not the parent."""
        current = self._known
        nodes, settled, dropped = {}, {}, set()
        for row in rows:
            known = row.known
            ppid = known.ppid
            parent = current.get(ppid) if ppid else None
            parent_start = parent.created_at if parent is not None else None
            if ppid and parent_start != known.parent_start and known.node is not None:
                ppid = self._reparent(row, psutil, counts)
                if ppid is None:
                    dropped.add(row.pid)
                    continue
                parent = current.get(ppid) if ppid else None
                parent_start = parent.created_at if parent is not None else None
            known.parent_start = parent_start
            tree_ppid = ppid if parent_start is not None and parent_start <= known.created_at + 1.0 else 0
            node = known.node
            if node is None or node.ppid != tree_ppid or node.traits is not known.traits:
                node = known.node = catalogue.Node(tree_ppid, known.traits)
            nodes[row.pid] = node
            if known.resolved is not None:
                settled[row.pid] = known.resolved
        if dropped:
            rows[:] = [row for row in rows if row.pid not in dropped]
        if nodes != self._last_nodes:  # same tree, same traits: same roles
            self._last_resolved = catalogue.resolve(nodes, settled, data_dir=self._data_dir)
            self._last_nodes = nodes
        return self._last_resolved

    @staticmethod
    def _reparent(row, psutil, counts):
        """The re-read parent pid of a process whose parent exited (0 for a zombie), None when it is gone or
        unreadable (counted)."""
        try:
            row.known.ppid = (row.proc if row.proc is not None else psutil.Process(row.pid)).ppid()
        except psutil.ZombieProcess:
            row.known.ppid = 0
        except psutil.NoSuchProcess:
            counts.vanished += 1
            return None
        except psutil.AccessDenied:
            counts.unreadable += 1
            return None
        return row.known.ppid

    def _measure_phase(self, rows, resolved, now, interval, counts):
        """Records (memory, CPU, details), the DSS cgroups to read and the role sums. Memory is read after
        classification: /proc/<pid>/status for DSS processes (and all with details="all"), statm otherwise."""
        young_after = now - self.options.young_seconds
        details_for_all = self.options.details == "all"
        per_cpu_second = 100.0 / interval if interval is not None else None
        records, cgroup_paths, sums = [], {}, _RoleSums()
        for row in rows:
            res = resolved[row.pid]
            known = row.known
            if known.resolved is None and not res.link and known.created_at <= young_after:
                known.resolved = res  # settled: kept while this identity lives, even if re-parented
            is_dss = res.role != "not_dss"
            details = (is_dss or details_for_all) and not row.zombie
            try:
                rss, anon, swap, threads, denied = self._memory(row, details, young_after)
            except (FileNotFoundError, ProcessLookupError):
                counts.vanished += 1
                continue
            if denied or row.denied:
                counts.denied += 1
            cgroup = None
            if details:
                cgroup, version, dss_cgroup = known.cgroup
                if is_dss and dss_cgroup:
                    cgroup_paths[cgroup] = version
            cpu_percent = self._cpu_percent(row, per_cpu_second)
            sums.add(res.role, res.link, anon, rss, cpu_percent, swap)
            traits = known.traits
            records.append(_record({
                "pid": row.pid, "ppid": known.ppid, "created_at": known.created_at, "name": traits.name,
                "role": res.role, "label": res.label, "user": known.user, "instance": res.instance,
                "rss_bytes": rss, "rss_anon_bytes": anon, "pss_bytes": None, "uss_bytes": None, "swap_bytes": swap,
                "cpu_percent": cpu_percent, "num_threads": threads, "age_seconds": max(now - known.created_at, 0.0),
                "cgroup": cgroup, "ids": traits.ids, "link": res.link, "zombie": row.zombie,
            }))
        return records, cgroup_paths, sums

    def _memory(self, row, details, young_after):
        """(rss, RssAnon, swap, threads, denied) of a row: with `details`, one read of status (and of cgroup while
        the process is young: DSS places a process in its cgroup when it starts); statm when status has no memory
        lines or without details. Raises FileNotFoundError when the process is gone."""
        rss = anon = swap = threads = None
        denied = False
        if details:
            rss, anon, swap, threads, denied = self._read_status(row.pid)
            known = row.known
            if known.cgroup is None or known.created_at > young_after:
                path, version, dss_cgroup, cgroup_denied = self._read_cgroup(row.pid)
                known.cgroup = (path, version, dss_cgroup)
                denied = denied or cgroup_denied
        if rss is None:  # not DSS, or status without memory lines: statm
            rss, anon, statm_denied = self._read_statm(row.pid)
            denied = denied or statm_denied
        return rss, anon, swap, threads, denied

    @staticmethod
    def _cpu_percent(row, per_cpu_second):
        """CPU % of one core since the previous scan (None on first sight); remembers this scan's CPU time."""
        cpu_total = row.cpu_total
        known = row.known
        cpu_percent = None
        if per_cpu_second is not None and cpu_total is not None and known.cpu_total is not None:
            cpu_percent = max(cpu_total - known.cpu_total, 0.0) * per_cpu_second
        known.cpu_total = cpu_total
        return cpu_percent

    def _unreadable_reason(self, unreadable, psutil):
        """Why processes could not be read: "hidepid=<mode>" when /proc hides other users' processes from this
        scanner (read once per scanner and procfs path), "other users' processes" when some were unreadable
        without hidepid, "" when nothing was hidden."""
        if self._hidepid is None or self._hidepid[0] != psutil.PROCFS_PATH:
            self._hidepid = (psutil.PROCFS_PATH, read_hidepid(psutil.PROCFS_PATH))
        if self._hidepid[1]:
            return "hidepid=" + self._hidepid[1]
        return "other users' processes" if unreadable else ""

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
                if proc.create_time() != record.created_at:
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
    """Per-role count, RssAnon, RSS, CPU% and swap totals of `records`, roles in catalogue order (see _RoleSums:
    a transparent wrapper adds its figures to the role it wraps but is not counted as one of its processes)."""
    sums = _RoleSums()
    for r in records:
        sums.add(r.role, r.link, r.rss_anon_bytes, r.rss_bytes, r.cpu_percent, r.swap_bytes)
    return sums.totals()


# --- the documented JSON shape ---------------------------------------------------------------------------------


def process_to_json(p: ProcessRecord) -> Dict[str, object]:
    """The documented JSON of one process (ids restricted to the catalogue's id names)."""
    return {
        "pid": p.pid, "ppid": p.ppid, "create_time": p.created_at, "role": p.role, "label": p.label,
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
