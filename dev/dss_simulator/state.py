"""The simulated DSS instance: plain Python objects behind one lock, and the JSON DSS would answer for them.

Everything long-running (futures, running scenarios, notebook sessions, jobs, webapp backends, continuous
activities, code studios) is a `Task` with one lifecycle, evaluated lazily against the injected clock:
RUNNING -> (abort requested) ABORTING -> ABORTED after the abort delay, or DONE/FAILED at `ends_at` when it
finishes on its own first. The Flask routes (app.py) are thin: they call the `State` methods below, which check
permissions, change state and return the JSON-ready dicts DSS would return. Errors are `SimError`s carrying the
HTTP status and DSS's error type.
"""
import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional

INHERIT = "inherit"  # a task's abort delay when it uses the instance default
KINDS = ("future", "session", "job", "webapp", "continuous_activity", "code_studio")
FINISHED = ("DONE", "FAILED", "ABORTED")
INF = float("inf")

NOT_FOUND = "com.dataiku.dip.exceptions.NotFoundException"
FORBIDDEN = "com.dataiku.dip.exceptions.UnauthorizedException"
UNAUTHENTICATED = "com.dataiku.dip.exceptions.NotAuthenticatedException"
BAD_REQUEST = "com.dataiku.dip.exceptions.DKUIllegalArgumentException"
FAULT = "com.dataiku.dip.exceptions.CodedException"


class SimError(Exception):
    """An error DSS would answer: HTTP `status` with body {errorType, message, detailedMessage}."""

    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def body(self):
        return {"errorType": self.error_type, "message": self.message,
                "detailedMessage": "%s: %s" % (self.error_type.rsplit(".", 1)[-1], self.message)}


def not_found(message):
    return SimError(404, NOT_FOUND, message)


def forbidden(message):
    return SimError(403, FORBIDDEN, message)


def ms(t):
    """Epoch seconds -> epoch milliseconds (int), as DSS sends times."""
    return int(round(t * 1000))


@dataclass
class User:
    login: str
    display_name: str
    groups: List[str]
    keys: List[str] = field(default_factory=list)
    email: Optional[str] = None
    profile: str = "DATA_SCIENTIST"


@dataclass
class Group:
    name: str
    admin: bool = False
    description: str = ""


@dataclass
class Task:
    """Anything DSS can abort, unload or stop. `data` holds the kind's own fields (names, pids, payload...)."""

    kind: str
    id: str
    project_key: Optional[str]
    owner: Optional[str]
    started_at: float  # epoch s
    data: dict
    ends_at: Optional[float] = None  # epoch s at which it finishes on its own; None = runs until aborted
    end_state: str = "DONE"  # how it finishes on its own: DONE or FAILED
    abort_delay: object = INHERIT  # seconds between an abort request and the end; None = ignores aborts
    abort_requested_at: Optional[float] = None


@dataclass(frozen=True)
class Request:
    """One request received (the action log): method, path under /dip/publicapi, caller login, time, status."""

    method: str
    path: str
    user: Optional[str]
    time: float  # epoch s, simulator clock
    status: int


@dataclass
class Fault:
    """A fault injected on requests whose path matches `path` (regex search) and `method` (None = any)."""

    path: str = ".*"
    method: Optional[str] = None
    latency_seconds: float = 0.0
    error_rate: float = 0.0  # probability of a 500 with a DSS error body (seeded RNG)
    hang: bool = False  # sleep `State.hang_seconds` (longer than any client timeout, bounded), then 500
    malformed: bool = False  # 200 with a broken JSON body

    def __post_init__(self):
        self.regex = re.compile(self.path)
        if self.method:
            self.method = self.method.upper()

    def matches(self, method, path):
        return (self.method is None or self.method == method) and bool(self.regex.search(path))


class State:
    """The instance. Every public method takes the lock; `now()` is the injected clock (epoch seconds)."""

    def __init__(self, clock):
        self.clock = clock
        self.lock = threading.RLock()
        self.dss_version = "15.2.0"
        self.missing_endpoint_status = 404  # what a DSS older than an endpoint answers for it (400, 404 or 405)
        self.node = {"nodeId": "dss-sim", "nodeName": "Simulated DSS", "nodeType": "DESIGN"}
        self.abort_delay = 0.0  # instance default, seconds; None = aborts are ignored
        self.users: Dict[str, User] = {}
        self.groups: Dict[str, Group] = {}
        self.revoked = set()
        self.tickets: Dict[str, tuple] = {}  # internal ticket -> (login, API key it stands for or None)
        self.data_dir = None  # served as `dataDirPath` by /instance-info when set (instance "dataDirPath", sim.data_dir)
        self.projects: Dict[str, dict] = {}
        self.notebooks: Dict[tuple, dict] = {}  # (projectKey, name) -> {language, kernelSpec, tags}
        self.scenarios: Dict[tuple, dict] = {}  # (projectKey, id) -> definition as DSS stores it
        self.scenario_scripts: Dict[tuple, str] = {}
        self.webapps: Dict[tuple, dict] = {}
        self.continuous_activities: Dict[tuple, dict] = {}
        self.code_studios: Dict[tuple, dict] = {}
        self.tasks: Dict[tuple, Task] = {}  # (kind, id) -> Task
        self.faults: List[Fault] = []
        self.failing_projects = set()
        self.answers: List[tuple] = []  # (regex on the path, JSON value): a successful answer replaced by the value
        self.rng = random.Random(0)
        self.hang_seconds = 60.0
        self.log: List[Request] = []
        self.shutdown = threading.Event()  # set when the server stops: ends hangs and latencies early

    def now(self):
        return float(self.clock())

    # ----- lifecycle -----------------------------------------------------------------------------------------
    def _delay(self, task):
        return self.abort_delay if task.abort_delay == INHERIT else task.abort_delay

    def _end(self, task):
        """(end time, final phase) if the task ends at some point given what happened so far, else (inf, None)."""
        own = task.ends_at if task.ends_at is not None else INF
        delay = self._delay(task)
        aborted = task.abort_requested_at + delay if task.abort_requested_at is not None and delay is not None else INF
        if own == INF and aborted == INF:
            return INF, None
        return (own, task.end_state) if own <= aborted else (aborted, "ABORTED")

    def phase(self, task, now=None):
        """RUNNING, ABORTING, or the final DONE / FAILED / ABORTED."""
        now = self.now() if now is None else now
        end, final = self._end(task)
        if end <= now:
            return final
        return "ABORTING" if task.abort_requested_at is not None else "RUNNING"

    def alive(self, task, now=None):
        return self.phase(task, now) in ("RUNNING", "ABORTING")

    def _request_abort(self, task):
        """Abort like DSS: a running task starts aborting; an aborting or finished one is left as it is."""
        if self.phase(task) == "RUNNING":
            task.abort_requested_at = self.now()

    def task(self, kind, task_id):
        with self.lock:
            t = self.tasks.get((kind, task_id))
            if t is None:
                raise KeyError("no %s %r in the simulator" % (kind, task_id))
            return t

    def new_id(self, n=8):
        return uuid.uuid4().hex[:n]

    # ----- identity and permissions ---------------------------------------------------------------------------
    def authenticate(self, key, ticket=None):
        """The user of an API key (HTTP Basic username) or of an internal ticket (X-DKU-APITicket): a ticket is
        not a key, and a key is not a ticket."""
        if not key and not ticket:
            raise SimError(401, UNAUTHENTICATED, "No credentials provided")
        with self.lock:
            if key and key not in self.revoked:
                for user in self.users.values():
                    if key in user.keys:
                        return user
            login, for_key = self.tickets.get(ticket, (None, None)) if not key else (None, None)
            if login and ticket not in self.revoked and for_key not in self.revoked:
                return self.users[login]
        # DSS's wording for a bad ticket is not documented: the simulator says what it says for a bad key
        raise SimError(401, UNAUTHENTICATED, "Unknown API Key")

    def issue_ticket(self, login, for_key=None):
        """A new internal ticket for `login`, as DSS creates one for each macro run or webapp backend. A ticket
        issued `for_key` (the harnesses' way for tests written with keys) is revoked with that key."""
        with self.lock:
            if login not in self.users:
                raise KeyError("no user %r in the simulator" % login)
            ticket = "sim-ticket-%s-%s" % (login, uuid.uuid4().hex)
            self.tickets[ticket] = (login, for_key)
            return ticket

    def is_admin(self, user):
        return any(self.groups.get(g, Group(g)).admin for g in user.groups)

    def require_admin(self, user):
        if not self.is_admin(user):
            raise forbidden("Action forbidden, you are not admin")

    def _can_see(self, user, task):
        return self.is_admin(user) or task.owner == user.login

    def _require_owner(self, user, task):
        if not self._can_see(user, task):
            raise forbidden("You may not act on %s %s of user %s" % (task.kind, task.id, task.owner))

    def project(self, project_key):
        if project_key not in self.projects:
            raise not_found("Project %s does not exist" % project_key)
        return self.projects[project_key]

    def _get(self, table, key, what):
        if key not in table:
            raise not_found("%s %s does not exist" % (what, "/".join(key)))
        return table[key]

    def _tasks(self, kind, project_key=None):
        return sorted((t for (k, _), t in self.tasks.items()
                       if k == kind and (project_key is None or t.project_key == project_key)),
                      key=lambda t: (t.started_at, t.id))

    def auth_info(self, user, with_secrets=False):
        info = {"authIdentifier": user.login, "groups": list(user.groups), "associatedDSSUser": user.login,
                "userProfile": user.profile}
        if with_secrets:
            info["secrets"] = []
        return info

    def auth_from_browser_headers(self, headers, with_secrets=False):
        """The logged-in user is the cookie dss_sim_user=<login> in the forwarded headers."""
        cookie = ""
        for name, value in (headers or {}).items() if isinstance(headers, dict) else ():
            if name.lower() == "cookie":
                cookie = str(value)
        login = None
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "dss_sim_user":
                login = value.strip().strip('"')
        with self.lock:
            user = self.users.get(login)
            if user is None:
                raise SimError(401, UNAUTHENTICATED, "Not authenticated: no valid DSS session in the headers")
            return self.auth_info(user, with_secrets)

    def user_json(self, user):
        return {"login": user.login, "displayName": user.display_name, "groups": list(user.groups),
                "email": user.email, "enabled": True, "sourceType": "LOCAL", "userProfile": user.profile}

    def group_json(self, group):
        return {"name": group.name, "admin": group.admin, "description": group.description, "sourceType": "LOCAL"}

    # ----- futures and running scenarios ----------------------------------------------------------------------
    @staticmethod
    def future_id(task):
        """The id of the future running `task`: its own id for a future, its `futureId` for a webapp backend or a
        continuous activity's main loop."""
        return task.id if task.kind == "future" else task.data.get("futureId")

    def future_json(self, task, peek=True, now=None):
        """The future DSS shows for `task`. Payloads say only what the task was given: a webapp backend or a
        continuous activity has no action and no targets (no public source gives them), a scenario run its
        scenario as the first target (documented by the client: "a payload field with scenario identifiers")."""
        now = self.now() if now is None else now
        phase = self.phase(task, now)
        end = min(self._end(task)[0], now)
        d = task.data
        payload = {"targets": d.get("targets", []), "extras": d.get("extras", {})}
        if d.get("action"):
            payload["action"] = d["action"]
        out = {
            "jobId": self.future_id(task), "alive": phase in ("RUNNING", "ABORTING"),
            "aborted": task.abort_requested_at is not None, "hasResult": phase == "DONE",
            "startTime": ms(task.started_at), "runningTime": ms(end - task.started_at),
            "owner": task.owner, "jobDisplayName": d.get("displayName", task.id),
            "progress": {"states": [dict(s, msSinceStart=ms(now - task.started_at)) for s in d.get("progress", [])]},
            "payload": payload,
        }
        if phase == "DONE" and not peek:
            out["result"] = d.get("result", {})
        out.update(d.get("raw", {}))
        return out

    FUTURE_KINDS = ("future", "webapp", "continuous_activity")  # tasks that run as a future DSS lists

    def _future_tasks(self):
        tasks = [t for kind in self.FUTURE_KINDS for t in self._tasks(kind) if self.future_id(t)]
        return sorted(tasks, key=lambda t: (t.started_at, self.future_id(t)))

    def list_futures(self, user, with_scenarios, with_not_scenarios, all_users):
        """Every running future: background tasks, scenario runs (`withScenarios`), and the futures running webapp
        backends and continuous activities' main loops (listed as not-scenarios, as DSS does)."""
        with self.lock:
            if all_users:
                self.require_admin(user)
            now = self.now()
            out = []
            for t in self._future_tasks():
                is_scenario = t.kind == "future" and "scenario" in t.data
                if (is_scenario and not with_scenarios) or (not is_scenario and not with_not_scenarios):
                    continue
                if self.alive(t, now) and (t.owner == user.login or all_users):
                    out.append(self.future_json(t, now=now))
            return out

    def _future(self, user, job_id):
        t = self.tasks.get(("future", job_id))
        if t is None:
            t = next((t for t in self._future_tasks() if t.kind != "future" and self.future_id(t) == job_id), None)
        if t is None:
            raise not_found("Future %s does not exist" % job_id)
        self._require_owner(user, t)
        return t

    def get_future(self, user, job_id, peek):
        with self.lock:
            t = self._future(user, job_id)
            if self.phase(t) == "FAILED":
                raise SimError(500, FAULT, t.data.get("error", "The task %s failed" % job_id))
            return self.future_json(t, peek=peek)

    def abort_future(self, user, job_id):
        """Aborting the future of a webapp backend or a continuous activity stops it (as DSS documents)."""
        with self.lock:
            self._request_abort(self._future(user, job_id))

    # ----- notebooks and sessions -----------------------------------------------------------------------------
    def session_json(self, t):
        d = t.data
        creator = self.users.get(t.owner)
        out = {"projectKey": t.project_key, "notebookName": d["notebook"], "sessionId": t.id,
               "kernelId": d.get("kernelId"), "sessionCreator": t.owner,
               "sessionCreatorDisplayName": creator.display_name if creator else t.owner,
               "sessionUnixOwner": d.get("unixOwner", "dataiku"), "sessionStartTime": ms(t.started_at),
               "kernelLastActivityTime": ms(d.get("lastActivity", t.started_at)),
               "kernelExecutionState": d.get("state", "idle"), "kernelConnections": int(d.get("connections", 0))}
        if d.get("kernelPid") is not None:
            out["kernelPid"] = d["kernelPid"]
        out.update(d.get("raw", {}))
        return out

    def _sessions(self, user, project_key, notebook=None):
        now = self.now()
        return [t for t in self._tasks("session", project_key)
                if self.alive(t, now) and self._can_see(user, t) and (notebook is None or t.data["notebook"] == notebook)]

    def notebook_json(self, key, sessions=None):
        nb = self.notebooks[key]
        out = {"projectKey": key[0], "name": key[1], "language": nb.get("language", "python"),
               "kernelSpec": nb.get("kernelSpec", {}), "tags": nb.get("tags", [])}
        if sessions is not None:
            out["activeSessions"] = [self.session_json(t) for t in sessions]
        return out

    def admin_notebooks(self, user):
        with self.lock:
            self.require_admin(user)
            out = []
            for key in sorted(self.notebooks):
                sessions = self._sessions(user, key[0], key[1])
                if sessions:
                    out.append(self.notebook_json(key, sessions))
            return out

    def list_notebooks(self, user, project_key, active):
        with self.lock:
            self.project(project_key)
            keys = [k for k in sorted(self.notebooks) if k[0] == project_key]
            return [self.notebook_json(k) for k in keys if not active or self._sessions(user, k[0], k[1])]

    def list_sessions(self, user, project_key, notebook):
        with self.lock:
            self.project(project_key)
            self._get(self.notebooks, (project_key, notebook), "Notebook")
            return [self.session_json(t) for t in self._sessions(user, project_key, notebook)]

    def legacy_notebook(self, user, project_key, notebook):
        with self.lock:
            self.project(project_key)
            self._get(self.notebooks, (project_key, notebook), "Notebook")
            return self.notebook_json((project_key, notebook), self._sessions(user, project_key, notebook))

    def unload_session(self, user, project_key, notebook, session_id):
        with self.lock:
            self.project(project_key)
            self._get(self.notebooks, (project_key, notebook), "Notebook")
            t = self.tasks.get(("session", session_id))
            if t is None or t.project_key != project_key or t.data["notebook"] != notebook or not self.alive(t):
                raise not_found("Session %s of notebook %s does not exist" % (session_id, notebook))
            self._require_owner(user, t)
            self._request_abort(t)
            return {"sessionId": session_id, "unloaded": not self.alive(t)}

    # ----- jobs -----------------------------------------------------------------------------------------------
    def _job_state(self, t, now):
        phase = self.phase(t, now)
        if phase in ("RUNNING", "ABORTING"):
            return t.data.get("state", "RUNNING")
        return phase

    def job_json(self, t, now=None):
        now = self.now() if now is None else now
        d = t.data
        state = self._job_state(t, now)
        end = self._end(t)[0]
        out = {"def": {"id": t.id, "projectKey": t.project_key, "name": d.get("name", t.id), "initiator": t.owner,
                       "initiationTimestamp": ms(t.started_at), "type": d.get("type", "NON_RECURSIVE_FORCED_BUILD")},
               "state": state, "stableState": state in FINISHED, "startTime": ms(t.started_at),
               "endTime": ms(end) if state in FINISHED else 0}
        for name in ("kernelPid", "scenarioId", "scenarioRunId"):
            if d.get(name) is not None and (name != "kernelPid" or state not in FINISHED):
                out[name] = d[name]
        out.update(d.get("raw", {}))
        return out

    def list_jobs(self, user, project_key=None, running=False, all_users=False):
        with self.lock:
            if project_key is None and all_users:
                self.require_admin(user)
            if project_key is not None:
                self.project(project_key)
            now = self.now()
            see_all = self.is_admin(user) and (project_key is not None or all_users)
            return [self.job_json(t, now) for t in self._tasks("job", project_key)
                    if (not running or self.alive(t, now)) and (see_all or t.owner == user.login)]

    def _job(self, user, project_key, job_id):
        self.project(project_key)
        t = self.tasks.get(("job", job_id))
        if t is None or t.project_key != project_key:
            raise not_found("Job %s does not exist in project %s" % (job_id, project_key))
        self._require_owner(user, t)
        return t

    def job_status(self, user, project_key, job_id):
        with self.lock:
            t = self._job(user, project_key, job_id)
            j = self.job_json(t)
            return {"baseStatus": {"def": j["def"], "state": j["state"], "jobStartTime": j["startTime"],
                                   "jobEndTime": j["endTime"], "activities": {}},
                    "globalState": {"done": 0, "failed": 0, "running": 0 if j["stableState"] else 1}}

    def abort_job(self, user, project_key, job_id):
        with self.lock:
            self._request_abort(self._job(user, project_key, job_id))
            return {"msg": "Abort requested for job %s" % job_id}

    # ----- scenarios ------------------------------------------------------------------------------------------
    def _scenario_run(self, project_key, scenario_id):
        now = self.now()
        for t in self._tasks("future", project_key):
            if t.data.get("scenario") == scenario_id and self.alive(t, now):
                return t
        return None

    def scenario_light(self, key):
        sc = self.scenarios[key]
        run = self._scenario_run(*key)
        out = {"projectKey": key[0], "id": key[1], "name": sc.get("name", key[1]), "type": sc.get("type"),
               "active": bool(sc.get("active", False)), "running": run is not None, "tags": sc.get("tags", []),
               "shortDesc": sc.get("shortDesc", ""), "description": sc.get("description", "")}
        if run is not None:
            out["start"] = ms(run.started_at)
            out["futureId"] = run.id
        return out

    def list_scenarios(self, project_key):
        with self.lock:
            self.project(project_key)
            return [self.scenario_light(k) for k in sorted(self.scenarios) if k[0] == project_key]

    def _scenario_key(self, project_key, scenario_id):
        self.project(project_key)
        key = (project_key, scenario_id)
        self._get(self.scenarios, key, "Scenario")
        return key

    def _stamp(self, user):
        return {"versionNumber": 0, "lastModifiedBy": {"login": user.login}, "lastModifiedOn": ms(self.now())}

    def create_scenario(self, user, project_key, definition):
        with self.lock:
            self.project(project_key)
            if not isinstance(definition, dict) or not definition.get("name") or not definition.get("type"):
                raise SimError(400, BAD_REQUEST, "A scenario needs a name and a type")
            base = re.sub(r"[^A-Za-z0-9_]", "", definition["name"].upper().replace(" ", "_")) or "SCENARIO"
            sid, n = base, 1
            while (project_key, sid) in self.scenarios:
                sid, n = "%s_%d" % (base, n), n + 1
            sc = {"active": False, "triggers": [], "reporters": [], "tags": []}
            sc.update(definition)
            sc.setdefault("params", {})
            if sc["type"] == "step_based":
                sc["params"].setdefault("steps", [])
            sc.update(projectKey=project_key, id=sid, creationTag=self._stamp(user), versionTag=self._stamp(user))
            self.scenarios[(project_key, sid)] = sc
            return {"id": sid, "projectKey": project_key, "name": sc["name"]}

    def get_scenario(self, project_key, scenario_id):
        with self.lock:
            return dict(self.scenarios[self._scenario_key(project_key, scenario_id)])

    def save_scenario(self, user, project_key, scenario_id, definition):
        with self.lock:
            key = self._scenario_key(project_key, scenario_id)
            if not isinstance(definition, dict):
                raise SimError(400, BAD_REQUEST, "The scenario definition must be a JSON object")
            old = self.scenarios[key]
            sc = dict(definition, projectKey=project_key, id=scenario_id, creationTag=old.get("creationTag"))
            stamp = self._stamp(user)
            stamp["versionNumber"] = (old.get("versionTag") or {}).get("versionNumber", 0) + 1
            sc["versionTag"] = stamp
            self.scenarios[key] = sc
            return {"msg": "Scenario %s saved" % scenario_id}

    def set_scenario_light(self, project_key, scenario_id, light):
        with self.lock:
            key = self._scenario_key(project_key, scenario_id)
            for name in ("active", "checklists", "description", "shortDesc", "tags"):
                if isinstance(light, dict) and name in light:
                    self.scenarios[key][name] = light[name]
            return self.scenario_light(key)

    def get_scenario_light(self, project_key, scenario_id):
        with self.lock:
            return self.scenario_light(self._scenario_key(project_key, scenario_id))

    def scenario_payload(self, project_key, scenario_id, script=None):
        with self.lock:
            key = self._scenario_key(project_key, scenario_id)
            if script is not None:
                self.scenario_scripts[key] = script
            return {"script": self.scenario_scripts.get(key, "")}

    def abort_scenario(self, user, project_key, scenario_id):
        with self.lock:
            key = self._scenario_key(project_key, scenario_id)
            run = self._scenario_run(*key)
            if run is not None:
                self._require_owner(user, run)
                self._request_abort(run)
            return {"aborted": run is not None}

    # ----- webapps, continuous activities, code studios --------------------------------------------------------
    def list_webapps(self, project_key):
        with self.lock:
            self.project(project_key)
            return [dict(self.webapps[k], id=k[1], projectKey=k[0]) for k in sorted(self.webapps) if k[0] == project_key]

    def webapp(self, project_key, webapp_id):
        with self.lock:
            self.project(project_key)
            return dict(self._get(self.webapps, (project_key, webapp_id), "Webapp"), id=webapp_id, projectKey=project_key)

    def webapp_state(self, project_key, webapp_id):
        with self.lock:
            self.webapp(project_key, webapp_id)
            out = {"projectKey": project_key, "webAppId": webapp_id}
            t = self.tasks.get(("webapp", webapp_id))
            if t is not None:
                out["futureId"] = t.data["futureId"]
                out["futureInfo"] = self.future_json(t)
            return out

    def stop_webapp(self, user, project_key, webapp_id):
        with self.lock:
            self.webapp(project_key, webapp_id)
            t = self.tasks.get(("webapp", webapp_id))
            if t is not None:
                self._require_owner(user, t)
                self._request_abort(t)

    def ca_json(self, key, now=None):
        ca = self.continuous_activities[key]
        t = self.tasks.get(("continuous_activity", key[1]))
        out = {"projectKey": key[0], "recipeId": key[1], "recipeType": ca.get("recipeType", "cpython"),
               "desiredState": "STOPPED", "mainLoopState": {}}
        if t is not None:
            alive = self.alive(t, now)
            out["desiredState"] = "STARTED" if alive and t.abort_requested_at is None else "STOPPED"
            out["mainLoopState"] = {"futureId": t.data["futureId"], "attemptCount": 1,
                                    "futureInfo": self.future_json(t, now=now)}
        return out

    def list_continuous_activities(self, project_key):
        with self.lock:
            self.project(project_key)
            return [self.ca_json(k) for k in sorted(self.continuous_activities) if k[0] == project_key]

    def get_continuous_activity(self, project_key, recipe_id):
        with self.lock:
            self.project(project_key)
            self._get(self.continuous_activities, (project_key, recipe_id), "Continuous activity")
            return self.ca_json((project_key, recipe_id))

    def stop_continuous_activity(self, user, project_key, recipe_id):
        with self.lock:
            self.get_continuous_activity(project_key, recipe_id)
            t = self.tasks.get(("continuous_activity", recipe_id))
            if t is not None:
                self._require_owner(user, t)
                self._request_abort(t)

    def list_code_studios(self, project_key):
        with self.lock:
            self.project(project_key)
            return [dict(self.code_studios[k], id=k[1], projectKey=k[0]) for k in sorted(self.code_studios)
                    if k[0] == project_key]

    def code_studio(self, project_key, cs_id):
        with self.lock:
            self.project(project_key)
            return dict(self._get(self.code_studios, (project_key, cs_id), "Code studio"), id=cs_id, projectKey=project_key)

    def code_studio_status(self, project_key, cs_id):
        with self.lock:
            self.code_studio(project_key, cs_id)
            t = self.tasks.get(("code_studio", cs_id))
            if t is None:
                return {"state": "STOPPED", "lastStateChange": 0, "exposed": [], "syncedZones": []}
            phase = self.phase(t)
            state = {"RUNNING": "RUNNING", "ABORTING": "STOPPING"}.get(phase, "STOPPED")
            changed = {"RUNNING": t.started_at, "ABORTING": t.abort_requested_at}.get(phase) or self._end(t)[0]
            running = state == "RUNNING"
            return {"state": state, "lastStateChange": ms(changed), "exposed": t.data.get("exposed", []) if running else [],
                    "syncedZones": t.data.get("syncedZones", []) if running else []}

    def stop_code_studio(self, user, project_key, cs_id):
        """Stopping a code studio returns a future (DSS's stop task), finished when the code studio has stopped."""
        with self.lock:
            self.code_studio(project_key, cs_id)
            t = self.tasks.get(("code_studio", cs_id))
            if t is None or not self.alive(t):
                return {"hasResult": True, "result": None}
            self._require_owner(user, t)
            self._request_abort(t)
            end = self._end(t)[0]
            fut = Task("future", self.new_id(), project_key, user.login, self.now(),
                       {"displayName": "Stopping code studio %s" % cs_id,
                        "targets": [{"objectType": "CODE_STUDIO", "projectKey": project_key, "objectId": cs_id}]},
                       ends_at=None if end == INF else end, abort_delay=None)
            self.tasks[("future", fut.id)] = fut
            return self.future_json(fut)

    # ----- the action log and faults --------------------------------------------------------------------------
    def record(self, method, path, user, status):
        with self.lock:
            self.log.append(Request(method, path, user, self.now(), status))

    def answer_for(self, path):
        """(True, value) when a successful answer on `path` is to be replaced by `value` (the last match wins)."""
        with self.lock:
            for regex, value in reversed(self.answers):
                if regex.search(path):
                    return True, value
            return False, None

    def faults_for(self, method, path):
        """(latency seconds, hang, error, malformed) for this request, drawing error rates from the seeded RNG."""
        with self.lock:
            latency, hang, error, malformed = 0.0, False, False, False
            for f in self.faults:
                if f.matches(method, path):
                    latency += f.latency_seconds
                    hang = hang or f.hang
                    error = error or (f.error_rate > 0 and self.rng.random() < f.error_rate)
                    malformed = malformed or f.malformed
            m = re.match(r"^/projects/([^/]+)/", path)
            if m and m.group(1) in self.failing_projects:
                error = True
            return latency, hang, error, malformed
