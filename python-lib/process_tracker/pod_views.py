"""The pod source for long-running faces (the webapp): a listing shared for a few seconds, and table rows.

`PodSource` keeps the settings, makes the kubernetes client on first use and shares one listing for
`ttl_seconds` (one listing at a time); it never raises for the cluster: a missing client, an unreadable
kubeconfig or an unreachable cluster is a listing with `reachable=False` and a note (a banner).
`table_rows` turns the pods joined to an inventory into rows of the same shape as the host's (the caller's
`row_fn`, e.g. webapp.process_row), plus `where` and the pod's status, reason, phase and memory source.
"""
import threading
import time
from typing import Callable, Dict, Optional

from .activities import Inventory
from .pod_joins import PodMatch, join_pods
from .pods import MEMORY_FROM_SPEC, PodListing, PodSettings, PodSourceError, list_pods, make_api_client


class PodSource:
    def __init__(self, settings: PodSettings, ttl_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] = time.time, api_client_factory: Optional[Callable[[], object]] = None):
        self.settings = settings
        self.ttl_seconds = ttl_seconds
        self._clock, self._now = clock, now
        self._factory = api_client_factory or (lambda: make_api_client(settings))
        self._api = None
        self._lock = threading.Lock()
        self._cached = None  # (expiry on clock, PodListing)

    def listing(self, fresh: bool = False) -> PodListing:
        with self._lock:
            if not fresh and self._cached is not None and self._cached[0] > self._clock():
                return self._cached[1]
            listing = self._list()
            self._cached = (self._clock() + self.ttl_seconds, listing)
            return listing

    def _list(self):
        try:
            if self._api is None:
                self._api = self._factory()
            return list_pods(self._api, self.settings, now=self._now())
        except PodSourceError as e:
            self._api = None
            return PodListing(self._now(), (), (), (str(e),), reachable=False, memory_source=MEMORY_FROM_SPEC)


def table_rows(listing: PodListing, inventory: Inventory, as_of: float, row_fn, host_joined=None,
               claimed=()) -> Dict[str, object]:
    """{"rows", "orphans", "explained" (set of (kind, id) pods explain), "notes", "errors", "reachable",
    "memory_source"} for a table beside the host's rows. `row_fn(record, activity, as_of)` makes a row;
    `host_joined` / `claimed`: what host processes explain (see pod_joins.join_pods)."""
    joined = join_pods(listing.pods, inventory, host=host_joined, claimed=claimed)
    rows, orphans, explained = [], [], set()
    for m in joined.rows:
        if not isinstance(m, PodMatch):
            continue
        p = m.process
        row = row_fn(p, m.activity, as_of)
        row.update({"where": p.where, "status": m.status, "via": m.via, "reason": m.reason, "namespace": p.namespace,
                    "pod": p.pod_name, "node": p.node, "phase": p.phase, "memory_source": p.memory_source,
                    "memory_request_bytes": p.memory_request_bytes, "memory_limit_bytes": p.memory_limit_bytes})
        (orphans if m.status == "orphan" else rows).append(row)
        if m.activity is not None:
            explained.add((m.activity.kind, m.activity.id))
    return {"rows": rows, "orphans": orphans, "explained": explained, "notes": list(listing.notes),
            "errors": [e.message for e in listing.errors], "reachable": listing.reachable,
            "memory_source": listing.memory_source}


def add_to_table(rows, orphans, without, listing: PodListing, inventory: Inventory, as_of: float, row_fn,
                 hostname: str):
    """The webapp table's host parts with the pods added: (rows, orphans, activities without a process, the
    "pods" block {reachable, notes, errors, memory_source, count}). Host rows get `where` = the host name; the
    activities pods explain leave the "without a process" list; sessions host rows explain are no pod's."""
    claimed = {(r.get("activity_kind"), r.get("project_key"), r.get("activity_id")) for r in rows + orphans
               if r.get("activity_kind")}
    part = table_rows(listing, inventory, as_of, row_fn, claimed=claimed)
    for r in rows + orphans:
        r.setdefault("where", hostname)
    explained = part["explained"]
    without = [r for r in without if (r.get("activity_kind"), r.get("activity_id")) not in explained]
    block = {k: part[k] for k in ("notes", "errors", "reachable", "memory_source")}
    block["count"] = len(part["rows"]) + len(part["orphans"])
    return rows + part["rows"], orphans + part["orphans"], without, block
