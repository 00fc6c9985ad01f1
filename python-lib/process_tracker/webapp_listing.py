"""The webapp's DSS listing, refreshed beside the host views (issue 12.2): no view waits on a slow DSS call.

`ListingCache.get()` returns the last listing at once while it is fresh (`ttl_seconds`). When it is older, one
background thread lists DSS again (never two at a time), and `get` waits for it at most `wait_seconds` (at most
`first_wait_seconds` while nothing was ever listed, so a page opened on a fast DSS shows the join, but only while
DSS answers: once no call got an answer for `wait_seconds`, a call is slow and the view is served): a listing
that arrives within that wait is served; otherwise the previous listing (or none) is served, with a status that
says how old it is and that a call is slow. A failing listing keeps the previous one and says why.
"""
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from . import identifiers

logger = logging.getLogger(__name__)

ERROR_LIMIT = 300  # characters of a listing error shown on the page

__all__ = ["ListingCache", "ListingStatus"]


@dataclass(frozen=True)
class ListingStatus:
    """What a view serves: the inventory (None before the first listing succeeds), its version (a cache key),
    when it was listed (epoch seconds), and whether a refresh is running, and slow."""

    inventory: Optional[object]
    version: int
    listed_at: Optional[float]
    refreshing: bool
    slow: bool
    error: Optional[str]  # why the last refresh failed (safe text), None when it succeeded

    def as_json(self, now):
        """The `listing` object of the views (docs/webapp-api.md); `note` is the page's sentence, or None."""
        age = None if self.listed_at is None else max(0.0, round(now - self.listed_at, 1))
        note = None
        if self.slow and age is not None:
            note = "DSS listing from %d s ago, a call is slow" % age
        elif self.slow:
            note = "DSS has not answered the listing yet, a call is slow"
        elif self.error and age is not None:
            note = "DSS listing from %d s ago: the last refresh failed (%s)" % (age, self.error)
        return {"listed_at": self.listed_at, "age_seconds": age, "refreshing": self.refreshing, "slow": self.slow,
                "error": self.error, "note": note}


class ListingCache:
    """`list_fn()` -> Inventory, run in a background thread; `clock()` gives epoch seconds for `listed_at`."""

    def __init__(self, list_fn: Callable[[], object], ttl_seconds=10.0, wait_seconds=1.0, first_wait_seconds=5.0,
                 clock=time.time, name="process-tracker-listing", last_answer_monotonic=lambda: None):
        self.list_fn = list_fn
        self.last_answer_monotonic = last_answer_monotonic  # when DSS last answered (dss.last_answer_monotonic)
        self.ttl_seconds = float(ttl_seconds)
        self.wait_seconds = float(wait_seconds)
        self.first_wait_seconds = float(first_wait_seconds)
        self.clock = clock
        self.name = name
        self._lock = threading.Lock()
        self._inventory = None
        self._version = 0
        self._listed_at = None  # epoch seconds
        self._listed_mono = None  # monotonic seconds
        self._error = None
        self._done = None  # threading.Event of the running refresh, None when none runs
        self._started_mono = None
        self.refreshes = 0  # listings started (for tests and figures)

    def get(self, wait_seconds=None, min_fresh_seconds=0.0):
        """The listing to serve now. Refreshes in the background when it expires within `min_fresh_seconds`,
        waiting for that refresh at most `wait_seconds` (default: the cache's `wait_seconds`, or
        `first_wait_seconds` while nothing was ever listed)."""
        with self._lock:
            wait, first = wait_seconds, wait_seconds is None and self._inventory is None
            if wait is None:
                wait = self.wait_seconds if self._inventory is not None else self.first_wait_seconds
            fresh = (self._listed_mono is not None
                     and time.monotonic() + min_fresh_seconds < self._listed_mono + self.ttl_seconds)
            done = None if fresh else self._start_locked()
        if done is not None and wait > 0:
            self._wait(done, wait, answering_only=first)
        return self.status()

    def _wait(self, done, wait, answering_only):
        """Wait for the refresh at most `wait` seconds; with `answering_only`, only while DSS answers: not once no
        call got an answer for `wait_seconds` since the refresh started (a call is slow: the view goes on)."""
        until = time.monotonic() + wait
        while not done.wait(max(0.0, min(0.05, until - time.monotonic()))):
            now = time.monotonic()
            if now >= until:
                return
            if answering_only:
                with self._lock:
                    started = self._started_mono
                answered = self.last_answer_monotonic()
                since = max(started or now, answered if answered is not None else 0.0)
                if now - since >= self.wait_seconds:
                    return

    def status(self):
        with self._lock:
            refreshing = self._done is not None
            slow = refreshing and time.monotonic() - self._started_mono >= self.wait_seconds
            return ListingStatus(self._inventory, self._version, self._listed_at, refreshing, slow, self._error)

    def forget(self):
        """The next `get` lists again (after an action changed what runs)."""
        with self._lock:
            self._listed_mono = None

    def _start_locked(self):
        if self._done is None:
            self._done = threading.Event()
            self._started_mono = time.monotonic()
            self.refreshes += 1
            threading.Thread(target=self._refresh, args=(self._done,), name=self.name, daemon=True).start()
        return self._done

    def _refresh(self, done):
        inventory, error = None, None
        try:
            inventory = self.list_fn()
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the previous listing and says why
            error = identifiers.safe_text(str(exc) or exc.__class__.__name__, ERROR_LIMIT)
            logger.warning("listing DSS activities failed: %s", error,
                           exc_info=not _expected(exc))
        with self._lock:
            if inventory is not None:
                self._inventory = inventory
                self._listed_at = getattr(inventory, "taken_at", None) or self.clock()
                self._listed_mono = time.monotonic()
                self._error = None
            else:
                self._error = error
                self._listed_mono = None if self._inventory is None else self._listed_mono
            self._version += 1
            self._done = None
        done.set()


def _expected(exc):
    from .errors import ProcessTrackerError

    return isinstance(exc, ProcessTrackerError)
