"""`Simulator`: a simulated DSS public API, served over real HTTP on a loopback port, with handles for tests.

    sim = Simulator(instance_dict, clock=ManualClock(), fleet_pids={"kernel-1": 1234})
    with sim.serve() as url:
        client = dataikuapi.DSSClient(url, sim.admin_key)
        ...
        sim.clock.advance(30)                      # time passes (with a ManualClock)
        assert sim.phase("future", "abc") == "ABORTED"
"""
import re
import threading
import time
from contextlib import contextmanager

from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from .app import PREFIX, create_app
from .loader import fault_from_spec, load, parse_duration
from .state import INHERIT, State

_serving = {}  # port -> the Simulator serving there (in this process): how the DSS harnesses find a ticket
_serving_lock = threading.Lock()


def serving_at(url):
    """The Simulator of this process serving `url` (http://127.0.0.1:<port>...), or None."""
    from urllib.parse import urlsplit

    try:
        port = urlsplit(url).port
    except ValueError:
        return None
    with _serving_lock:
        return _serving.get(port)


# The simulator's routes (app.py view names) by activity kind: what acting on or listing a kind may call.
KIND_ROUTES = {
    "future": ("futures", "future", "abort_future"),
    "scenario": ("futures", "future", "abort_future", "scenarios", "scenario_light", "abort_scenario"),
    "notebook_session": ("running_notebooks", "notebooks", "sessions", "unload", "legacy_notebook"),
    "job": ("jobs", "project_running_jobs", "running_jobs", "job_status", "abort_job"),
    "webapp": ("webapps", "webapp", "webapp_state", "stop_webapp"),
    "continuous_activity": ("continuous_activities", "continuous_activity", "stop_continuous_activity"),
    "code_studio": ("code_studios", "code_studio", "code_studio_status", "stop_code_studio"),
}
COMMON_ROUTES = ("instance_info", "auth_info", "projects")


class ManualClock:
    """A clock for tests: time stands still until `advance(seconds)` or `set(epoch_seconds)` (starts at a whole second)."""

    def __init__(self, start=None):
        self.t = float(int(time.time()) if start is None else start)

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += float(seconds)
        return self.t

    def set(self, epoch_seconds):
        self.t = float(epoch_seconds)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass

    def log(self, *args, **kwargs):
        pass


class Simulator:
    """A DSS instance seeded from `instance` (see dev/README.md). `clock()` gives epoch seconds (default time.time);
    `fleet_pids` maps fleet process names to pids for the `{"fleet": name}` references in the instance."""

    def __init__(self, instance=None, clock=None, fleet_pids=None):
        self.clock = clock or time.time
        self.state = State(self.clock)
        load(self.state, instance or {}, fleet_pids)
        self.app = create_app(self.state)
        self.url = None
        self._server = None
        self._thread = None

    # ----- serving ----------------------------------------------------------------------------------------
    def start(self, host="127.0.0.1", port=0):
        """Serve in a background thread (one thread per request); returns the base URL (http://host:port)."""
        if self._server is not None:
            return self.url
        self.state.shutdown.clear()
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.url = "http://%s:%d" % (host, self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="dss-simulator", daemon=True)
        self._thread.start()
        with _serving_lock:
            _serving[self.port] = self
        return self.url

    @property
    def port(self):
        return self._server.server_address[1] if self._server is not None else None

    def stop(self):
        """Stop serving; ends pending hangs and latencies at once."""
        if self._server is None:
            return
        self.state.shutdown.set()
        with _serving_lock:
            if _serving.get(self.port) is self:
                del _serving[self.port]
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None

    @contextmanager
    def serve(self, host="127.0.0.1", port=0):
        url = self.start(host, port)
        try:
            yield url
        finally:
            self.stop()

    def client(self, login=None):
        """A real dataikuapi.DSSClient for `login` (default: the admin key's user)."""
        import dataikuapi

        return dataikuapi.DSSClient(self.url, self.key_for(login) if login else self.admin_key)

    # ----- keys -------------------------------------------------------------------------------------------
    @property
    def admin_key(self):
        """The first API key of the first admin user."""
        with self.state.lock:
            for u in self.state.users.values():
                if self.state.is_admin(u) and u.keys:
                    return u.keys[0]
        raise LookupError("the instance has no admin user with an API key")

    def key_for(self, login):
        """An API key of `login` (one is created when the user has none)."""
        with self.state.lock:
            user = self.state.users[login]
            if not user.keys:
                user.keys.append("sim-key-%s-%s" % (login, self.state.new_id()))
            return user.keys[0]

    def revoke_key(self, key):
        """That key (or ticket) now gets 401."""
        with self.state.lock:
            self.state.revoked.add(key)

    def ticket_for(self, login, for_key=None):
        """A new internal ticket for `login`: what DSS hands a macro run or a webapp backend (DKU_API_TICKET).
        With `for_key`, revoking that key revokes the ticket too."""
        return self.state.issue_ticket(login, for_key)

    def login_of_key(self, key):
        """The login an API key belongs to (KeyError when none)."""
        with self.state.lock:
            for user in self.state.users.values():
                if key in user.keys:
                    return user.login
        raise KeyError("no user has that API key")

    @property
    def data_dir(self):
        """`dataDirPath` in /instance-info (None: not served)."""
        return self.state.data_dir

    @data_dir.setter
    def data_dir(self, path):
        self.state.data_dir = path

    # ----- settings and state changes ---------------------------------------------------------------------
    @property
    def dss_version(self):
        return self.state.dss_version

    @dss_version.setter
    def dss_version(self, version):
        self.state.dss_version = version

    def set_abort_delay(self, delay, kind=None, task_id=None):
        """Seconds (or "3s", or "never") between an abort and the end: instance-wide, or for one object."""
        seconds = parse_duration(delay, "abort delay", allow_never=True)
        with self.state.lock:
            if kind is None:
                self.state.abort_delay = seconds
            else:
                self.state.task(kind, task_id).abort_delay = seconds

    def reset_abort_delay(self, kind, task_id):
        with self.state.lock:
            self.state.task(kind, task_id).abort_delay = INHERIT

    def finish(self, kind, task_id, after=0.0, state="DONE"):
        """Make an object finish on its own `after` seconds from now (0: now), as DONE or FAILED."""
        with self.state.lock:
            task = self.state.task(kind, task_id)
            task.ends_at = self.state.now() + float(after)
            task.end_state = state

    def set_kernel_state(self, session_id, state=None, connections=None, idle_for=None):
        """Change a kernel session: execution state (idle/busy/starting; the kernel's activity time becomes now,
        as Jupyter does on each status message), open connections, or idle time in seconds."""
        with self.state.lock:
            data = self.state.task("session", session_id).data
            now = self.state.now()
            if state is not None:
                data["state"] = state
                data["lastActivity"] = now
            if connections is not None:
                data["connections"] = int(connections)
            if idle_for is not None:
                data["lastActivity"] = now - parse_duration(idle_for, "idle_for")

    def extend(self, instance, fleet_pids=None):
        """Add objects (same schema as the instance) while running: new projects, sessions, jobs, futures..."""
        load(self.state, instance, fleet_pids)

    # ----- faults -----------------------------------------------------------------------------------------
    def add_fault(self, path=".*", method=None, latency=0.0, error_rate=0.0, hang=False, malformed=False):
        """Inject a fault on requests whose path (under /dip/publicapi) matches the regex `path`. Returns it."""
        fault = fault_from_spec({"path": path, "method": method, "latency": latency, "errorRate": error_rate,
                                 "hang": hang, "malformed": malformed})
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def replace_answer(self, path, value):
        """Successful answers on paths matching the regex `path` become the JSON `value` (odd shapes and values
        DSS could send: an object for a list, NaN, 1e999 written as Infinity...). Removed by `clear_faults`."""
        with self.state.lock:
            self.state.answers.append((re.compile(path), value))

    def remove_fault(self, fault):
        with self.state.lock:
            self.state.faults.remove(fault)

    def clear_faults(self):
        with self.state.lock:
            self.state.faults.clear()
            self.state.failing_projects.clear()
            self.state.answers.clear()

    def fail_project(self, project_key, failing=True):
        """Every call under /projects/<project_key>/ answers 500 (or works again with failing=False)."""
        with self.state.lock:
            (self.state.failing_projects.add if failing else self.state.failing_projects.discard)(project_key)

    def set_hang_seconds(self, seconds):
        """How long a hang lasts (bounded so tests end; a stopped server ends hangs at once)."""
        self.state.hang_seconds = parse_duration(seconds, "hang seconds")

    def seed(self, seed):
        """Seed the RNG drawing fault error rates."""
        with self.state.lock:
            self.state.rng.seed(seed)

    # ----- reading state for assertions -------------------------------------------------------------------
    def phase(self, kind, task_id):
        """RUNNING, ABORTING, DONE, FAILED or ABORTED (kinds: future, session, job, webapp, continuous_activity,
        code_studio; a running scenario is a future)."""
        with self.state.lock:
            return self.state.phase(self.state.task(kind, task_id))

    def abort_requested(self, kind, task_id):
        with self.state.lock:
            return self.state.task(kind, task_id).abort_requested_at is not None

    def session_ids(self):
        """Ids of the sessions DSS still lists (unloaded or ended ones are gone)."""
        with self.state.lock:
            return [t.id for t in self.state._tasks("session") if self.state.alive(t)]

    def scenario(self, project_key, scenario_id):
        """The scenario definition as stored (a copy)."""
        return self.state.get_scenario(project_key, scenario_id)

    @property
    def requests(self):
        """Every request received, oldest first (`Request(method, path, user, time, status)`)."""
        with self.state.lock:
            return list(self.state.log)

    def unrouted_requests(self, kinds=None):
        """The logged requests outside the route table: matching no route at all (a path steered elsewhere, or
        an unquoted id that split a segment), or, with `kinds`, matching none of those kinds' routes
        (`KIND_ROUTES`) and the common ones (instance info, identity, projects)."""
        adapter = self.app.url_map.bind("localhost")
        allowed = None if kinds is None else set(COMMON_ROUTES).union(*(KIND_ROUTES[k] for k in kinds))
        out = []
        for r in self.requests:
            try:
                endpoint, _ = adapter.match(PREFIX + r.path, method=r.method)
            except HTTPException:
                out.append(r)
                continue
            if allowed is not None and endpoint not in allowed:
                out.append(r)
        return out

    @property
    def missing_endpoint_status(self):
        """What a DSS older than 15 answers on `/jobs/running/` (404 by default; 400 and 405 seen as well)."""
        return self.state.missing_endpoint_status

    @missing_endpoint_status.setter
    def missing_endpoint_status(self, status):
        self.state.missing_endpoint_status = int(status)

    @property
    def actions(self):
        """The requests that ask for a change (aborts, unloads, stops, saves): every method but GET."""
        return [r for r in self.requests if r.method != "GET"]
