"""Serve the process-monitor webapp the way DSS serves a STANDARD plugin webapp, for the demo and browser tests.

What DSS does, and what this server emulates:
- DSS shows the webapp in an iframe of its UI. The iframe's page (`/dip/api/webapps/view?projectKey=..&webAppId=..`)
  is built by DSS from the webapp's files: the standard JS libraries listed in `standardWebAppLibraries` (here only
  `dataiku`, which defines `getWebAppBackendUrl`), `style.css`, `body.html`, then `app.js`. The webapp's own files
  never include app.js or style.css themselves.
- The backend is `backend.py` exec'd with a Flask `app` injected (`dev.dss_runtime.load_webapp_app`), reached
  through DSS's proxy at `/web-apps-backends/<PROJECT_KEY>/<WEBAPP_ID>/<path>`: the browser's headers (cookies
  included) reach the backend, which resolves the browsing user from them through DSS's API.
- The plugin's `resource/` folder is served at `/plugins/<plugin-id>/resource/`.
- Logging in: DSS's session cookie is emulated by `dss_sim_user=<login>`, which the simulated DSS reads in
  `POST /auth/info-from-browser-headers`. `/login?user=alice` sets it (the shell page has a user switcher).

Not shipped in the plugin zip.
"""
import html
import json
import os
import threading
from typing import Optional, Sequence

from flask import Flask, Response, abort, redirect, request, send_from_directory
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server

from dev.dss_runtime import load_webapp_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_ID = "process-tracker"
WEBAPP_ID = "process-monitor"
WEBAPP_DIR = os.path.join(ROOT, "webapps", WEBAPP_ID)
RESOURCE_DIR = os.path.join(ROOT, "resource")
PROJECT_KEY = "DSS_ADMIN"  # the project the webapp would be created in, in DSS
USER_COOKIE = "dss_sim_user"
DEFAULT_USERS = ("admin", "alice", "bob", "ops")

# The stand-in for DSS's standard `dataiku` JS library: only what the webapp uses (getWebAppBackendUrl).
DATAIKU_JS = """
(function () {
    var prefix = %(prefix)s;
    function getWebAppBackendUrl(path) {
        return prefix + "/" + String(path || "").replace(/^\\/+/, "");
    }
    window.dataiku = window.dataiku || {};
    window.dataiku.getWebAppBackendUrl = getWebAppBackendUrl;
    window.dataiku.getWebAppConfig = function () { return %(config)s; };
    window.getWebAppBackendUrl = getWebAppBackendUrl;
})();
"""

VIEW_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%(title)s</title>
<script>%(dataiku_js)s</script>
<style>
%(style)s
</style>
</head>
<body>
%(body)s
<script>
%(app_js)s
</script>
</body>
</html>
"""

SHELL_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Process monitor - simulated DSS</title>
<style>
html, body { margin: 0; height: 100%%; font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 13px; }
.dss-bar { display: flex; align-items: center; gap: 14px; height: 40px; padding: 0 14px; background: #222d38; color: #dfe6ec; }
.dss-bar b { color: #fff; }
.dss-bar a { color: #9ccbef; text-decoration: none; }
.dss-bar a.current { color: #fff; font-weight: 600; text-decoration: underline; }
.dss-bar .spacer { flex: 1; }
iframe { border: 0; width: 100%%; height: calc(100%% - 40px); display: block; }
</style>
</head>
<body>
<div class="dss-bar"><b>Dataiku DSS</b><span>(simulated)</span><span>%(project)s &rsaquo; Webapps &rsaquo; Process monitor</span>
<span class="spacer"></span><span>Signed in as</span>%(users)s</div>
<iframe id="webapp" title="Process monitor" src="%(view)s"></iframe>
</body>
</html>
"""


def _read(name):
    with open(os.path.join(WEBAPP_DIR, name), encoding="utf-8") as f:
        return f.read()


def view_path(project_key=PROJECT_KEY, webapp_id=WEBAPP_ID):
    return "/dip/api/webapps/view?projectKey=%s&webAppId=%s" % (project_key, webapp_id)


def backend_prefix(project_key=PROJECT_KEY, webapp_id=WEBAPP_ID):
    return "/web-apps-backends/%s/%s" % (project_key, webapp_id)


def build_app(backend_app, webapp_config=None, users: Sequence[str] = DEFAULT_USERS, default_user: Optional[str] = "admin"):
    """The WSGI app: DSS's pages and proxies around `backend_app` (the Flask app backend.py was exec'd into)."""
    front = Flask("dss_webapp_front")
    prefix = backend_prefix()

    @front.route("/")
    def shell():
        current = request.cookies.get(USER_COOKIE)
        if not current and default_user:
            return redirect("/login?user=%s" % default_user)
        links = " ".join(
            '<a href="/login?user=%s"%s>%s</a>' % (html.escape(u), ' class="current"' if u == current else "", html.escape(u))
            for u in users
        )
        page = SHELL_PAGE % {"project": html.escape(PROJECT_KEY), "users": links, "view": html.escape(view_path())}
        return Response(page, mimetype="text/html")

    @front.route("/dip/api/webapps/view")
    def view():
        if request.args.get("webAppId") != WEBAPP_ID or request.args.get("projectKey") != PROJECT_KEY:
            abort(404)
        dataiku_js = DATAIKU_JS % {"prefix": json.dumps(prefix), "config": json.dumps(webapp_config or {})}
        page = VIEW_PAGE % {
            "title": "Process monitor",
            "dataiku_js": dataiku_js,
            "style": _read("style.css"),
            "body": _read("body.html"),
            "app_js": _read("app.js"),
        }
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})

    @front.route("/login")
    def login():
        user = request.args.get("user", "")
        if user not in users:
            abort(400)
        target = request.args.get("next") or "/"
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # only local redirects
        response = redirect(target)
        response.set_cookie(USER_COOKIE, user, httponly=True, samesite="Lax")
        return response

    @front.route("/logout")
    def logout():
        response = redirect(view_path())
        response.delete_cookie(USER_COOKIE)
        return response

    @front.route("/plugins/%s/resource/<path:path>" % PLUGIN_ID)
    def resource(path):
        return send_from_directory(RESOURCE_DIR, path)

    @front.route("/favicon.ico")
    def favicon():
        return Response(status=204)

    front.wsgi_app = DispatcherMiddleware(front.wsgi_app, {prefix: backend_app})
    return front


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the demo prints its own summary)."""

    def log_request(self, *args, **kwargs):
        pass


class WebappServer:
    """A threaded HTTP server for `build_app(...)` on a loopback port, in a background thread.

    `port=None` tries `preferred_port` first, then any free port. Use as a context manager or start()/stop().
    """

    def __init__(self, app, host="127.0.0.1", port=None, preferred_port=8765):
        self.app = app
        self.host = host
        self.port = port
        self.preferred_port = preferred_port
        self._server = None
        self._thread = None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self._server.server_port)

    @property
    def view_url(self):
        return self.url + view_path()

    def login_url(self, user):
        return "%s/login?user=%s" % (self.url, user)

    def start(self):
        candidates = [self.port] if self.port is not None else [self.preferred_port, 0]
        error = None
        for port in candidates:
            try:
                self._server = make_server(self.host, port, self.app, threaded=True, request_handler=_QuietHandler)
                break
            except OSError as e:  # port taken: fall back to any free port
                error = e
        if self._server is None:
            raise error
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="webapp-server", daemon=True)
        self._thread.start()
        return self.url

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def load_backend(dss_url, api_key, webapp_config=None, dip_home=None):
    """exec the webapp's backend.py as DSS does, in this process, configured to reach DSS at `dss_url`.

    Like DSS's webapp runner, this sets the backend process's environment: the DSS API location and the key of
    the webapp's run-as user (DKU_DSS_URL, DKU_API_KEY) and DIP_HOME. It mutates os.environ: call it in a
    process dedicated to serving the webapp (the demo), not inside a test process.
    """
    os.environ["DKU_DSS_URL"] = dss_url
    os.environ["DKU_API_KEY"] = api_key
    if dip_home:
        os.environ["DIP_HOME"] = dip_home
    return load_webapp_app(WEBAPP_DIR, webapp_config or {})
