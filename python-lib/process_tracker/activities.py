"""The API side: one Activity record type for everything long-running that DSS's public API exposes.

Kinds: "notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio"; how each
is listed, read, re-checked and stopped is one entry of `kinds.KIND`. No DSSClient object leaves this module:
listing returns records, acting (actions.py) takes records.

Listing (`list_activities`) uses DSS's instance-wide calls where they exist (admin: running notebooks, all
users' futures and running scenarios, running jobs on DSS 15+, detected from `/instance-info`'s `dssVersion`,
with a fallback when `/jobs/running/` answers 400/404/405) and fans out over projects, concurrently with a bounded
thread pool, where they do not (webapps and their backend state, continuous activities, code studios and their
status, jobs before DSS 15, and notebooks with their sessions for non-admins). Every call is one "step" run by the
pool; a step may add follow-up steps (a notebook's sessions, a webapp's backend state). A failing step is a
`FailedListing` row, and so is one item DSS answered with an unusable value (an invalid id, a time in the year
5000, a pid of 1e999: see `reading`); the rest lists.

Background tasks are told apart by the call that returned them, never by a payload string: scenarios are what
the scenarios' call returns; a future named by a webapp's backend state (`futureInfo.jobId`) or a continuous
activity's main loop (`mainLoopState.futureId`) is marked `details["runs"]` (aborting it would stop that
webapp or recipe). Those listings run whenever futures are listed; when one of them fails, every future is marked
`details["unchecked"]` (the policy spares both).

Thread safety: the steps share one DSSClient, whose `requests.Session` is fine for concurrent requests.
`dss.calling` reads a thread-local "last HTTP status", so a failure is translated in the worker thread that made
the call, right after it failed.

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
                                                                  running_seconds; runs, unchecked (see above)
scenario             future jobId     running | aborting          future_id, scenario_id, run_id, progress,
                                                                  running_seconds
job                  job id           DSS job state (RUNNING,     job_id, initiator, job_type, scenario_id,
                                      NOT_STARTED, COMPUTING_DEPS, scenario_run_id, running_seconds
                                      WAITING_CONFIRMATION)
webapp               webapp id        running                     webapp_id, webapp_type, future_id, port,
                                                                  running_seconds
continuous_activity  recipe id        running | started           recipe_id, desired_state, future_id,
                     (loop not alive)                             running_seconds
code_studio          code studio id   RUNNING | STARTING          code_studio_id, template_id,
                                                                  last_state_change, running_seconds
==================== ================ =========================== ===========================================

`pid` is the session's `kernelPid`, the job's `kernelPid` (its JEK) and the webapp backend's
`futureInfo.payload.extras.pid`, when DSS gives them. Absent values are None or missing keys, never guesses.
"""
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

from . import identifiers, kinds
from .errors import ConfigError, DSSError, DSSForbidden, DSSNotFound
from .kinds import KIND, MISSING_ENDPOINT_STATUSES, Ctx, call
from .reading import BadValue, Item, answer_list, answer_object
from .records import KINDS, LIVE_STATUSES, Activity, Inventory, FailedListing, Probe

DEFAULT_MAX_WORKERS = 8
MAX_WORKERS_LIMIT = 64
RUNNING_JOB_STATES = kinds.RUNNING_JOB_STATES
FINISHED_JOB_STATES = kinds.FINISHED_JOB_STATES
MAX_UNCHECKED_REASONS = 3

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "Activity",
    "FailedListing",
    "Inventory",
    "list_activities",
    "get_activity",
    "probe",
    "Probe",
    "LIVE_STATUSES",
]


# --------------------------------------------------------------------------------------------------------------
# the fan-out: steps run by a bounded pool; a step returns activities, notes, item errors and follow-up steps


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
    errors: List[FailedListing] = field(default_factory=list)
    claims: Dict[str, tuple] = field(default_factory=dict)  # future id -> (what it runs: "webapp CHURN/w1", its project)


def _execute(client, step):
    """Run one step in a worker thread: (out, None) or (None, FailedListing)."""
    try:
        return step.run(client), None
    except DSSError as err:  # one failing call is an error row, never a crashed listing
        return None, FailedListing(step.kind, step.project_key, str(err), isinstance(err, DSSNotFound))


def _run_steps(client, steps, max_workers):
    """Every step and its follow-ups: (one merged _Out, the failed steps' errors)."""
    total, failed = _Out(), []
    if not steps:
        return total, failed
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="process-tracker-list") as pool:
        pending = {pool.submit(_execute, client, s) for s in steps}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                out, error = fut.result()
                if error is not None:
                    failed.append(error)
                    continue
                total.activities.extend(out.activities)
                total.notes.extend(out.notes)
                total.errors.extend(out.errors)
                total.claims.update(out.claims)
                for step in out.followups:
                    pending.add(pool.submit(_execute, client, step))
    return total, failed


class _Lister:
    """Builds the steps of one listing from the kinds table. Holds no client: each step receives it."""

    def __init__(self, kinds_needed, projects, all_users, now):
        self.kinds = kinds_needed  # the selected kinds and those needed to check them (kinds.Kind.checked_against)
        self.projects = projects  # None (all) or a frozenset used to filter instance-wide answers
        self.all_users = all_users
        self.now = now
        self._keys = tuple(projects) if projects is not None else None  # listed once, when first needed
        self._keys_lock = threading.Lock()
        self.key_errors = []

    def project_keys(self, client):
        """The keys to fan out over: the ones asked for, or every project's (listed once, on first need)."""
        with self._keys_lock:
            if self._keys is None:
                self._keys, self.key_errors = _project_keys(client)
            return self._keys

    def initial_steps(self, client):
        steps = []
        for name in KINDS:
            if name not in self.kinds:
                continue
            k = KIND[name]
            admin_only = k.instance is not None and k.instance.on_forbidden == "projects"
            if k.instance is not None and (self.all_users or not admin_only):
                steps.append(_Step(name, None, "listing %s" % k.listing, self._instance_runner(name)))
            else:
                steps.extend(self._project_step(name, pk) for pk in self.project_keys(client))
        return steps

    # ---- instance-wide listings, with their fallbacks
    def _instance_runner(self, name):
        return lambda client: self._instance(client, name)

    def _instance(self, client, name):
        k, out = KIND[name], _Out()
        inst, what = k.instance, "listing %s" % k.listing
        if inst.min_major is not None:
            major = kinds.dss_major(client)
            if major is not None and major < inst.min_major:
                return self._per_project(client, name, out, "%s listed project by project (DSS %d has no "
                                                            "instance-wide list)" % (k.listing, major))
        try:
            answer = call(client, inst.route, what, params=self._all_users_param(inst, self.all_users))
        except DSSForbidden:
            if not (self.all_users and inst.all_users) and inst.on_forbidden != "projects":
                raise
            if inst.on_forbidden == "projects":
                return self._per_project(client, name, out, "%s listed project by project (listing all of them "
                                                            "needs admin)" % k.listing.replace("running ", ""))
            out.notes.append("%s: only your own are listed (all users' needs admin)" % k.listing)
            answer = call(client, inst.route, what, params=self._all_users_param(inst, False))
        except DSSError as err:
            if inst.min_major is None or err.status not in MISSING_ENDPOINT_STATUSES:
                raise
            return self._per_project(client, name, out, "%s listed project by project (this DSS has no "
                                                        "instance-wide list: HTTP %s)" % (k.listing, err.status))
        self._read_all(name, answer_list(answer, what), None, out, inline=inst.inline)
        return out

    @staticmethod
    def _all_users_param(inst, value):
        return {inst.all_users: value} if inst.all_users else None

    def _per_project(self, client, name, out, note):
        out.followups.extend(self._project_step(name, pk) for pk in self.project_keys(client))
        out.notes.append(note)
        return out

    def _project_step(self, name, project_key):
        k = KIND[name]
        what = "listing %s of project %s" % (k.listing, project_key)

        def run(client):
            out = _Out()
            self._read_all(name, answer_list(call(client, k.project, what, project_key=project_key), what),
                           project_key, out)
            return out

        return _Step(name, project_key, what, run)

    # ---- reading the items of a listing
    def _wanted(self, project_key):
        return self.projects is None or project_key in self.projects

    def _read_all(self, name, items, project_key, out, inline=None):
        k = KIND[name]
        for obj in items:
            if k.follow is None:
                self._read_one(name, obj, Ctx(self.now, project_key), out)
                continue
            listed = Item(obj, "%s %s" % (k.follow_what.split(" of ", 1)[-1], identifiers.shown(obj.get(k.follow_id), 80)))
            try:
                pk = project_key or kinds.required(listed, "project_key", "projectKey")
                follow_id = kinds.required(listed, self._follow_kind(k), k.follow_id)
            except BadValue as bad:
                out.errors.append(FailedListing(name, project_key, str(bad)))
                continue
            if not self._wanted(pk):
                continue
            inlined = obj.get(inline) if inline else None
            if isinstance(inlined, list) and all(isinstance(s, dict) and s.get(k.id_field) for s in inlined):
                # DSS gives each running notebook's sessions in the list: no call per notebook
                for sub in inlined:
                    self._read_one(name, sub, Ctx(self.now, pk, listed), out)
            else:
                out.followups.append(self._follow_step(name, pk, follow_id, listed))

    @staticmethod
    def _follow_kind(k):
        return [p for p in k.follow.placeholders if p != "project_key"][0]

    def _follow_step(self, name, project_key, follow_id, listed):
        k = KIND[name]
        what = "reading %s %s in project %s" % (k.follow_what, follow_id, project_key)
        ids = {"project_key": project_key, self._follow_kind(k): follow_id}

        def run(client):
            answer = call(client, k.follow, what, **ids)
            objs = answer_list(answer, what) if isinstance(answer, list) else [answer_object(answer, what)]
            out = _Out()
            for obj in objs:
                label = kinds.item_label(name, obj.get(k.id_field)) if obj.get(k.id_field) else listed.label
                self._read_one(name, obj, Ctx(self.now, project_key, listed), out, label)
            return out

        return _Step(name, project_key, what, run)

    def _read_one(self, name, obj, ctx, out, label=None):
        activity, bad = kinds.read_item(name, obj, ctx, label)
        where = "%s %s" % (KIND[name].label, "%s/%s" % (activity.project_key, activity.id) if activity else
                           (label or kinds.item_label(name, obj.get(KIND[name].id_field))))
        for future_id in kinds.claimed_futures(name, obj):
            out.claims[future_id] = (where, activity.project_key if activity else ctx.project_key)
        if bad is not None:
            out.errors.append(FailedListing(name, ctx.project_key, str(bad)))
        elif activity is not None:
            out.activities.append(activity)


def _check_kinds(kind_list):
    if isinstance(kind_list, str):
        kind_list = (kind_list,)
    try:
        kind_list = tuple(kind_list)
    except TypeError:
        raise ConfigError("kinds", "a list of activity kinds among %s" % ", ".join(KINDS)) from None
    unknown = [k for k in kind_list if k not in KINDS]
    if unknown:
        raise ConfigError("kinds", "unknown kind(s) %s; accepted: %s" % (
            ", ".join(identifiers.shown(k, 40) for k in unknown), ", ".join(KINDS)))
    if not kind_list:
        raise ConfigError("kinds", "empty selection: give at least one of %s" % ", ".join(KINDS))
    return frozenset(kind_list)


def _check_projects(projects):
    if projects is None:
        return None
    if isinstance(projects, str):
        raise ConfigError("projects", "a list of project keys (or None for all projects), not a string")
    try:
        keys = tuple(projects)
    except TypeError:
        raise ConfigError("projects", "a list of project keys (or None for all projects)") from None
    if not keys:
        raise ConfigError("projects", "empty selection: give at least one project key, or None for all projects")
    return identifiers.check_list("project_key", keys, "projects")


def _check_workers(max_workers):
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or not 1 <= max_workers <= MAX_WORKERS_LIMIT:
        raise ConfigError("max_workers", "an integer from 1 to %d, got %r" % (MAX_WORKERS_LIMIT, max_workers))
    return max_workers


def _sort_key(activity):
    return (KINDS.index(activity.kind), activity.project_key or "", activity.started_at or 0.0, activity.id)


def _project_keys(client):
    """The keys of every project the caller sees: (keys, errors). An invalid key is an error row, not a call."""
    what = "listing projects"
    try:
        items = answer_list(call(client, kinds.PROJECTS, what), what)
    except DSSError as err:
        return (), [FailedListing("projects", None, str(err))]
    keys, errors = [], []
    for obj in items:
        try:
            keys.append(kinds.required(Item(obj, "project %s" % identifiers.shown(obj.get("projectKey"), 80)),
                                        "project_key", "projectKey"))
        except BadValue as bad:
            errors.append(FailedListing("projects", None, str(bad)))
    return tuple(dict.fromkeys(keys)), errors


def _needed(kind_set):
    """The selected kinds and the kinds whose listings tell what the selected ones run (checked_against)."""
    needed = set(kind_set)
    for name in kind_set:
        needed.update(KIND[name].checked_against)
    return frozenset(needed)


def _mark_futures(activities, claims, unchecked):
    """Futures that run something else (a webapp backend, a continuous activity, a scenario) say so; when what
    they run could not be checked, they say that instead (the policy spares both)."""
    out = []
    for a in activities:
        if not KIND[a.kind].checked_against:
            out.append(a)
            continue
        details, project_key = dict(a.details), a.project_key
        if a.id in claims:
            details["runs"], claimed_project = claims[a.id]
            project_key = project_key or claimed_project
        if unchecked:
            details["unchecked"] = "; ".join(unchecked[:MAX_UNCHECKED_REASONS])
        out.append(replace(a, details=details, project_key=project_key))
    return out


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
    - `all_users`: use the admin instance-wide calls (all users' notebooks, futures, scenarios, jobs). When the
      caller is not admin (HTTP 403), each falls back to what the caller may list and says so in
      `Inventory.notes`. False: never use admin-only calls.
    - `max_workers`: the bound on concurrent calls to DSS (1..64).
    - `now`: epoch seconds used for `taken_at` and running times (default: time.time()).

    Bad parameters raise ConfigError naming the parameter. A failing call, project or item is a FailedListing
    row; nothing is raised for DSS failures.
    """
    kind_set = _check_kinds(kinds)
    project_keys = _check_projects(projects)
    max_workers = _check_workers(max_workers)
    now = time.time() if now is None else float(now)
    project_filter = frozenset(project_keys) if project_keys is not None else None
    lister = _Lister(_needed(kind_set), project_keys, bool(all_users), now)
    out, failed = _run_steps(client, lister.initial_steps(client), max_workers)
    errors = lister.key_errors + failed + out.errors
    checks = frozenset(c for k in kind_set for c in KIND[k].checked_against)
    unchecked = [e.message for e in errors if e.kind in checks or (checks and e.kind == "projects")]
    unique = {}
    for a in _mark_futures(out.activities, out.claims, unchecked):
        if a.kind in kind_set and (project_filter is None or a.project_key in project_filter):
            unique.setdefault((a.kind, a.project_key, a.id), a)
    return Inventory(
        taken_at=now,
        activities=tuple(sorted(unique.values(), key=_sort_key)),
        errors=tuple(sorted(errors, key=lambda e: (e.kind, e.project_key or "", e.message))),
        notes=tuple(dict.fromkeys(out.notes)),
    )


# --------------------------------------------------------------------------------------------------------------
# the fresh state of one activity: used to re-check before acting and to verify after


def probe(client, activity, now=None) -> Probe:
    """The fresh state of `activity` (one read). A 404 is "gone"; other failures raise a DSSError (an unusable
    answer too); an invalid id or a missing project key raises ConfigError before any call."""
    if activity.kind not in KINDS:
        raise ConfigError("kind", "unknown kind %s; accepted: %s" % (identifiers.shown(activity.kind, 40),
                                                                    ", ".join(KINDS)))
    k = KIND[activity.kind]
    if k.in_project and not activity.project_key:
        raise ConfigError("project_key", "a %s is identified within a project: give its project key" % k.label)
    now = time.time() if now is None else now
    what = "reading the state of %s %s" % (k.label, identifiers.shown(activity.id, 80))
    try:
        answer = call(client, k.probe, what, **kinds.ids_of(activity.kind, activity))
    except DSSNotFound:
        return Probe("gone", None)
    return k.judge(answer, activity, now)


def get_activity(client, kind, id, project_key=None, notebook_name=None, check_runs=False) -> Optional[Activity]:
    """The fresh record of one activity, or None when it no longer runs (finished, stopped or unknown to DSS).

    Futures and scenarios need only their future id; other kinds need `project_key`. A notebook session is
    found in `notebook_name` when given, else among the project's active notebooks. Every identifier is checked
    first (ConfigError naming it: no call is made). Failures other than "not found" raise a DSSError.
    `check_runs`: for a background task, also list what futures run (webapps, continuous activities, scenarios:
    a listing of its own) and mark it `details["runs"]` / `["unchecked"]` as `list_activities` does.
    """
    if kind not in KINDS:
        raise ConfigError("kind", "unknown kind %s; accepted: %s" % (identifiers.shown(kind, 40), ", ".join(KINDS)))
    k = KIND[kind]
    identifiers.check(k.id_kind, id, "id")
    if project_key is not None:
        identifiers.check("project_key", project_key, "project_key")
    if k.in_project and not project_key and not (kind == "notebook_session" and not notebook_name):
        raise ConfigError("project_key", "a %s is identified within a project: give its project key" % k.label)
    if notebook_name is not None:
        identifiers.check("notebook_name", notebook_name, "notebook_name")
    if kind == "notebook_session" and not notebook_name:
        return _find_session(client, id, project_key)
    stub = Activity(kind, id, project_key, notebook_name or id, None, "unknown",
                    details={"notebook_name": notebook_name} if notebook_name else {})
    result = probe(client, stub)
    if result.status not in LIVE_STATUSES:
        return None
    if check_runs and k.checked_against:
        return _with_runs(client, result.activity)
    if k.settings is not None:
        return _with_settings(client, result.activity)
    if k.pid_from_list:
        return _with_job_pid(client, result.activity)
    return result.activity


def _with_runs(client, activity):
    """A background task marked as list_activities marks it: what it runs, or why that is unknown."""
    inventory = list_activities(client, kinds=[activity.kind])
    listed = next((a for a in inventory.activities if a.id == activity.id), None)
    details = dict(activity.details)
    if listed is None:
        details["unchecked"] = "not among the background tasks DSS lists"
    else:
        details.update({k: listed.details[k] for k in ("runs", "unchecked") if k in listed.details})
    return replace(activity, details=details, project_key=activity.project_key or (listed and listed.project_key))


def _with_job_pid(client, activity):
    """A job's status has no kernelPid: read it from the project's running jobs (DSS 15+) or its job list."""
    what = "listing jobs of project %s" % activity.project_key
    major = kinds.dss_major(client)
    routes = [kinds.PROJECT_RUNNING_JOBS] if major is None or major >= 15 else []
    items = None
    for route in routes + [KIND["job"].project]:
        try:
            items = answer_list(call(client, route, what, project_key=activity.project_key), what)
            break
        except DSSError as err:  # the pid is a nicety, the state is what matters
            logger.debug("%s", err)
            if err.status not in MISSING_ENDPOINT_STATUSES:
                return activity
    for obj in items or ():
        listed, bad = kinds.read_item("job", obj, Ctx(time.time(), activity.project_key))
        if bad is None and listed is not None and listed.id == activity.id and listed.pid is not None:
            return replace(activity, pid=listed.pid)
    return activity


def _with_settings(client, activity):
    """Webapps and code studios: their state has no name (nor owner, type): read them from the settings."""
    k = KIND[activity.kind]
    what = "reading the settings of %s %s" % (k.label, activity.id)
    try:
        raw = Item(answer_object(call(client, k.settings, what, **kinds.ids_of(activity.kind, activity)), what),
                   "%s %s" % (k.label, activity.id))
        name, owner = raw.text("name", 300), raw.text("owner", 300)
        details = dict(activity.details)
        for key, settings_field in k.settings_details:
            details[key] = raw.text(settings_field, 300) or details.get(key)
    except DSSError as err:  # the name is a nicety, the state is what matters
        logger.debug("%s", err)
        return activity
    return replace(activity, name=name or activity.name, owner=activity.owner or owner, details=details)


def _find_session(client, session_id, project_key):
    """A session by id alone: search the active notebooks of the project (or of the instance, admin)."""
    what = "looking for notebook session %s" % session_id
    route = KIND["notebook_session"].project if project_key else KIND["notebook_session"].instance.route
    try:
        items = answer_list(call(client, route, what, project_key=project_key), what)
    except DSSNotFound:
        return None
    for obj in items:
        nb = Item(obj, "notebook")
        try:
            pk = project_key or nb.ident("project_key", "projectKey")
            name = nb.ident("notebook_name", "name")
        except BadValue as bad:
            logger.debug("%s", bad)
            continue
        if not pk or not name:
            continue
        stub = Activity("notebook_session", session_id, pk, name, None, "unknown", details={"notebook_name": name})
        result = probe(client, stub)
        if result.status in LIVE_STATUSES:
            return result.activity
    return None
