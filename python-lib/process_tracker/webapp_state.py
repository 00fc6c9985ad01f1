"""What one registered webapp holds (`WebappState`, in `app.extensions["process_tracker"]`): its options, the
history store, the sampler, a DSS client, the DSS listing refreshed in the background, the in-flight claims of
actions, identity caches, and the views computed once per sample and listing. No Flask here: the routes
(webapp.py) read this object and serve its JSON bytes.

Views (snapshot, table, history per window) are JSON bytes computed once per sample and DSS listing. While the
page is watched (a view requested within `watch_window_seconds`), the sampler thread precomputes the watched views after
each tick (`warm_views`), so polling clients are served stored bytes; when nobody looks, views are computed by the
first request and DSS is not listed. Host views never wait on DSS beyond a short bound (webapp_listing.py): the
snapshot, history and host parts of the table come from the last sample, each answer says how old the DSS listing
is (`listing`), and the state of the history store (`history`).
"""
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from . import charts, dss, history
from .errors import ConfigError, DSSError, DSSUnauthorized
from .identifiers import is_valid, safe_text
from .pod_views import PodSource, add_to_table
from .pods import for_treemap, settings_if_enabled
from .sampler import Sampler
from .webapp_actions import ApiError, InFlight
from .webapp_listing import ListingCache
from .webapp_table import error_rows, host_join, join_table, process_row

logger = logging.getLogger("process_tracker.webapp")

HIDDEN_ROLES = charts.HIDDEN_ROLES

__all__ = ["WebappOptions", "WebappState", "Identity", "dss_versions"]


def _int_param(config, key, default, low, high):
    value = config.get(key)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, "must be a whole number between %d and %d, got %r" % (low, high, value)) from None
    if isinstance(value, bool) or number != float(value) or not low <= number <= high:
        raise ConfigError(key, "must be a whole number between %d and %d, got %r" % (low, high, value))
    return number


def _groups_param(config, key):
    value = config.get(key)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, str) for g in value):
        raise ConfigError(key, "must be a list of DSS group names, got %r" % (value,))
    return tuple(sorted({g.strip() for g in value if g.strip()}))


@dataclass(frozen=True)
class WebappOptions:
    """Everything register_routes needs. Build from the webapp params with `from_config`; the factories are
    injectable for tests and the demo (defaults: dss.get_client, host.Scanner without PSS, time.time)."""

    sampling_interval_seconds: float = 10.0
    retention_days: float = 7.0
    history_dir: Optional[str] = None  # None: history.default_history_dir()
    allowed_groups: Tuple[str, ...] = ()
    top_n: int = history.DEFAULT_TOP_N
    client_factory: Optional[Callable[[], object]] = None  # () -> dataikuapi.DSSClient
    scanner_factory: Optional[Callable[[], object]] = None  # () -> object with .scan() -> host.Snapshot
    clock: Callable[[], float] = time.time
    dip_home: Optional[str] = None  # None: env DIP_HOME
    start_sampler: bool = True
    inventory_ttl_seconds: float = 10.0  # listing DSS activities is shared by requests for this long
    listing_wait_seconds: float = 1.0  # the longest a view waits for a DSS listing (the snapshot: always)
    first_listing_wait_seconds: float = 5.0  # the table's while nothing was ever listed (while DSS answers); an apply's
    identity_ttl_seconds: float = 30.0  # a resolved browser identity is reused for this long (per cookie hash)
    group_ttl_seconds: float = 60.0  # group definitions (admin flag) are reused for this long
    action_wait_seconds: float = 10.0  # how long an apply waits for DSS to confirm the stop
    watch_window_seconds: Optional[float] = None  # a view requested this recently is precomputed after each sample
    # (seconds; None: max(3 x sampling_interval_seconds, 60 s))
    pods: Optional[object] = None  # pods.PodSettings: DSS's pods on Kubernetes beside the host (k8s* params)
    pod_api_factory: Optional[Callable[[], object]] = None  # () -> kubernetes ApiClient (default: from `pods`)
    prometheus_url: Optional[str] = None  # history and nodes from this Prometheus (prom_history.py); None: SQLite
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config, **overrides):
        """Options from the webapp params (docs/webapp-api.md); a bad value raises ConfigError naming its key."""
        config = dict(config or {})
        history_dir = config.get("historyDir")
        if history_dir is not None and not isinstance(history_dir, str):
            raise ConfigError("historyDir", "must be a folder path, got %r" % (history_dir,))
        values = dict(
            sampling_interval_seconds=float(_int_param(config, "samplingIntervalSeconds", 10, 2, 3600)),
            retention_days=float(_int_param(config, "retentionDays", 7, 1, 90)),
            history_dir=(history_dir or "").strip() or None,
            allowed_groups=_groups_param(config, "allowedGroups"),
            top_n=_int_param(config, "topProcessesPerRole", history.DEFAULT_TOP_N, 1, 100),
            action_wait_seconds=float(_int_param(config, "actionWaitSeconds", 10, 0, 120)),
            pods=settings_if_enabled(config, dip_home=overrides.get("dip_home") or os.environ.get("DIP_HOME")),
            prometheus_url=_prometheus_param(config, "prometheusUrl"),
        )
        values.update(overrides)
        return cls(**values)


def _prometheus_param(config, key):
    value = config.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    from .prom_history import check_url

    return check_url(value, param=key)


def _default_scanner():
    from .host import Scanner

    return Scanner(pss=False)


def dss_versions(client):
    """{"dss": DSS's version or None, "dataikuapi": the client library's version or None}, for the page footer
    (from dss.versions: read once per client from get_instance_info())."""
    from .dss import versions

    record = versions(client)
    return {"dss": safe_text(record.dss_version, 40), "dataikuapi": safe_text(record.client_version, 40)}


class _TtlCache:
    """A small thread-safe cache of values with an expiry (monotonic seconds)."""

    def __init__(self, ttl_seconds, max_items=1024):
        self.ttl_seconds = ttl_seconds
        self.max_items = max_items
        self._items = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.monotonic():
                return None
            return item[1]

    def put(self, key, value):
        with self._lock:
            if len(self._items) >= self.max_items:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl_seconds, value)

    def clear(self):
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class Identity:
    user: str
    groups: Tuple[str, ...]
    can_act: bool
    reason: Optional[str]  # why the user may not act (None when they may)
    admin: bool = False  # a DSS administrator (may stop an activity anyway, despite its warnings)


def _with_extra(body, extra):
    """JSON object bytes `body` with the keys of `extra` added (values that change at each request: ages)."""
    tail = json.dumps(extra, separators=(",", ":")).encode("utf-8")
    return body[:-1] + b"," + tail[1:]


class WebappState:
    """What one registered app holds: options, the history store, the sampler, a DSS client and caches."""

    def __init__(self, options):
        self.options = options
        directory = options.history_dir or history.default_history_dir()
        self.store = history.HistoryStore(
            directory, retention_days=options.retention_days, clock=options.clock, top_n=options.top_n
        )
        self.dip_home = options.dip_home if options.dip_home is not None else os.environ.get("DIP_HOME")
        self.sampler = Sampler(
            self.store, options.scanner_factory or _default_scanner, interval_seconds=options.sampling_interval_seconds,
            dip_home=self.dip_home, on_tick=self.warm_views, pods=self._sampled_pods,
        )
        self._client = None
        self._client_lock = threading.Lock()
        self.versions = None  # {"dss", "dataikuapi"}: read once, by the first listing
        self.listing = ListingCache(self._list, ttl_seconds=options.inventory_ttl_seconds,
                                    wait_seconds=options.listing_wait_seconds,
                                    first_wait_seconds=options.first_listing_wait_seconds, clock=options.clock,
                                    last_answer_monotonic=dss.last_answer_monotonic)
        self.inflight = InFlight(directory, wait_seconds=options.action_wait_seconds + 60.0)
        self._views = {}  # view name -> (key, JSON bytes): computed once per sample and listing
        self._views_lock = threading.Lock()
        self._watched = {}  # view name -> monotonic time of its last request
        self.watch_window_seconds = (options.watch_window_seconds if options.watch_window_seconds is not None
                               else max(3.0 * options.sampling_interval_seconds, 60.0))
        self.computations = Counter()  # view name -> times computed (by a request or a warm-up)
        self.warm_ups = 0  # warm-ups that had watched views to precompute
        self.warm_errors = 0  # views a warm-up failed to compute: logged, never raised
        self.pods = None if options.pods is None else PodSource(
            options.pods, ttl_seconds=options.inventory_ttl_seconds, api_client_factory=options.pod_api_factory)
        self.identities = _TtlCache(options.identity_ttl_seconds)
        self.groups = _TtlCache(options.group_ttl_seconds)
        self.prometheus = None  # prom_history.PrometheusHistory when the "Prometheus URL" setting is set
        if options.prometheus_url:
            from .prom_history import PrometheusHistory

            self.prometheus = PrometheusHistory(options.prometheus_url, clock=options.clock)

    def _sampled_pods(self):
        """DSS's pods the sampler records in the history beside the host (the shared listing; none when off)."""
        return self.pods.listing().pods if self.pods is not None else ()

    # -- DSS ------------------------------------------------------------------------------------------------
    def client(self):
        with self._client_lock:
            if self._client is None:
                from . import webapp  # its _default_client: the one place that says how the webapp gets a client

                self._client = (self.options.client_factory or webapp._default_client)()
            return self._client

    def _list(self):
        """One listing of every kind (run by the listing cache's background thread)."""
        from .activities import list_activities

        client = self.client()
        if self.versions is None:
            self.versions = dss_versions(client)
        return list_activities(client, now=self.options.clock())

    def forget_inventory(self):
        """After an action: list again now, waiting a bounded time, so the page's next table shows the change."""
        self.listing.forget()
        self.listing.get(wait_seconds=self.options.first_listing_wait_seconds)

    def cached_view(self, name, key, compute):
        """The JSON bytes of a view, computed once per `key` (keys change with each sample or listing), so many
        clients polling cost one computation per sample and backend process."""
        with self._views_lock:
            hit = self._views.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        body = json.dumps(compute(), separators=(",", ":")).encode("utf-8")
        with self._views_lock:
            self._views[name] = (key, body)
            self.computations[name] += 1
        return body

    def _listing_extra(self, status):
        return {"listing": status.as_json(self.options.clock()), "history_state": self.store.health(),
                "versions": self.versions}

    # -- views (one place each: the routes and the warm-up call these) ------------------------------------------
    def snapshot_view(self, wait_seconds=None):
        """The /api/snapshot body (JSON bytes): the latest sample with its figures; DSS only for the kernels' names."""
        local = self.sampler.status()
        taken_at = self.store.latest_taken_at()
        if taken_at is None:
            return _with_extra(json.dumps(self._no_sample_payload(local)).encode("utf-8"),
                               self._listing_extra(self.listing.status()))
        # a host view: never waits on DSS longer than listing_wait_seconds, even before the first listing
        status = self.listing.get(self.options.listing_wait_seconds if wait_seconds is None else wait_seconds)
        inv = status.inventory
        api_error = status.error
        if api_error is None and inv is not None and inv.errors:
            api_error = "%d DSS listing call(s) failed: see the table's errors" % len(inv.errors)
        pods = self.pods.listing() if self.pods is not None else None
        key = (taken_at, status.version, api_error, local["is_writer"], local["running"], pods and pods.taken_at)
        body = self.cached_view("snapshot", key, lambda: self._snapshot_payload(inv, api_error, local, pods))
        return _with_extra(body, self._listing_extra(status))

    def _no_sample_payload(self, local):
        reason = "No sample yet: the sampler writes its first one within %g s." % self.options.sampling_interval_seconds
        if local["last_error"]:
            reason = "The sampler could not scan this host (%s)." % local["last_error"]
        return {
            "taken_at": None, "host": "", "on_host": False, "degraded_reason": reason, "api_error": None,
            "roles": [], "figures": {"treemap": None, "java_xmx": None, "kernels_idle_memory": None, "cgroups": None},
            "stats": {}, "sampler": dict(local, last_sample_at=None),
        }

    def _snapshot_payload(self, inv, api_error, local, pods=None):
        latest = self.store.latest()
        as_of = inv.taken_at if inv is not None else self.options.clock()
        # the table's join (same processes, listing and instance): the chart's orphans are the Orphans tab's
        joined = host_join(latest.processes if latest.on_host else (), inv, as_of, instance=self.dip_home,
                           contexts=latest.contexts)
        charted = [p for p in latest.processes if p.role not in HIDDEN_ROLES]
        sampler = dict(latest.sampler)
        sampler.update({"is_writer": local["is_writer"], "running": local["running"],
                        "last_error": local["last_error"]})
        return {
            "taken_at": latest.taken_at,
            "host": safe_text(latest.hostname),
            "on_host": latest.on_host,
            "degraded_reason": latest.degraded_reason,
            "api_error": api_error,
            "roles": charts.role_rows(charted),
            "figures": {
                "treemap": charts.treemap(charted + for_treemap(pods.pods if pods else ()), top_n=self.options.top_n),
                "java_xmx": charts.java_xmx(charted),
                "kernels_idle_memory": charts.kernels_idle_memory(joined, as_of),
                "cgroups": charts.cgroups(latest.cgroups),
            },
            "stats": dict(latest.stats),
            "sampler": sampler,
        }

    def history_view(self, window, node=None):
        """The /api/history body (JSON bytes) for `window` (ConfigError naming `window` when unknown): from the
        SQLite history, or from Prometheus for one `node` (None: every node) when a Prometheus URL is set."""
        _, step, _ = self.store.window(window)
        if self.prometheus is not None:
            from . import prom_history

            key = int(self.options.clock() // step)
            return self.cached_view("history:%s:%s" % (window, node or ""), key,
                                    lambda: prom_history.history_view(self.prometheus, window, node=node))
        key = (self.store.latest_taken_at(), int(self.options.clock() // step))

        return self.cached_view("history:%s" % window, key, lambda: charts.history_body(
            window, self.store.role_series(window), oom=self.store.oom_series(window)))

    def table_view(self, wait_seconds=None):
        """The /api/table body (JSON bytes): processes of the last sample joined to the last DSS listing."""
        from .activities import Inventory

        status = self.listing.get(wait_seconds)
        inv = status.inventory or Inventory(taken_at=self.options.clock(), activities=(), errors=())
        taken_at = self.store.latest_taken_at()
        pods = self.pods.listing() if self.pods is not None else None

        def compute():
            latest = self.store.latest()
            processes = latest.processes if (latest is not None and latest.on_host) else ()
            rows, orphans, without = join_table(processes, status.inventory, inv.taken_at, instance=self.dip_home,
                                                contexts=latest.contexts if processes else None)
            pods_block = None
            if pods is not None:  # DSS's pods beside the host's processes, with a "where" column
                rows, orphans, without, pods_block = add_to_table(
                    rows, orphans, without, pods, inv, inv.taken_at, process_row,
                    safe_text(latest.hostname) if latest is not None else "")
            if status.inventory is None:  # nothing listed yet: no process can be called an orphan
                rows, orphans = rows + orphans, []
            rows.sort(key=lambda r: -(r["rss_anon_bytes"] or 0))
            errors = error_rows(inv)
            if status.error:
                errors.insert(0, {"kind": "listing", "project_key": None, "message": status.error})
            return {"taken_at": latest.taken_at if latest is not None else None, "rows": rows, "orphans": orphans,
                    "errors": errors, "activities_without_process": without, "pods": pods_block}

        key = (taken_at, status.version, status.error, pods and pods.taken_at)
        body = self.cached_view("table", key, compute)
        return _with_extra(body, self._listing_extra(status))

    def view(self, name, wait_seconds=None):
        """A view by name: "snapshot", "table" or "history:<window>"."""
        if name == "snapshot":
            return self.snapshot_view(wait_seconds)
        if name == "table":
            return self.table_view(wait_seconds)
        return self.history_view(name.split(":", 1)[1])

    # -- precomputing while watched --------------------------------------------------------------------------
    def watch(self, name):
        """Note that view `name` was just served (a valid view name only: the warm-up computes it again)."""
        with self._views_lock:
            self._watched[name] = time.monotonic()

    def watched_views(self):
        """Names of the views requested within the last `watch_window_seconds` seconds."""
        now = time.monotonic()
        with self._views_lock:
            return sorted(n for n, t in self._watched.items() if now - t < self.watch_window_seconds)

    def warm_views(self):
        """Precompute the watched views (the sampler thread calls this after each tick), so the next requests are
        served stored bytes. Nobody watching: nothing is computed and DSS is not listed. When the listing expires
        before the next tick it is refreshed here (waiting a bounded time: never a whole slow call). Never raises:
        failures are logged and counted in `warm_errors`. Returns the number of views computed or checked."""
        names = self.watched_views()
        if not names:
            return 0
        self.warm_ups += 1
        wait = max(self.options.listing_wait_seconds, min(0.5 * self.options.sampling_interval_seconds, 15.0))
        if self.listing.status().slow:  # a call is already slow: warm the views with the listing there is
            wait = 0.0
        if "snapshot" in names or "table" in names:
            self.listing.get(wait_seconds=wait, min_fresh_seconds=self.options.sampling_interval_seconds)
        for name in names:
            try:
                self.view(name, wait_seconds=0.0)
            except Exception as exc:  # noqa: BLE001 - the sampler never dies: log, count, next tick
                self.warm_errors += 1
                logger.warning("warm-up: computing the %s view failed (%s)", name, exc.__class__.__name__,
                               exc_info=not isinstance(exc, (ApiError, ConfigError, history.HistoryUnavailable)))
        return len(names)

    # -- who is browsing ---------------------------------------------------------------------------------------
    def identify(self, headers):
        """The browsing user from the request headers, via DSS. Raises ApiError 403 when DSS does not know the
        session, and DSSError when DSS cannot be asked."""
        secret_part = "\n".join(headers.get(h, "") for h in ("Cookie", "Authorization", "X-DKU-APITicket"))
        key = hashlib.sha256(secret_part.encode("utf-8", "replace")).hexdigest()
        cached = self.identities.get(key)
        if cached is not None:
            return cached
        if not secret_part.strip():
            raise ApiError(403, "identity_unknown", "no DSS session in the request: log in to DSS and reload")
        info = self._auth_info(headers)
        user = info.get("authIdentifier") if isinstance(info, dict) else None
        if not user:
            raise ApiError(403, "identity_unknown", "DSS did not say who the browsing user is")
        groups = tuple(str(g) for g in (info.get("groups") or ()))
        identity, settled = self._authorise(safe_text(str(user)), groups)
        if settled:  # a refusal that comes from a group DSS could not describe is not remembered
            self.identities.put(key, identity)
        return identity

    def _auth_info(self, headers):
        from .dss import translate_error

        try:
            return self.client().get_auth_info_from_browser_headers(dict(headers))
        except Exception as exc:  # noqa: BLE001 - translated below; unknown errors fail closed
            err = translate_error(exc, "identifying the browsing user")
            if isinstance(err, DSSUnauthorized) or (isinstance(err, DSSError) and err.status in (401, 403, 404)):
                if not self._own_key_accepted():
                    raise ApiError(403, "identity_unknown", "DSS refuses this webapp's own API key (revoked or "
                                   "expired?): check the webapp's run-as user and restart its backend") from None
                raise ApiError(403, "identity_unknown", "DSS does not recognise this session: log in again") from None
            if isinstance(err, DSSError):
                raise err from None
            logger.warning("identity resolution failed unexpectedly (%s)", exc.__class__.__name__)
            raise ApiError(403, "identity_unknown", "the browsing user could not be identified") from None

    def _own_key_accepted(self):
        """Whether DSS still accepts the backend's own credentials (asked only after an identity refusal, to tell a
        revoked run-as key from an unknown browser session)."""
        try:
            self.client().get_auth_info()
        except Exception as exc:  # noqa: BLE001 - any refusal or failure: we cannot tell, say the session
            from .dss import translate_error

            return not isinstance(translate_error(exc, "checking the webapp's own API key"), DSSUnauthorized)
        return True

    def _authorise(self, user, groups):
        """(Identity, settled): settled is False when a group's definition could not be read (then the user is
        refused for now, fail closed, and asked about again at the next request)."""
        allowed = [g for g in groups if g in self.options.allowed_groups]
        if allowed:  # may act; an administrator too (stops anyway) when one of its groups says so
            return Identity(user, groups, True, None, any(self._group_is_admin(g) for g in groups)), True
        unknown = []
        for group in groups:
            admin = self._group_is_admin(group)
            if admin:
                return Identity(user, groups, True, None, True), True
            if admin is None:
                unknown.append(group)
        allowed_text = (" nor in a group allowed to act (%s)" % ", ".join(self.options.allowed_groups)
                        if self.options.allowed_groups else "")
        reason = "%s is not a DSS administrator%s" % (user, allowed_text)
        if unknown:
            reason = "%s is not known to be a DSS administrator (DSS did not describe group %s)" % (
                user, safe_text(unknown[0], 80))
        return Identity(user, groups, False, reason), not unknown

    def _group_is_admin(self, group):
        cached = self.groups.get(group)
        if cached is not None:
            return cached
        if not is_valid("group", group):  # a value read back from DSS reaches a path only when checked
            logger.warning("group %s is not a valid group name: treated as not admin", safe_text(group, 80))
            return None
        try:
            definition = self.client().get_group(group).get_definition()
            admin = bool(isinstance(definition, dict) and definition.get("admin") is True)
        except Exception as exc:  # noqa: BLE001 - cannot tell: None, treated as not admin (fail closed), not cached
            logger.warning("could not read the definition of group %s (%s): treated as not admin",
                           safe_text(group, 80), exc.__class__.__name__)
            return None
        self.groups.put(group, admin)
        return admin
