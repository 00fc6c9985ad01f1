"""The macro runs, shared by the runnables and the CLI mirrors: parse, check, list, measure, decide, act, render.

    report = run("kill-idle-kernels", client, config)            # -> render.Report (rows, header)

Each `python-runnables/<id>/runnable.py` calls `run_in_dss` (which also turns the report into a ResultTable);
each CLI mirror calls `run` with the config built from its options. One run:

1. `params.parse` checks the config (ConfigError naming the parameter; nothing is listed or done);
2. `require_admin`: the macros list every user's activities and act on them: a non-admin is refused with a
   message naming the user (DSSForbidden); DSS unreachable or a revoked key fail here too, before anything;
3. `activities.list_activities` (a failing project or call is an error row; if nothing could be listed at all,
   the run fails: `ListingFailed`);
4. where asked (`scanHost`), one host scan joined to the activities gives memory, roles and orphans;
5. `policy.decide` with the self-protection built here (`current_protection`);
6. the `failIfMoreThan...` thresholds: exceeded -> nothing is done and the run fails (`ThresholdExceeded`);
7. `actions.perform` (dry run unless `simulate` is false), with `policy.make_recheck` just before each action;
8. `render` rows: one per activity, acted on and spared, plus error rows.
"""
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from . import dss, identifiers, kinds, params, policy, render
from .errors import ConfigError, DSSError, DSSForbidden, ProcessTrackerError
from .reading import answer_list

logger = logging.getLogger(__name__)

STAGES = 4  # progress: listed, measured, decided, done
MAX_SCENARIOS_INSPECTED = 50  # running scenarios whose steps are read to find this plugin's macros

NAMES = {macro_id: spec.name for macro_id, spec in params.MACROS.items()}  # the report titles


class ThresholdExceeded(ProcessTrackerError):
    """A `failIfMoreThan...` threshold was exceeded: nothing was done, and a scheduled step fails. `param` names
    the threshold's parameter (the CLI names its option instead)."""

    def __init__(self, param, message):
        self.param = param
        super().__init__("%s: %s" % (param, message))


class ListingFailed(ProcessTrackerError):
    """Nothing could be listed at all (every instance-level call failed)."""


# --------------------------------------------------------------------------------------------------------------
# who runs this


def require_admin(client, what: str = "this macro") -> str:
    """The login running this, when it is a DSS administrator; else DSSForbidden with a readable message.

    Admin is probed with an admin-only read (`GET /admin/groups/`): it works for personal and global API keys
    alike. Unreachable DSS or an unknown key raise the translated error (DSSUnreachable, DSSUnauthorized).
    """
    with dss.calling("checking who runs %s" % what):  # typed errors, raised from their cause (the CLI's one line)
        info = client.get_auth_info()
    login = info.get("authIdentifier") if isinstance(info, dict) else None
    try:
        with dss.calling("checking that %s runs as a DSS administrator" % what):
            client.list_groups()
    except DSSForbidden:  # the answer looked for
        raise DSSForbidden(
            "%s needs a DSS administrator: user %s is not one (it lists and stops every user's activities). "
            "Run it as an administrator, or with an administrator's API key." % (what, login or "(unknown)"),
            status=403,
        ) from None
    return login or "(unknown)"


# --------------------------------------------------------------------------------------------------------------
# self-protection


def own_pids() -> Tuple[int, ...]:
    """This process and its ancestors' pids (a kernel running the CLI, the process running the macro...)."""
    pids = [os.getpid()]
    try:
        import psutil

        pids.extend(p.pid for p in psutil.Process(os.getpid()).parents())
    except Exception as exc:  # noqa: BLE001 - psutil missing or /proc unreadable: protect what we know
        logger.debug("cannot read this process's ancestors: %s", exc.__class__.__name__)
        pids.append(os.getppid())
    return tuple(pids)


def _scenario_trigger(environ) -> Optional[dict]:
    path = environ.get("DKU_CURRENT_SCENARIO_TRIGGER_FILE")
    if not path:
        return None
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        logger.warning("cannot read the scenario trigger file (%s): the scenario running this is not known",
                       exc.__class__.__name__)
        return None
    return value if isinstance(value, dict) else None


def _steps_call_this_plugin(definition) -> bool:
    params_ = definition.get("params") if isinstance(definition, dict) else None
    steps = params_.get("steps") if isinstance(params_, dict) else None
    for step in steps if isinstance(steps, list) else ():
        step_params = step.get("params") if isinstance(step, dict) else None
        runnable = step_params.get("runnableType") if isinstance(step_params, dict) else None
        if isinstance(runnable, str) and runnable.startswith(policy.RUNNABLE_PREFIX):
            return True
    return False


def plugin_scenarios(client, activities: Sequence) -> Tuple[Tuple[str, str], ...]:
    """(project_key, scenario_id) of the scenarios that running scenarios and jobs belong to, whose steps call
    one of this plugin's macros (read through the API; a scenario that cannot be read is not protected; one whose
    project key or id is not a valid identifier is never read, and protected)."""
    refs = []
    for a in activities:
        scenario_id = a.details.get("scenario_id") if a.details else None
        if a.kind in ("scenario", "job") and scenario_id and a.project_key:
            ref = (a.project_key, str(scenario_id))
            if ref not in refs:
                refs.append(ref)
    found = []
    for project_key, scenario_id in refs[:MAX_SCENARIOS_INSPECTED]:
        if not (identifiers.is_valid("project_key", project_key) and identifiers.is_valid("scenario_id", scenario_id)):
            # a key DSS should never answer: not read (it could steer the call); protected, since not checkable
            logger.warning("scenario %s/%s has an invalid key: not read, its runs are spared",
                           identifiers.shown(project_key), identifiers.shown(scenario_id))
            found.append((project_key, scenario_id))
            continue
        try:
            definition = client.get_project(project_key).get_scenario(scenario_id).get_settings().get_raw()
        except Exception as exc:  # noqa: BLE001 - unreadable: not protected by this rule, logged
            logger.warning("cannot read scenario %s/%s: %s", project_key, scenario_id,
                           render.error_text(dss.translate_error(exc, "reading the scenario")))
            continue
        if _steps_call_this_plugin(definition):
            found.append((project_key, scenario_id))
    return tuple(found)


def current_protection(client=None, activities: Sequence = (), environ: Optional[Mapping[str, str]] = None,
                       pids: Optional[Sequence[int]] = None) -> policy.Protection:
    """What this run must never touch: this process and its ancestors, the scenario running it (when DSS says
    which), and running scenarios (and their jobs) whose steps call this plugin's macros."""
    environ = os.environ if environ is None else environ
    scenarios = plugin_scenarios(client, activities) if client is not None else ()
    return policy.protection_from(environ, own_pids() if pids is None else pids, _scenario_trigger(environ),
                                  plugin_scenarios=scenarios)


# --------------------------------------------------------------------------------------------------------------
# the host side: memory, roles and orphans


@dataclass(frozen=True)
class HostView:
    """What the host scan adds to activities, per (kind, id): memory in bytes (RssAnon, else RSS, summed over the
    activity's process, its descendants and wrappers: what stopping it frees) and the host role of its own
    process; and the orphans (processes of a DSS role no source explains: no activity, no CRU item of DSS's audit
    log, no explained ancestor; see joins)."""

    memory: Mapping[Tuple[str, str], int] = field(default_factory=dict)
    roles: Mapping[Tuple[str, str], str] = field(default_factory=dict)
    orphans: Tuple = ()  # host.ProcessRecord of a DSS role no activity explains
    note: str = ""
    where: Mapping[Tuple[str, str], str] = field(default_factory=dict)  # the host's name, or the pod (pod_view)
    pods: Optional["PodView"] = None  # DSS's pods, when the run lists them (the k8s* parameters)


def host_view(inventory, scan: Optional[Callable[[], object]] = None, instance: Optional[str] = None) -> HostView:
    """Scan the host once and join it to the inventory. A failing scan is a note, not a failed run.

    `instance`: the DSS data directory (DIP_HOME) whose processes may be joined; other instances' processes on the
    same host are then neither joined nor orphans. DSS sets DIP_HOME in the environment of the processes it
    starts (assumed for macro processes: see `run`); None joins every DSS process of the host.
    """
    try:
        from . import joins

        if scan is None:
            from .host import Scanner

            scan = Scanner().scan
        snapshot = scan()
        joined = joins.join(snapshot, inventory, instance=instance, contexts=_contexts(snapshot, instance))
    except ProcessTrackerError as exc:
        return HostView(note="host scan failed: %s" % exc)
    except (OSError, ImportError) as exc:
        return HostView(note="host scan failed (%s)" % exc.__class__.__name__)
    memory, roles = {}, {}
    for match in joined.matches:  # the activity's own process, its descendants and its wrappers
        key = (match.activity.kind, match.activity.id)
        record = match.process
        value = record.rss_anon_bytes if record.rss_anon_bytes is not None else record.rss_bytes
        if value is not None:
            memory[key] = memory.get(key, 0) + int(value)
        if match.via not in ("ancestor", "wrapped"):
            roles[key] = record.role
    return HostView(memory=memory, roles=roles, orphans=tuple(joined.orphans))


def _contexts(snapshot, instance):
    """{pid: Context} from DSS's own records (CRU items of the audit logs, cgroup paths, the tree) of `instance`
    and of the instances whose backend the scan found: a process they explain is not an orphan."""
    from . import cgroup_context, context, cru

    homes = (instance,) if instance else ()
    return context.read_contexts(snapshot, cru.AuditReader(homes), cgroup_context.maps_for(snapshot, homes))


# --------------------------------------------------------------------------------------------------------------
# DSS's pods on Kubernetes (the k8s* parameters): joined to the same inventory, beside the host's processes


@dataclass(frozen=True)
class PodView:
    """What DSS's pods add, per (kind, id) of the activities they run: memory (the pod's working set from the
    metrics API), role and where (`pod <namespace>/<name> on <node>`); the pods no activity explains (PodMatch
    rows: orphans, unjoined, unknown); the cluster's refusals (errors) and notes (unreachable, no metrics)."""

    memory: Mapping[Tuple[str, str], int] = field(default_factory=dict)
    roles: Mapping[Tuple[str, str], str] = field(default_factory=dict)
    where: Mapping[Tuple[str, str], str] = field(default_factory=dict)
    unexplained: Tuple = ()
    errors: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()


def pod_view(inventory, settings, host: HostView, api_client_factory=None, now: Optional[float] = None) -> PodView:
    """List DSS's pods (pods.PodSettings) and join them to `inventory`; sessions that host processes explain are
    not candidates for pods. Never raises for the cluster: no kubernetes client, an unreadable kubeconfig, an
    unreachable cluster or a refusal are notes and errors, and the run goes on with the host's view."""
    from .pod_joins import join_pods
    from .pod_views import PodSource
    from .pods import MEMORY_FROM_SPEC, where_text

    source = PodSource(settings, api_client_factory=api_client_factory,
                       now=(lambda: now) if now is not None else time.time)
    listing = source.listing(fresh=True)
    claimed = {(a.kind, a.project_key, a.id) for a in inventory.activities if (a.kind, a.id) in host.roles}
    joined = join_pods(listing.pods, inventory, claimed=claimed)
    memory, roles, by_key = {}, {}, {}
    for m in joined.matches:
        key, pod = (m.activity.kind, m.activity.id), m.process
        if pod.rss_anon_bytes is not None:
            memory[key] = memory.get(key, 0) + int(pod.rss_anon_bytes)
        roles.setdefault(key, pod.role)
        by_key.setdefault(key, []).append(pod)
    where = {key: where_text(p[0]) if len(p) == 1 else "%d pods, e.g. %s" % (len(p), where_text(p[0]))
             for key, p in by_key.items()}
    notes = ["Kubernetes: %s" % n for n in listing.notes]
    if listing.reachable and listing.pods and listing.memory_source == MEMORY_FROM_SPEC and not listing.notes:
        notes.append("Kubernetes: pod memory is requests and limits only")
    unexplained = tuple(m for m in joined.rows if m.activity is None)
    return PodView(memory, roles, where, unexplained, tuple("Kubernetes: %s" % e.message for e in listing.errors),
                   tuple(notes))


def with_pod_view(view: HostView, pods: Optional[PodView], hostname: Optional[str] = None) -> HostView:
    """The host's view with the pods' memory, roles and where added (host processes first)."""
    import socket

    hostname = hostname or socket.gethostname()
    where = {key: hostname for key in view.roles}
    if pods is None:
        return replace(view, where=where)
    memory = dict(view.memory)
    for key, value in pods.memory.items():
        memory[key] = memory.get(key, 0) + value
    where.update({k: v for k, v in pods.where.items() if k not in where})
    roles = dict(pods.roles)
    roles.update(view.roles)
    return replace(view, memory=memory, roles=roles, where=where, pods=pods)


def _pod_rows(view: HostView, plan, now: float):
    """Inventory rows of the pods no activity explains (orphans only when their kind was listed), then the
    cluster's refusals as warning rows."""
    if view.pods is None:
        return []
    shown = [m for m in view.pods.unexplained
             if plan.show_orphans and (m.process.explained_by is None or m.process.explained_by in plan.kinds)]
    return render.pod_rows(shown, now) + render.warning_rows(view.pods.errors, render.INVENTORY_COLUMNS)


# --------------------------------------------------------------------------------------------------------------
# the run


def _check_listing(inventory, kinds):
    """Fail when nothing could be listed: no activity, and only instance-level errors (no project-specific one)."""
    if inventory.activities or not inventory.errors:
        return
    if all(e.project_key is None for e in inventory.errors):
        first = inventory.errors[0].message
        raise ListingFailed("nothing could be listed (%d failed call%s), first: %s" % (
            len(inventory.errors), "s"[: len(inventory.errors) > 1], first))


def _check_thresholds(plan, decisions, memory):
    acting = [d for d in decisions if d.act]
    if plan.fail_above_count and len(acting) > plan.fail_above_count:
        raise ThresholdExceeded("failIfMoreThan", "%d %s, more than the limit of %d; nothing was done" % (
            len(acting), params.MACROS[plan.macro_id].acted_on, plan.fail_above_count))
    if plan.fail_above_bytes:
        total = sum(memory.get((d.activity.kind, d.activity.id), 0) for d in acting)
        if total > plan.fail_above_bytes:
            raise ThresholdExceeded("failIfMoreThanGB", "the kernels that would be killed hold %s, more than the "
                                    "limit of %s; nothing was done" % (render.format_bytes(total),
                                                                     render.format_bytes(plan.fail_above_bytes)))


def _notes(inventory, view):
    notes = list(getattr(inventory, "notes", ()) or ())
    if view is not None and view.note:
        notes.append(view.note)
    if view is not None and view.pods is not None:
        notes.extend(view.pods.notes)
    return " ".join(n if n.endswith(".") else n + "." for n in notes)


# --------------------------------------------------------------------------------------------------------------
# the scope lists, checked against what DSS knows


def _known(what, read):
    """The set DSS knows (project keys, logins), or an error text when it cannot be read."""
    try:
        with dss.calling("listing the %s" % what):
            return frozenset(read()), None
    except DSSError as err:  # the run goes on with a warning row
        return None, "could not check the %s against DSS (%s): they are used as typed" % (what, err)


def _listed(client, what, field):
    """The `field` of every object DSS lists as its project keys or users, through the validation layer (an answer
    that is not a list is a DSSError, not a TypeError); called inside `_known`'s `dss.calling`."""
    answer = client.list_users() if what == "users" else kinds.call(client, kinds.PROJECTS, "listing the " + what)
    return [obj.get(field) for obj in answer_list(answer, "listing the " + what)]


def _plural(word, items):
    return "%s%s: %s" % (word, "s"[: len(items) > 1], ", ".join(items))


def _values_of(values, names):
    out = []
    for name in names:
        value = values.get(name)
        out += [(name, v) for v in ([value] if isinstance(value, str) else value or ()) if v]
    return out


def check_scope(client, values) -> List[str]:
    """Check the macro's project keys and logins against DSS, before anything is listed: an unknown one in an
    include list (or the installer's project) raises ConfigError naming the parameter; one in an exclude list
    gives a warning (returned, one text each). Keys are compared exactly (already valid identifiers: `params`)."""
    lists = (("project keys", "project key", "project", lambda: _listed(client, "project keys", "projectKey"),
              ("projects", "projectKey"), "excludedProjects"),
             ("users", "user", "user", lambda: _listed(client, "users", "login"), ("users",), "excludedUsers"))
    warnings = []
    for plural, noun, what, read, includes, exclude in lists:
        included, excluded = _values_of(values, includes), _values_of(values, (exclude,))
        if not included and not excluded:
            continue
        known, problem = _known(plural, read)
        if problem:
            warnings.append(problem)
            continue
        for name in includes:
            unknown = [v for param, v in included if param == name and v not in known]
            if unknown:
                raise ConfigError(name, "unknown %s (not a %s of this DSS)" % (_plural(noun, unknown), what))
        warnings += ["excluded %s %s is not a %s of this DSS (a typo?): nothing is excluded by it" % (what, v, what)
                     for _, v in excluded if v not in known]
    return warnings


# --------------------------------------------------------------------------------------------------------------
# the run: one runner per shape of macro (params.MacroSpec.runner)


@dataclass
class _Run:
    """What every runner gets: the parsed plan, the client and the run's context."""

    plan: params.Plan
    client: object
    project_key: Optional[str]
    progress: Callable[[int], None]
    now: float
    environ: Mapping[str, str]
    scan: Optional[Callable[[], object]]
    pids: Optional[Sequence[int]]
    warnings: Sequence[str] = ()
    pod_api_factory: Optional[Callable[[], object]] = None  # () -> kubernetes ApiClient (default: the settings')


def run(macro_id: str, client, config, project_key: Optional[str] = None,
        progress: Optional[Callable[[int], None]] = None, now: Optional[float] = None,
        environ: Optional[Mapping[str, str]] = None, scan: Optional[Callable[[], object]] = None,
        pids: Optional[Sequence[int]] = None, title: Optional[str] = None,
        pod_api_factory: Optional[Callable[[], object]] = None) -> render.Report:
    """Run one macro with `config` (a macro config dict) through `client`; returns its Report.

    `title`: how messages name what runs (default "the <macro id> macro"; the CLI: "process-tracker kill-kernels").

    `project_key`: the project the macro runs from (the installer's default project). `progress(i)` is called
    with 1..STAGES. `now` (epoch seconds), `environ`, `scan` (a zero-argument callable giving a host Snapshot)
    and `pids` (the protected process chain) are injectable for tests. Raises ConfigError, DSSError subclasses,
    ListingFailed or ThresholdExceeded with a readable message.
    """
    plan = params.parse(macro_id, config)
    spec = params.MACROS[macro_id]
    require_admin(client, title or ("the clean-up scenario installer" if spec.runner == "install"
                                     else "the %s macro" % macro_id))
    warnings = check_scope(client, plan.values)
    context = _Run(plan, client, project_key, progress or (lambda i: None), time.time() if now is None else float(now),
                   os.environ if environ is None else environ, scan, pids, warnings, pod_api_factory)
    return with_versions(RUNNERS[spec.runner](context), client)


def with_versions(report: render.Report, client) -> render.Report:
    """The report whose header ends with the DSS and dataikuapi versions the run used (read once per client)."""
    line = dss.describe_versions(dss.versions(client))
    return replace(report, header=render.safe_message("%s (%s)" % (report.header, line),
                                                                  render.MAX_HEADER + len(line) + 3))


def _run_install(run_: _Run) -> render.Report:
    from . import scheduling, identifiers

    project_key = run_.plan.values.get("projectKey") or run_.project_key
    if project_key:
        identifiers.check("project_key", project_key, "projectKey")
    report = scheduling.install_report(run_.client, run_.plan.values, project_key,
                                       apply=run_.plan.apply)
    run_.progress(STAGES)
    return _with_warnings(report, run_.warnings)


def _with_warnings(report, warnings):
    if not warnings:
        return report
    rows = render.warning_rows(warnings, report.columns) + list(report.rows)
    return render.make_report(report.name, rows, report.columns, applied=False if report.header.startswith("Dry")
                              else None)


def _list(run_: _Run):
    """List the plan's kinds and, where asked, scan the host: (inventory, host view)."""
    from . import activities

    plan = run_.plan
    dip_home = (run_.environ.get("DIP_HOME") or "").rstrip("/") or None
    settings = None
    if plan.pods:  # this node's install id read before anything is listed (ConfigError naming the parameter)
        from .pods import settings_if_enabled

        settings = settings_if_enabled(plan.values, dip_home=dip_home)
    inventory = activities.list_activities(run_.client, kinds=plan.kinds, projects=plan.projects, all_users=True,
                                           now=run_.now)
    _check_listing(inventory, plan.kinds)
    run_.progress(1)
    view = host_view(inventory, run_.scan, instance=dip_home) if plan.scan_host else HostView()
    pods = None
    if settings is not None:
        pods = pod_view(inventory, settings, view, api_client_factory=run_.pod_api_factory, now=run_.now)
    run_.progress(2)
    return inventory, with_pod_view(view, pods)


def _run_act(run_: _Run) -> render.Report:
    from . import actions

    plan = run_.plan
    inventory, view = _list(run_)
    protected = current_protection(run_.client, inventory.activities, run_.environ, run_.pids)
    decisions = policy.decide(inventory.activities, plan.rules, run_.now, protected=protected, memory=view.memory)
    _check_thresholds(plan, decisions, view.memory)
    run_.progress(3)
    results = actions.perform(run_.client, decisions, apply=plan.apply, wait_seconds=plan.wait_seconds,
                              recheck=policy.make_recheck(plan.rules, protected))
    run_.progress(STAGES)
    rows = (render.warning_rows(run_.warnings) + render.result_rows(results, run_.now, view.memory, view.where)
            + render.error_rows(inventory.errors))
    if view.pods is not None:
        rows += render.warning_rows(view.pods.errors)
    return render.make_report(NAMES[plan.macro_id], rows, render.ACTION_COLUMNS, applied=plan.apply,
                              extra=_notes(inventory, view))


def _run_inventory(run_: _Run) -> render.Report:
    plan = run_.plan
    inventory, view = _list(run_)
    shown = [a for a in inventory.activities if not policy.scope_reason(a, plan.scope)]
    rows = render.warning_rows(run_.warnings, render.INVENTORY_COLUMNS)
    rows += render.inventory_rows(shown, run_.now, view.memory, view.roles, where=view.where)
    if plan.show_orphans and plan.scan_host:
        from .joins import ORPHAN_ROLES

        # an orphan only means something when the kinds that would explain it were listed
        orphans = [p for p in view.orphans if set(ORPHAN_ROLES.get(p.role, ())) & set(plan.kinds)]
        rows += render.orphan_rows(orphans, run_.now, "no DSS activity explains this process")
    rows += _pod_rows(view, plan, run_.now)
    rows += render.error_rows(inventory.errors, render.INVENTORY_COLUMNS)
    run_.progress(3)
    run_.progress(STAGES)
    return render.make_report(NAMES[plan.macro_id], rows, render.INVENTORY_COLUMNS, extra=_notes(inventory, view))


# runner name (params.MacroSpec.runner) -> the function that runs a macro of that shape
RUNNERS = {"act": _run_act, "inventory": _run_inventory, "install": _run_install}


def run_in_dss(macro_id: str, config, project_key: Optional[str], progress_callback=None):
    """What a runnable.py returns: the macro's ResultTable, run with the client of the user running it. An expected
    error is raised again with its message as safe text (DSS shows it to the user as is)."""
    client = dss.get_client(inside_dss=True)
    try:
        report = run(macro_id, client, config, project_key=project_key, progress=progress_callback)
    except ProcessTrackerError as exc:
        exc.args = (render.error_text(exc),)
        raise
    return render.to_result_table(report)


__all__ = [
    "STAGES",
    "NAMES",
    "ThresholdExceeded",
    "ListingFailed",
    "HostView",
    "require_admin",
    "current_protection",
    "plugin_scenarios",
    "own_pids",
    "host_view",
    "PodView",
    "pod_view",
    "check_scope",
    "run",
    "run_in_dss",
]
