"""The monitoring webapp's routes: a module-level Flask Blueprint of small views over one `WebappState`.

`register_routes(app, config_or_options)` (an `init_app`) stores a `WebappState` in
`app.extensions["process_tracker"]`, registers the blueprint on `app` (DSS's injected app, the demo's app and test
clients alike) and starts the sampler thread (once per app; never at import). The views read the state from
`current_app.extensions`; nothing else lives at module level but the blueprint and the views.

Who may do what (docs/webapp-api.md):
- reads need a DSS user identified from the browser headers (`@reader`; DSS already decides who may open it);
- actions (`@actor`) need a JSON body, the header `X-Process-Tracker-CSRF: 1` and, when present, an `Origin` of this
  host; then a DSS admin or a member of `allowedGroups`. Anything that cannot be resolved fails closed (403).
The action use case itself (look up in a fresh listing, protect, perform once) is webapp_actions.run_action.
Errors become one JSON envelope `{"error": {"code", "message"}}` (`_on_error`), messages bounded and escaped.
"""
import functools
import logging
import os
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import history
from .errors import ConfigError, DSSError
from .identifiers import safe_text
from .prom_history import PrometheusError, nodes_view
from .webapp_actions import ACTION_KINDS, ApiError, run_action
from .webapp_state import WebappOptions, WebappState
from .webapp_table import activity_row, join_table, process_row  # noqa: F401 - re-exported

logger = logging.getLogger(__name__)

EXTENSION_KEY = "process_tracker"
CSRF_HEADER = "X-Process-Tracker-CSRF"
MESSAGE_LIMIT = 400  # characters of an error message answered

__all__ = ["ACTION_KINDS", "ApiError", "WebappOptions", "WebappState", "register_routes", "bp"]

bp = Blueprint("process_tracker", __name__)


def _default_client():
    """The backend's DSS client (inside DSS: the webapp's run-as identity), unless WebappOptions gives a factory."""
    from .dss import get_client

    return get_client(timeout=(5.0, 30.0), inside_dss=True)


def _state():
    return current_app.extensions[EXTENSION_KEY]


def _envelope(status, code, message):
    response = jsonify({"error": {"code": code, "message": safe_text(message, MESSAGE_LIMIT)}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _json(payload):
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"
    return response


def _json_bytes(body):
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------------------------------------------------
# access checks


def _check_csrf():
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


def reader(view):
    """The view needs an identified DSS user (in `g.identity`)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        g.identity = _state().identify(request.headers)
        return view(*args, **kwargs)

    return wrapped


def actor(view):
    """The view acts: CSRF defences first, then an identity (DSS unreachable: refused, fail closed)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        _check_csrf()
        try:
            g.identity = _state().identify(request.headers)
        except DSSError:
            raise ApiError(403, "identity_unknown", "the browsing user could not be identified (DSS unreachable)") \
                from None
        return view(*args, **kwargs)

    return wrapped


# ------------------------------------------------------------------------------------------------------------
# errors


# expected errors -> (status, code, prefix of the answered message); ApiError carries its own status and code
_EXPECTED = (
    (ConfigError, 400, "bad_parameter", ""),
    (history.HistoryUnavailable, 503, "history_unavailable", ""),
    (DSSError, 502, "dss_unavailable", "the DSS API call failed: "),
    (PrometheusError, 502, "prometheus_unavailable", ""),
)


@bp.errorhandler(Exception)
def _on_error(exc):
    """One envelope for every error raised by the blueprint's views; unexpected ones are logged with their trace."""
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return _on_routing_error(exc)
    if isinstance(exc, ApiError):
        return _envelope(exc.status, exc.code, str(exc))
    for kind, status, code, prefix in _EXPECTED:
        if isinstance(exc, kind):
            if status >= 500:
                logger.warning("%s: %s", code, safe_text(str(exc), MESSAGE_LIMIT))
            return _envelope(status, code, prefix + str(exc))
    logger.exception("unexpected error in %s %s", request.method, safe_text(request.path, 200))
    return _envelope(500, "internal_error", "unexpected error (%s); details are in the backend log"
                     % exc.__class__.__name__)


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _on_routing_error(exc):
    """An unknown /api/ path or method gets the envelope too (routing errors bypass the blueprint's handler)."""
    if not request.path.startswith("/api/"):
        return exc
    name = exc.name or "HTTP error"
    return _envelope(exc.code or 500, name.lower().replace(" ", "_"), name)


# ------------------------------------------------------------------------------------------------------------
# views


def _serve(name, compute):
    body = compute()
    _state().watch(name)  # after compute: only valid views are watched (and precomputed)
    return _json_bytes(body)


@bp.route("/api/whoami")
def whoami():
    try:
        identity = _state().identify(request.headers)
    except ApiError as e:
        return _json({"user": None, "can_act": False, "reason": str(e)})
    except DSSError as e:
        return _json({"user": None, "can_act": False, "reason": safe_text("DSS could not be asked: %s" % e, 300)})
    return _json({"user": identity.user, "can_act": identity.can_act, "reason": identity.reason,
                  "admin": identity.admin})


@bp.route("/api/snapshot")
@reader
def snapshot():
    return _serve("snapshot", _state().snapshot_view)


@bp.route("/api/history")
@reader
def history_view():
    window = request.args.get("window", "24h")
    node = request.args.get("node") or None  # a node Prometheus scrapes (only with a Prometheus URL)
    if node is not None:
        return _json_bytes(_state().history_view(window, node=node))
    return _serve("history:%s" % window, lambda: _state().history_view(window))


@bp.route("/api/nodes")
@reader
def nodes():
    return _json(nodes_view(_state().prometheus))


@bp.route("/api/table")
@reader
def table():
    return _serve("table", _state().table_view)


def _act(apply):
    state = _state()
    answer = run_action(state.client(), g.identity, request.get_json(silent=True), apply, state.inflight,
                        wait_seconds=state.options.action_wait_seconds, describe=None if apply else _describe)
    if apply:
        state.forget_inventory()
    return _json(answer)


def _describe(activity):
    """The preview's row: the activity with its process from the last sample when there is one."""
    now = _state().options.clock()
    latest = _state().store.latest()
    if latest is not None and latest.on_host and activity.pid is not None:
        proc = next((p for p in latest.processes if p.pid == activity.pid), None)
        if proc is not None:
            return process_row(proc, activity, now)
    return activity_row(activity, now)


@bp.route("/api/actions/preview", methods=["POST"])
@actor
def preview():
    return _act(apply=False)


@bp.route("/api/actions/apply", methods=["POST"])
@actor
def apply_action():
    return _act(apply=True)


@bp.route("/plotly.min.js")
def plotly_js():
    import plotly

    with open(os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js"), "rb") as f:
        response = Response(f.read(), mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


# ------------------------------------------------------------------------------------------------------------


def register_routes(app, options=None):
    """Register the webapp's routes on `app` and start the sampler. `options` is the webapp config dict (keys
    of docs/webapp-api.md) or a WebappOptions. Idempotent per app: returns the app's WebappState."""
    existing = app.extensions.get(EXTENSION_KEY)
    if existing is not None:
        return existing
    if not isinstance(options, WebappOptions):
        options = WebappOptions.from_config(options or {})
    state = WebappState(options)
    app.extensions[EXTENSION_KEY] = state
    app.register_blueprint(bp)
    if options.start_sampler:
        state.sampler.start()
    return state


init_app = register_routes
