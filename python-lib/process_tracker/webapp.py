"""The monitoring webapp's backend: JSON routes registered on the Flask app DSS injects into backend.py.

`register_routes(app, config_or_options)` adds the routes of docs/webapp-api.md to `app` (DSS's injected app,
the demo's app and test clients alike), and starts the sampler thread (once per app; never at import).
All state lives in one `WebappState` stored in `app.extensions["process_tracker"]`: nothing at module level.

Who may do what (docs/webapp-api.md):
- reads need a DSS user identified from the browser headers (DSS already decides who may open the webapp);
- actions need a DSS admin or a member of `allowedGroups`, a JSON body, the header `X-Process-Tracker-CSRF: 1`
  and, when present, an `Origin` of this host. Anything that cannot be resolved fails closed (403).
Only the elected sampler scans the host; the endpoints read the history, so several backend processes and many
clients cost one scan per interval.

Views (snapshot, table, history per window) are JSON bytes computed once per sample and DSS listing. While the
page is watched (a view requested within `watch_window_s`), the sampler thread precomputes the watched views
after each tick (`WebappState.warm_views`: the writer right after its sample, readers when they notice one), so
polling clients are served stored bytes; when nobody looks, views are computed by the first request and DSS is
not listed.
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
from urllib.parse import urlsplit

from . import charts, history
from .errors import ConfigError, DSSError, DSSUnauthorized, ProcessTrackerError
from .sampler import Sampler

logger = logging.getLogger(__name__)

EXTENSION_KEY = "process_tracker"
CSRF_HEADER = "X-Process-Tracker-CSRF"
ACTION_KINDS = ("notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio")
HIDDEN_ROLES = charts.HIDDEN_ROLES

__all__ = ["WebappOptions", "WebappState", "register_routes"]


class ApiError(ProcessTrackerError):
    """An error answered as the JSON envelope with `status` and `code`; `message` is safe to show."""

    def __init__(self, status, code, message):
        self.status = status
        self.code = code
        super().__init__(message)


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

    sampling_interval_s: float = 10.0
    retention_days: float = 7.0
    history_dir: Optional[str] = None  # None: history.default_history_dir()
    allowed_groups: Tuple[str, ...] = ()
    top_n: int = history.DEFAULT_TOP_N
    client_factory: Optional[Callable[[], object]] = None  # () -> dataikuapi.DSSClient
    scanner_factory: Optional[Callable[[], object]] = None  # () -> object with .scan() -> host.Snapshot
    clock: Callable[[], float] = time.time
    dip_home: Optional[str] = None  # None: env DIP_HOME
    start_sampler: bool = True
    inventory_ttl_s: float = 10.0  # listing DSS activities is shared by requests for this long
    identity_ttl_s: float = 30.0  # a resolved browser identity is reused for this long (per cookie hash)
    group_ttl_s: float = 60.0  # group definitions (admin flag) are reused for this long
    action_wait_s: float = 10.0  # how long an apply waits for DSS to confirm the stop
    watch_window_s: Optional[float] = None  # a view requested this recently is precomputed after each sample
    # (seconds; None: max(3 x sampling_interval_s, 60 s))
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config, **overrides):
        """Options from the webapp params (docs/webapp-api.md); a bad value raises ConfigError naming its key."""
        config = dict(config or {})
        history_dir = config.get("historyDir")
        if history_dir is not None and not isinstance(history_dir, str):
            raise ConfigError("historyDir", "must be a folder path, got %r" % (history_dir,))
        values = dict(
            sampling_interval_s=float(_int_param(config, "samplingIntervalSeconds", 10, 2, 3600)),
            retention_days=float(_int_param(config, "retentionDays", 7, 1, 90)),
            history_dir=(history_dir or "").strip() or None,
            allowed_groups=_groups_param(config, "allowedGroups"),
            top_n=_int_param(config, "topProcessesPerRole", history.DEFAULT_TOP_N, 1, 100),
            action_wait_s=float(_int_param(config, "actionWaitSeconds", 10, 0, 120)),
        )
        values.update(overrides)
        return cls(**values)


def _default_client():
    from .dss import get_client

    return get_client(timeout=(5.0, 30.0), inside_dss=True)


def _default_scanner():
    from .host import Scanner

    return Scanner(pss=False)


class _TtlCache:
    """A small thread-safe cache of values with an expiry (monotonic seconds)."""

    def __init__(self, ttl_s, max_items=1024):
        self.ttl_s = ttl_s
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
            self._items[key] = (time.monotonic() + self.ttl_s, value)

    def clear(self):
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class Identity:
    user: str
    groups: Tuple[str, ...]
    can_act: bool
    reason: Optional[str]  # why the user may not act (None when they may)


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
            self.store, options.scanner_factory or _default_scanner, interval_s=options.sampling_interval_s,
            dip_home=self.dip_home, on_tick=self.warm_views,
        )
        self._client = None
        self._client_lock = threading.Lock()
        self._inventory_lock = threading.Lock()
        self._inventory = None  # (monotonic expiry, Inventory, version)
        self._inventory_version = 0
        self._views = {}  # view name -> (key, JSON bytes): computed once per sample and listing
        self._views_lock = threading.Lock()
        self._watched = {}  # view name -> monotonic time of its last request
        self.watch_window_s = (options.watch_window_s if options.watch_window_s is not None
                               else max(3.0 * options.sampling_interval_s, 60.0))
        self.computations = Counter()  # view name -> times computed (by a request or a warm-up)
        self.warm_ups = 0  # warm-ups that had watched views to precompute
        self.warm_errors = 0  # views (or listings) a warm-up failed to compute: logged, never raised
        self.identities = _TtlCache(options.identity_ttl_s)
        self.groups = _TtlCache(options.group_ttl_s)

    # -- DSS ------------------------------------------------------------------------------------------------
    def client(self):
        with self._client_lock:
            if self._client is None:
                self._client = (self.options.client_factory or _default_client)()
            return self._client

    def inventory(self, fresh=False):
        """The DSS activities, shared by requests for `inventory_ttl_s` (one listing at a time)."""
        return self.versioned_inventory(fresh)[0]

    def versioned_inventory(self, fresh=False, min_fresh_s=0.0):
        """(Inventory, version): the version changes with each listing (a cache key for the views). Lists again
        when `fresh`, or when the cached listing expires within `min_fresh_s` seconds."""
        from .activities import list_activities

        with self._inventory_lock:
            if (not fresh and self._inventory is not None
                    and self._inventory[0] > time.monotonic() + min_fresh_s):
                return self._inventory[1], self._inventory[2]
            inv = list_activities(self.client(), now=self.options.clock())
            self._inventory_version += 1
            self._inventory = (time.monotonic() + self.options.inventory_ttl_s, inv, self._inventory_version)
            return inv, self._inventory_version

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

    # -- views (one place each: the routes and the warm-up call these) ------------------------------------------
    def _listing(self):
        """(Inventory or None, its version, api_error or None): the snapshot still serves host views when DSS fails."""
        try:
            inv, version = self.versioned_inventory()
        except ProcessTrackerError as e:
            return None, None, str(e)
        if inv.errors:
            return inv, version, "%d DSS listing call(s) failed: see the table's errors" % len(inv.errors)
        return inv, version, None

    def snapshot_view(self):
        """The /api/snapshot body (JSON bytes): the latest sample with its figures."""
        local = self.sampler.status()
        taken_at = self.store.latest_taken_at()
        if taken_at is None:
            reason = "No sample yet: the sampler writes its first one within %g s." % self.options.sampling_interval_s
            if local["last_error"]:
                reason = "The sampler could not scan this host (%s)." % local["last_error"]
            return json.dumps({
                "taken_at": None, "host": "", "on_host": False, "degraded_reason": reason, "api_error": None,
                "roles": [], "figures": {"treemap": None, "java_xmx": None, "kernels_idle_memory": None,
                                         "cgroups": None},
                "stats": {}, "sampler": dict(local, last_sample_at=None),
            }).encode("utf-8")
        inv, version, api_error = self._listing()
        key = (taken_at, version, api_error, local["is_writer"], local["running"])
        return self.cached_view("snapshot", key, lambda: self._snapshot_payload(inv, api_error, local))

    def _snapshot_payload(self, inv, api_error, local):
        latest = self.store.latest()
        activities = inv.activities if inv is not None else ()
        as_of = inv.taken_at if inv is not None else self.options.clock()
        by_pid = {a.pid: a for a in activities if a.pid is not None}
        charted = [p for p in latest.processes if p.role not in HIDDEN_ROLES]
        sampler = dict(latest.sampler)
        sampler.update({"is_writer": local["is_writer"], "running": local["running"]})
        return {
            "taken_at": latest.taken_at,
            "host": latest.hostname,
            "on_host": latest.on_host,
            "degraded_reason": latest.degraded_reason,
            "api_error": api_error,
            "roles": charts.role_rows(charted),
            "figures": {
                "treemap": charts.treemap(charted, top_n=self.options.top_n),
                "java_xmx": charts.java_xmx(charted),
                "kernels_idle_memory": charts.kernels_idle_memory(charted, by_pid, as_of),
                "cgroups": charts.cgroups(latest.cgroups),
            },
            "stats": dict(latest.stats),
            "sampler": sampler,
        }

    def history_view(self, window):
        """The /api/history body (JSON bytes) for `window` (ConfigError naming `window` when unknown)."""
        _, step, _ = self.store.window(window)
        key = (self.store.latest_taken_at(), int(self.options.clock() // step))

        def compute():
            series = self.store.role_series(window)
            return {
                "window": window,
                "points": series.points,
                "step_s": series.step_s,
                "figures": {"memory_by_role": charts.memory_by_role(series),
                            "count_by_role": charts.count_by_role(series)},
            }

        return self.cached_view("history:%s" % window, key, compute)

    def table_view(self):
        """The /api/table body (JSON bytes): processes joined to DSS activities. DSSError when DSS cannot list."""
        inv, version = self.versioned_inventory()
        taken_at = self.store.latest_taken_at()

        def compute():
            latest = self.store.latest()
            processes = latest.processes if (latest is not None and latest.on_host) else ()
            rows, orphans, without = join_table(processes, inv, inv.taken_at, instance=self.dip_home)
            rows.sort(key=lambda r: -(r["rss_anon_bytes"] or 0))
            return {
                "taken_at": latest.taken_at if latest is not None else None,
                "rows": rows,
                "orphans": orphans,
                "errors": [{"kind": e.kind, "project_key": e.project_key, "message": e.message} for e in inv.errors],
                "activities_without_process": without,
            }

        return self.cached_view("table", (taken_at, version), compute)

    def view(self, name):
        """A view by name: "snapshot", "table" or "history:<window>"."""
        if name == "snapshot":
            return self.snapshot_view()
        if name == "table":
            return self.table_view()
        return self.history_view(name.split(":", 1)[1])

    # -- precomputing while watched --------------------------------------------------------------------------
    def watch(self, name):
        """Note that view `name` was just served (a valid view name only: the warm-up computes it again)."""
        with self._views_lock:
            self._watched[name] = time.monotonic()

    def watched_views(self):
        """Names of the views requested within the last `watch_window_s` seconds."""
        now = time.monotonic()
        with self._views_lock:
            return sorted(n for n, t in self._watched.items() if now - t < self.watch_window_s)

    def warm_views(self):
        """Precompute the watched views (the sampler thread calls this after each tick), so the next requests are
        served stored bytes. Nobody watching: nothing is computed and DSS is not listed. When the cached listing
        expires before the next tick it is listed again here (not by a request). Never raises: failures are
        logged and counted in `warm_errors`. Returns the number of views computed or checked."""
        names = self.watched_views()
        if not names:
            return 0
        self.warm_ups += 1
        if "snapshot" in names or "table" in names:
            try:
                self.versioned_inventory(min_fresh_s=self.options.sampling_interval_s)
            except Exception as exc:  # noqa: BLE001 - DSS down: the requests say so; warm the host views only
                self.warm_errors += 1
                logger.warning("warm-up: listing DSS activities failed (%s)", exc.__class__.__name__)
                names = [n for n in names if n not in ("snapshot", "table")]
        for name in names:
            try:
                self.view(name)
            except Exception as exc:  # noqa: BLE001 - the sampler never dies: log, count, next tick
                self.warm_errors += 1
                logger.warning("warm-up: computing the %s view failed (%s)", name, exc.__class__.__name__,
                               exc_info=not isinstance(exc, ProcessTrackerError))
        return len(names)

    def forget_inventory(self):
        with self._inventory_lock:
            self._inventory = None

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
        from .dss import translate_error

        try:
            info = self.client().get_auth_info_from_browser_headers(dict(headers))
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
        user = info.get("authIdentifier") if isinstance(info, dict) else None
        if not user:
            raise ApiError(403, "identity_unknown", "DSS did not say who the browsing user is")
        groups = tuple(str(g) for g in (info.get("groups") or ()))
        identity, settled = self._authorise(str(user), groups)
        if settled:  # a refusal that comes from a group DSS could not describe is not remembered
            self.identities.put(key, identity)
        return identity

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
        if allowed:
            return Identity(user, groups, True, None), True
        unknown = []
        for group in groups:
            admin = self._group_is_admin(group)
            if admin:
                return Identity(user, groups, True, None), True
            if admin is None:
                unknown.append(group)
        allowed_text = (" nor in a group allowed to act (%s)" % ", ".join(self.options.allowed_groups)
                        if self.options.allowed_groups else "")
        reason = "%s is not a DSS administrator%s" % (user, allowed_text)
        if unknown:
            reason = "%s is not known to be a DSS administrator (DSS did not describe group %s)" % (user, unknown[0])
        return Identity(user, groups, False, reason), not unknown

    def _group_is_admin(self, group):
        cached = self.groups.get(group)
        if cached is not None:
            return cached
        try:
            definition = self.client().get_group(group).get_definition()
            admin = bool(isinstance(definition, dict) and definition.get("admin") is True)
        except Exception as exc:  # noqa: BLE001 - cannot tell: None, treated as not admin (fail closed), not cached
            logger.warning("could not read the definition of group %r (%s): treated as not admin",
                           group, exc.__class__.__name__)
            return None
        self.groups.put(group, admin)
        return admin


# ------------------------------------------------------------------------------------------------------------
# the table: host processes joined to DSS activities


def _activity_fields(a, as_of):
    if a is None:
        return {"project_key": None, "activity_kind": None, "activity_id": None, "activity_name": None,
                "owner": None, "idle_seconds": None, "state": None, "actionable": False}
    idle = None
    if a.last_activity_time is not None:
        idle = round(max(0.0, as_of - a.last_activity_time), 1)
    return {"project_key": a.project_key, "activity_kind": a.kind, "activity_id": a.id, "activity_name": a.name,
            "owner": a.owner, "idle_seconds": idle, "state": a.state, "actionable": a.kind in ACTION_KINDS}


def process_row(p, activity, as_of):
    """One table row for a stored process and the activity explaining it (or None). The process's age is as of
    its sample; the idle time as of `as_of` (epoch s: when the activities were listed)."""
    display, _ = charts.role_style(p.role)
    age = None if p.age_seconds is None else round(p.age_seconds, 1)
    row = {"pid": p.pid, "role": p.role, "role_display": display, "label": p.label, "user": p.user,
           "instance": p.instance, "age_seconds": age, "rss_anon_bytes": p.rss_anon_bytes, "rss_bytes": p.rss_bytes}
    row.update(_activity_fields(activity, as_of))
    if p.link:  # a UIF wrapper (sudo, exec.py): the kernel's own row carries the action
        row["actionable"] = False
    return row


def activity_row(a, as_of):
    """A table row for an activity with no visible process; ages as of `as_of` (epoch s)."""
    age = None if a.start_time is None else round(max(0.0, as_of - a.start_time), 1)
    row = {"pid": a.pid, "role": None, "role_display": None, "label": None, "user": None, "instance": None,
           "age_seconds": age, "rss_anon_bytes": None, "rss_bytes": None}
    row.update(_activity_fields(a, as_of))
    return row


def join_table(processes, inventory, as_of, instance=None):
    """(rows, orphans, activities_without_process) for /api/table, from joins.join: every DSS process with the
    activity that explains it (`status` and `via` say how), the orphan units (kernels or webapp backends no
    activity explains), and the activities that explain no visible process."""
    from . import joins
    from .host import Snapshot

    snap = Snapshot(taken_at=as_of, hostname="", processes=tuple(processes), roles={}, cgroups=(), stats=None)
    joined = joins.join(snap, inventory, instance=instance)
    orphan_pids = {p.pid for p in joined.orphans}
    rows, orphans = [], []
    for m in joined.rows:
        if m.status == "not_dss":
            continue
        row = process_row(m.process, m.activity, as_of)
        row["status"], row["via"] = m.status, m.via
        (orphans if m.process.pid in orphan_pids else rows).append(row)
    explained = {(m.activity.kind, m.activity.id) for m in joined.matches}
    without = [activity_row(a, as_of) for a in inventory.activities if (a.kind, a.id) not in explained]
    return rows, orphans, without


# ------------------------------------------------------------------------------------------------------------
# routes


def _envelope(status, code, message):
    from flask import jsonify

    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _check_csrf(request):
    if request.mimetype != "application/json":
        raise ApiError(403, "csrf_refused", "actions need a JSON body (Content-Type: application/json)")
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "csrf_refused", "actions need the header %s: 1" % CSRF_HEADER)
    origin = request.headers.get("Origin")
    if origin is not None:
        hosts = {request.host.lower()}
        forwarded = request.headers.get("X-Forwarded-Host")
        if forwarded:
            hosts.update(h.strip().lower() for h in forwarded.split(","))
        if origin == "null" or urlsplit(origin).netloc.lower() not in hosts:
            raise ApiError(403, "csrf_refused", "the request comes from another site (Origin does not match)")


def _short(value, limit=60):
    """A bounded repr of user input for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _action_body(request, apply):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ConfigError("body", "a JSON object {\"kind\", \"project_key\", \"id\"} is expected")
    kind = body.get("kind")
    if kind not in ACTION_KINDS:
        raise ConfigError("kind", "must be one of %s, got %s" % (", ".join(ACTION_KINDS), _short(kind)))
    activity_id = body.get("id")
    if not isinstance(activity_id, str) or not activity_id.strip() or len(activity_id) > 256:
        raise ConfigError("id", "the activity id (a non-empty string) is required")
    project_key = body.get("project_key")
    if project_key is not None and (not isinstance(project_key, str) or len(project_key) > 256):
        raise ConfigError("project_key", "must be a project key (a string) or null")
    if kind not in ("future", "scenario") and not project_key:
        raise ConfigError("project_key", "a %s is identified within a project: give its project key" % kind)
    if apply and body.get("confirm") is not True:
        raise ConfigError("confirm", "applying an action needs \"confirm\": true (preview it first)")
    return kind, project_key or None, activity_id.strip()


def register_routes(app, options=None):
    """Register the webapp's routes on `app` and start the sampler. `options` is the webapp config dict (keys
    of docs/webapp-api.md) or a WebappOptions. Idempotent per app: returns the app's WebappState."""
    from flask import Blueprint, Response, request
    from flask import jsonify as _jsonify
    from werkzeug.exceptions import HTTPException

    existing = app.extensions.get(EXTENSION_KEY)
    if existing is not None:
        return existing
    if not isinstance(options, WebappOptions):
        options = WebappOptions.from_config(options or {})
    state = WebappState(options)
    app.extensions[EXTENSION_KEY] = state
    bp = Blueprint("process_tracker", __name__)

    def jsonify(payload):
        response = _jsonify(payload)
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.errorhandler(Exception)
    def on_error(exc):
        if isinstance(exc, ApiError):
            return _envelope(exc.status, exc.code, str(exc))
        if isinstance(exc, ConfigError):
            return _envelope(400, "bad_parameter", str(exc))
        if isinstance(exc, DSSError):
            logger.warning("DSS call failed: %s", exc)
            return _envelope(502, "dss_unavailable", "the DSS API call failed: %s" % exc)
        if isinstance(exc, HTTPException):
            code = (exc.name or "http_error").lower().replace(" ", "_")
            return _envelope(exc.code or 500, code, exc.name or "HTTP error")
        logger.exception("unexpected error in %s %s", request.method, request.path)
        return _envelope(500, "internal_error", "unexpected error (%s); details are in the backend log"
                         % exc.__class__.__name__)

    def on_routing_error(exc):
        """An unknown /api/ path or method gets the JSON envelope too (routing errors bypass the blueprint)."""
        if not request.path.startswith("/api/"):
            return exc
        return _envelope(exc.code, exc.name.lower().replace(" ", "_"), exc.name)

    app.register_error_handler(404, on_routing_error)
    app.register_error_handler(405, on_routing_error)

    def reader():
        return state.identify(request.headers)

    @bp.route("/api/whoami")
    def whoami():
        try:
            identity = reader()
        except ApiError as e:
            return jsonify({"user": None, "can_act": False, "reason": str(e)})
        except DSSError as e:
            return jsonify({"user": None, "can_act": False, "reason": "DSS could not be asked: %s" % e})
        return jsonify({"user": identity.user, "can_act": identity.can_act, "reason": identity.reason})

    def json_body(body):
        response = Response(body, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response

    def serve(name, compute):
        body = compute()
        state.watch(name)  # after compute: only valid views are watched (and precomputed)
        return json_body(body)

    @bp.route("/api/snapshot")
    def snapshot():
        reader()
        return serve("snapshot", state.snapshot_view)

    @bp.route("/api/history")
    def history_view():
        reader()
        window = request.args.get("window", "24h")
        return serve("history:%s" % window, lambda: state.history_view(window))

    @bp.route("/api/table")
    def table():
        reader()
        return serve("table", state.table_view)

    def act(apply):
        _check_csrf(request)
        try:
            identity = reader()
        except DSSError:
            raise ApiError(403, "identity_unknown", "the browsing user could not be identified (DSS unreachable)") from None
        if not identity.can_act:
            raise ApiError(403, "not_allowed", "%s: only DSS administrators and the groups allowed by the webapp "
                                               "may act" % identity.reason)
        kind, project_key, activity_id = _action_body(request, apply)
        from . import actions, activities, policy

        client = state.client()
        activity = activities.get_activity(client, kind, activity_id, project_key=project_key)
        if activity is None:
            logger.info("%s by %s: %s %s/%s not found", "apply" if apply else "preview", identity.user, kind,
                        project_key or "-", activity_id)
            raise ApiError(404, "not_found", "%s %s is not running (or not visible to the webapp)"
                           % (kind.replace("_", " "), activity_id))
        protection = policy.Protection(pids=frozenset({os.getpid(), os.getppid()}))
        spare = policy.protection_reason(activity, protection)
        reason = spare or "requested by %s from the process monitor" % identity.user
        decision = policy.Decision(activity, act=spare is None, reason=reason)

        def recheck(fresh):
            why = policy.protection_reason(fresh, protection)
            return (why is None, why or reason)

        result = actions.perform(client, [decision], apply=apply, recheck=recheck if apply else None,
                                 wait_seconds=options.action_wait_s, actor=identity.user)[0]
        logger.info("%s by %s: %s %s/%s -> %s", "apply" if apply else "preview", identity.user, kind,
                    project_key or "-", activity_id, result.outcome)
        if apply:
            state.forget_inventory()
            return jsonify({"outcome": result.outcome, "message": result.message, "reason": result.reason})
        now = options.clock()
        latest = state.store.latest()
        row = activity_row(activity, now)
        if latest is not None and latest.on_host:
            proc = next((p for p in latest.processes if activity.pid is not None and p.pid == activity.pid), None)
            if proc is not None:
                row = process_row(proc, activity, now)
        return jsonify({"outcome": result.outcome, "reason": result.reason, "activity": row})

    @bp.route("/api/actions/preview", methods=["POST"])
    def preview():
        return act(apply=False)

    @bp.route("/api/actions/apply", methods=["POST"])
    def apply_action():
        return act(apply=True)

    @bp.route("/plotly.min.js")
    def plotly_js():
        import plotly

        path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
        with open(path, "rb") as f:
            body = f.read()
        response = Response(body, mimetype="application/javascript")
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    app.register_blueprint(bp)
    if options.start_sampler:
        state.sampler.start()
    return state
