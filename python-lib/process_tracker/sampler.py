"""The webapp's sampler: a daemon thread that scans the host at a fixed interval and writes the history.

Several backend processes may serve one webapp (and each may run register_routes): exactly one of them writes.
Election: each sampler tries an exclusive, non-blocking `fcntl.flock` on `<history dir>/sampler.lock`; the
one that gets it keeps it (and writes) until it stops or its process dies, when the kernel releases the lock
and another sampler takes over at its next try (one interval later). The others only read the history.

The thread keeps its rhythm under load (sleeps until the next due time on a monotonic clock, skipping missed
ticks rather than bunching them), never dies on an exception (logged, counted, next tick), and measures its
own cost: CPU seconds of the thread per sample (`time.thread_time`) as a percentage of one core over the
interval, and the scan's wall time.

Each sample carries what DSS's own records say its processes are (`context.read_contexts`: CRU items of the audit
logs, then cgroup paths, then the tree) and the OOM-kill counters of its DSS cgroups (`cgroup_context`), both
stored with it. The sampler keeps one `cru.AuditReader` for its life: it remembers where it stopped in each audit
file, so a sample reads only what DSS appended since the last one. A failure there is logged and counted
(`context_errors`); the sample is written without them.

After every tick (sample written or not) the thread calls `on_tick()` when given: the webapp precomputes its
views there, so the writer's samples and, in reader processes, the samples they notice are ready before the next
request. A failing `on_tick` is logged and counted (`tick_errors`), never raised.
"""
import fcntl
import logging
import os
import threading
import time
from typing import Callable, Optional

from .errors import ProcessTrackerError

logger = logging.getLogger(__name__)

LOCK_FILENAME = "sampler.lock"
BACKEND_ROLES = ("backend",)


def host_status(snapshot, dip_home=None):
    """(on_host, degraded_reason) for a snapshot: on the DSS host when a DSS backend process of this instance
    (DIP_HOME, when known) is visible. Otherwise the webapp backend probably runs in a container."""
    backends = [p for p in snapshot.processes if p.role in BACKEND_ROLES]
    if dip_home:
        wanted = os.path.realpath(dip_home)
        backends = [p for p in backends if p.instance is None or os.path.realpath(p.instance) == wanted]
    if backends:
        return True, None
    where = (" of the instance in %s" % dip_home) if dip_home else ""
    return False, (
        "No DSS backend process%s is visible from the webapp's backend (it probably runs in a container or on "
        "another host): host views are empty; views from the DSS API still work." % where
    )


class Sampler:
    """Scans with `scanner.scan()` every `interval_seconds` seconds and writes `store` (a history.HistoryStore) when
    elected. `dip_home` selects the instance for the on-host check. `clock` gives epoch seconds for the
    samples; scheduling uses time.monotonic."""

    def __init__(self, store, scanner_factory: Callable[[], object], interval_seconds: float = 10.0,
                 dip_home: Optional[str] = None, name: str = "process-tracker-sampler",
                 on_tick: Optional[Callable[[], object]] = None, pods: Optional[Callable[[], object]] = None):
        self.store = store
        self.pods = pods  # () -> DSS's pods (pods.PodRecord) to record beside the host's processes, or None
        self.scanner_factory = scanner_factory
        self.interval_seconds = float(interval_seconds)
        self.dip_home = dip_home
        self.name = name
        self.on_tick = on_tick
        self.lock_path = os.path.join(store.directory, LOCK_FILENAME)
        self._scanner = None
        self._cru = None  # the long-lived cru.AuditReader (positions in the audit logs)
        self.context_errors = 0  # samples written without DSS's own records (reading them failed)
        self._lock_fd = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.samples = 0
        self.errors = 0
        self.missed_ticks = 0
        self.tick_errors = 0  # failures of on_tick
        self.last_error = None  # exception class name of the last failure (never its text: it may hold paths)
        self.last_sample_at = None
        self.last_cpu_seconds = None
        self.last_scan_seconds = None

    # -- election -------------------------------------------------------------------------------------------
    @property
    def is_writer(self):
        return self._lock_fd is not None

    def try_elect(self):
        """Take the writer lock if free; True when this sampler is (now) the writer."""
        with self._guard:
            if self._lock_fd is not None:
                return True
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # a read-only or full folder: the history's reason, said on the page
                raise self.store.folder_unusable("taking the sampler's writer lock", exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._lock_fd = fd
            logger.info("sampler elected (pid %d) for %s", os.getpid(), self.store.path)
            return True

    def release(self):
        with self._guard:
            if self._lock_fd is not None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                finally:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # -- one sample -----------------------------------------------------------------------------------------
    def sample_once(self):
        """Scan and write one sample if this sampler is the writer. Returns True when a sample was written.
        Exceptions are logged and counted, never raised."""
        cpu0 = time.thread_time()
        wall0 = time.monotonic()
        try:
            if not self.try_elect():
                return False
            if self._scanner is None:
                self._scanner = self.scanner_factory()
            snapshot = self._scanner.scan()
            scan_seconds = time.monotonic() - wall0
            on_host, reason = host_status(snapshot, self.dip_home)
            contexts, oom = self._dss_records(snapshot) if on_host else ({}, ())
            rows, db_bytes = self.store.size()
            cpu_seconds = time.thread_time() - cpu0
            figures = {
                "interval_seconds": self.interval_seconds,
                "last_sample_at": snapshot.taken_at,
                "cpu_percent_of_core": round(100.0 * (self.last_cpu_seconds or cpu_seconds) / self.interval_seconds, 2),
                "scan_seconds": round(scan_seconds, 4),
                "errors": self.errors,
                "missed_ticks": self.missed_ticks,
                "rows": rows,
                "db_bytes": db_bytes,
                "is_writer": True,
                "dss_records_notes": self.records_notes(),
            }
            self.store.record(snapshot, sampler=figures, on_host=on_host, degraded_reason=reason,
                              pods=self._pods_now(), contexts=contexts, oom=oom)
        except ProcessTrackerError as exc:  # the history cannot be written (read-only, full): its reason, no trace
            self.errors += 1
            self.last_error = exc.__class__.__name__
            logger.warning("sampler: sample not recorded: %s; will retry at the next tick", exc)
            return False
        except Exception as exc:  # noqa: BLE001 - the sampler never dies: log, count, next tick
            self.errors += 1
            self.last_error = exc.__class__.__name__
            logger.exception("sampler: sample failed (%s); will retry at the next tick", self.last_error)
            return False
        self.samples += 1
        self.last_sample_at = snapshot.taken_at
        self.last_scan_seconds = scan_seconds
        self.last_cpu_seconds = time.thread_time() - cpu0  # scan + write: the whole cost of a sample
        return True

    def records_notes(self):
        """Why DSS's own records of an instance could not be read (its audit folder missing, unreadable or
        writable by others), as safe text: shown under the page, never an error."""
        from .identifiers import safe_text

        notes = sorted(self._cru.notes.values()) if self._cru is not None else []
        if self.context_errors:
            notes.append("DSS's records could not be read in %d sample(s) (see the backend log)" % self.context_errors)
        return [safe_text(n, 300) for n in notes[:5]]

    def _dss_records(self, snapshot):
        """({pid: Context}, (CgroupInfo, ...)) for the snapshot from DSS's own records; ({}, ()) when they cannot
        be read (logged and counted, never raised: the sample goes on without them)."""
        from . import cgroup_context, context, cru

        homes = (self.dip_home,) if self.dip_home else ()
        try:
            if self._cru is None:
                self._cru = cru.AuditReader(homes)
            maps = cgroup_context.maps_for(snapshot, homes)
            root = getattr(getattr(self._scanner, "options", None), "cgroup_root", "/sys/fs/cgroup")
            return context.read_contexts(snapshot, self._cru, maps), cgroup_context.cgroup_infos(snapshot, maps, root)
        except Exception as exc:  # noqa: BLE001 - DSS's records are extra context: never lose the sample for them
            self.context_errors += 1
            logger.exception("sampler: DSS's records could not be read (%s)", exc.__class__.__name__)
            return {}, ()

    def _pods_now(self):
        """DSS's pods to record with this sample; none when off, and none (logged) if listing them fails
        unexpectedly: the host's sample is written all the same."""
        if self.pods is None:
            return ()
        try:
            return tuple(self.pods())
        except Exception as exc:  # noqa: BLE001 - the pods never cost the host's sample
            logger.warning("sampler: pods not recorded (%s)", exc.__class__.__name__)
            return ()

    def tick(self):
        """One tick of the thread: `sample_once()`, then `on_tick()` (its CPU time counts in the sample's cost).
        Returns sample_once's result; never raises."""
        wrote = self.sample_once()
        if self.on_tick is not None:
            cpu0 = time.thread_time()
            try:
                self.on_tick()
            except Exception as exc:  # noqa: BLE001 - the sampler never dies: log, count, next tick
                self.tick_errors += 1
                logger.exception("sampler: on_tick failed (%s); will retry at the next tick", exc.__class__.__name__)
            if wrote:
                self.last_cpu_seconds = (self.last_cpu_seconds or 0.0) + time.thread_time() - cpu0
        return wrote

    # -- the thread -----------------------------------------------------------------------------------------
    def start(self):
        """Start the daemon thread (idempotent). Returns self."""
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout=10.0):
        """Stop the thread and release the writer lock."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.release()

    def _run(self):
        next_due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - belt and braces: tick already catches Exception
                self.errors += 1
                logger.exception("sampler: unexpected failure")
            next_due += self.interval_seconds
            now = time.monotonic()
            if now > next_due:  # overran: skip the missed ticks, keep the phase
                missed = int((now - next_due) // self.interval_seconds) + 1
                self.missed_ticks += missed
                next_due += missed * self.interval_seconds
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    def status(self):
        """This process's view of the sampler, for /api/snapshot (the writer's figures come from the history)."""
        return {
            "interval_seconds": self.interval_seconds,
            "is_writer": self.is_writer,
            "running": self.running,
            "samples": self.samples,
            "errors": self.errors,
            "missed_ticks": self.missed_ticks,
            "last_error": self.last_error,
        }
