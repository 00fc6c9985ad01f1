"""Run plugin code the way DSS does: macros as DSS's macro server runs them, webapp backends as DSS's webapp
runner runs them. Used by the tests and by the demo; not shipped in the plugin zip.

- `run_macro(runnable_dir, config, project_key=...)`: loads `runnable.py` as a module, instantiates the first
  subclass of `dataiku.runnables.Runnable` with as many of (project_key, config, plugin_config) as its
  constructor takes, calls `get_progress_target()`, then `run(progress_callback)`, and serialises the result
  as DSS does (`to_json()` object, dict -> JSON, string as is). An exception becomes `MacroFailed` carrying the
  message DSS would show.
- `load_webapp(webapp_dir, config=...)`: creates a Flask `app`, registers `/__ping`, and `exec`s `backend.py`
  with `app` injected as a global (the file does not create it); returns a Flask test client.
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


def run_macro(runnable_dir, config, project_key=None, plugin_config=None, env=None):
    """Run one macro as DSS's macro server does; returns a MacroResult or raises MacroFailed."""
    _ensure_paths()
    with open(os.path.join(runnable_dir, "runnable.json")) as f:
        descriptor = json.load(f)
    saved_env = dict(os.environ)
    try:
        if project_key:
            os.environ["DKU_CURRENT_PROJECT_KEY"] = project_key
        os.environ.update(env or {})
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


def load_webapp_app(webapp_dir, config=None):
    """exec `backend.py` as DSS's webapp runner does, with a Flask `app` injected; returns the app."""
    _ensure_paths()
    from flask import Flask

    os.environ["DKU_CUSTOM_WEBAPP_CONFIG"] = json.dumps(config or {})
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


def load_webapp(webapp_dir, config=None):
    """The webapp backend loaded as DSS would, as a Flask test client."""
    return load_webapp_app(webapp_dir, config).test_client()
