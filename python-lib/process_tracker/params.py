"""The macros' parameters, declared once, and the one place that turns a macro config or CLI args into rules.

Each macro's parameters are a tuple of `Param` (data): the macro config key DSS uses (the names of DSS's built-in
"Kill Jupyter sessions" macro where they exist), the CLI flag, the value type, the default, a label and a
description. From that one declaration come:
- the `params` of each `python-runnables/<id>/runnable.json` (`dss_params`; a test checks they match);
- the CLI options of the mirror sub-commands (`add_cli_arguments`, `config_from_args`);
- validation (`parse`): a bad value raises `ConfigError(param, message)` naming the parameter and saying what is
  accepted; nothing is acted on. Project keys and logins go through `identifiers` (the one gate).

Variants are tables: `PARAM_TYPES` (type -> DSS descriptor type and check) and `MACROS` (macro id -> title,
parameters, kinds listed, rules, runner shape, CLI command). A new parameter type or macro is one entry.

`parse(macro_id, config)` returns a `Plan`: the policy rules, whether to apply, what to list, the thresholds
that fail a scheduled run.
"""
import argparse
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from . import identifiers, policy
from .errors import ConfigError

MAX_HOURS = 8760.0  # a year: anything above is a typo
MAX_GIB = 1024.0 * 1024.0
MAX_COUNT = 1000000
MAX_WAIT_SECONDS = 3600.0


@dataclass(frozen=True)
class Param:
    name: str  # the macro config key
    flag: Optional[str]  # the CLI option ("--" + flag); None: not a CLI option (simulate is --apply)
    type: str  # a key of PARAM_TYPES
    default: Any
    label: str
    description: str
    choices: Tuple[Tuple[str, str], ...] = ()  # (value, label) for "choices"
    in_dss: bool = True  # False: a CLI-only parameter, not in runnable.json (a macro always gets its default)
    visible_if: Optional[str] = None  # DSS's visibilityCondition in runnable.json (e.g. "model.k8sEnabled")


def _scope(users_label):
    return (
        Param("projects", "projects", "project_keys", [], "Only these projects",
              "Project keys to consider; empty: every project."),
        Param("excludedProjects", "exclude-projects", "project_keys", [], "Excluded projects",
              "Project keys never touched (their activities are shown as spared)."),
        Param("users", "users", "logins", [], "Only these %s" % users_label,
              "DSS logins of the %s to consider; empty: everyone." % users_label),
        Param("excludedUsers", "exclude-users", "logins", [], "Excluded %s" % users_label,
              "DSS logins of %s never touched (their activities are shown as spared)." % users_label),
    )


_SIMULATE = Param(
    "simulate", None, "bool", True, "Dry run (simulate)",
    "List what would be done, with the reason for each row, and do nothing. Defaults to true here, as in DSS's "
    "built-in kernel macro: untick to act. CLI: dry run unless --apply.",
)
_FAIL_COUNT = Param(
    "failIfMoreThan", "fail-if-more-than", "count", 0, "Fail if more than N would be acted on",
    "For scheduled runs: when more than this many activities are selected, act on none of them and fail the "
    "step with a message. 0: never fail for this reason.",
)
_WAIT = Param(
    "waitSeconds", "wait-seconds", "seconds", 10.0, "Seconds to confirm each action",
    "How long to poll DSS after each abort/stop to tell 'aborted' from 'abort requested' (0 to 3600).",
)
_SCAN_HOST = Param(
    "scanHost", "scan-host", "bool", True, "Read memory from the host",
    "Scan the processes of the machine this runs on (the DSS host, for a macro) and join them to activities by "
    "pid, to show memory. Off: API only.",
)
_IDLE = Param(
    "maxIdleTimeHours", "max-idle-hours", "hours", 24.0, "Max idle time (hours)",
    "Kill kernels idle for longer than this. 0 disables this rule.",
)
_AGE = Param(
    "maxSessionAgeHours", "max-age-hours", "hours", 48.0, "Max session age (hours)",
    "Kill kernels whose session is older than this, even if recently active. 0 disables this rule.",
)

_K8S_SHOWN = "model.k8sEnabled"
# DSS's pods on Kubernetes beside the host's processes (the webapp's k8s* settings; pods.settings_if_enabled)
_K8S = (
    Param("k8sEnabled", "k8s", "bool", False, "Include DSS's pods on Kubernetes",
          "List the pods DSS runs on Kubernetes (containerized execution), joined to activities by DSS's labels: "
          "their memory and where they run (a pod's activity is still stopped through DSS, never by deleting the "
          "pod). Needs the kubernetes package in the code env and read access to pods (docs/kubernetes.md)."),
    Param("k8sInCluster", "k8s-in-cluster", "bool", False, "In-cluster configuration",
          "Use the service account of the pod this runs in.", visible_if=_K8S_SHOWN),
    Param("k8sKubeconfig", "kubeconfig", "text", "", "Kubeconfig path",
          "Path of a kubeconfig file on the DSS host (empty: the default kubeconfig).", visible_if=_K8S_SHOWN),
    Param("k8sContext", "k8s-context", "text", "", "Kubeconfig context",
          "A context of that kubeconfig (empty: its current context).", visible_if=_K8S_SHOWN),
    Param("k8sNamespaces", "k8s-namespaces", "text", "", "Namespaces",
          "Namespaces DSS runs pods in, comma-separated (empty: cluster-wide, which needs a ClusterRole).",
          visible_if=_K8S_SHOWN),
    Param("k8sThisNodeOnly", "k8s-this-node-only", "bool", False, "This DSS node's pods only",
          "Only the pods labelled with this node's install id (read from DIP_HOME/install.ini).",
          visible_if=_K8S_SHOWN),
)

KIND_LABELS = {
    "notebook_session": "Jupyter kernel sessions",
    "future": "Background tasks (futures)",
    "scenario": "Running scenarios",
    "job": "Running jobs",
    "webapp": "Webapp backends",
    "continuous_activity": "Continuous activities",
    "code_studio": "Code studios",
}

ACTING_MACROS = ("kill-idle-kernels", "abort-background-tasks", "abort-long-jobs", "stop-idle-services")


def _choices(kinds):
    return tuple((k, KIND_LABELS[k]) for k in kinds)


_KERNEL_PARAMS = (
    _IDLE,
    _AGE,
    Param("dontKillBusyKernels", "spare-busy", "bool", True, "Don't kill busy kernels",
          "Spare kernels currently executing code."),
    Param("dontKillConnectedKernels", "spare-connected", "bool", True, "Don't kill connected kernels",
          "Spare kernels with an open notebook connected to them."),
    _SIMULATE,
) + _scope("session owners") + (
    Param("freeMemoryGB", "free-memory-gb", "gib", 0.0, "Free this much memory (GiB)",
          "Largest first: among the kernels selected by the rules above, act only on the largest ones (by "
          "memory read on the host) until this many GiB would be freed. 0: act on all selected kernels."),
    _SCAN_HOST,
    _FAIL_COUNT,
    Param("failIfMoreThanGB", "fail-if-more-than-gb", "gib", 0.0, "Fail if more than N GiB would be freed",
          "For scheduled runs: when the selected kernels hold more than this memory, act on none of them and "
          "fail the step. 0: never fail for this reason."),
    _WAIT,
) + _K8S


_TASK_PARAMS = (
    Param("taskKinds", "task-kinds", "choices", list(policy.TASK_KINDS), "Kinds",
          "Background tasks (futures: model trainings, exports, ...) and/or running scenarios.",
          _choices(policy.TASK_KINDS)),
    Param("minRunningHours", "min-running-hours", "hours", 24.0, "Running for more than (hours)",
          "Abort tasks running for longer than this. 0: no minimum (every task in scope)."),
    Param("taskTypes", "task-types", "names", [], "Only these task types",
          "Task types (the future's payload action, e.g. run_scenario, train_model); empty: all."),
    Param("excludedTaskTypes", "exclude-task-types", "names", [], "Excluded task types",
          "Task types never aborted (shown as spared)."),
    _SIMULATE,
) + _scope("owners") + (_FAIL_COUNT, _WAIT) + _K8S


_JOB_PARAMS = (
    Param("minRunningHours", "min-running-hours", "hours", 24.0, "Running for more than (hours)",
          "Abort jobs running for longer than this. 0: no minimum (every job in scope)."),
    _SIMULATE,
) + _scope("initiators") + (_FAIL_COUNT, _WAIT) + _K8S


_SERVICE_PARAMS = (
    Param("serviceKinds", "service-kinds", "choices", ["webapp", "code_studio"], "Kinds",
          "Webapp backends, code studios and/or continuous activities (these run by design: select them "
          "deliberately).", _choices(policy.SERVICE_KINDS)),
    Param("minRunningHours", "min-running-hours", "hours", 72.0, "Running for more than (hours)",
          "Stop services running for longer than this. 0: no minimum (every service in scope)."),
    _SIMULATE,
) + _scope("owners") + (_FAIL_COUNT, _WAIT) + _K8S


_INVENTORY_PARAMS = (
    Param("kinds", "kinds", "choices", list(KIND_LABELS), "Kinds", "What to list.", _choices(KIND_LABELS)),
) + _scope("owners") + (
    _SCAN_HOST,
    Param("showOrphans", "show-orphans", "bool", True, "Show orphan processes",
          "List host processes of a DSS role that no activity explains (e.g. a kernel whose session DSS no "
          "longer lists). Needs the host scan."),
) + _K8S


_INSTALLER_PARAMS = (
    Param("projectKey", "project", "project_key", "", "Project",
          "Key of the project that holds the scenario; empty: the project the macro runs from."),
    Param("scenarioName", "scenario-name", "string", "Process tracker: clean-up", "Scenario name",
          "Name of the scenario created or updated (found again by its tag, then by this name)."),
    Param("macros", "macros", "choices", ["kill-idle-kernels"], "Macros to run",
          "The clean-up macros the scenario runs, one step each.",
          tuple((m, m) for m in ACTING_MACROS)),
    Param("hour", "hour", "hour_of_day", 2, "Hour (0-23)", "Hour of the daily run, DSS server time."),
    Param("minute", "minute", "minute", 0, "Minute (0-59)", "Minute of the daily run."),
    Param("simulate", None, "bool", False, "Dry run", "CLI only: install-cleanup is a dry run unless --apply "
          "(the macro installs when it is run).", in_dss=False),
    Param("act", "act", "bool", False, "Let the scheduled runs act",
          "Off (default): the scenario's steps are dry runs that only report. On: they abort/kill/stop."),
    _IDLE,
    _AGE,
    Param("excludedProjects", "exclude-projects", "project_keys", [], "Excluded projects",
          "Project keys the scheduled runs never touch."),
    Param("excludedUsers", "exclude-users", "logins", [], "Excluded users",
          "DSS logins whose activities the scheduled runs never touch."),
    _FAIL_COUNT,
)


# --- value checks: each returns the clean value or raises ConfigError(name, message) ---


def _number(name, value, what, minimum, maximum, integer=False):
    if isinstance(value, bool) or value is None:
        raise ConfigError(name, "must be %s, got %r" % (what, value))
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(name, "must be %s, got %r" % (what, text)) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum or value > maximum:
        raise ConfigError(name, "must be %s, got %r" % (what, value))
    if integer:
        if value != int(value):
            raise ConfigError(name, "must be %s, got %r" % (what, value))
        return int(value)
    return float(value)


def _bool(name, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(name, "must be true or false, got %r" % (value,))


def _names(name, value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(name, "must be a list of names, got %r" % (value,))
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(name, "must be a list of names, got %r in it" % (item,))
        for part in item.split(","):
            part = part.strip()
            if part and part not in out:
                if len(part) > 200 or any(ord(c) < 32 for c in part):
                    raise ConfigError(name, "%r is not a valid name" % part)
                out.append(part)
    return out


def _choice_list(p: Param, value):
    names = _names(p.name, value)
    accepted = [v for v, _ in p.choices]
    for n in names:
        if n not in accepted:
            raise ConfigError(p.name, "unknown value %r; accepted: %s" % (n, ", ".join(accepted)))
    if not names:
        raise ConfigError(p.name, "select at least one of %s" % ", ".join(accepted))
    return names


def _string(name, value, maximum=200):
    if not isinstance(value, str):
        raise ConfigError(name, "must be a text, got %r" % (value,))
    value = value.strip()
    if not value or len(value) > maximum or any(ord(c) < 32 for c in value):
        raise ConfigError(name, "must be a non-empty text of at most %d characters without control characters"
                          % maximum)
    return value


def _text(name, value, maximum=1000):
    """An optional setting's text ("" when unset): stripped, bounded, no control characters."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > maximum or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(name, "must be a text of at most %d characters without control characters, got %s"
                          % (maximum, identifiers.shown(value)))
    return value.strip()


def _project_key(name, value):
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ConfigError(name, "must be a project key, got %s" % identifiers.shown(value))
    return identifiers.check("project_key", value.strip(), name)


def _id_list(kind):
    """The check of a list of identifiers of `kind` (project keys, logins): "A,B", ["A", "B,C"] and ["A"] are
    accepted (the CLI gives one text per option, DSS a list); each item through `identifiers.check`."""

    def check(name, value):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise ConfigError(name, "must be a list of %s values, got %s" % (kind.replace("_", " "),
                                                                             identifiers.shown(value)))
        parts = [part.strip() for item in items for part in item.split(",")]
        return list(identifiers.check_list(kind, [part for part in parts if part], name))

    return check


@dataclass(frozen=True)
class ParamType:
    """One kind of parameter value: its DSS descriptor type, its check (param, value) -> clean value, and any
    extra descriptor fields (bounds shown by DSS's form)."""

    dss_type: str
    check: Callable[[Param, Any], Any]
    descriptor: Mapping[str, Any] = field(default_factory=dict)


def _bounded(what, minimum, maximum, integer=False):
    return lambda p, value: _number(p.name, value, what, minimum, maximum, integer=integer)


def _by_name(check):
    return lambda p, value: check(p.name, value)


# type -> how it is declared to DSS and checked. A new parameter type is one entry here.
PARAM_TYPES: Dict[str, ParamType] = {
    "hours": ParamType("DOUBLE", _bounded("a number of hours between 0 and %g" % MAX_HOURS, 0.0, MAX_HOURS)),
    "gib": ParamType("DOUBLE", _bounded("a number of GiB between 0 and %d" % MAX_GIB, 0.0, MAX_GIB)),
    "seconds": ParamType("DOUBLE", _bounded("a number of seconds between 0 and %d" % MAX_WAIT_SECONDS, 0.0,
                                            MAX_WAIT_SECONDS)),
    "count": ParamType("INT", _bounded("a whole number between 0 and %d" % MAX_COUNT, 0, MAX_COUNT, integer=True)),
    "hour_of_day": ParamType("INT", _bounded("a whole hour between 0 and 23", 0, 23, integer=True),
                             {"minI": 0, "maxI": 23}),
    "minute": ParamType("INT", _bounded("a whole minute between 0 and 59", 0, 59, integer=True),
                        {"minI": 0, "maxI": 59}),
    "bool": ParamType("BOOLEAN", _by_name(_bool)),
    "names": ParamType("STRINGS", _by_name(_names)),
    "project_keys": ParamType("STRINGS", _by_name(_id_list("project_key"))),
    "logins": ParamType("STRINGS", _by_name(_id_list("login"))),
    "choices": ParamType("MULTISELECT", _choice_list),  # against the param's own choices
    "string": ParamType("STRING", _by_name(_string)),
    "text": ParamType("STRING", _by_name(_text)),  # optional: "" when unset
    "project_key": ParamType("STRING", _by_name(_project_key)),
}


def check_value(p: Param, value):
    """The clean value of one parameter (its default when None), or ConfigError naming it."""
    return PARAM_TYPES[p.type].check(p, p.default if value is None else value)


@dataclass(frozen=True)
class Plan:
    """A macro run, parsed: what to list, which rules decide, and what may fail a scheduled run."""

    macro_id: str
    kinds: Tuple[str, ...]
    rules: Optional[policy.Rules] = None  # None for the read-only inventory and the installer
    apply: bool = False
    projects: Optional[Tuple[str, ...]] = None  # restrict the listing to these projects; None: all
    scope: policy.Scope = field(default_factory=policy.Scope)
    scan_host: bool = False
    show_orphans: bool = False
    pods: bool = False  # list DSS's pods on Kubernetes too (the k8s* values; pods.settings_if_enabled)
    fail_above_count: int = 0  # 0: off
    fail_above_bytes: int = 0  # 0: off
    wait_seconds: float = 10.0
    values: Mapping[str, Any] = field(default_factory=dict)  # every checked parameter


def _scope_of(v) -> policy.Scope:
    return policy.Scope(
        projects=frozenset(v.get("projects") or ()),
        exclude_projects=frozenset(v.get("excludedProjects") or ()),
        users=frozenset(v.get("users") or ()),
        exclude_users=frozenset(v.get("excludedUsers") or ()),
    )


def _gib_bytes(gib) -> int:
    return int(round(gib * 1024**3))


# --- the rules of each macro, from its checked values ---


def _kernel_rules(v, scope):
    free = _gib_bytes(v["freeMemoryGB"]) or None
    if free and not v["scanHost"]:
        raise ConfigError("freeMemoryGB", "needs scanHost (memory is read on the host)")
    return policy.KernelRules(
        max_idle_hours=v["maxIdleTimeHours"], max_age_hours=v["maxSessionAgeHours"],
        spare_busy=v["dontKillBusyKernels"], spare_connected=v["dontKillConnectedKernels"],
        scope=scope, free_bytes=free)


def _task_rules(v, scope):
    return policy.TaskRules(min_running_hours=v["minRunningHours"], kinds=tuple(v["taskKinds"]),
                            task_types=frozenset(v["taskTypes"]),
                            exclude_task_types=frozenset(v["excludedTaskTypes"]), scope=scope)


def _job_rules(v, scope):
    return policy.JobRules(min_running_hours=v["minRunningHours"], scope=scope)


def _service_rules(v, scope):
    return policy.ServiceRules(min_running_hours=v["minRunningHours"], kinds=tuple(v["serviceKinds"]), scope=scope)


@dataclass(frozen=True)
class MacroSpec:
    """One macro: its name (the report's title), its parameters, what it lists (fixed `kinds`, or the values of
    the choice parameter `kinds_param`), its rules (None: it decides nothing), its runner (a key of
    `macros.RUNNERS`: "act", "inventory" or "install"), its CLI command and what its threshold message counts."""

    name: str
    params: Tuple[Param, ...]
    runner: str
    cli_name: str
    kinds: Tuple[str, ...] = ()
    kinds_param: Optional[str] = None
    rules: Optional[Callable[[Mapping[str, Any], policy.Scope], Any]] = None
    acted_on: str = ""  # "kernels would be killed", for failIfMoreThan


# macro id -> its entry. A new macro is one entry here, a python-runnables/<id>/ folder and a CLI module.
MACROS: Dict[str, MacroSpec] = {
    "kill-idle-kernels": MacroSpec("Idle Jupyter kernels", _KERNEL_PARAMS, "act", "kill-kernels",
                                   kinds=policy.KERNEL_KINDS, rules=_kernel_rules,
                                   acted_on="kernels would be killed"),
    "abort-background-tasks": MacroSpec("Long-running background tasks", _TASK_PARAMS, "act", "abort-tasks",
                                        kinds_param="taskKinds", rules=_task_rules,
                                        acted_on="tasks would be aborted"),
    "abort-long-jobs": MacroSpec("Long-running jobs", _JOB_PARAMS, "act", "abort-jobs", kinds=policy.JOB_KINDS,
                                 rules=_job_rules, acted_on="jobs would be aborted"),
    "stop-idle-services": MacroSpec("Long-running services", _SERVICE_PARAMS, "act", "stop-services",
                                    kinds_param="serviceKinds", rules=_service_rules,
                                    acted_on="services would be stopped"),
    "running-activities": MacroSpec("Running activities", _INVENTORY_PARAMS, "inventory", "activities",
                                    kinds_param="kinds"),
    "install-cleanup-scenario": MacroSpec("Scheduled clean-up", _INSTALLER_PARAMS, "install", "install-cleanup"),
}
SPECS: Dict[str, Tuple[Param, ...]] = {macro_id: m.params for macro_id, m in MACROS.items()}


def dss_params(macro_id: str):
    """The `params` list of the macro's runnable.json, as declared here."""
    out = []
    for p in [p for p in SPECS[macro_id] if p.in_dss]:
        kind = PARAM_TYPES[p.type]
        d = {"name": p.name, "label": p.label, "type": kind.dss_type, "description": p.description,
             "mandatory": False, "defaultValue": p.default}
        if p.choices:
            d["selectChoices"] = [{"value": v, "label": lab} for v, lab in p.choices]
        if p.visible_if:
            d["visibilityCondition"] = p.visible_if
        d.update(kind.descriptor)
        out.append(d)
    return out


def values(macro_id: str, config) -> Dict[str, Any]:
    """Every parameter of the macro, checked, defaults filled in. Unknown keys are ignored (DSS adds some)."""
    if macro_id not in SPECS:
        raise ConfigError("macro", "unknown macro %r; known: %s" % (macro_id, ", ".join(sorted(SPECS))))
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError("config", "must be a JSON object of parameters, got %s" % type(config).__name__)
    return {p.name: check_value(p, config.get(p.name)) for p in SPECS[macro_id]}


def parse(macro_id: str, config) -> Plan:
    """Macro config (or CLI args turned into one) -> Plan. Raises ConfigError naming the bad parameter."""
    v = values(macro_id, config)
    spec = MACROS[macro_id]
    scope = _scope_of(v)
    listing = tuple(sorted(scope.projects - scope.exclude_projects)) or None
    if scope.projects and not listing:
        raise ConfigError("projects", "every selected project is also excluded: nothing to consider")
    acting = macro_id in ACTING_MACROS
    return Plan(
        macro_id=macro_id, projects=listing, scope=scope, values=v,
        kinds=tuple(v[spec.kinds_param]) if spec.kinds_param else spec.kinds,
        rules=spec.rules(v, scope) if spec.rules else None,
        apply=not v.get("simulate", True),
        fail_above_count=v["failIfMoreThan"] if acting else 0,
        fail_above_bytes=_gib_bytes(v.get("failIfMoreThanGB", 0.0)),
        wait_seconds=v["waitSeconds"] if acting else 10.0,
        scan_host=bool(v.get("scanHost", False)),
        show_orphans=bool(v.get("showOrphans", False)),
        pods=_pods_checked(v),
    )


def _pods_checked(v) -> bool:
    """Whether the run lists pods; their settings are checked here (ConfigError naming the k8s* parameter)."""
    if not v.get("k8sEnabled"):
        return False
    from .pods import settings_from_config

    settings_from_config(v)
    return True


# --- the CLI mirror: the same parameters as options ---


def add_cli_arguments(parser: argparse.ArgumentParser, macro_id: str) -> None:
    """Add the macro's parameters as options (`--max-idle-hours`...), plus `--apply` for the macros that act.

    Values are taken as text and checked by `parse` (one place), so the CLI accepts exactly what the macro does.
    """
    for p in SPECS[macro_id]:
        if p.flag is None:
            continue
        help_text = "%s (default: %s)" % (p.description, _default_text(p))
        if p.type == "bool":
            parser.add_argument("--" + p.flag, dest=p.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif PARAM_TYPES[p.type].dss_type in ("STRINGS", "MULTISELECT"):
            parser.add_argument("--" + p.flag, dest=p.name, action="append", default=None, metavar="A,B",
                                help=help_text)
        else:
            parser.add_argument("--" + p.flag, dest=p.name, default=None, metavar="VALUE", help=help_text)
    if _has_apply(macro_id):
        parser.add_argument("--apply", action="store_true", help="act; without it this is a dry run")


def _default_text(p):
    if isinstance(p.default, list):
        return ",".join(p.default) or "none"
    if isinstance(p.default, bool):
        return "on" if p.default else "off"
    return str(p.default) if p.default != "" else "none"


def cli_flag(macro_id: str, name: str) -> str:
    """The CLI option of a parameter, for error messages ("--max-idle-hours")."""
    for p in SPECS.get(macro_id, ()):
        if p.name == name and p.flag:
            return "--" + p.flag
    return name


def config_from_args(macro_id: str, args) -> Dict[str, Any]:
    """The macro config equivalent to parsed CLI args (options not given are left to their defaults)."""
    config = {}
    for p in SPECS[macro_id]:
        value = getattr(args, p.name, None)
        if value is not None:
            config[p.name] = value
    if _has_apply(macro_id):
        config["simulate"] = not getattr(args, "apply", False)
    return config


def _has_apply(macro_id):
    """The CLI mirror takes --apply (its `simulate` parameter) and is a dry run without it."""
    return any(p.name == "simulate" for p in SPECS[macro_id])
