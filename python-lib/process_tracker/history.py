"""The sample store: a SQLite history of per-role series, top processes and cgroups, with retention and
downsampling, safe with several webapp backend processes.

Layout (schema version `SCHEMA_VERSION`, in table `meta`):
- `samples(ts, ...)`: one row per raw sample (epoch seconds) with the scan's own cost; kept `RAW_RETENTION_SECONDS`.
- `role_raw(ts, role, count, rss_anon_bytes, rss_bytes, cpu_percent)`: per-role totals per raw sample; kept 24 h.
- `bucket_samples(bucket, n)` and `role_bucket(bucket, role, *_sum)`: `BUCKET_SECONDS` (5-minute) buckets written at
  the same time as the raw rows (sums plus the number of samples in the bucket, so an average over a bucket
  counts the samples where a role was absent as zero); kept `retention_days`.
- `top_raw(ts, role, pid, label, user, rss_anon_bytes, rss_bytes)`: the top processes of each role per sample
  (labels only, never a command line); kept 24 h.
- `cgroup_raw(ts, path, usage_bytes, limit_bytes)` and `cgroup_bucket(bucket, path, usage_sum, n, limit_bytes)`:
  DSS cgroups, their own series (never added to process sums).
- `oom_raw(ts, path, oom_kills)` and `oom_bucket(bucket, path, oom_kills)`: the kernel's OOM-kill counter of each DSS
  cgroup (the largest value of a bucket), at most `MAX_OOM_CGROUPS` cgroups a sample (those with kills first);
  `oom_cgroups(path, workload, user, project_key, instance, seen_at)`: what each path stands for (issue 15), pruned
  with the buckets.
- `latest_contexts(pid, context)`: what DSS's own records (CRU items, cgroup paths, the tree) say each process of the
  last sample is (`context.Context` as JSON), so every backend process joins the table with them.
- `latest_processes` and `latest_cgroups`: the whole last sample (read back as host.ProcessRecord) (replaced at each sample), from which the
  snapshot and table endpoints are served, so only the sampler ever scans the host.

Concurrency: WAL journal, `busy_timeout`; writes are short `BEGIN IMMEDIATE` transactions, readers never block
the writer. Only one sampler writes (see `sampler.py`: an exclusive `flock` on `<db>.lock` elects it).
A window query returns at most a few hundred points per series (`WINDOWS`).

Damage and unavailability (issue 12.5): the file is checked with `PRAGMA quick_check` when the store opens, and
every read and write classifies the SQLite errors it meets. A damaged file (corrupt, truncated, not a database) is
moved aside as `history.sqlite.damaged-<UTC timestamp>` (under an exclusive lock, after checking it again, so two
backend processes never move a fresh file) and a new one is started; the new file's `meta` holds a notice that
every backend process shows for a day (`health()`), and the log says so. A read-only or full folder (or a busy
one) raises `HistoryUnavailable` with the reason (the webapp answers 503 and shows it); each operation opens its
own connection, so the store recovers as soon as the folder does, without a restart.
"""
import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from .context import Context
from .errors import ConfigError, ProcessTrackerError
from .host import ProcessRecord

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_FILENAME = "history.sqlite"
RAW_RETENTION_SECONDS = 24 * 3600  # raw samples and top processes are kept one day
BUCKET_SECONDS = 300  # downsampled buckets: 5 minutes
BUSY_TIMEOUT_MS = 5000
PRUNE_EVERY_SECONDS = 60.0  # prune at most once a minute
DEFAULT_TOP_N = 8
MAX_OOM_CGROUPS = 64  # OOM-kill series kept per sample (bounded: a host may hold thousands of DSS cgroups)

# window name -> (length in seconds, display step in seconds, source: "raw" or "bucket")
WINDOWS = {
    "1h": (3600, 10, "raw"),
    "24h": (24 * 3600, 300, "bucket"),
    "7d": (7 * 24 * 3600, 1800, "bucket"),
}

NOTICE_SECONDS = 24 * 3600  # how long a "the history was damaged and restarted" notice is shown
QUARANTINE_LOCK = "history.quarantine.lock"
FULL_BELOW_BYTES = 1 << 20  # an I/O error with less free space than this is reported as a full disk

_SECRET_HINTS = ("secret", "password", "passwd", "token", "apikey", "api_key", "credential", "cmdline", "argv")
_MAX_ID_CHARS = 200

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS samples (ts REAL PRIMARY KEY, wall_seconds REAL, cpu_seconds REAL, seen INTEGER,"
    " sampler_cpu_percent REAL)",
    "CREATE TABLE IF NOT EXISTS role_raw (ts REAL NOT NULL, role TEXT NOT NULL, count INTEGER NOT NULL,"
    " rss_anon_bytes INTEGER NOT NULL, rss_bytes INTEGER NOT NULL, cpu_percent REAL NOT NULL,"
    " PRIMARY KEY (ts, role))",
    "CREATE TABLE IF NOT EXISTS bucket_samples (bucket INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS role_bucket (bucket INTEGER NOT NULL, role TEXT NOT NULL,"
    " count_sum REAL NOT NULL, rss_anon_sum REAL NOT NULL, rss_sum REAL NOT NULL, cpu_sum REAL NOT NULL,"
    " PRIMARY KEY (bucket, role))",
    "CREATE TABLE IF NOT EXISTS top_raw (ts REAL NOT NULL, role TEXT NOT NULL, pid INTEGER NOT NULL,"
    " label TEXT, user TEXT, rss_anon_bytes INTEGER, rss_bytes INTEGER)",
    "CREATE INDEX IF NOT EXISTS top_raw_ts ON top_raw (ts)",
    "CREATE TABLE IF NOT EXISTS cgroup_raw (ts REAL NOT NULL, path TEXT NOT NULL, usage_bytes INTEGER,"
    " limit_bytes INTEGER, PRIMARY KEY (ts, path))",
    "CREATE TABLE IF NOT EXISTS cgroup_bucket (bucket INTEGER NOT NULL, path TEXT NOT NULL,"
    " usage_sum REAL NOT NULL, n INTEGER NOT NULL, limit_bytes INTEGER, PRIMARY KEY (bucket, path))",
    "CREATE TABLE IF NOT EXISTS latest_processes (pid INTEGER NOT NULL, ppid INTEGER, create_time REAL,"
    " name TEXT, role TEXT, label TEXT, user TEXT, instance TEXT, rss_bytes INTEGER, rss_anon_bytes INTEGER,"
    " cpu_percent REAL, num_threads INTEGER, age_seconds REAL, cgroup TEXT, ids TEXT, link INTEGER)",
    "CREATE TABLE IF NOT EXISTS latest_cgroups (path TEXT PRIMARY KEY, usage_bytes INTEGER, limit_bytes INTEGER,"
    " version INTEGER)",
    "CREATE TABLE IF NOT EXISTS latest_contexts (pid INTEGER PRIMARY KEY, context TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS oom_raw (ts REAL NOT NULL, path TEXT NOT NULL, oom_kills INTEGER NOT NULL,"
    " PRIMARY KEY (ts, path))",
    "CREATE TABLE IF NOT EXISTS oom_bucket (bucket INTEGER NOT NULL, path TEXT NOT NULL, oom_kills INTEGER NOT NULL,"
    " PRIMARY KEY (bucket, path))",
    "CREATE TABLE IF NOT EXISTS oom_cgroups (path TEXT PRIMARY KEY, workload TEXT, user TEXT, project_key TEXT,"
    " instance TEXT, seen_at REAL NOT NULL)",
)


class HistoryUnavailable(ProcessTrackerError):
    """The history cannot be read or written now (read-only or full folder, busy, damaged beyond repair);
    the message says why and what to do. The store recovers by itself when the cause goes away."""


class _Damaged(sqlite3.DatabaseError):
    """`PRAGMA quick_check` did not answer "ok"."""


# SQLite's messages (stable since SQLite 3.x; Python < 3.11 has no error codes on exceptions) -> what happened
_KINDS = (
    ("database disk image is malformed", "damaged"),
    ("file is not a database", "damaged"),
    ("file is encrypted", "damaged"),
    ("database or disk is full", "full"),
    ("attempt to write a readonly database", "read_only"),
    ("unable to open database file", "cannot_open"),
    ("database is locked", "busy"),
    ("database table is locked", "busy"),
    ("disk i/o error", "io_error"),
)


def _error_kind(exc):
    if isinstance(exc, _Damaged):
        return "damaged"
    text = str(exc).lower()
    for needle, kind in _KINDS:
        if needle in text:
            return kind
    return "damaged" if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, (sqlite3.OperationalError, sqlite3.IntegrityError, sqlite3.ProgrammingError)) else "error"


def _free_bytes(directory):
    try:
        st = os.statvfs(directory)
    except OSError:
        return FULL_BELOW_BYTES  # unknown: do not claim the disk is full
    return st.f_bavail * st.f_frsize


def _guarded(what, write=False):
    """Run a store method through HistoryStore._guard (classify SQLite errors, repair a damaged file once)."""

    def decorate(method):
        @functools.wraps(method)
        def wrapped(self, *args, **kwargs):
            return self._guard(what, lambda: method(self, *args, **kwargs), write=write)

        return wrapped

    return decorate


@dataclass(frozen=True)
class RoleSample:
    """One role's totals in one sample (the unit of the role series)."""

    role: str
    count: int
    rss_anon_bytes: int
    rss_bytes: int
    cpu_percent: float


@dataclass(frozen=True)
class RoleSeries:
    """Per-role series over a window. `times` are epoch seconds (start of each step); each role maps
    "count", "rss_anon_bytes", "rss_bytes", "cpu_percent" to a tuple aligned with `times` (averages per step)."""

    window: str
    step_seconds: int
    times: Tuple[float, ...]
    roles: Mapping[str, Mapping[str, Tuple[float, ...]]]

    @property
    def points(self):
        return len(self.times)


@dataclass(frozen=True)
class CgroupSeries:
    window: str
    step_seconds: int
    times: Tuple[float, ...]
    usage_bytes: Mapping[str, Tuple[Optional[float], ...]]  # path -> usage aligned with times (None: no data)
    limit_bytes: Mapping[str, Optional[int]]  # path -> last known limit (None: unlimited)


@dataclass(frozen=True)
class OomSeries:
    """The kernel's OOM-kill counter of each DSS cgroup over a window (largest value per display step)."""

    window: str
    step_seconds: int
    times: Tuple[float, ...]
    oom_kills: Mapping[str, Tuple[Optional[int], ...]]  # path -> counter aligned with times (None: no data)
    labels: Mapping[str, Mapping[str, Optional[str]]]  # path -> workload, user, project_key, instance


@dataclass(frozen=True)
class StoredCgroup:
    path: str
    usage_bytes: Optional[int]
    limit_bytes: Optional[int]
    version: int


@dataclass(frozen=True)
class LatestSample:
    """The last sample: what the snapshot and table endpoints serve."""

    taken_at: float  # epoch seconds
    hostname: str
    processes: Tuple[ProcessRecord, ...]  # as scanned, minus PSS/USS/swap; ids filtered by safe_ids
    cgroups: Tuple[StoredCgroup, ...]
    stats: Mapping[str, object]  # the scan's ScanStats as a dict
    sampler: Mapping[str, object]  # the sampler's own figures (interval_seconds, cpu_percent_of_core, ...)
    on_host: bool
    degraded_reason: Optional[str]
    contexts: Mapping[int, Context] = field(default_factory=dict)  # pid -> what DSS's own records say it is


def _context_json(ctx):
    return json.dumps(dict(ctx.to_json(), instance=ctx.instance), sort_keys=True)


def _context(text):
    d = json.loads(text)
    return Context(d["source"], d.get("kind"), d.get("project_key"), d.get("user"), d.get("ids") or {},
                   d.get("instance"), d.get("via_pid"))


def _oom_rows(oom):
    """The cgroups whose OOM kills are kept this sample: readable counters, those with kills first, bounded."""
    known = [c for c in oom or () if c.oom_kills is not None]
    return sorted(known, key=lambda c: (-c.oom_kills, c.path))[:MAX_OOM_CGROUPS]


def _process_record(row):
    (pid, ppid, created_at, name, role, label, user, instance, rss_bytes, rss_anon_bytes, cpu_percent, num_threads,
     age_seconds, cgroup, ids, link) = row
    return ProcessRecord(
        pid=pid, ppid=ppid, created_at=created_at, name=name or "", role=role, label=label or "", user=user,
        instance=instance, rss_bytes=rss_bytes, rss_anon_bytes=rss_anon_bytes, cpu_percent=cpu_percent,
        num_threads=num_threads, age_seconds=age_seconds, cgroup=cgroup,
        ids=json.loads(ids) if ids and ids != "{}" else {}, link=bool(link),
    )


def default_history_dir(environ=None):
    """`$DIP_HOME/tmp/process-tracker/history` when DIP_HOME is set (inside DSS), else a folder in the temp dir."""
    import tempfile

    env = os.environ if environ is None else environ
    dip_home = env.get("DIP_HOME")
    if dip_home:
        return os.path.join(dip_home, "tmp", "process-tracker", "history")
    return os.path.join(tempfile.gettempdir(), "process-tracker-history")


def safe_ids(ids):
    """The extracted ids worth keeping: scalars, short, and nothing whose key hints at a secret."""
    kept = {}
    for key, value in dict(ids or {}).items():
        lowered = str(key).lower()
        if any(hint in lowered for hint in _SECRET_HINTS):
            continue
        if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
            kept[str(key)] = value
        elif isinstance(value, str) and len(value) <= _MAX_ID_CHARS:
            kept[str(key)] = value
    return kept


def role_samples_from_snapshot(snapshot):
    """Per-role totals of a host.Snapshot, from its `roles` when present, else summed from its processes."""
    if snapshot.roles:
        return [
            RoleSample(role, int(t.count), int(t.rss_anon_bytes or 0), int(t.rss_bytes or 0), float(t.cpu_percent or 0))
            for role, t in sorted(snapshot.roles.items())
        ]
    totals = {}
    for p in snapshot.processes:
        c, anon, rss, cpu = totals.get(p.role, (0, 0, 0, 0.0))
        totals[p.role] = (c + 1, anon + (p.rss_anon_bytes or 0), rss + (p.rss_bytes or 0), cpu + (p.cpu_percent or 0.0))
    return [RoleSample(role, *values) for role, values in sorted(totals.items())]


def pod_role_samples(pods):
    """Per-role totals of DSS's pods (pods.PodRecord), keyed "pod:<role>" (pods.series_role): a pod's memory is
    its working set from the metrics API (0 without metrics), its CPU the usage in cores x 100."""
    from .pods import series_role

    totals = {}
    for p in pods:
        c, anon, rss, cpu = totals.get(series_role(p.role), (0, 0, 0, 0.0))
        totals[series_role(p.role)] = (c + 1, anon + (p.rss_anon_bytes or 0), rss + (p.rss_bytes or 0),
                                       cpu + (p.cpu_percent or 0.0))
    return [RoleSample(role, *values) for role, values in sorted(totals.items())]


def top_processes_by_role(processes, top_n):
    """role -> the `top_n` processes of that role by RssAnon (largest first)."""
    by_role = {}
    for p in processes:
        by_role.setdefault(p.role, []).append(p)
    return {
        role: sorted(procs, key=lambda p: (-(p.rss_anon_bytes or 0), p.pid))[:top_n] for role, procs in by_role.items()
    }


class HistoryStore:
    """The SQLite history at `<directory>/history.sqlite`. Thread-safe: one connection per operation.

    `clock()` gives epoch seconds (injectable for tests); `retention_days` bounds the downsampled buckets.
    """

    def __init__(self, directory, retention_days=7, clock=time.time, top_n=DEFAULT_TOP_N):
        if not directory:
            raise ConfigError("historyDir", "the history folder must not be empty")
        self.directory = directory
        self.path = os.path.join(directory, DB_FILENAME)
        self.retention_days = float(retention_days)
        self.clock = clock
        self.top_n = int(top_n)
        self._last_prune = 0.0
        self._ready = False  # schema checked and created
        self._errors = {False: None, True: None}  # write? -> why the last read / write failed, None after a success
        self._notice = None  # (epoch s, text): the history was damaged and restarted (from meta, shared)
        self._pending_notice = None  # the notice to write in the new file's meta
        self.journal_mode = None
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise ConfigError("historyDir", "cannot create %s (%s)" % (directory, e.__class__.__name__)) from None
        try:
            self._guard("opening the history", lambda: None)
        except HistoryUnavailable as e:  # a read-only or full folder: said at each use, retried at each use
            logger.warning("%s", e)

    # -- connections ----------------------------------------------------------------------------------------
    def connect(self):
        """A new connection in autocommit mode (transactions are explicit), WAL, with a busy timeout."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = %d" % BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    # -- damage and unavailability ------------------------------------------------------------------------------
    def _guard(self, what, op, write=False):
        """Run `op()` with the schema ready; a damaged file is moved aside and `op` run once more on a new one;
        other SQLite failures raise HistoryUnavailable saying why."""
        for attempt in (0, 1):
            try:
                if not self._ready:
                    self._init_schema()
                    self._ready = True
                result = op()
            except sqlite3.Error as e:
                kind = _error_kind(e)
                if kind == "damaged" and attempt == 0:
                    self._ready = False
                    self._move_aside(what, e)
                    continue
                self._ready = self._ready and kind not in ("cannot_open", "read_only")
                self._errors[write] = reason = self._reason(kind, what, e)
                raise HistoryUnavailable(reason) from None
            self._errors[write] = None
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _reason(self, kind, what, exc):
        where = self.directory
        if kind in ("read_only", "cannot_open") and not os.access(where, os.W_OK):
            kind = "read_only"
        if kind in ("io_error", "cannot_open") and _free_bytes(where) < FULL_BELOW_BYTES:
            kind = "full"  # SQLite says "disk I/O error" when the WAL index cannot grow on a full disk
        text = {
            "read_only": "the history folder %s is read-only: the history can be neither read nor recorded (make "
                         "it writable; no restart is needed)" % where,
            "full": "the disk holding the history folder %s is full: samples cannot be recorded (free some space; "
                    "no restart is needed)" % where,
            "cannot_open": "the history file %s cannot be opened (missing folder or permissions)" % self.path,
            "busy": "the history is busy (locked by another process for more than %d s)" % (BUSY_TIMEOUT_MS // 1000),
            "io_error": "a disk I/O error on %s (a full or failing disk?)" % where,
            "damaged": "the history file %s is damaged and could not be replaced" % self.path,
        }.get(kind, "the history could not be used (%s)" % exc.__class__.__name__)
        return "%s, while %s" % (text, what)

    def _still_damaged(self):
        if not os.path.exists(self.path):
            return False
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None)
            return conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"
        except sqlite3.Error as e:
            return _error_kind(e) == "damaged"
        finally:
            if conn is not None:
                conn.close()

    def _move_aside(self, what, exc):
        """Move a damaged file aside (`.damaged-<UTC stamp>`, with its WAL and SHM) unless another process did."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        target = "%s.damaged-%s" % (self.path, stamp)
        try:
            lock_fd = os.open(os.path.join(self.directory, QUARANTINE_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise HistoryUnavailable("the history file %s is damaged and its folder cannot be written (%s), "
                                     "while %s" % (self.path, e.__class__.__name__, what)) from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if not self._still_damaged():
                return
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, target + suffix)
        except OSError as e:
            raise HistoryUnavailable("the history file %s is damaged and cannot be moved aside (%s), while %s"
                                     % (self.path, e.__class__.__name__, what)) from None
        finally:
            os.close(lock_fd)
        text = ("The history file was damaged (%s) and was moved aside to %s; a new history started at %s UTC."
                % (_error_kind(exc) if not str(exc) else str(exc)[:80], os.path.basename(target), stamp))
        logger.error("history: %s (noticed while %s)", text, what)
        self._notice = self._pending_notice = (self.clock(), text)

    def folder_unusable(self, what, exc):
        """An OSError met on the history folder outside SQLite (the sampler's writer lock file): kept as the reason
        recording fails (`health`, until a write succeeds) and returned as a HistoryUnavailable saying why."""
        kind = {errno.EROFS: "read_only", errno.EACCES: "read_only", errno.ENOSPC: "full"}.get(exc.errno,
                                                                                              "cannot_open")
        self._errors[True] = reason = self._reason(kind, what, exc)
        return HistoryUnavailable(reason)

    def health(self):
        """{"ok": bool, "reason": why the last operation failed or None, "notice": the damage notice of the last
        day or None}: what the page shows about its history. Never raises, never touches the file."""
        notice = self._notice
        if notice is not None and self.clock() - notice[0] > NOTICE_SECONDS:
            notice = None
        reason = self._errors[True] or self._errors[False]  # a failed write stays said until a write succeeds
        return {"ok": reason is None, "reason": reason, "notice": notice[1] if notice else None}

    def _init_schema(self):
        conn = self.connect()
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise _Damaged("quick_check: %s" % (check[0] if check else "no answer"))
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self.journal_mode = str(mode).lower()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_SCHEMA[0])
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is not None and int(row[0]) != SCHEMA_VERSION:
                    raise ConfigError(
                        "historyDir",
                        "%s has history schema version %s, this plugin uses %d: choose another folder"
                        % (self.path, row[0], SCHEMA_VERSION),
                    )
                for statement in _SCHEMA[1:]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                pending = self._pending_notice
                if pending is not None:
                    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('notice', ?)",
                                 (json.dumps({"at": pending[0], "text": pending[1]}),))
                    self._pending_notice = None
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    @_guarded("reading the schema version")
    def schema_version(self):
        conn = self.connect()
        try:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        finally:
            conn.close()

    # -- writing --------------------------------------------------------------------------------------------
    @_guarded("recording a sample", write=True)
    def record(self, snapshot, sampler=None, on_host=True, degraded_reason=None, pods=(), contexts=None, oom=None):
        """Write one sample from a host.Snapshot: series, top processes, cgroups, and the whole last sample.

        `sampler` is a dict of the sampler's own figures (stored with the sample, shown by /api/snapshot).
        `pods`: DSS's pods (pods.PodRecord) at that time: their role series ("pod:<role>") are written beside the
        host's (not their processes: the latest processes are the host's). `contexts`: {pid: context.Context} of
        the sample's processes; `oom`: cgroup_context.CgroupInfo of its DSS cgroups (OOM kills, what they are).
        """
        taken_at = float(snapshot.taken_at)
        sampler = dict(sampler or {})
        roles = role_samples_from_snapshot(snapshot) + pod_role_samples(pods)
        top = top_processes_by_role(snapshot.processes, self.top_n)
        stats = {
            name: getattr(snapshot.stats, name, None)
            for name in ("wall_seconds", "cpu_seconds", "seen", "new", "classified", "access_denied", "vanished",
                         "unreadable", "unreadable_reason")  # what a hidepid /proc or other users hid, and why
        }
        latest = {
            "taken_at": taken_at,
            "hostname": snapshot.hostname,
            "stats": stats,
            "sampler": sampler,
            "on_host": bool(on_host),
            "degraded_reason": degraded_reason,
        }
        with self._writing() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?)",
                (taken_at, stats["wall_seconds"], stats["cpu_seconds"], stats["seen"], sampler.get("cpu_percent_of_core")),
            )
            self._write_series(conn, taken_at, roles, [(c.path, c.usage_bytes, c.limit_bytes) for c in snapshot.cgroups])
            conn.executemany(
                "INSERT INTO top_raw VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (taken_at, role, p.pid, p.label, p.user, p.rss_anon_bytes, p.rss_bytes)
                    for role, procs in sorted(top.items())
                    for p in procs
                ],
            )
            conn.execute("DELETE FROM latest_processes")
            conn.executemany(
                "INSERT INTO latest_processes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        p.pid, p.ppid, p.created_at, p.name, p.role, p.label, p.user, p.instance, p.rss_bytes,
                        p.rss_anon_bytes, p.cpu_percent, p.num_threads, p.age_seconds, p.cgroup,
                        json.dumps(safe_ids(p.ids), sort_keys=True), int(bool(p.link)),
                    )
                    for p in snapshot.processes
                ],
            )
            conn.execute("DELETE FROM latest_cgroups")
            conn.executemany(
                "INSERT OR REPLACE INTO latest_cgroups VALUES (?, ?, ?, ?)",
                [(c.path, c.usage_bytes, c.limit_bytes, c.version) for c in snapshot.cgroups],
            )
            self._write_dss_records(conn, taken_at, contexts, oom)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('latest', ?)", (json.dumps(latest, default=str),)
            )

    @staticmethod
    def _write_dss_records(conn, taken_at, contexts, oom):
        """The sample's contexts (replacing the last ones) and the OOM-kill counters of its DSS cgroups."""
        conn.execute("DELETE FROM latest_contexts")
        conn.executemany("INSERT OR REPLACE INTO latest_contexts VALUES (?, ?)",
                         [(pid, _context_json(ctx)) for pid, ctx in (contexts or {}).items()])
        bucket = int(taken_at // BUCKET_SECONDS) * BUCKET_SECONDS
        for c in _oom_rows(oom):
            conn.execute("INSERT OR REPLACE INTO oom_raw VALUES (?, ?, ?)", (taken_at, c.path, c.oom_kills))
            if not conn.execute("UPDATE oom_bucket SET oom_kills = MAX(oom_kills, ?) WHERE bucket = ? AND path = ?",
                                (c.oom_kills, bucket, c.path)).rowcount:
                conn.execute("INSERT INTO oom_bucket VALUES (?, ?, ?)", (bucket, c.path, c.oom_kills))
            conn.execute("INSERT OR REPLACE INTO oom_cgroups VALUES (?, ?, ?, ?, ?, ?)",
                         (c.path, c.workload, c.user, c.project_key, c.instance, taken_at))

    @_guarded("recording series", write=True)
    def record_series(self, samples):
        """Write series only, for backfills and benchmarks: `samples` is an iterable of
        `(taken_at, [RoleSample], [(cgroup_path, usage_bytes, limit_bytes)])`, written in one transaction."""
        with self._writing() as conn:
            for taken_at, roles, cgroups in samples:
                conn.execute("INSERT OR REPLACE INTO samples (ts) VALUES (?)", (float(taken_at),))
                self._write_series(conn, float(taken_at), roles, cgroups)

    @contextlib.contextmanager
    def _writing(self):
        """One short write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error), then retention."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    conn.execute("ROLLBACK")
                raise
            self._maybe_prune(conn)
        finally:
            conn.close()

    @staticmethod
    def _write_series(conn, taken_at, roles, cgroups):
        bucket = int(taken_at // BUCKET_SECONDS) * BUCKET_SECONDS
        conn.executemany(
            "INSERT OR REPLACE INTO role_raw VALUES (?, ?, ?, ?, ?, ?)",
            [(taken_at, r.role, r.count, r.rss_anon_bytes, r.rss_bytes, r.cpu_percent) for r in roles],
        )
        if conn.execute("UPDATE bucket_samples SET n = n + 1 WHERE bucket = ?", (bucket,)).rowcount == 0:
            conn.execute("INSERT INTO bucket_samples VALUES (?, 1)", (bucket,))
        for r in roles:
            values = (r.count, r.rss_anon_bytes, r.rss_bytes, r.cpu_percent, bucket, r.role)
            updated = conn.execute(
                "UPDATE role_bucket SET count_sum = count_sum + ?, rss_anon_sum = rss_anon_sum + ?,"
                " rss_sum = rss_sum + ?, cpu_sum = cpu_sum + ? WHERE bucket = ? AND role = ?",
                values,
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO role_bucket (count_sum, rss_anon_sum, rss_sum, cpu_sum, bucket, role)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )
        for path, usage, limit in cgroups:
            conn.execute("INSERT OR REPLACE INTO cgroup_raw VALUES (?, ?, ?, ?)", (taken_at, path, usage, limit))
            if usage is None:
                continue
            updated = conn.execute(
                "UPDATE cgroup_bucket SET usage_sum = usage_sum + ?, n = n + 1, limit_bytes = ?"
                " WHERE bucket = ? AND path = ?",
                (usage, limit, bucket, path),
            ).rowcount
            if not updated:
                conn.execute("INSERT INTO cgroup_bucket VALUES (?, ?, ?, 1, ?)", (bucket, path, usage, limit))

    # -- retention ------------------------------------------------------------------------------------------
    def _maybe_prune(self, conn):
        now = self.clock()
        if now - self._last_prune >= PRUNE_EVERY_SECONDS or now < self._last_prune:
            self._prune(conn, now)
            self._last_prune = now

    @_guarded("pruning old rows", write=True)
    def prune(self, now=None):
        """Drop raw rows older than 24 h and buckets older than the retention. Returns rows deleted."""
        conn = self.connect()
        try:
            return self._prune(conn, self.clock() if now is None else now)
        finally:
            conn.close()

    def _prune(self, conn, now):
        raw_cutoff = now - RAW_RETENTION_SECONDS
        bucket_cutoff = now - self.retention_days * 86400
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("samples", "role_raw", "top_raw", "cgroup_raw", "oom_raw"):
                deleted += conn.execute("DELETE FROM %s WHERE ts < ?" % table, (raw_cutoff,)).rowcount  # noqa: S608
            for table in ("bucket_samples", "role_bucket", "cgroup_bucket", "oom_bucket"):
                deleted += conn.execute("DELETE FROM %s WHERE bucket < ?" % table, (bucket_cutoff,)).rowcount  # noqa: S608
            deleted += conn.execute("DELETE FROM oom_cgroups WHERE seen_at < ?", (bucket_cutoff,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                conn.execute("ROLLBACK")
            raise
        return deleted

    # -- reading --------------------------------------------------------------------------------------------
    @staticmethod
    def window(window):
        """(seconds, step_seconds, source) of a window name; ConfigError naming `window` otherwise."""
        try:
            return WINDOWS[window]
        except (KeyError, TypeError):
            shown = repr(window) if len(repr(window)) <= 40 else repr(window)[:37] + "..."
            raise ConfigError("window", "must be one of %s, got %s" % (", ".join(WINDOWS), shown)) from None

    @_guarded("reading the role series")
    def role_series(self, window="24h", now=None):
        """Per-role averages over `window` ("1h", "24h", "7d"), one point per display step."""
        seconds, step, source = self.window(window)
        now = self.clock() if now is None else now
        since = now - seconds
        if source == "raw":
            n_sql = "SELECT CAST(ts / ? AS INTEGER) AS b, COUNT(*) FROM samples WHERE ts >= ? GROUP BY b"
            sums_sql = (
                "SELECT CAST(ts / ? AS INTEGER) AS b, role, SUM(count), SUM(rss_anon_bytes), SUM(rss_bytes),"
                " SUM(cpu_percent) FROM role_raw WHERE ts >= ? GROUP BY b, role"
            )
        else:
            n_sql = "SELECT CAST(bucket / ? AS INTEGER) AS b, SUM(n) FROM bucket_samples WHERE bucket >= ? GROUP BY b"
            sums_sql = (
                "SELECT CAST(bucket / ? AS INTEGER) AS b, role, SUM(count_sum), SUM(rss_anon_sum), SUM(rss_sum),"
                " SUM(cpu_sum) FROM role_bucket WHERE bucket >= ? GROUP BY b, role"
            )
            since = int(since // BUCKET_SECONDS) * BUCKET_SECONDS
        conn = self.connect()
        try:
            conn.execute("BEGIN")
            counts = dict(conn.execute(n_sql, (step, since)).fetchall())
            sums = conn.execute(sums_sql, (step, since)).fetchall()
            conn.execute("COMMIT")
        finally:
            conn.close()
        steps = sorted(counts)
        index = {b: i for i, b in enumerate(steps)}
        names = ("count", "rss_anon_bytes", "rss_bytes", "cpu_percent")
        roles = {}
        for b, role, *values in sums:
            if b not in index:
                continue
            series = roles.setdefault(role, {name: [0.0] * len(steps) for name in names})
            n = counts[b] or 1
            for name, value in zip(names, values):
                series[name][index[b]] = (value or 0) / n
        return RoleSeries(
            window=window,
            step_seconds=step,
            times=tuple(float(b * step) for b in steps),
            roles={role: {name: tuple(vals) for name, vals in series.items()} for role, series in sorted(roles.items())},
        )

    @_guarded("reading the cgroup series")
    def cgroup_series(self, window="24h", now=None):
        """Per-cgroup average usage over `window`, one point per display step, and each cgroup's last limit."""
        seconds, step, source = self.window(window)
        now = self.clock() if now is None else now
        since = now - seconds
        if source == "raw":
            sql = (
                "SELECT CAST(ts / ? AS INTEGER) AS b, path, AVG(usage_bytes), MAX(ts), limit_bytes FROM cgroup_raw"
                " WHERE ts >= ? GROUP BY b, path ORDER BY b"
            )
        else:
            sql = (
                "SELECT CAST(bucket / ? AS INTEGER) AS b, path, SUM(usage_sum) / SUM(n), MAX(bucket), limit_bytes"
                " FROM cgroup_bucket WHERE bucket >= ? GROUP BY b, path ORDER BY b"
            )
        conn = self.connect()
        try:
            rows = conn.execute(sql, (step, since)).fetchall()
        finally:
            conn.close()
        steps = sorted({r[0] for r in rows})
        index = {b: i for i, b in enumerate(steps)}
        usage, limits = {}, {}
        for b, path, avg, _, limit in rows:
            usage.setdefault(path, [None] * len(steps))[index[b]] = avg
            limits[path] = limit
        return CgroupSeries(
            window=window,
            step_seconds=step,
            times=tuple(float(b * step) for b in steps),
            usage_bytes={p: tuple(v) for p, v in sorted(usage.items())},
            limit_bytes=limits,
        )

    @_guarded("reading the OOM-kill series")
    def oom_series(self, window="24h", now=None):
        """Per-cgroup OOM-kill counter over `window` (largest value per display step) and what each path stands
        for (workload, user, project_key, instance)."""
        seconds, step, source = self.window(window)
        since = (self.clock() if now is None else now) - seconds
        if source == "raw":
            sql = "SELECT CAST(ts / ? AS INTEGER) AS b, path, MAX(oom_kills) FROM oom_raw WHERE ts >= ? GROUP BY b, path"
        else:
            since = int(since // BUCKET_SECONDS) * BUCKET_SECONDS
            sql = ("SELECT CAST(bucket / ? AS INTEGER) AS b, path, MAX(oom_kills) FROM oom_bucket WHERE bucket >= ?"
                   " GROUP BY b, path")
        conn = self.connect()
        try:
            conn.execute("BEGIN")
            rows = conn.execute(sql, (step, since)).fetchall()
            labels = conn.execute("SELECT path, workload, user, project_key, instance FROM oom_cgroups").fetchall()
            conn.execute("COMMIT")
        finally:
            conn.close()
        steps = sorted({r[0] for r in rows})
        index = {b: i for i, b in enumerate(steps)}
        kills = {}
        for b, path, value in rows:
            kills.setdefault(path, [None] * len(steps))[index[b]] = value
        names = ("workload", "user", "project_key", "instance")
        return OomSeries(window, step, tuple(float(b * step) for b in steps),
                         {p: tuple(v) for p, v in sorted(kills.items())},
                         {r[0]: dict(zip(names, r[1:])) for r in labels if r[0] in kills})

    @_guarded("reading the top processes")
    def top_processes(self, since, until=None):
        """Top processes per role stored between `since` and `until` (epoch s): (ts, role, pid, label, user,
        rss_anon_bytes, rss_bytes) tuples, oldest first. Kept 24 h."""
        until = self.clock() if until is None else until
        conn = self.connect()
        try:
            return conn.execute(
                "SELECT ts, role, pid, label, user, rss_anon_bytes, rss_bytes FROM top_raw WHERE ts >= ? AND ts <= ?"
                " ORDER BY ts, role, rss_anon_bytes DESC",
                (since, until),
            ).fetchall()
        finally:
            conn.close()

    @_guarded("reading the last sample's time")
    def latest_taken_at(self):
        """Epoch seconds of the last sample written, or None (one small read: a cache key for the views)."""
        conn = self.connect()
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('latest', 'notice')").fetchall())
        finally:
            conn.close()
        if "notice" in rows:  # written by whichever process replaced a damaged file: every process shows it
            notice = json.loads(rows["notice"])
            self._notice = (float(notice["at"]), str(notice["text"]))
        return None if "latest" not in rows else float(json.loads(rows["latest"])["taken_at"])

    @_guarded("reading the last sample")
    def latest(self):
        """The last sample written, or None when the sampler has not written one yet."""
        conn = self.connect()
        try:
            conn.execute("BEGIN")
            row = conn.execute("SELECT value FROM meta WHERE key = 'latest'").fetchone()
            if row is None:
                conn.execute("COMMIT")
                return None
            procs = conn.execute("SELECT * FROM latest_processes").fetchall()
            cgroups = conn.execute("SELECT * FROM latest_cgroups ORDER BY path").fetchall()
            contexts = conn.execute("SELECT pid, context FROM latest_contexts").fetchall()
            conn.execute("COMMIT")
        finally:
            conn.close()
        meta = json.loads(row[0])
        return LatestSample(
            taken_at=float(meta["taken_at"]),
            hostname=meta.get("hostname") or "",
            processes=tuple(_process_record(r) for r in procs),
            cgroups=tuple(StoredCgroup(*r) for r in cgroups),
            stats=meta.get("stats") or {},
            sampler=meta.get("sampler") or {},
            on_host=bool(meta.get("on_host")),
            degraded_reason=meta.get("degraded_reason"),
            contexts={pid: _context(text) for pid, text in contexts},
        )

    @_guarded("measuring the history")
    def size(self):
        """(rows in the series tables, bytes on disk including the WAL)."""
        conn = self.connect()
        try:
            rows = 0
            for table in ("samples", "role_raw", "role_bucket", "top_raw", "cgroup_raw", "cgroup_bucket"):
                rows += conn.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]  # noqa: S608 - constant names
        finally:
            conn.close()
        size = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                size += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return rows, size


def role_samples(values):
    """Build RoleSamples from `{role: (count, rss_anon_bytes, rss_bytes, cpu_percent)}` (backfills, tests)."""
    return [RoleSample(role, *v) for role, v in sorted(values.items())]


__all__ = [
    "HistoryStore",
    "HistoryUnavailable",
    "LatestSample",
    "RoleSample",
    "RoleSeries",
    "CgroupSeries",
    "OomSeries",
    "StoredCgroup",
    "WINDOWS",
    "default_history_dir",
    "role_samples",
    "safe_ids",
]

