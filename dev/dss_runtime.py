"""Run plugin code the way DSS does: macros as DSS's macro server runs them, webapp backends as DSS's webapp
runner runs them. Used by the tests and by the demo; not shipped in the plugin zip.

- `run_macro(runnable_dir, config, project_key=...)`: loads `runnable.py` as a module, instantiates the first
  subclass of `dataiku.runnables.Runnable` with as many of (project_key, config, plugin_config) as its
  constructor takes, calls `get_progress_target()`, then `run(progress_callback)`, and serialises the result
  as DSS does (`to_json()` object, dict -> JSON, string as is). An exception becomes `MacroFailed` carrying the
  message DSS would show.
- `load_webapp(webapp_dir, config=...)`: creates a Flask `app`, registers `/__ping`, and `exec`s `backend.py`
  with `app` injected as a global (the file does not create it); returns a Flask test client.

Identity, as DSS gives it: the code runs with `DKU_BACKEND_PORT` (the local DSS) and `DKU_API_TICKET` (a ticket
DSS issued for the user running the macro, or the webapp's run-as user); `dataiku.api_client()` builds its client
from those two only. Pass `dss=<Simulator>, user=<login>` for that. Callers that still pass `DKU_DSS_URL` +
`DKU_API_KEY` of a simulator running in this process get a ticket for that key's user on that simulator (the
variables themselves stay set: plugin code inside DSS must ignore them, and tests check it does).
"""
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = os.path.join(ROOT, "tests")  # the stand-in `dataiku` package lives in tests/dataiku
PYTHON_LIB = os.path.join(ROOT, "python-lib")


def _ensure_paths():
    for path in (PYTHON_LIB, STANDIN):
        if path not in sys.path:
            sys.path.insert(0, path)


class MacroFailed(Exception):
    """The macro raised: DSS shows `message` to the user (and a scenario step running it fails)."""

    def __init__(self, message, exception):
        super().__init__(message)
        self.message = message
        self.exception = exception


@dataclass
class MacroResult:
    result_type: str  # from runnable.json
    raw: Any  # what DSS sends back to the UI: a JSON string for tables/dicts, the string as is otherwise
    progress_target: Optional[tuple]
    progress: List[Any] = field(default_factory=list)

    @property
    def table(self):
        """The ResultTable as the UI receives it (dict with header, columns, records, name)."""
        return json.loads(self.raw)

    def rows(self):
        """Records as dicts keyed by column name, the way a user reads the table."""
        table = self.table
        names = [c["name"] for c in table["columns"]]
        return [dict(zip(names, record)) for record in table["records"]]


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_runnable_class(module):
    from dataiku.runnables import Runnable

    for value in list(vars(module).values()):
        if inspect.isclass(value) and issubclass(value, Runnable) and value is not Runnable:
            return value
    raise MacroFailed("No Runnable subclass found in runnable.py", None)


def _instantiate(cls, project_key, config, plugin_config):
    args = (project_key, config, plugin_config)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return cls(*args)
    return cls(*args[: min(len(params), 3)])


def dss_identity(dss, user=None, for_key=None):
    """What DSS puts in the environment of code it runs for `user` (default: the admin key's user) on the
    simulator `dss`: the backend port and a fresh internal ticket for that user."""
    login = user or dss.login_of_key(dss.admin_key)
    return {"DKU_BACKEND_PORT": str(dss.port), "DKU_API_TICKET": dss.ticket_for(login, for_key)}


def _identity_for(env, dss=None, user=None):
    """The DKU_BACKEND_PORT/DKU_API_TICKET to set: from `dss`/`user`; else from a simulator's URL and key in `env`
    (older callers: a ticket for that key's user, revoked with the key; a URL where no simulator of this process
    serves gives its port and a ticket nobody issued); else nothing (no identity, as outside DSS)."""
    if dss is not None:
        return dss_identity(dss, user)
    from urllib.parse import urlsplit

    from dev.dss_simulator.simulator import serving_at

    url, key = env.get("DKU_DSS_URL"), env.get("DKU_API_KEY")
    if not (url and key):
        return {}
    sim = serving_at(url)
    try:
        return dss_identity(sim, sim.login_of_key(key), for_key=key)
    except (AttributeError, KeyError):  # no simulator of this process there, or a key nobody has
        pass
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    return {"DKU_BACKEND_PORT": str(port or 1), "DKU_API_TICKET": _remote_ticket(url, key) or "ticket-nobody-issued"}


def _remote_ticket(url, key):
    """A ticket from a simulator serving in another process (its `/__sim/ticket` route), or None."""
    import requests

    try:
        answer = requests.post(url.rstrip("/") + "/dip/publicapi/__sim/ticket", auth=(key, ""), timeout=10)
        return answer.json().get("ticket") if answer.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def run_macro(runnable_dir, config, project_key=None, plugin_config=None, env=None, dss=None, user=None):
    """Run one macro as DSS's macro server does, as `user` of the simulator `dss` (see the module's doc);
    returns a MacroResult or raises MacroFailed."""
    _ensure_paths()
    with open(os.path.join(runnable_dir, "runnable.json")) as f:
        descriptor = json.load(f)
    saved_env = dict(os.environ)
    try:
        if project_key:
            os.environ["DKU_CURRENT_PROJECT_KEY"] = project_key
        os.environ.update(env or {})
        if dss is not None or "DKU_API_TICKET" not in (env or {}):
            os.environ.update(_identity_for(os.environ, dss, user))
        module = _load_module(os.path.join(runnable_dir, "runnable.py"), "runnable_%s" % os.path.basename(runnable_dir))
        cls = _first_runnable_class(module)
        progress = []
        try:
            instance = _instantiate(cls, project_key, dict(config), dict(plugin_config or {}))
            target = instance.get_progress_target()
            value = instance.run(progress.append)
        except Exception as e:  # DSS shows the message of whatever the macro raised
            raise MacroFailed(str(e) or e.__class__.__name__, e) from e
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    if hasattr(value, "to_json"):
        raw = json.dumps(value.to_json())
    elif isinstance(value, dict):
        raw = json.dumps(value)
    else:
        raw = value
    return MacroResult(descriptor.get("resultType", "NONE"), raw, target, progress)


def load_webapp_app(webapp_dir, config=None, dss=None, user=None):
    """exec `backend.py` as DSS's webapp runner does, with a Flask `app` injected, running as `user` of the
    simulator `dss` (the webapp's run-as user; see the module's doc); returns the app. Like DSS's runner, it sets
    the process's environment (DKU_CUSTOM_WEBAPP_CONFIG, DKU_BACKEND_PORT, DKU_API_TICKET)."""
    _ensure_paths()
    from flask import Flask

    os.environ["DKU_CUSTOM_WEBAPP_CONFIG"] = json.dumps(config or {})
    os.environ.update(_identity_for(os.environ, dss, user))
    app = Flask("dss_webapp_backend")

    @app.route("/__ping")
    def ping():
        return "pong"

    path = os.path.join(webapp_dir, "backend.py")
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    namespace = {"__name__": "__main__", "__file__": path, "app": app}
    exec(code, namespace, namespace)  # noqa: S102 - exactly what DSS does with backend.py
    return app


def load_webapp(webapp_dir, config=None, dss=None, user=None):
    """The webapp backend loaded as DSS would, as a Flask test client."""
    return load_webapp_app(webapp_dir, config, dss=dss, user=user).test_client()
