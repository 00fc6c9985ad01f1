"""Activity kinds as data: one entry per kind says how it is listed (instance-wide and per project, per DSS
version), how an item is read (JSON -> Activity), re-checked (probe), stopped and verified.

Every call goes to a documented endpoint through the client's own transport (`client._perform_json`, present
in every dataikuapi release from 12.x to 15.x), with its path built from checked and quoted segments
(`identifiers.segment`: a route placeholder's name is the identifier kind of its value). So the calls do not
depend on which client DSS ships (`list_running_jobs` and `list_jobs(as_type=...)` exist in 15.x only), and no
id, from a user or read back from DSS, can steer a call elsewhere. Every value read goes through `reading.Item`.

A new kind or a version difference is one entry (and its tests). `activities` runs the listings, `actions` the
stops; `ROUTES` lists every endpoint the plugin calls, by kind (docs/dss-calls.md gives each its source).
"""
import string
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Tuple

from . import dss, identifiers
from .errors import ConfigError
from .reading import BadValue, Item, answer_list, answer_object
from .records import KINDS, Activity, Probe

RUNNING_JOB_STATES = ("NOT_STARTED", "RUNNING", "COMPUTING_DEPS", "WAITING_CONFIRMATION")
FINISHED_JOB_STATES = ("DONE", "FAILED", "ABORTED")
RUNNING_CODE_STUDIO_STATES = ("RUNNING", "STARTING")
MISSING_ENDPOINT_STATUSES = (400, 404, 405)  # how a DSS without an endpoint may answer

__all__ = ["Route", "Instance", "Kind", "KIND", "ROUTES", "call", "dss_major", "ids_of", "Ctx"]


# --------------------------------------------------------------------------------------------------------------
# routes and the one way to call them


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "/projects/{project_key}/webapps/{webapp_id}/backend/state": placeholders are identifier kinds
    params: Mapping[str, object] = field(default_factory=dict)  # fixed query parameters
    json: bool = True  # the answer is JSON (else it is not read)

    @property
    def placeholders(self):
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.path) if name)


def call(client, route, what, params=None, **ids):
    """Call `route` with its placeholders filled by checked, quoted `ids`; typed errors (dss.calling).

    An invalid id raises ConfigError naming the identifier kind before any request is made."""
    missing = [p for p in route.placeholders if not ids.get(p)]
    if missing:
        raise ConfigError(missing[0], "required to %s" % what)
    path = route.path.format(**{p: identifiers.segment(p, ids[p]) for p in route.placeholders})
    query = dict(route.params, **(params or {}))
    with dss.calling(what):
        if route.json:
            return client._perform_json(route.method, path, params=query or None)
        client._perform_empty(route.method, path, params=query or None)
        return None


INSTANCE_INFO = Route("GET", "/instance-info")
PROJECTS = Route("GET", "/projects/")


def dss_major(client):
    """DSS's major version from `/instance-info`'s `dssVersion` (where present; `dss.versions`, read once per client
    and shared with the macros' headers and the webapp's footer); None when unknown."""
    return dss.versions(client).dss_major


def ids_of(kind, activity):
    """The identifiers an activity's routes need: its project key, its id (as its kind's identifier) and the
    details its kind names (`Kind.detail_ids`: a session's notebook name)."""
    ids = {"project_key": activity.project_key, KIND[kind].id_kind: activity.id}
    for name in KIND[kind].detail_ids:
        ids[name] = (activity.details or {}).get(name)
    return ids


# --------------------------------------------------------------------------------------------------------------
# reading one item


@dataclass(frozen=True)
class Ctx:
    now: float  # epoch seconds
    project_key: Optional[str] = None  # the project listed (per-project listings and follow-ups)
    listed: Item = field(default_factory=lambda: Item({}, ""))  # the list item a follow-up came from


def required(item, kind, name):
    value = item.ident(kind, name)
    if value is None:
        raise item.bad(name, "is missing")
    return value


def _running(start, now, running):
    if running is not None:
        return running
    return None if start is None else max(0.0, now - start)


def _targets(item):
    raw = item.raw("payload.targets")
    out = []
    for i, t in enumerate(raw if isinstance(raw, list) else ()):
        target = Item(t, item.label, "payload.targets.%d." % i)
        out.append({"type": target.text("objectType", 100), "id": target.text("objectId", 300),
                    "project_key": target.ident("project_key", "projectKey")})
    return out


def read_future(item, ctx, kind="future"):
    """A future (GET /futures/) -> Activity of `kind` ("scenario" when the scenarios' call returned it)."""
    future_id = required(item, "future_id", "jobId")
    if item.flag("alive") is False:
        return None
    start, running = item.epoch("startTime"), item.duration("runningTime")
    if start is None and running is not None:
        start = ctx.now - running
    targets = _targets(item)
    first = targets[0] if targets else {}
    details = {"future_id": future_id, "progress": item.progress(),
               "running_seconds": _running(start, ctx.now, running)}
    if kind == "scenario":
        scenario_id = item.ident("scenario_id", "payload.targets.0.objectId") if first else None
        run_id = item.text("payload.extras.scenarioRunId", 200) or item.text("payload.extras.runId", 200)
        details.update(scenario_id=scenario_id, run_id=run_id)
        name = item.text("jobDisplayName", 300) or scenario_id or "scenario"
    else:
        # a macro run may name its runnable (unconfirmed field): kept to spare this plugin's macros. Nothing else
        # of `extras` is copied: it may hold arguments (and secrets) of the task.
        details.update(action=item.text("payload.action", 200), targets=targets,
                       runnable_type=item.text("payload.extras.runnableType", 300))
        name = item.text("jobDisplayName", 300) or details["action"] or "background task"
    return Activity(kind=kind, id=future_id, project_key=first.get("project_key") or ctx.project_key, name=name,
                    owner=item.text("owner", 300), state="aborting" if item.flag("aborted") else "running",
                    started_at=start, details=details)


def read_scenario(item, ctx):
    return read_future(item, ctx, kind="scenario")


def read_session(item, ctx):
    """A notebook session (GET .../jupyter-notebooks/{nb}/sessions, or a running notebook's activeSessions)."""
    session_id = required(item, "session_id", "sessionId")
    notebook = item.ident("notebook_name", "notebookName") or ctx.listed.ident("notebook_name", "name")
    start = item.epoch("sessionStartTime")
    state = item.text("kernelExecutionState", 100) or "unknown"
    return Activity(
        kind="notebook_session", id=session_id,
        project_key=item.ident("project_key", "projectKey") or ctx.project_key,
        name=notebook or "?", owner=item.text("sessionCreator", 300), state=state, started_at=start,
        last_activity_at=item.epoch("kernelLastActivityTime"), pid=item.pid("kernelPid"),
        details={"session_id": session_id, "notebook_name": notebook, "kernel_id": item.ident("kernel_id", "kernelId"),
                 "kernel_connections": item.count("kernelConnections"), "execution_state": state,
                 "unix_owner": item.text("sessionUnixOwner", 300),
                 "owner_display_name": item.text("sessionCreatorDisplayName", 300),
                 "running_seconds": _running(start, ctx.now, None)})


def read_job(item, ctx):
    """A job list item (GET /jobs/running/, /projects/{pk}/jobs/[running/]) -> Activity, None when finished."""
    job_id = item.ident("job_id", "def.id") or required(item, "job_id", "jobId")
    state = item.text("state", 100) or "RUNNING"
    stable = item.flag("stableState")
    if stable is True or (stable is None and state in FINISHED_JOB_STATES):
        return None
    start = item.epoch("startTime") or item.epoch("def.initiationTimestamp")
    initiator = item.text("def.initiator", 300)
    return Activity(
        kind="job", id=job_id,
        project_key=item.ident("project_key", "def.projectKey") or item.ident("project_key", "projectKey")
        or ctx.project_key,
        name=item.text("def.name", 300) or job_id, owner=initiator, state=state, started_at=start,
        pid=item.pid("kernelPid"),
        details={"job_id": job_id, "initiator": initiator, "job_type": item.text("def.type", 100),
                 "scenario_id": item.ident("scenario_id", "scenarioId"),
                 "scenario_run_id": item.text("scenarioRunId", 200),
                 "running_seconds": _running(start, ctx.now, None)})


def read_webapp(item, ctx):
    """A webapp backend state (GET .../webapps/{id}/backend/state; name and type from the list item or settings)."""
    info = item.sub("futureInfo")
    webapp_id = ctx.listed.ident("webapp_id", "id") or required(item, "webapp_id", "webAppId")
    if not info.flag("alive"):
        return None
    start, running = info.epoch("startTime"), info.duration("runningTime")
    return Activity(
        kind="webapp", id=webapp_id, project_key=item.ident("project_key", "projectKey") or ctx.project_key,
        name=ctx.listed.text("name", 300) or webapp_id, owner=info.text("owner", 300), state="running",
        started_at=start, pid=info.pid("payload.extras.pid"),
        details={"webapp_id": webapp_id, "webapp_type": ctx.listed.text("type", 300),
                 "future_id": info.ident("future_id", "jobId") or item.ident("future_id", "futureId"),
                 "port": info.port("payload.extras.port"), "running_seconds": _running(start, ctx.now, running)})


def read_continuous(item, ctx):
    """A continuous activity (GET .../continuous-activities/[{id}/]) -> Activity, None when not started."""
    recipe_id = required(item, "recipe_id", "recipeId")
    desired = item.text("desiredState", 100)
    loop = item.sub("mainLoopState")
    info = loop.sub("futureInfo")
    alive = bool(info.flag("alive"))
    start, running = info.epoch("startTime"), info.duration("runningTime")
    future_id = loop.ident("future_id", "futureId") or info.ident("future_id", "jobId")
    if desired != "STARTED":
        return None
    return Activity(
        kind="continuous_activity", id=recipe_id,
        project_key=item.ident("project_key", "projectKey") or ctx.project_key, name=recipe_id,
        owner=info.text("owner", 300), state="running" if alive else "started", started_at=start,
        details={"recipe_id": recipe_id, "desired_state": desired, "future_id": future_id,
                 "running_seconds": _running(start, ctx.now, running) if alive else None})


def read_code_studio(item, ctx):
    """A code studio status (GET .../code-studios/{id}/status; name, owner, template from the list item)."""
    studio_id = required(ctx.listed, "code_studio_id", "id")
    state = item.text("state", 100)
    since = item.epoch("lastStateChange")
    if state not in RUNNING_CODE_STUDIO_STATES:
        return None
    return Activity(
        kind="code_studio", id=studio_id, project_key=ctx.project_key, name=ctx.listed.text("name", 300) or studio_id,
        owner=ctx.listed.text("owner", 300), state=state, started_at=since,
        details={"code_studio_id": studio_id, "template_id": ctx.listed.text("templateId", 300),
                 "last_state_change": since, "running_seconds": _running(since, ctx.now, None) if state == "RUNNING"
                 else None})


# --------------------------------------------------------------------------------------------------------------
# re-checking one activity: the answer of its probe route -> Probe


def _merged(fresh, listed):
    """A fresh record keeps what only the listing knew (project, pid, name, details the probe leaves out)."""
    details = {**listed.details, **{k: v for k, v in fresh.details.items() if v is not None}}
    return replace(fresh, project_key=fresh.project_key or listed.project_key, pid=fresh.pid or listed.pid,
                   owner=fresh.owner or listed.owner, started_at=fresh.started_at or listed.started_at,
                   details=details)


def judge_future(answer, activity, now):
    item = Item(answer_object(answer, "reading task %s" % activity.id), "task %s" % activity.id)
    aborted = bool(item.flag("aborted"))
    if item.flag("alive") is False:
        # a result means it completed on its own (even if an abort came too late); none after an abort: aborted
        return Probe("finished" if item.flag("hasResult") or not aborted else "aborted", None)
    raw = dict(item.obj, jobId=activity.id)
    fresh = read_future(Item(raw, item.label), Ctx(now), kind=activity.kind)
    return Probe("stopping" if aborted else "running", _merged(fresh, activity))


def judge_session(answer, activity, now):
    what = "sessions of notebook %s" % activity.details.get("notebook_name")
    for s in answer_list(answer, what):
        if s.get("sessionId") == activity.id:
            listed = Item({"name": activity.details.get("notebook_name") or activity.name}, what)
            fresh = read_session(Item(s, "session %s" % activity.id), Ctx(now, activity.project_key, listed))
            return Probe("running", _merged(fresh, activity))
    return Probe("gone", None)


def judge_job(answer, activity, now):
    item = Item(answer_object(answer, "job %s" % activity.id), "job %s" % activity.id)
    base = item.sub("baseStatus")
    state = base.text("state", 100) or item.text("state", 100)
    if state == "ABORTED":
        return Probe("aborted", None, state)
    if state in FINISHED_JOB_STATES:
        return Probe("finished", None, state)
    raw = {"def": base.raw("def") if isinstance(base.raw("def"), dict) else {"id": activity.id},
           "state": state, "startTime": base.raw("jobStartTime")}
    fresh = read_job(Item(raw, item.label), Ctx(now, activity.project_key))
    if fresh is None:
        return Probe("finished", None, str(state))
    return Probe("running", _merged(replace(fresh, pid=None), activity), str(state))


def _listed_as(activity):
    return Item({"id": activity.id, "name": activity.name, "owner": activity.owner,
                 "type": activity.details.get("webapp_type"), "templateId": activity.details.get("template_id")},
                "%s %s" % (activity.kind, activity.id))


def judge_webapp(answer, activity, now):
    item = Item(answer_object(answer, "webapp %s" % activity.id), "webapp %s" % activity.id)
    fresh = read_webapp(item, Ctx(now, activity.project_key, _listed_as(activity)))
    return Probe("running", _merged(fresh, activity)) if fresh else Probe("gone", None)


def judge_continuous(answer, activity, now):
    item = Item(answer_object(answer, "continuous activity %s" % activity.id), "continuous activity %s" % activity.id)
    raw = dict(item.obj, recipeId=activity.id)
    if item.text("desiredState", 100) != "STARTED":
        alive = item.sub("mainLoopState").sub("futureInfo").flag("alive")
        return Probe("stopping", activity) if alive else Probe("gone", None)
    fresh = read_continuous(Item(raw, item.label), Ctx(now, activity.project_key))
    return Probe("running", _merged(fresh, activity))


def judge_code_studio(answer, activity, now):
    item = Item(answer_object(answer, "code studio %s" % activity.id), "code studio %s" % activity.id)
    if item.text("state", 100) == "STOPPING":
        return Probe("stopping", replace(activity, state="STOPPING"))
    fresh = read_code_studio(item, Ctx(now, activity.project_key, _listed_as(activity)))
    return Probe("running", _merged(fresh, activity)) if fresh else Probe("gone", None)


# --------------------------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Instance:
    """An instance-wide listing: `route` (+ `all_users` query parameter for admins' all-users view)."""

    route: Route
    all_users: Optional[str] = None  # the query parameter asking for every user's items (admin only)
    on_forbidden: str = "own"  # a non-admin: "own" (ask again for their own) or "projects" (list per project)
    min_major: Optional[int] = None  # the first DSS major version that has the route (else: per project)
    inline: Optional[str] = None  # a field of each item holding the followed items (running notebooks' sessions)


@dataclass(frozen=True)
class Kind:
    name: str
    id_kind: str  # the identifiers kind of an activity's id
    label: str  # for messages: "webapp", "background task"
    verb: str  # what stopping means
    read: Callable  # (Item, Ctx) -> Activity | None (not running); BadValue for an unusable item
    probe: Route  # the fresh state of one activity
    judge: Callable  # (answer of `probe`, listed Activity, now) -> Probe
    stop: Route
    instance: Optional[Instance] = None  # listed instance-wide (admins; others per `on_forbidden`)
    project: Optional[Route] = None  # listed per project (always, or as the instance listing's fallback)
    follow: Optional[Route] = None  # per listed item: the call giving the item(s) to read (state, sessions)
    follow_id: Optional[str] = None  # the list item's field holding the follow route's own id
    claims: Tuple[str, ...] = ()  # fields naming futures that run this object (spared as background tasks)
    checked_against: Tuple[str, ...] = ()  # kinds whose futures must be known before acting on this kind
    settings: Optional[Route] = None  # read for a single activity's name, owner and type
    in_project: bool = True
    id_field: str = "id"  # the field of a listed item holding its id (names the item in error rows)
    listing: str = ""  # what its listing is called in messages: "listing <listing> [of project X]"
    follow_what: str = ""  # what its follow call reads: "reading <follow_what> <id> in project X"
    detail_ids: Tuple[str, ...] = ()  # identifiers its routes need beyond project and id, from the details
    settings_details: Tuple[Tuple[str, str], ...] = ()  # (details key, settings field) read with `settings`
    pid_from_list: bool = False  # a single activity's pid is read from its project's (running) list

    @property
    def routes(self):
        listed = [self.instance.route if self.instance else None, self.project, self.follow]
        return tuple(r for r in listed + [self.probe, self.stop, self.settings] if r is not None)


_P = "/projects/{project_key}"
_FUTURE = Route("GET", "/futures/{future_id}", {"peek": True})
_ABORT_FUTURE = Route("DELETE", "/futures/{future_id}", json=False)
_FUTURES = "/futures/"

KIND = {k.name: k for k in (
    Kind("notebook_session", "session_id", "notebook session", "unload the kernel", read_session,
         probe=Route("GET", _P + "/jupyter-notebooks/{notebook_name}/sessions"), judge=judge_session,
         stop=Route("DELETE", _P + "/jupyter-notebooks/{notebook_name}/sessions/{session_id}"),
         instance=Instance(Route("GET", "/admin/notebooks/"), on_forbidden="projects", inline="activeSessions"),
         project=Route("GET", _P + "/jupyter-notebooks/", {"active": True}),
         follow=Route("GET", _P + "/jupyter-notebooks/{notebook_name}/sessions"), follow_id="name",
         id_field="sessionId", listing="running notebooks", follow_what="the sessions of notebook",
         detail_ids=("notebook_name",)),
    Kind("future", "future_id", "background task", "abort the task", read_future, _FUTURE, judge_future,
         _ABORT_FUTURE, in_project=False, checked_against=("scenario", "webapp", "continuous_activity"),
         instance=Instance(Route("GET", _FUTURES, {"withScenarios": False, "withNotScenarios": True}), "allUsers"),
         id_field="jobId", listing="background tasks"),
    Kind("scenario", "future_id", "scenario run", "abort the scenario run", read_scenario, _FUTURE,
         judge_future, _ABORT_FUTURE, in_project=False, claims=("jobId",),
         instance=Instance(Route("GET", _FUTURES, {"withScenarios": True, "withNotScenarios": False}), "allUsers"),
         id_field="jobId", listing="running scenarios"),
    Kind("job", "job_id", "job", "abort the job", read_job, Route("GET", _P + "/jobs/{job_id}/"), judge_job,
         Route("POST", _P + "/jobs/{job_id}/abort"),
         instance=Instance(Route("GET", "/jobs/running/"), "allUsers", min_major=15),
         project=Route("GET", _P + "/jobs/"), id_field="def.id", listing="running jobs", pid_from_list=True),
    Kind("webapp", "webapp_id", "webapp", "stop the backend", read_webapp,
         Route("GET", _P + "/webapps/{webapp_id}/backend/state"), judge_webapp,
         Route("PUT", _P + "/webapps/{webapp_id}/backend/actions/stop", json=False),
         project=Route("GET", _P + "/webapps/"), follow=Route("GET", _P + "/webapps/{webapp_id}/backend/state"),
         follow_id="id", claims=("futureInfo.jobId", "futureId"), settings=Route("GET", _P + "/webapps/{webapp_id}"),
         settings_details=(("webapp_type", "type"),),
         listing="webapps", follow_what="the backend state of webapp"),
    Kind("continuous_activity", "recipe_id", "continuous activity", "stop the continuous activity", read_continuous,
         Route("GET", _P + "/continuous-activities/{recipe_id}/"), judge_continuous,
         Route("POST", _P + "/continuous-activities/{recipe_id}/stop", json=False),
         project=Route("GET", _P + "/continuous-activities/"),
         claims=("mainLoopState.futureId", "mainLoopState.futureInfo.jobId"), id_field="recipeId",
         listing="continuous activities"),
    Kind("code_studio", "code_studio_id", "code studio", "stop the code studio", read_code_studio,
         Route("GET", _P + "/code-studios/{code_studio_id}/status"), judge_code_studio,
         Route("POST", _P + "/code-studios/{code_studio_id}/stop"),
         project=Route("GET", _P + "/code-studios/"), follow=Route("GET", _P + "/code-studios/{code_studio_id}/status"),
         follow_id="id", settings=Route("GET", _P + "/code-studios/{code_studio_id}"),
         settings_details=(("template_id", "templateId"),),
         listing="code studios", follow_what="the status of code studio"),
)}
assert tuple(KIND) == KINDS  # noqa: S101 - the table covers every kind, in KINDS' order

# the running jobs of one project (pids for a single job): DSS 15+, else the project's job list
PROJECT_RUNNING_JOBS = Route("GET", _P + "/jobs/running/")
ROUTES = {name: k.routes for name, k in KIND.items()}
ROUTES["job"] = ROUTES["job"] + (PROJECT_RUNNING_JOBS,)
COMMON_ROUTES = (INSTANCE_INFO, PROJECTS)


def item_label(kind, value):
    """How an item is named in an error row: its kind and its (escaped) id."""
    return "%s %s" % (KIND[kind].label, identifiers.shown(value, 80) if value is not None else "(no id)")


def read_item(kind, obj, ctx, label=None):
    """Read one item of `kind`: (Activity | None, None) or (None, BadValue). `label` names the item in errors
    (default: its kind and the value of its id field)."""
    item = Item(obj, label or item_label(kind, Item(obj, "").raw(KIND[kind].id_field)))
    try:
        return KIND[kind].read(item, ctx), None
    except BadValue as bad:
        return None, bad


def claimed_futures(kind, obj):
    """Future ids named by an item of `kind` (the futures that run it), valid ones only."""
    item = Item(obj, "")
    out = []
    for name in KIND[kind].claims:
        value = item.raw(name)
        if isinstance(value, str) and identifiers.is_valid("future_id", value):
            out.append(value)
    return out


def _check_table():
    for k in KIND.values():
        for r in k.routes:
            for p in r.placeholders:
                if p not in identifiers.KINDS:  # pragma: no cover - a table error, caught at import
                    raise ConfigError("kinds", "route %s of %s: unknown identifier kind %s" % (r.path, k.name, p))


_check_table()
