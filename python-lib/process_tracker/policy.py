"""Which activities to act on, each with a readable reason; and why the others are spared.

Pure: records in (`activities.Activity`), decisions out; the clock is injected (`now`, epoch seconds). Every
candidate (an activity of the rules' kinds) gets exactly one `Decision`, acted on and spared alike.

The checks, in order (the first that spares wins):
1. self-protection (`Protection`): never the activity running this macro or its scenario, this plugin's webapp
   and macro runs, nor a future that runs something else (a webapp backend, a continuous activity's main loop,
   a scenario run: `details["runs"]`, written by the listing) or whose role could not be checked
   (`details["unchecked"]`);
2. scope: project / user include and exclude lists, task types;
3. kind rules: busy or connected kernels (when asked: `busy_caution`, `connected_caution`, the texts the webapp
   warns with too), aborts already in progress;
4. thresholds: idle time, age / running time (hours; for kernels 0 disables a rule, as in DSS's built-in
   "Kill Jupyter sessions" macro; for tasks, jobs and services 0 means "no minimum");
5. for kernels, the optional "largest first until N bytes freed" mode keeps only as many of the kernels
   selected so far as needed, largest memory first.

`by_hand` decides for one activity an administrator picked in the webapp: the same self-protection, then every
soft rule (`cautions`: busy, someone has it open, started less than YOUNG_SECONDS ago) as a warning that spares
it unless the administrator stops it anyway.
"""
import json
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Collection, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

from .render import format_bytes, format_duration, format_hours

KERNEL_KINDS = ("notebook_session",)
TASK_KINDS = ("future", "scenario")
JOB_KINDS = ("job",)
SERVICE_KINDS = ("webapp", "continuous_activity", "code_studio")



def _plugin_id(default="process-tracker"):
    """This plugin's id, from plugin.json at the plugin's root (python-lib's parent), as DSS knows it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugin.json")
    try:
        with open(path) as f:
            value = json.load(f).get("id")
    except (OSError, ValueError, AttributeError):
        return default
    return value if isinstance(value, str) and value else default


PLUGIN_ID = _plugin_id()
RUNNABLE_PREFIX = "pyrunnable_%s_" % PLUGIN_ID  # runnableType of this plugin's macros in scenario steps/futures
WEBAPP_PREFIX = "webapp_%s_" % PLUGIN_ID  # webapp type of this plugin's webapps
CLEANUP_TAG = "process-tracker-cleanup"  # tag of the scenario installed by scheduling.py

HOUR = 3600.0
# a future or scenario run started less than this before the run (or after it) may be the run itself: DSS starts
# a macro's future, then its process, which then lists; no public source gives a macro its own future id
RUN_START_MARGIN_SECONDS = 300.0
# a session or a run started less than this ago is young: whoever started it is probably still at it (a warning in
# the webapp, which has no idle or age threshold of its own; the macros' thresholds cover it)
YOUNG_SECONDS = 600.0


@dataclass(frozen=True)
class Decision:
    """One candidate activity, whether to act on it, and why (acted-on and spared rows alike)."""

    activity: object  # activities.Activity
    act: bool
    reason: str
    warnings: Tuple[str, ...] = ()  # the soft rules it meets (`cautions`), acted on or not
    warning_kinds: Tuple[str, ...] = ()  # their kinds (CAUTION_KINDS), where the decision was by hand (`by_hand`)


@dataclass(frozen=True)
class Scope:
    """Which activities a rule may touch. Empty include sets mean "all"; excludes win over includes."""

    projects: FrozenSet[str] = frozenset()
    exclude_projects: FrozenSet[str] = frozenset()
    users: FrozenSet[str] = frozenset()  # owners / session creators / job initiators
    exclude_users: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class KernelRules:
    """Jupyter kernel sessions: the built-in "Kill Jupyter sessions" macro's rules, plus scope and memory."""

    max_idle_hours: float = 24.0  # act when idle longer; 0 disables
    max_age_hours: float = 48.0  # act when the session is older; 0 disables
    spare_busy: bool = True
    spare_connected: bool = True
    scope: Scope = field(default_factory=Scope)
    free_bytes: Optional[int] = None  # "largest first until this much memory is freed"; None: act on all selected
    kinds: Tuple[str, ...] = KERNEL_KINDS


@dataclass(frozen=True)
class TaskRules:
    """Background tasks (futures) and running scenarios."""

    min_running_hours: float = 24.0  # act when running longer; 0: no minimum
    kinds: Tuple[str, ...] = TASK_KINDS
    task_types: FrozenSet[str] = frozenset()  # payload actions to consider (empty: all)
    exclude_task_types: FrozenSet[str] = frozenset()
    scope: Scope = field(default_factory=Scope)


@dataclass(frozen=True)
class JobRules:
    """Running jobs (the scope's users are the jobs' initiators)."""

    min_running_hours: float = 24.0  # act when running longer; 0: no minimum
    scope: Scope = field(default_factory=Scope)
    kinds: Tuple[str, ...] = JOB_KINDS


@dataclass(frozen=True)
class ServiceRules:
    """Webapp backends, continuous activities and code studios, by running time."""

    min_running_hours: float = 72.0  # act when running longer; 0: no minimum
    kinds: Tuple[str, ...] = ("webapp", "code_studio")
    scope: Scope = field(default_factory=Scope)


Rules = Union[KernelRules, TaskRules, JobRules, ServiceRules]


@dataclass(frozen=True)
class Protection:
    """What must never be acted on: the activity running this macro, and its scenario.

    - `pids`: this process and its ancestors; an activity whose pid is one of them runs this code (e.g. the CLI
      started from a notebook kernel, or a macro started by a job kernel);
    - `run_started_at`: epoch seconds at which this run began (`decide` takes its `now` when None): futures and
      scenario runs started less than RUN_START_MARGIN_SECONDS before it, or after it, may be this run: spared.
      (DSS exposes no id of a macro's own future; that rule replaces one.)
    - `scenarios`: (project_key, scenario_id) of the scenario known to run this macro (its running instance and
      the jobs it started are spared); project_key None matches any project;
    - `plugin_scenarios`: (project_key, scenario_id) of scenarios whose steps call one of this plugin's macros
      (spared the same way: aborting them could abort the clean-up itself);
    - this plugin's own webapps (their `type` is `webapp_<plugin id>_<webapp id>`) and futures whose payload
      names one of this plugin's runnables (`RUNNABLE_PREFIX`, an unconfirmed field) are always spared.
    """

    pids: FrozenSet[int] = frozenset()
    scenarios: FrozenSet[Tuple[Optional[str], str]] = frozenset()
    plugin_scenarios: FrozenSet[Tuple[Optional[str], str]] = frozenset()
    run_started_at: Optional[float] = None


NO_PROTECTION = Protection()


# --- reading activity details defensively (field names written by activities.py; absent is fine) ---


def _detail(activity, *names, default=None):
    details = activity.details or {}
    for name in names:
        value = details.get(name)
        if value is not None:
            return value
    return default


def _strings(value, depth=0):
    """Every string inside a JSON-like value (dicts, lists), bounded depth."""
    if depth > 6:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, depth + 1)


def _scenario_ref(activity):
    """(project_key, scenario_id) a scenario activity runs, or a job was started by; None when unknown."""
    scenario_id = _detail(activity, "scenario_id", "scenarioId")
    if scenario_id is None and activity.kind == "scenario":
        scenario_id = activity.name
    return (activity.project_key, str(scenario_id)) if scenario_id else None


def _connections(activity) -> int:
    value = _detail(activity, "connections", "kernel_connections", "kernelConnections", default=0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _task_type(activity) -> str:
    if activity.kind == "scenario":
        return str(_detail(activity, "action", "payload_action", default="run_scenario"))
    return str(_detail(activity, "action", "payload_action", default="") or "")


# --- the checks ---


def _future_reason(activity, protected):
    """Why a future or scenario run must be spared: it runs something else, its role is unknown, or it may be
    this run or another run of this plugin's macros."""
    runs, unchecked = _detail(activity, "runs"), _detail(activity, "unchecked")
    if runs:
        return "spared: runs %s (aborting it would stop it)" % runs
    if unchecked:
        return "spared: cannot tell whether it runs a webapp, a continuous activity or a scenario (%s)" % unchecked
    if activity.kind == "future" and any(s.startswith(RUNNABLE_PREFIX) for s in _strings(activity.details)):
        return "spared: runs a %s macro" % PLUGIN_ID
    started = protected.run_started_at
    if started is not None:
        if activity.started_at is None:
            return "spared: start time unknown (it may be this run)"
        if activity.started_at >= started - RUN_START_MARGIN_SECONDS:
            return "spared: started less than %s before this run (it may be this run)" % format_duration(
                RUN_START_MARGIN_SECONDS)
    return None


def _scenario_reason(activity, protected):
    ref = _scenario_ref(activity)
    if ref is None:
        return None
    if ref in protected.scenarios or (None, ref[1]) in protected.scenarios:
        what = "the scenario running this macro"
    elif ref in protected.plugin_scenarios or (None, ref[1]) in protected.plugin_scenarios:
        what = "a scenario running a %s macro" % PLUGIN_ID
    else:
        return None
    return ("spared: %s" if activity.kind == "scenario" else "spared: started by %s") % what


def protection_reason(activity, protected: Protection) -> Optional[str]:
    """Why `activity` must be spared because it runs this macro, its scenario, this plugin's webapp, or something
    a background task must not be confused with; None when it may be touched."""
    if activity.pid is not None and activity.pid in protected.pids:
        return "spared: runs this macro (pid %d)" % activity.pid
    reason = None
    if activity.kind in TASK_KINDS:
        reason = _future_reason(activity, protected)
    if reason is None and activity.kind in ("scenario", "job"):
        reason = _scenario_reason(activity, protected)
    if activity.kind == "webapp" and str(_detail(activity, "webapp_type", default="")).startswith(WEBAPP_PREFIX):
        reason = "spared: the %s webapp" % PLUGIN_ID
    return reason


def scope_reason(activity, scope: Scope) -> Optional[str]:
    """Why `activity` is out of scope; None when in scope."""
    project = activity.project_key
    if project in scope.exclude_projects:
        return "spared: project %s excluded" % project
    if scope.projects and project not in scope.projects:
        return "spared: project %s not selected" % (project or "(none)")
    owner = activity.owner
    if owner in scope.exclude_users:
        return "spared: user %s excluded" % owner
    if scope.users and owner not in scope.users:
        return "spared: user %s not selected" % (owner or "(unknown)")
    return None


def _age(now, t):
    return None if t is None else max(0.0, now - t)


def _over(label, seconds, hours):
    return "%s %s > %s" % (label, format_duration(seconds), format_hours(hours))


def _within(label, seconds, hours):
    return "%s %s <= %s" % (label, format_duration(seconds), format_hours(hours))


# --- the soft rules: the same texts spare an activity in the macros and warn in the webapp ---


def busy_caution(activity) -> Optional[str]:
    """A kernel running code now."""
    if activity.kind in KERNEL_KINDS and (activity.state or "").lower() == "busy":
        return "busy: running code now"
    return None


def connected_caution(activity) -> Optional[str]:
    """A kernel someone has open in a browser (Jupyter's connection count)."""
    connections = _connections(activity) if activity.kind in KERNEL_KINDS else 0
    if connections <= 0:
        return None
    return "%s has it open (%d connection%s)" % (activity.owner or "someone", connections, "s"[: connections > 1])


def young_caution(activity, now: float) -> Optional[str]:
    """A session or a run started less than YOUNG_SECONDS ago."""
    age = _age(now, activity.started_at)
    if age is None or age >= YOUNG_SECONDS:
        return None
    return "started %s ago" % (format_duration(age) or "0 s")


# the soft rules, in the order their warnings are shown: kind -> caution(activity, now)
_CAUTIONS = (("busy", lambda activity, now: busy_caution(activity)),
             ("connected", lambda activity, now: connected_caution(activity)),
             ("young", young_caution))
CAUTION_KINDS = tuple(kind for kind, _ in _CAUTIONS)


def named_cautions(activity, now: float) -> Tuple[Tuple[str, str], ...]:
    """(kind, text) of each soft rule `activity` meets now, kinds from CAUTION_KINDS, in that order."""
    found = ((kind, caution(activity, now)) for kind, caution in _CAUTIONS)
    return tuple((kind, text) for kind, text in found if text)


def cautions(activity, now: float) -> Tuple[str, ...]:
    """Why stopping `activity` now may disturb someone, in order: busy, connected, young (empty when none)."""
    return tuple(text for _, text in named_cautions(activity, now))


def by_hand(activity, now: float, protected: Protection, actor: str, anyway: Collection[str] = ()) -> Decision:
    """The decision for one activity an administrator picked (the webapp): self-protection always spares it;
    the soft rules (`cautions`) spare it unless each one it meets now is in `anyway`, the caution kinds the
    administrator saw in the preview and chose to override (a warning that appeared since was never seen)."""
    reason = protection_reason(activity, protected)
    if reason:
        return Decision(activity, False, reason)
    named = named_cautions(activity, now)
    warned, kinds = tuple(text for _, text in named), tuple(kind for kind, _ in named)
    if any(kind not in anyway for kind in kinds):
        return Decision(activity, False, "spared: " + "; ".join(warned), warned, kinds)
    requested = "requested by %s from the process monitor" % actor
    if warned:
        requested += ", anyway (%s)" % "; ".join(warned)
    return Decision(activity, True, requested, warned, kinds)


def _kernel(activity, rules: KernelRules, now: float) -> Decision:
    for spare, caution in ((rules.spare_busy, busy_caution), (rules.spare_connected, connected_caution)):
        why = caution(activity) if spare else None
        if why:
            return Decision(activity, False, "spared: " + why, (why,))
    idle = _age(now, activity.last_activity_at)
    age = _age(now, activity.started_at)
    acts, spares = [], []
    for label, value, limit in (("idle", idle, rules.max_idle_hours), ("age", age, rules.max_age_hours)):
        if limit <= 0:
            spares.append("%s rule off" % label)
        elif value is None:
            spares.append("%s unknown" % label)
        elif value > limit * HOUR:
            acts.append(_over(label, value, limit))
        else:
            spares.append(_within(label, value, limit))
    if acts:
        return Decision(activity, True, ", ".join(acts))
    return Decision(activity, False, "spared: " + ", ".join(spares))


def _running_rule(activity, min_hours: float, now: float) -> Decision:
    running = _age(now, activity.started_at)
    if min_hours <= 0:
        return Decision(activity, True, "running %s (no minimum)" % (format_duration(running) or "for an unknown time"))
    if running is None:
        return Decision(activity, False, "spared: running time unknown")
    if running > min_hours * HOUR:
        return Decision(activity, True, _over("running", running, min_hours))
    return Decision(activity, False, "spared: " + _within("running", running, min_hours))


def _task(activity, rules: TaskRules, now: float) -> Decision:
    task_type = _task_type(activity)
    if task_type in rules.exclude_task_types:
        return Decision(activity, False, "spared: task type %s excluded" % task_type)
    if rules.task_types and task_type not in rules.task_types:
        return Decision(activity, False, "spared: task type %s not selected" % (task_type or "(unknown)"))
    if (activity.state or "").lower() == "aborting":
        return Decision(activity, False, "spared: abort already in progress")
    return _running_rule(activity, rules.min_running_hours, now)


def _job(activity, rules: JobRules, now: float) -> Decision:
    if (activity.state or "").lower() == "aborting":
        return Decision(activity, False, "spared: abort already in progress")
    return _running_rule(activity, rules.min_running_hours, now)


def _service(activity, rules: ServiceRules, now: float) -> Decision:
    return _running_rule(activity, rules.min_running_hours, now)


_JUDGES = {KernelRules: _kernel, TaskRules: _task, JobRules: _job, ServiceRules: _service}


def judge(activity, rules: Rules, now: float, protected: Protection = NO_PROTECTION) -> Decision:
    """The decision for one activity of the rules' kinds (without the free-memory selection)."""
    reason = protection_reason(activity, protected) or scope_reason(activity, rules.scope)
    if reason:
        return Decision(activity, False, reason)
    return _JUDGES[type(rules)](activity, rules, now)


def _key(activity):
    return (activity.kind, activity.id)


def _select_largest(decisions: List[Decision], free_bytes: int, memory: Mapping) -> List[Decision]:
    """Keep acting on the largest selected kernels until `free_bytes` is reached; spare the rest, saying why."""
    chosen = [d for d in decisions if d.act and memory.get(_key(d.activity)) is not None]
    chosen.sort(key=lambda d: -memory[_key(d.activity)])
    keep, freed = set(), 0
    for d in chosen:
        if freed >= free_bytes:
            break
        keep.add(_key(d.activity))
        freed += memory[_key(d.activity)]
    out = []
    for d in decisions:
        k = _key(d.activity)
        if not d.act or k in keep:
            if d.act:
                d = Decision(d.activity, True, "%s; %s, largest first" % (d.reason, format_bytes(memory[k])))
            out.append(d)
        elif memory.get(k) is None:
            out.append(Decision(d.activity, False, "spared: memory unknown (%s; the free-memory mode acts on "
                                "measured kernels only)" % d.reason))
        else:
            out.append(Decision(d.activity, False, "spared: %s target reached by larger kernels (%s)" % (
                format_bytes(free_bytes), d.reason)))
    return out


def decide(activities: Sequence, rules: Rules, now: float, protected: Protection = NO_PROTECTION,
           memory: Optional[Mapping] = None) -> List[Decision]:
    """One Decision per activity of `rules.kinds`, in the order given (others are not candidates).

    `now` is epoch seconds. `memory` maps (kind, id) to bytes (from the host join), used by the kernel rules'
    free-memory mode; without it that mode spares every kernel (memory unknown).
    """
    candidates = [a for a in activities if a.kind in rules.kinds]
    protected = _with_run_start(protected, now)
    decisions = [judge(a, rules, now, protected) for a in candidates]
    if isinstance(rules, KernelRules) and rules.free_bytes:
        decisions = _select_largest(decisions, rules.free_bytes, memory or {})
    return decisions


def _with_run_start(protected, now):
    return protected if protected.run_started_at is not None else replace(protected, run_started_at=now)


def make_recheck(rules: Rules, protected: Protection = NO_PROTECTION,
                 clock: Optional[Callable[[], float]] = None) -> Callable[[object], Tuple[bool, str]]:
    """A `recheck` for `actions.perform`: the rule applied again to a fresh copy of an activity, just before
    acting (a kernel that became busy, a task that became a protected one... is then spared).
    Returns (still_act, reason). `clock` gives epoch seconds (default time.time).

    The free-memory selection is not re-run (it was decided over the whole set); the per-activity rules are.
    """
    import time

    clock = clock or time.time
    protected = _with_run_start(protected, clock())

    def recheck(fresh_activity) -> Tuple[bool, str]:
        d = judge(fresh_activity, rules, clock(), protected)
        return d.act, d.reason

    return recheck


def protection_from(environ: Mapping[str, str], pids: Sequence[int] = (),
                    trigger: Optional[Mapping] = None,
                    plugin_scenarios: Sequence[Tuple[Optional[str], str]] = (),
                    run_started_at: Optional[float] = None) -> Protection:
    """Build the Protection for a macro run from what DSS tells the macro process.

    - `pids`: this process and its ancestors (the caller reads them);
    - `trigger`: the scenario trigger JSON DSS writes for scenario runs (file named by the env var
      DKU_CURRENT_SCENARIO_TRIGGER_FILE; DSS's `dataiku.scenario.Scenario` reads it in Python steps; that it is
      set for macro steps too is unverified): its scenarioId (+ projectKey, else DKU_CURRENT_PROJECT_KEY) are
      protected when present;
    - `plugin_scenarios`: (project_key, scenario_id) of scenarios whose steps call this plugin's macros (the
      caller finds them through the API).
    - `run_started_at`: when this run began (epoch seconds; default: the `now` given to `decide`).
    No environment variable naming the running future is documented by DSS: a macro's own future is recognised
    by its start time instead (see `Protection`).
    """
    refs = set()
    if trigger:
        candidates = [trigger] + [v for v in trigger.values() if isinstance(v, Mapping)]
        for c in candidates:
            scenario_id = c.get("scenarioId")
            if scenario_id:
                project = c.get("projectKey") or environ.get("DKU_CURRENT_PROJECT_KEY")
                refs.add((project, str(scenario_id)))
    return Protection(pids=frozenset(int(p) for p in pids), scenarios=frozenset(refs),
                      plugin_scenarios=frozenset(plugin_scenarios), run_started_at=run_started_at)
