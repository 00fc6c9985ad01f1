"""Scheduled use: install (create or update, idempotently) a clean-up scenario that runs this plugin's macros.

The scenario is step-based, in a chosen project, with one "Run a macro" step per selected macro and one daily
trigger. It is found again by its tag (`policy.CLEANUP_TAG`), then by its name, so running the installer twice
leaves one scenario, with the new configuration. Only the steps and the trigger this installer owns (recognised
by their ids) are replaced: steps, triggers and reporters an admin added by hand are kept.

A "Run a macro" step, as DSS exports it (the fields of Dataiku's own admin plugin that writes one):
    {"id": ..., "type": "runnable", "name": ..., "enabled": true, "alwaysShowComment": false,
     "runConditionType": "RUN_IF_STATUS_MATCH", "runConditionStatuses": ["SUCCESS", "WARNING"],
     "runConditionExpression": "", "resetScenarioStatus": false, "delayBetweenRetries": 10, "maxRetriesOnFail": 0,
     "params": {"runnableType": "pyrunnable_<pluginId>_<macroId>", "config": {...}, "adminConfig": {},
                "proceedOnFailure": false}}
The steps' macro configs are dry runs (`simulate: true`) unless the installer is told to let them act.
DSS runs a scenario as its "run as" user (by default the last user who modified it: here, whoever installed
it); the macros need that user to be a DSS administrator.
"""
import copy
import json
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from . import dss, params, policy, render
from .errors import ConfigError, DSSNotFound

STEP_ID_PREFIX = "process_tracker_"
TRIGGER_ID = "process_tracker_daily"
TRIGGER_NAME = "process-tracker: daily clean-up"

# installer values copied into every step's macro config (when the macro has that parameter)
_SHARED = ("excludedProjects", "excludedUsers", "failIfMoreThan")
# installer values copied into the kernel macro's config only
_KERNEL_ONLY = ("maxIdleTimeHours", "maxSessionAgeHours")


@dataclass(frozen=True)
class Installed:
    """The outcome of an install: `outcome` is "created", "updated" or "unchanged"."""

    project_key: str
    scenario_id: str
    name: str
    outcome: str
    steps: Tuple[str, ...]  # macro ids, in step order
    act: bool
    hour: int
    minute: int


def step_config(macro_id: str, values: Mapping) -> Dict[str, object]:
    """The full macro config of one step: the macro's defaults, the installer's shared values, dry run unless
    `values["act"]`. Checked with `params.parse`, so a scenario never holds a config its macro would refuse."""
    config = {p.name: copy.deepcopy(p.default) for p in params.SPECS[macro_id]}
    names = set(config)
    for key in _SHARED + (_KERNEL_ONLY if macro_id == "kill-idle-kernels" else ()):
        if key in names and key in values:
            config[key] = copy.deepcopy(values[key])
    config["simulate"] = not values.get("act", False)
    params.parse(macro_id, config)
    return config


def _step(macro_id: str, values: Mapping) -> Dict[str, object]:
    """One "Run a macro" step with every field DSS exports for one (dss-reference.md section 1): it runs when the
    scenario is so far SUCCESS or WARNING, is not retried, and fails the scenario when the macro raises."""
    return {
        "id": STEP_ID_PREFIX + macro_id.replace("-", "_"),
        "type": "runnable",
        "name": "process-tracker: %s" % macro_id,
        "enabled": True,
        "alwaysShowComment": False,
        "runConditionType": "RUN_IF_STATUS_MATCH",
        "runConditionStatuses": ["SUCCESS", "WARNING"],
        "runConditionExpression": "",
        "resetScenarioStatus": False,
        "delayBetweenRetries": 10,
        "maxRetriesOnFail": 0,
        "params": {
            "runnableType": policy.RUNNABLE_PREFIX + macro_id,
            "config": step_config(macro_id, values),
            "adminConfig": {},
            "proceedOnFailure": False,
        },
    }


def _ours(item) -> bool:
    return isinstance(item, dict) and str(item.get("id", "")).startswith(STEP_ID_PREFIX)


def _find(project, name) -> Optional[str]:
    """The id of the installed scenario: by tag first, then by name; None when there is none."""
    by_name = None
    for item in project.list_scenarios(as_type="listitems"):
        raw = dict(item)  # a dict subclass; its `.id` property returns the name in dataikuapi 15.2: use the key
        if policy.CLEANUP_TAG in (raw.get("tags") or []):
            return raw.get("id")
        if by_name is None and raw.get("name") == name:
            by_name = raw.get("id")
    return by_name


def _daily_trigger(settings, hour, minute, previous) -> dict:
    """A daily trigger in DSS's own JSON shape (built by dataikuapi), keeping its start date when it exists."""
    triggers = settings.raw_triggers
    settings.add_daily_trigger(hour=hour, minute=minute)
    trigger = triggers.pop()
    trigger.update(id=TRIGGER_ID, name=TRIGGER_NAME)
    if previous and isinstance(previous.get("params"), dict) and previous["params"].get("startingFrom"):
        trigger["params"]["startingFrom"] = previous["params"]["startingFrom"]
    return trigger


def _new_definition():
    return {"params": {"steps": []}, "triggers": [], "reporters": [], "tags": [policy.CLEANUP_TAG], "active": True,
            "description": "Installed by the process-tracker plugin: runs its clean-up macros daily."}


def _configure(settings, raw, values):
    """Put this installer's steps, trigger, tag and name into the scenario's `raw` definition (in place)."""
    raw.setdefault("params", {}).setdefault("steps", [])
    raw.setdefault("triggers", [])
    steps = [s for s in raw["params"]["steps"] if not _ours(s)]
    raw["params"]["steps"] = [_step(m, values) for m in values["macros"]] + steps
    previous = next((t for t in raw["triggers"] if _ours(t)), None)
    trigger = _daily_trigger(settings, values["hour"], values["minute"], previous)
    raw["triggers"] = [t for t in raw["triggers"] if not _ours(t)] + [trigger]
    tags = list(raw.get("tags") or [])
    if policy.CLEANUP_TAG not in tags:
        raw["tags"] = tags + [policy.CLEANUP_TAG]
    raw["name"] = values["scenarioName"]
    raw["active"] = True


def _install(project, values, apply):
    """(scenario id or None, outcome): created/updated/unchanged, or would_create/would_update when not `apply`
    (then nothing is written: the scenario is only read)."""
    name = values["scenarioName"]
    try:
        scenario_id = _find(project, name)
    except Exception as exc:  # noqa: BLE001 - the first call: a 404 here means no such project
        if isinstance(dss.translate_error(exc, "listing scenarios"), DSSNotFound):
            raise ConfigError("projectKey", "project %s does not exist (or you cannot see it)"
                              % project.project_key) from None
        raise
    if scenario_id is None:
        if not apply:
            for macro_id in values["macros"]:
                step_config(macro_id, values)  # the steps' configs are checked in a dry run too
            return None, "would_create"
        scenario_id = project.create_scenario(name, "step_based", definition=_new_definition()).id
        outcome = "created"
    else:
        outcome = "updated"
    settings = project.get_scenario(scenario_id).get_settings()
    raw = settings.get_raw()
    before = json.dumps(raw, sort_keys=True)
    _configure(settings, raw, values)
    if json.dumps(raw, sort_keys=True) == before:
        return scenario_id, "unchanged" if outcome == "updated" else outcome
    if apply:
        settings.save()
        return scenario_id, outcome
    return scenario_id, "would_update"


def install(client, project_key: str, values: Mapping, apply: bool = True) -> Installed:
    """Create or update the clean-up scenario in `project_key` from the installer's checked `values`
    (`params.values("install-cleanup-scenario", config)`). Idempotent: the same values twice -> "unchanged".
    `apply=False`: a dry run that only reads (outcome "would_create", "would_update" or "unchanged")."""
    project = client.get_project(project_key)
    try:
        scenario_id, outcome = _install(project, values, apply)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated into a typed, readable error
        raise dss.translate_error(exc, "installing the clean-up scenario in project %s" % project_key) from None
    return Installed(project_key, scenario_id or "", values["scenarioName"], outcome, tuple(values["macros"]),
                     bool(values["act"]), values["hour"], values["minute"])


def install_report(client, values: Mapping, default_project: Optional[str], apply: bool = True) -> render.Report:
    """Install (or, with `apply` false, say what installing would do), and describe the result as a one-row
    report (the macro's and the CLI's output)."""
    project_key = values.get("projectKey") or default_project
    if not project_key:
        raise ConfigError("projectKey", "no project: run the macro from a project or set the project key")
    done = install(client, project_key, values, apply=apply)
    mode = "acting" if done.act else "dry run"
    reason = "daily at %02d:%02d (DSS server time); steps: %s (%s)" % (
        done.hour, done.minute, ", ".join(done.steps), mode)
    row = {"outcome": done.outcome, "kind": "scenario", "project": done.project_key, "name": done.name,
           "id": done.scenario_id, "reason": reason,
           "message": "the steps only report: set 'act' to let them abort" if not done.act else
           "the steps abort/kill/stop what their rules select"}
    rows: List[Dict[str, str]] = [{n: str(row.get(n, "")) for n, _ in render.ACTION_COLUMNS}]
    return render.make_report("Scheduled clean-up", rows, render.ACTION_COLUMNS, applied=None if apply else False)
