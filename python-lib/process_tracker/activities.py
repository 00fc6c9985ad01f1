"""The API side: one Activity record type for everything long-running that DSS's public API exposes.

Kinds: "notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio".
No DSSClient object leaves this module: listing returns records, acting (actions.py) takes records.

Listing (`list_activities`) uses DSS's instance-wide calls where they exist (admin: running notebooks, all
users' futures and running scenarios, running jobs on DSS 15+) and fans out over projects, concurrently with a
bounded thread pool, where they do not (webapps and their backend state, continuous activities, code studios and
their status, jobs before DSS 15, and notebooks with their sessions for non-admins). The admin list of running
notebooks carries each notebook's active sessions (the fields DSS's own kill-sessions macro reads); a notebook
whose entry lacks them gets one sessions call. Every call is one "step" run by the pool; a step may add follow-up
steps (a notebook's sessions, a webapp's backend state). A failing step is a `ListingError` row; the rest lists.

Thread safety: the steps share one DSSClient, whose `requests.Session` is fine for concurrent requests (each
request takes its own pooled connection; requests keeps 10 per host, more workers open short-lived extra ones).
`dss.translate_error` reads a thread-local "last HTTP status", so a failure is translated in the worker thread
that made the call, right after it failed.

Field conventions per kind (times are epoch seconds, durations seconds):

==================== ================ =========================== ===========================================
kind                 id               state                       details keys
==================== ================ =========================== ===========================================
notebook_session     sessionId        kernelExecutionState:       session_id, notebook_name, kernel_id,
                                      idle | busy | starting |    kernel_connections, execution_state,
                                      unknown                     unix_owner, owner_display_name,
                                                                  running_seconds (since the session started)
future               future jobId     running | aborting          future_id, action, targets ([{type,
                                                                  project_key, id}]), runnable_type, progress,
                                                                  running_seconds
scenario             future jobId     running | aborting          future_id, scenario_id, run_id, progress,
                                                                  running_seconds
job                  job id           DSS job state (RUNNING,     job_id, initiator, job_type, scenario_id,
                                      NOT_STARTED, COMPUTING_DEPS, scenario_run_id, running_seconds
                                      WAITING_CONFIRMATION)
webapp               webapp id        running                     webapp_id, future_id, port, running_seconds
continuous_activity  recipe id        running | started           recipe_id, desired_state, future_id,
                     (loop not alive)                             running_seconds
code_studio          code studio id   RUNNING | STARTING          code_studio_id, template_id,
                                                                  last_state_change, running_seconds
==================== ================ =========================== ===========================================

`pid` is the session's `kernelPid`, the job's `kernelPid` (its JEK) and the webapp backend's
`futureInfo.payload.extras.pid`, when DSS gives them. Absent values are None or missing keys, never guesses.
"""
import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from . import dss
from .errors import ConfigError, DSSError, DSSForbidden, DSSNotFound

KINDS = ("notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio")
DEFAULT_MAX_WORKERS = 8
MAX_WORKERS_LIMIT = 64
RUNNING_JOB_STATES = ("NOT_STARTED", "RUNNING", "COMPUTING_DEPS", "WAITING_CONFIRMATION")
FINISHED_JOB_STATES = ("DONE", "FAILED", "ABORTED")
RUNNING_CODE_STUDIO_STATES = ("RUNNING", "STARTING")
# kinds listed project by project (always, or as a fallback of an instance-wide call)
PROJECT_KINDS = ("notebook_session", "job", "webapp", "continuous_activity", "code_studio")

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "Activity",
    "ListingError",
    "Inventory",
    "list_activities",
    "get_activity",
    "probe",
    "Probe",
]


@dataclass(frozen=True)
class Activity:
    kind: str  # one of KINDS
    id: str  # unique within kind and project: sessionId, future jobId, job id, webapp id, recipe id, code studio id
    project_key: Optional[str]
    name: str  # notebook name, job/future display name, scenario id, webapp name, ...
    owner: Optional[str]  # DSS login of the owner / initiator / session creator
    state: str  # e.g. "idle", "busy", "RUNNING", "running", "aborting"
    start_time: Optional[float] = None  # epoch seconds
    last_activity_time: Optional[float] = None  # epoch seconds, where DSS gives it (kernels)
    pid: Optional[int] = None  # kernelPid (kernel or JEK), webapp backend pid, where DSS gives it
    details: Mapping[str, object] = field(default_factory=dict)  # kernel_id, connections, scenario_id, ...


@dataclass(frozen=True)
class ListingError:
    """A call or a project that failed while listing: shown as a row, the rest still lists."""

    kind: str  # a kind from KINDS, or "projects" when the project list itself failed
    project_key: Optional[str]
    message: str


@dataclass(frozen=True)
class Inventory:
    taken_at: float  # epoch seconds
    activities: Tuple[Activity, ...]
    errors: Tuple[ListingError, ...]
    notes: Tuple[str, ...] = ()  # how the listing was done where it matters (fallbacks taken), readable


# --------------------------------------------------------------------------------------------------------------
# small readers of DSS's JSON: defensive, never raise on a missing or odd field


def _seconds(ms):
    """Epoch milliseconds (or a duration in ms) -> seconds as float; None when absent, zero or not a number."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        return None
    return ms / 1000.0


def _int(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _str(value):
    return value if isinstance(value, str) and value else None


def _dict(value):
    return value if isinstance(value, dict) else {}


def _items(value, what):
    """A JSON list of objects; anything else is a malformed answer (an error row, not a crash)."""
    if not isinstance(value, list):
        raise DSSError("%s: DSS answered with an unexpected shape (%s instead of a list)" % (what, type(value).__name__))
    return [v for v in value if isinstance(v, dict)]


def _running_seconds(start_time, now, running_ms=None):
    explicit = _seconds(running_ms)
    if explicit is not None:
        return explicit
    if start_time is None:
        return None
    return max(0.0, now - start_time)


def _progress(future):
    """A future's progress as a list of {name, cur, target, unit}: what DSS's UI shows, without anything else."""
    states = _dict(future.get("progress")).get("states")
    if not isinstance(states, list):
        return []
    out = []
    for s in states:
        if isinstance(s, dict):
            out.append({k: s.get(k) for k in ("name", "cur", "target", "unit") if s.get(k) is not None})
    return out


def _future_state(future):
    return "aborting" if future.get("aborted") else "running"


def _future_targets(future):
    targets = _dict(future.get("payload")).get("targets")
    if not isinstance(targets, list):
        return []
    return [
        {"type": t.get("objectType"), "project_key": t.get("projectKey"), "id": t.get("objectId")}
        for t in targets
        if isinstance(t, dict)
    ]


# --------------------------------------------------------------------------------------------------------------
# records from JSON, one function per kind


def session_activity(session, now):
    """A notebook session dict (GET .../jupyter-notebooks/{nb}/sessions) -> Activity."""
    start = _seconds(session.get("sessionStartTime"))
    state = _str(session.get("kernelExecutionState")) or "unknown"
    return Activity(
        kind="notebook_session",
        id=str(session.get("sessionId")),
        project_key=_str(session.get("projectKey")),
        name=_str(session.get("notebookName")) or "?",
        owner=_str(session.get("sessionCreator")),
        state=state,
        start_time=start,
        last_activity_time=_seconds(session.get("kernelLastActivityTime")),
        pid=_int(session.get("kernelPid")),
        details={
            "session_id": session.get("sessionId"),
            "notebook_name": session.get("notebookName"),
            "kernel_id": session.get("kernelId"),
            "kernel_connections": _int(session.get("kernelConnections")),
            "execution_state": state,
            "unix_owner": _str(session.get("sessionUnixOwner")),
            "owner_display_name": _str(session.get("sessionCreatorDisplayName")),
            "running_seconds": _running_seconds(start, now),
        },
    )


def future_activity(future, now):
    """A future dict (GET /futures/) -> Activity of kind "scenario" when it runs a scenario, else "future"."""
    payload = _dict(future.get("payload"))
    targets = _future_targets(future)
    start = _seconds(future.get("startTime"))
    running = _running_seconds(start, now, future.get("runningTime"))
    if start is None and running is not None:
        start = now - running
    first = targets[0] if targets else {}
    is_scenario = payload.get("action") == "run_scenario"
    extras = _dict(payload.get("extras"))
    common = dict(
        id=str(future.get("jobId")),
        project_key=_str(first.get("project_key")),
        owner=_str(future.get("owner")),
        state=_future_state(future),
        start_time=start,
    )
    if is_scenario:
        scenario_id = _str(first.get("id"))
        return Activity(
            kind="scenario",
            name=_str(future.get("jobDisplayName")) or scenario_id or "scenario",
            details={
                "future_id": future.get("jobId"),
                "scenario_id": scenario_id,
                "run_id": _str(extras.get("scenarioRunId")) or _str(extras.get("runId")),
                "progress": _progress(future),
                "running_seconds": running,
            },
            **common,
        )
    return Activity(
        kind="future",
        name=_str(future.get("jobDisplayName")) or _str(payload.get("action")) or "background task",
        details={
            "future_id": future.get("jobId"),
            "action": _str(payload.get("action")),
            "targets": targets,
            # a macro run names its runnable (pyrunnable_<plugin>_<macro>): lets the policy spare its own run.
            # Nothing else of `extras` is copied: it may hold arguments (and secrets) of the task.
            "runnable_type": _str(extras.get("runnableType")),
            "progress": _progress(future),
            "running_seconds": running,
        },
        **common,
    )


def job_activity(item, now):
    """A job list item (GET /jobs/running/ or /projects/{pk}/jobs/) -> Activity."""
    definition = _dict(item.get("def"))
    start = _seconds(item.get("startTime")) or _seconds(definition.get("initiationTimestamp"))
    job_id = definition.get("id") or item.get("jobId")
    return Activity(
        kind="job",
        id=str(job_id),
        project_key=_str(definition.get("projectKey")) or _str(item.get("projectKey")),
        name=_str(definition.get("name")) or str(job_id),
        owner=_str(definition.get("initiator")),
        state=_str(item.get("state")) or "RUNNING",
        start_time=start,
        pid=_int(item.get("kernelPid")),
        details={
            "job_id": job_id,
            "initiator": _str(definition.get("initiator")),
            "job_type": _str(definition.get("type")),
            "scenario_id": _str(item.get("scenarioId")),
            "scenario_run_id": _str(item.get("scenarioRunId")),
            "running_seconds": _running_seconds(start, now),
        },
    )


def _sessions_of(sessions, project_key, notebook_name, now):
    out = []
    for s in sessions:
        if isinstance(s, dict) and s.get("sessionId"):
            s = dict(s)
            s.setdefault("projectKey", project_key)
            s.setdefault("notebookName", notebook_name)
            out.append(session_activity(s, now))
    return out


def _job_is_running(item):
    stable = item.get("stableState")
    if isinstance(stable, bool):
        return not stable
    return item.get("state") in RUNNING_JOB_STATES


def webapp_activity(project_key, webapp_id, name, state, now):
    """A webapp backend state (GET .../webapps/{id}/backend/state) -> Activity, or None when not running."""
    info = _dict(state.get("futureInfo"))
    if not info.get("alive"):
        return None
    extras = _dict(_dict(info.get("payload")).get("extras"))
    start = _seconds(info.get("startTime"))
    return Activity(
        kind="webapp",
        id=str(webapp_id),
        project_key=project_key,
        name=name or str(webapp_id),
        owner=_str(info.get("owner")),
        state="running",
        start_time=start,
        pid=_int(extras.get("pid")),
        details={
            "webapp_id": webapp_id,
            "future_id": info.get("jobId"),
            "port": _int(extras.get("port")),
            "running_seconds": _running_seconds(start, now, info.get("runningTime")),
        },
    )


def continuous_activity(item, now):
    """A continuous activity dict (GET .../continuous-activities/) -> Activity, or None when not started."""
    if item.get("desiredState") != "STARTED":
        return None
    loop = _dict(item.get("mainLoopState"))
    info = _dict(loop.get("futureInfo"))
    start = _seconds(info.get("startTime"))
    recipe_id = item.get("recipeId")
    return Activity(
        kind="continuous_activity",
        id=str(recipe_id),
        project_key=_str(item.get("projectKey")),
        name=str(recipe_id),
        owner=_str(info.get("owner")),
        state="running" if info.get("alive") else "started",
        start_time=start,
        details={
            "recipe_id": recipe_id,
            "desired_state": item.get("desiredState"),
            "future_id": loop.get("futureId") or info.get("jobId"),
            "running_seconds": _running_seconds(start, now, info.get("runningTime")) if info.get("alive") else None,
        },
    )


def code_studio_activity(project_key, studio_id, name, owner, template_id, status, now):
    """A code studio status (GET .../code-studios/{id}/status) -> Activity, or None when not running/starting."""
    state = status.get("state")
    if state not in RUNNING_CODE_STUDIO_STATES:
        return None
    since = _seconds(status.get("lastStateChange"))
    return Activity(
        kind="code_studio",
        id=str(studio_id),
        project_key=project_key,
        name=name or str(studio_id),
        owner=owner,
        state=state,
        start_time=since,
        details={
            "code_studio_id": studio_id,
            "template_id": template_id,
            "last_state_change": since,
            "running_seconds": _running_seconds(since, now) if state == "RUNNING" else None,
        },
    )


# --------------------------------------------------------------------------------------------------------------
# the fan-out: steps run by a bounded pool; a step returns activities, notes and follow-up steps


@dataclass(frozen=True)
class _Step:
    kind: str  # the kind an error of this step is reported under
    project_key: Optional[str]
    what: str  # what the call does, for error messages: "listing webapps of project X"
    run: Callable  # run(client) -> _Out


@dataclass
class _Out:
    activities: List[Activity] = field(default_factory=list)
    followups: List[_Step] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def _execute(client, step):
    """Run one step in a worker thread: (out, None) or (None, ListingError). Errors are translated here, in the
    thread that made the call (dss.translate_error reads a thread-local status)."""
    try:
        return step.run(client), None
    except Exception as exc:  # noqa: BLE001 - one failing call is an error row, never a crashed listing
        err = dss.translate_error(exc, step.what)
        if isinstance(err, DSSError):
            message = str(err)
        else:
            logger.warning("%s: unexpected %s", step.what, exc.__class__.__name__, exc_info=True)
            message = "%s: unexpected answer from DSS (%s)" % (step.what, exc.__class__.__name__)
        return None, ListingError(step.kind, step.project_key, message)


def _run_steps(client, steps, max_workers):
    activities, errors, notes = [], [], []
    if not steps:
        return activities, errors, notes
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="process-tracker-list") as pool:
        pending = {pool.submit(_execute, client, s) for s in steps}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                out, error = fut.result()
                if error is not None:
                    errors.append(error)
                    continue
                activities.extend(out.activities)
                notes.extend(out.notes)
                for step in out.followups:
                    pending.add(pool.submit(_execute, client, step))
    return activities, errors, notes


def _translated(exc, what):
    """dss.translate_error, re-raising programming errors unchanged."""
    err = dss.translate_error(exc, what)
    if err is exc and not isinstance(exc, DSSError):
        raise exc
    return err


class _Lister:
    """Builds the steps of one listing. Holds the client only for the duration of `list_activities`."""

    def __init__(self, kinds, projects, project_keys, all_users, now):
        self.kinds = kinds
        self.projects = projects  # None (all) or a frozenset used to filter instance-wide answers
        self.project_keys = project_keys  # the keys to fan out over (explicit, or listed)
        self.all_users = all_users
        self.now = now

    def _wanted(self, activity):
        if activity.kind not in self.kinds:
            return False
        return self.projects is None or activity.project_key in self.projects

    # ---- notebook sessions
    def notebooks_instance_wide(self, client):
        what = "listing running notebooks"
        try:
            notebooks = _items(client.list_running_notebooks(as_objects=False), what)
        except Exception as exc:  # noqa: BLE001 - translated; a non-admin falls back to per-project listing
            err = _translated(exc, what)
            if isinstance(err, DSSForbidden):
                out = _Out(followups=[self._step_project_notebooks(pk) for pk in self.project_keys])
                out.notes.append("notebooks listed project by project (listing all running notebooks needs admin)")
                return out
            raise err from None
        out = _Out()
        for nb in notebooks:
            pk, name = _str(nb.get("projectKey")), _str(nb.get("name"))
            if not pk or not name or (self.projects is not None and pk not in self.projects):
                continue
            sessions = nb.get("activeSessions")
            if isinstance(sessions, list) and all(isinstance(s, dict) and s.get("sessionId") for s in sessions):
                # DSS gives each active notebook's sessions in this list (the fields its own kill-sessions
                # macro reads): no call per notebook is needed
                out.activities.extend(_sessions_of(sessions, pk, name, self.now))
            else:
                out.followups.append(self._step_sessions(pk, name))
        return out

    def _step_project_notebooks(self, project_key):
        def run(client):
            notebooks = client.get_project(project_key).list_jupyter_notebooks(active=True, as_type="object")
            return _Out(followups=[self._step_sessions(project_key, nb.notebook_name) for nb in notebooks])

        return _Step("notebook_session", project_key, "listing active notebooks of project %s" % project_key, run)

    def _step_sessions(self, project_key, notebook_name):
        what = "listing sessions of notebook %s in project %s" % (notebook_name, project_key)

        def run(client):
            notebook = client.get_project(project_key).get_jupyter_notebook(notebook_name)
            sessions = _items(notebook.get_sessions(as_objects=False), what)
            return _Out(activities=_sessions_of(sessions, project_key, notebook_name, self.now))

        return _Step("notebook_session", project_key, what, run)

    # ---- futures and scenarios
    def _futures(self, client, kind):
        call = client.list_futures if kind == "future" else client.list_running_scenarios
        label = "background tasks" if kind == "future" else "running scenarios"
        what = "listing %s" % label
        out = _Out()
        try:
            kwargs = {"as_objects": False} if kind == "future" else {}
            futures = _items(call(all_users=self.all_users, **kwargs), what)
        except Exception as exc:  # noqa: BLE001 - translated; a non-admin lists their own
            err = _translated(exc, what)
            if not (self.all_users and isinstance(err, DSSForbidden)):
                raise err from None
            out.notes.append("%s: only your own are listed (all users' needs admin)" % label)
            futures = _items(call(all_users=False, **kwargs), what)
        for f in futures:
            if not f.get("jobId") or f.get("alive") is False:
                continue
            activity = future_activity(f, self.now)
            if activity.kind == kind and self._wanted(activity):
                out.activities.append(activity)
        return out

    # ---- jobs
    def jobs_instance_wide(self, client):
        what = "listing running jobs"
        out = _Out()
        try:
            items = _items(client.list_running_jobs(as_type="listitems", all_users=self.all_users), what)
        except Exception as exc:  # noqa: BLE001 - translated; DSS < 15 answers 404: list project by project
            err = _translated(exc, what)
            if isinstance(err, DSSNotFound):
                out.followups.extend(self._step_project_jobs(pk) for pk in self.project_keys)
                out.notes.append("jobs listed project by project (this DSS has no instance-wide list of running jobs)")
                return out
            if not (self.all_users and isinstance(err, DSSForbidden)):
                raise err from None
            out.notes.append("running jobs: only your own are listed (all users' needs admin)")
            items = _items(client.list_running_jobs(as_type="listitems", all_users=False), what)
        for item in items:
            activity = job_activity(item, self.now)
            if self._wanted(activity) and activity.state not in FINISHED_JOB_STATES:
                out.activities.append(activity)
        return out

    def _step_project_jobs(self, project_key):
        what = "listing jobs of project %s" % project_key

        def run(client):
            items = _items(client.get_project(project_key).list_jobs(as_type="listitems"), what)
            out = _Out()
            for item in items:
                if _job_is_running(item):
                    activity = job_activity(item, self.now)
                    if activity.project_key is None:
                        activity = _with_project(activity, project_key)
                    out.activities.append(activity)
            return out

        return _Step("job", project_key, what, run)

    # ---- webapps
    def _step_project_webapps(self, project_key):
        what = "listing webapps of project %s" % project_key

        def run(client):
            project = client.get_project(project_key)
            out = _Out()
            for item in project.list_webapps(as_type="listitems"):
                webapp_id = _safe_prop(item, "id")
                if webapp_id:
                    out.followups.append(self._step_webapp_state(project_key, webapp_id, _safe_prop(item, "name")))
            return out

        return _Step("webapp", project_key, what, run)

    def _step_webapp_state(self, project_key, webapp_id, name):
        what = "reading the backend state of webapp %s in project %s" % (webapp_id, project_key)

        def run(client):
            state = client.get_project(project_key).get_webapp(webapp_id).get_state().state
            activity = webapp_activity(project_key, webapp_id, name, _dict(state), self.now)
            return _Out(activities=[activity] if activity else [])

        return _Step("webapp", project_key, what, run)

    # ---- continuous activities
    def _step_project_continuous(self, project_key):
        what = "listing continuous activities of project %s" % project_key

        def run(client):
            items = _items(client.get_project(project_key).list_continuous_activities(as_objects=False), what)
            out = _Out()
            for item in items:
                item = dict(item)
                item.setdefault("projectKey", project_key)
                activity = continuous_activity(item, self.now)
                if activity is not None:
                    out.activities.append(activity)
            return out

        return _Step("continuous_activity", project_key, what, run)

    # ---- code studios
    def _step_project_code_studios(self, project_key):
        what = "listing code studios of project %s" % project_key

        def run(client):
            out = _Out()
            for item in client.get_project(project_key).list_code_studios(as_type="listitems"):
                studio_id = _safe_prop(item, "id")
                if studio_id:
                    out.followups.append(
                        self._step_code_studio_status(
                            project_key,
                            studio_id,
                            _safe_prop(item, "name"),
                            _safe_prop(item, "owner"),
                            _safe_prop(item, "template_id"),
                        )
                    )
            return out

        return _Step("code_studio", project_key, what, run)

    def _step_code_studio_status(self, project_key, studio_id, name, owner, template_id):
        what = "reading the status of code studio %s in project %s" % (studio_id, project_key)

        def run(client):
            status = client.get_project(project_key).get_code_studio(studio_id).get_status().get_raw()
            activity = code_studio_activity(project_key, studio_id, name, owner, template_id, _dict(status), self.now)
            return _Out(activities=[activity] if activity else [])

        return _Step("code_studio", project_key, what, run)

    # ---- all steps of a listing
    def initial_steps(self):
        steps = []
        kinds = self.kinds
        if "notebook_session" in kinds:
            if self.all_users:
                steps.append(_Step("notebook_session", None, "listing running notebooks", self.notebooks_instance_wide))
            else:
                steps.extend(self._step_project_notebooks(pk) for pk in self.project_keys)
        if "future" in kinds:
            steps.append(_Step("future", None, "listing background tasks", lambda c: self._futures(c, "future")))
        if "scenario" in kinds:
            steps.append(_Step("scenario", None, "listing running scenarios", lambda c: self._futures(c, "scenario")))
        if "job" in kinds:
            steps.append(_Step("job", None, "listing running jobs", self.jobs_instance_wide))
        for pk in self.project_keys:
            if "webapp" in kinds:
                steps.append(self._step_project_webapps(pk))
            if "continuous_activity" in kinds:
                steps.append(self._step_project_continuous(pk))
            if "code_studio" in kinds:
                steps.append(self._step_project_code_studios(pk))
        return steps


def _safe_prop(item, name):
    """A dataikuapi list-item property that raises KeyError when DSS left the field out -> None instead."""
    try:
        value = getattr(item, name)
    except (KeyError, AttributeError, TypeError):
        return None
    return value if isinstance(value, str) and value else None


def _with_project(activity, project_key):
    return replace(activity, project_key=project_key)


def _check_kinds(kinds):
    if isinstance(kinds, str):
        kinds = (kinds,)
    try:
        kinds = tuple(kinds)
    except TypeError:
        raise ConfigError("kinds", "a list of activity kinds among %s" % ", ".join(KINDS)) from None
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError("kinds", "unknown kind(s) %s; accepted: %s" % (", ".join(map(repr, unknown)), ", ".join(KINDS)))
    if not kinds:
        raise ConfigError("kinds", "empty selection: give at least one of %s" % ", ".join(KINDS))
    return frozenset(kinds)


def _check_projects(projects):
    if projects is None:
        return None
    if isinstance(projects, str):
        raise ConfigError("projects", "a list of project keys (or None for all projects), not a string")
    try:
        keys = tuple(projects)
    except TypeError:
        raise ConfigError("projects", "a list of project keys (or None for all projects)") from None
    bad = [k for k in keys if not isinstance(k, str) or not k.strip()]
    if bad:
        raise ConfigError("projects", "project keys must be non-empty strings, got %r" % (bad[0],))
    if not keys:
        raise ConfigError("projects", "empty selection: give at least one project key, or None for all projects")
    return tuple(dict.fromkeys(k.strip() for k in keys))


def _check_workers(max_workers):
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or not 1 <= max_workers <= MAX_WORKERS_LIMIT:
        raise ConfigError("max_workers", "an integer from 1 to %d, got %r" % (MAX_WORKERS_LIMIT, max_workers))
    return max_workers


def _sort_key(activity):
    return (KINDS.index(activity.kind), activity.project_key or "", activity.start_time or 0.0, activity.id)


def list_activities(
    client,
    kinds: Sequence[str] = KINDS,
    projects: Optional[Sequence[str]] = None,
    all_users: bool = True,
    max_workers: int = DEFAULT_MAX_WORKERS,
    now: Optional[float] = None,
) -> Inventory:
    """List the running activities of a DSS instance as records.

    - `kinds`: which kinds to list (a subset of KINDS).
    - `projects`: project keys to restrict to; None lists every project the caller can see.
    - `all_users`: use the admin instance-wide calls (all users' notebooks, futures, scenarios). When the caller
      is not admin (HTTP 403), each falls back to what the caller may list (their own futures and scenarios,
      notebooks project by project) and says so in `Inventory.notes`. False: never use admin-only calls.
    - `max_workers`: the bound on concurrent calls to DSS (1..64).
    - `now`: epoch seconds used for `taken_at` and running times (default: time.time()).

    Bad parameters raise ConfigError naming the parameter. A failing call or project is a ListingError row;
    nothing else is raised for DSS failures, except when the project list itself is needed and fails, which is
    also a row ("projects").
    """
    kind_set = _check_kinds(kinds)
    project_keys = _check_projects(projects)
    max_workers = _check_workers(max_workers)
    now = time.time() if now is None else float(now)
    errors = []
    project_filter = frozenset(project_keys) if project_keys is not None else None
    if project_keys is None:
        project_keys = ()
        if kind_set & set(PROJECT_KINDS):
            try:
                project_keys = tuple(client.list_project_keys())
            except Exception as exc:  # noqa: BLE001 - translated into an error row; the rest still lists
                err = _translated(exc, "listing projects")
                errors.append(ListingError("projects", None, str(err)))
    lister = _Lister(kind_set, project_filter, project_keys, bool(all_users), now)
    activities, step_errors, notes = _run_steps(client, lister.initial_steps(), max_workers)
    errors.extend(step_errors)
    unique = {}
    for a in activities:
        unique.setdefault((a.kind, a.project_key, a.id), a)
    return Inventory(
        taken_at=now,
        activities=tuple(sorted(unique.values(), key=_sort_key)),
        errors=tuple(sorted(errors, key=lambda e: (e.kind, e.project_key or "", e.message))),
        notes=tuple(dict.fromkeys(notes)),
    )


# --------------------------------------------------------------------------------------------------------------
# the fresh state of one activity: used to re-check before acting and to verify after


@dataclass(frozen=True)
class Probe:
    """The fresh state of one activity.

    status: "running" (still there), "stopping" (an abort/stop is in progress), "aborted" (stopped by an abort),
    "finished" (ended on its own: a future done without abort, a job DONE or FAILED), "gone" (DSS no longer
    lists it; for kernels and webapps this is what a successful stop looks like).
    """

    status: str
    activity: Optional[Activity]  # the fresh record while it exists (running/stopping), else None
    detail: str = ""  # e.g. the final job state


LIVE_STATUSES = ("running", "stopping")


def _probe_future(client, activity, now):
    state = client.get_future(activity.id).peek_state()
    if not isinstance(state, dict):
        raise DSSError("reading task %s: DSS answered with an unexpected shape" % activity.id)
    alive = state.get("alive", True)
    aborted = bool(state.get("aborted"))
    if not alive:
        # a result means it completed on its own (even if an abort came too late); no result after an abort
        # means the abort ended it
        finished = bool(state.get("hasResult")) or not aborted
        return Probe("finished" if finished else "aborted", None)
    state = dict(state)
    state.setdefault("jobId", activity.id)
    fresh = future_activity(state, now)
    if fresh.project_key is None and activity.project_key is not None:
        fresh = _with_project(fresh, activity.project_key)
    if fresh.kind != activity.kind:  # a peek may lack the payload that tells scenarios apart
        fresh = replace(fresh, kind=activity.kind, details={**activity.details, **fresh.details})
    return Probe("stopping" if aborted else "running", fresh)


def _probe_session(client, activity, now):
    notebook_name = activity.details.get("notebook_name") or activity.name
    notebook = client.get_project(activity.project_key).get_jupyter_notebook(notebook_name)
    for s in _items(notebook.get_sessions(as_objects=False), "listing sessions of notebook %s" % notebook_name):
        if str(s.get("sessionId")) == activity.id:
            s = dict(s)
            s.setdefault("projectKey", activity.project_key)
            s.setdefault("notebookName", notebook_name)
            return Probe("running", session_activity(s, now))
    return Probe("gone", None)


def _probe_job(client, activity, now):
    status = _dict(client.get_project(activity.project_key).get_job(activity.id).get_status())
    base = _dict(status.get("baseStatus"))
    state = base.get("state") or status.get("state")
    if state == "ABORTED":
        return Probe("aborted", None, state)
    if state in FINISHED_JOB_STATES:
        return Probe("finished", None, state)
    item = {"def": _dict(base.get("def")) or {"id": activity.id}, "state": state, "startTime": base.get("jobStartTime")}
    fresh = job_activity(item, now)
    # the status has no kernelPid: keep the one listed, and what the status leaves out
    fresh = replace(
        fresh,
        project_key=fresh.project_key or activity.project_key,
        pid=activity.pid,
        owner=fresh.owner or activity.owner,
        start_time=fresh.start_time or activity.start_time,
        details={**activity.details, **{k: v for k, v in fresh.details.items() if v is not None}},
    )
    return Probe("running", fresh, str(state))


def _probe_webapp(client, activity, now):
    state = client.get_project(activity.project_key).get_webapp(activity.id).get_state().state
    fresh = webapp_activity(activity.project_key, activity.id, activity.name, _dict(state), now)
    return Probe("running", fresh) if fresh else Probe("gone", None)


def _probe_continuous(client, activity, now):
    status = _dict(client.get_project(activity.project_key).get_continuous_activity(activity.id).get_status())
    status.setdefault("projectKey", activity.project_key)
    status.setdefault("recipeId", activity.id)
    alive = bool(_dict(_dict(status.get("mainLoopState")).get("futureInfo")).get("alive"))
    if status.get("desiredState") != "STARTED":
        return Probe("stopping", activity) if alive else Probe("gone", None)
    return Probe("running", continuous_activity(status, now))


def _probe_code_studio(client, activity, now):
    status = _dict(client.get_project(activity.project_key).get_code_studio(activity.id).get_status().get_raw())
    state = status.get("state")
    if state == "STOPPING":
        return Probe("stopping", replace(activity, state=state))
    fresh = code_studio_activity(
        activity.project_key,
        activity.id,
        activity.name,
        activity.owner,
        activity.details.get("template_id"),
        status,
        now,
    )
    return Probe("running", fresh) if fresh else Probe("gone", None)


_PROBES = {
    "notebook_session": _probe_session,
    "future": _probe_future,
    "scenario": _probe_future,
    "job": _probe_job,
    "webapp": _probe_webapp,
    "continuous_activity": _probe_continuous,
    "code_studio": _probe_code_studio,
}


def probe(client, activity, now=None) -> Probe:
    """The fresh state of `activity` (one or two reads). A 404 is "gone"; other failures raise a DSSError."""
    if activity.kind not in _PROBES:
        raise ConfigError("kind", "unknown kind %r; accepted: %s" % (activity.kind, ", ".join(KINDS)))
    if activity.kind not in ("future", "scenario") and not activity.project_key:
        raise ConfigError("project_key", "a %s is identified within a project: give its project key" % activity.kind)
    now = time.time() if now is None else now
    what = "reading the state of %s %s" % (activity.kind.replace("_", " "), activity.id)
    try:
        return _PROBES[activity.kind](client, activity, now)
    except Exception as exc:  # noqa: BLE001 - translated: 404 means it no longer exists
        err = _translated(exc, what)
        if isinstance(err, DSSNotFound):
            return Probe("gone", None)
        raise err from None


def get_activity(client, kind, id, project_key=None, notebook_name=None) -> Optional[Activity]:
    """The fresh record of one activity, or None when it no longer runs (finished, stopped or unknown to DSS).

    Futures and scenarios need only their future id; other kinds need `project_key`. A notebook session is
    found in `notebook_name` when given, else among the project's active notebooks.
    Failures other than "not found" raise a DSSError.
    """
    if kind not in KINDS:
        raise ConfigError("kind", "unknown kind %r; accepted: %s" % (kind, ", ".join(KINDS)))
    if not id:
        raise ConfigError("id", "the id of the %s is required" % kind)
    if kind == "notebook_session" and not notebook_name:
        return _find_session(client, str(id), project_key)
    stub = Activity(kind, str(id), project_key, notebook_name or str(id), None, "unknown",
                    details={"notebook_name": notebook_name} if notebook_name else {})
    result = probe(client, stub)
    if result.status not in LIVE_STATUSES:
        return None
    if kind in ("webapp", "code_studio"):
        return _with_settings(client, result.activity)
    if kind == "job":
        return _with_job_pid(client, result.activity)
    return result.activity


def _with_job_pid(client, activity):
    """A job's status has no kernelPid: read it from the project's job list (running jobs on DSS 15+)."""
    project = client.get_project(activity.project_key)
    what = "listing jobs of project %s" % activity.project_key
    try:
        try:
            items = project.list_running_jobs(as_type="listitems")
        except Exception as exc:  # noqa: BLE001 - translated: DSS < 15 has no running-jobs endpoint
            if not isinstance(_translated(exc, what), DSSNotFound):
                raise
            items = project.list_jobs(as_type="listitems")
        items = _items(items, what)
    except Exception as exc:  # noqa: BLE001 - translated; the pid is a nicety, the state is what matters
        logger.debug("%s", _translated(exc, what))
        return activity
    for item in items:
        listed = job_activity(item, time.time())
        if listed.id == activity.id and listed.pid is not None:
            return replace(activity, pid=listed.pid)
    return activity


def _with_settings(client, activity):
    """Webapps and code studios: their state has no name (nor owner): read them from the object's settings."""
    project = client.get_project(activity.project_key)
    what = "reading the settings of %s %s" % (activity.kind.replace("_", " "), activity.id)
    try:
        if activity.kind == "webapp":
            raw = _dict(project.get_webapp(activity.id).get_settings().get_raw())
        else:
            raw = _dict(project.get_code_studio(activity.id).get_settings().get_raw())
    except Exception as exc:  # noqa: BLE001 - translated; the name is a nicety, the state is what matters
        err = _translated(exc, what)
        logger.debug("%s", err)
        return activity
    details = dict(activity.details)
    if raw.get("templateId"):
        details["template_id"] = raw.get("templateId")
    return replace(
        activity,
        name=_str(raw.get("name")) or activity.name,
        owner=activity.owner or _str(raw.get("owner")),
        details=details,
    )


def _find_session(client, session_id, project_key):
    """A session by id alone: search the active notebooks of the project (or of the instance, admin)."""
    what = "looking for notebook session %s" % session_id
    try:
        if project_key:
            names = [(project_key, nb.notebook_name) for nb in
                     client.get_project(project_key).list_jupyter_notebooks(active=True, as_type="object")]
        else:
            names = [(_str(nb.get("projectKey")), _str(nb.get("name")))
                     for nb in _items(client.list_running_notebooks(as_objects=False), what)]
    except Exception as exc:  # noqa: BLE001 - translated
        err = _translated(exc, what)
        if isinstance(err, DSSNotFound):
            return None
        raise err from None
    for pk, name in names:
        if not pk or not name:
            continue
        stub = Activity("notebook_session", session_id, pk, name, None, "unknown", details={"notebook_name": name})
        result = probe(client, stub)
        if result.status in LIVE_STATUSES:
            return result.activity
    return None
