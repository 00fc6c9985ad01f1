"""params.py: one declaration of the macros' parameters; runnable.json, the CLI and validation agree with it.

To rewrite the runnable.json params from params.SPECS after changing a declaration:
    .venv/bin/python tests/unit/test_macro_params.py --write
"""
import argparse
import json
import math
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from process_tracker import params, policy
from process_tracker.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MACROS = sorted(params.SPECS)


def _descriptor(macro_id):
    with open(os.path.join(ROOT, "python-runnables", macro_id, "runnable.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("macro_id", MACROS)
def test_runnable_json_params_are_the_declared_ones(macro_id):
    assert _descriptor(macro_id)["params"] == params.dss_params(macro_id)


def test_every_macro_directory_is_declared():
    assert sorted(os.listdir(os.path.join(ROOT, "python-runnables"))) == MACROS


@pytest.mark.parametrize("macro_id", MACROS)
def test_every_macro_is_admin_only_in_resource_management_with_a_named_table(macro_id):
    d = _descriptor(macro_id)
    assert d["requiresGlobalAdmin"] is True and d["permissions"] == ["ADMIN"]
    assert d["meta"]["category"] == "Resource management"
    assert d["resultType"] == "RESULT_TABLE"


def test_kernel_macro_accepts_the_builtin_macros_names_but_dry_run_by_default():
    defaults = {p["name"]: p.get("defaultValue") for p in params.dss_params("kill-idle-kernels")}
    assert defaults["maxIdleTimeHours"] == 24 and defaults["maxSessionAgeHours"] == 48
    assert defaults["dontKillBusyKernels"] is True and defaults["dontKillConnectedKernels"] is True
    assert defaults["simulate"] is True
    simulate = next(p for p in params.dss_params("kill-idle-kernels") if p["name"] == "simulate")
    assert "Defaults to true here" in simulate["description"]


def test_defaults_parse_to_a_dry_run_with_the_builtin_rules():
    plan = params.parse("kill-idle-kernels", {})
    assert plan.apply is False and plan.kinds == ("notebook_session",)
    assert plan.rules == policy.KernelRules(max_idle_hours=24.0, max_age_hours=48.0)
    assert plan.fail_above_count == 0 and plan.scan_host is True


def test_builtin_macro_config_is_understood():
    config = {"maxIdleTimeHours": 12, "maxSessionAgeHours": 0, "dontKillBusyKernels": False,
              "dontKillConnectedKernels": True, "simulate": False}
    plan = params.parse("kill-idle-kernels", config)
    assert plan.apply is True
    assert plan.rules.max_idle_hours == 12.0 and plan.rules.max_age_hours == 0.0 and not plan.rules.spare_busy


def test_scope_lists_and_listing_restriction():
    plan = params.parse("abort-long-jobs", {"projects": ["A", "B, C"], "excludedProjects": "C",
                                            "users": [" alice "]})
    assert plan.scope == policy.Scope(projects=frozenset("ABC"), exclude_projects=frozenset("C"),
                                      users=frozenset(["alice"]))
    assert plan.projects == ("A", "B")
    assert params.parse("abort-long-jobs", {}).projects is None


def test_null_values_take_the_default():
    assert params.parse("kill-idle-kernels", {"maxIdleTimeHours": None}).rules.max_idle_hours == 24.0


def test_task_and_service_kinds():
    plan = params.parse("abort-background-tasks", {"taskKinds": ["scenario"], "taskTypes": ["run_scenario"]})
    assert plan.kinds == ("scenario",) and plan.rules.task_types == frozenset(["run_scenario"])
    assert params.parse("stop-idle-services", {}).kinds == ("webapp", "code_studio")


def test_free_memory_and_gb_threshold_in_bytes():
    plan = params.parse("kill-idle-kernels", {"freeMemoryGB": 1.5, "failIfMoreThanGB": 2})
    assert plan.rules.free_bytes == int(1.5 * 1024**3) and plan.fail_above_bytes == 2 * 1024**3


@pytest.mark.parametrize(
    "macro_id, config, param, message",
    [
        ("kill-idle-kernels", {"maxIdleTimeHours": "abc"}, "maxIdleTimeHours",
         "maxIdleTimeHours: must be a number of hours between 0 and 8760, got 'abc'"),
        ("kill-idle-kernels", {"maxIdleTimeHours": -1}, "maxIdleTimeHours", None),
        ("kill-idle-kernels", {"maxSessionAgeHours": float("nan")}, "maxSessionAgeHours", None),
        ("kill-idle-kernels", {"maxSessionAgeHours": True}, "maxSessionAgeHours", None),
        ("kill-idle-kernels", {"maxSessionAgeHours": 1e9}, "maxSessionAgeHours", None),
        ("kill-idle-kernels", {"dontKillBusyKernels": "maybe"}, "dontKillBusyKernels",
         "dontKillBusyKernels: must be true or false, got 'maybe'"),
        ("kill-idle-kernels", {"excludedProjects": [1]}, "excludedProjects", None),
        ("kill-idle-kernels", {"excludedProjects": {"a": 1}}, "excludedProjects", None),
        ("kill-idle-kernels", {"failIfMoreThan": 2.5}, "failIfMoreThan", None),
        ("kill-idle-kernels", {"freeMemoryGB": 2, "scanHost": False}, "freeMemoryGB", None),
        ("abort-background-tasks", {"taskKinds": []}, "taskKinds",
         "taskKinds: select at least one of future, scenario"),
        ("abort-background-tasks", {"taskKinds": ["future", "kernel"]}, "taskKinds",
         "taskKinds: unknown value 'kernel'; accepted: future, scenario"),
        ("stop-idle-services", {"serviceKinds": ["job"]}, "serviceKinds", None),
        ("abort-long-jobs", {"projects": ["A"], "excludedProjects": ["A"]}, "projects", None),
        ("abort-long-jobs", {"waitSeconds": 99999}, "waitSeconds", None),
        ("install-cleanup-scenario", {"projectKey": "bad key!"}, "projectKey", None),
        ("install-cleanup-scenario", {"hour": 24}, "hour", None),
        ("install-cleanup-scenario", {"macros": []}, "macros", None),
        ("install-cleanup-scenario", {"scenarioName": "  "}, "scenarioName", None),
        ("running-activities", {"kinds": ["nope"]}, "kinds", None),
    ],
)
def test_bad_values_name_the_parameter(macro_id, config, param, message):
    with pytest.raises(ConfigError) as info:
        params.parse(macro_id, config)
    assert info.value.param == param
    assert str(info.value).startswith(param + ": ")
    if message:
        assert str(info.value) == message


def test_config_must_be_an_object_and_macro_known():
    with pytest.raises(ConfigError) as info:
        params.parse("kill-idle-kernels", ["x"])
    assert info.value.param == "config"
    with pytest.raises(ConfigError) as info:
        params.parse("nope", {})
    assert info.value.param == "macro"


def test_numbers_as_text_and_booleans_as_text_are_accepted():
    plan = params.parse("kill-idle-kernels", {"maxIdleTimeHours": " 1.5 ", "dontKillBusyKernels": "false",
                                              "failIfMoreThan": "3"})
    assert plan.rules.max_idle_hours == 1.5 and not plan.rules.spare_busy and plan.fail_above_count == 3


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(macro_id=st.sampled_from(MACROS), data=st.data())
def test_any_json_config_parses_or_names_a_declared_parameter(macro_id, data):
    names = [p.name for p in params.SPECS[macro_id]]
    config = data.draw(st.dictionaries(st.sampled_from(names) | st.text(max_size=5), JSON, max_size=6))
    try:
        plan = params.parse(macro_id, config)
    except ConfigError as e:
        assert e.param in names, e
        assert str(e).startswith(e.param + ": ")
        return
    if plan.rules is not None:
        for name in ("max_idle_hours", "max_age_hours", "min_running_hours"):
            value = getattr(plan.rules, name, 0.0)
            assert math.isfinite(value) and value >= 0


def _args(macro_id, argv):
    parser = argparse.ArgumentParser()
    params.add_cli_arguments(parser, macro_id)
    return parser.parse_args(argv)


def test_cli_options_build_the_same_config():
    args = _args("kill-idle-kernels", ["--max-idle-hours", "12", "--no-spare-busy", "--exclude-projects", "A,B",
                                       "--exclude-projects", "C", "--apply"])
    config = params.config_from_args("kill-idle-kernels", args)
    assert config == {"maxIdleTimeHours": "12", "dontKillBusyKernels": False,
                      "excludedProjects": ["A,B", "C"], "simulate": False}
    plan = params.parse("kill-idle-kernels", config)
    assert plan.apply and plan.rules.scope.exclude_projects == frozenset("ABC")
    assert params.config_from_args("kill-idle-kernels", _args("kill-idle-kernels", []))["simulate"] is True
    assert params.cli_flag("kill-idle-kernels", "maxIdleTimeHours") == "--max-idle-hours"


def test_every_parameter_but_simulate_has_a_cli_option():
    for macro_id, spec in params.SPECS.items():
        for p in spec:
            assert (p.flag is None) == (p.name == "simulate"), (macro_id, p.name)


def _write():  # pragma: no cover - a maintenance helper
    for macro_id in MACROS:
        path = os.path.join(ROOT, "python-runnables", macro_id, "runnable.json")
        d = _descriptor(macro_id)
        d["params"] = params.dss_params(macro_id)
        with open(path, "w") as f:
            json.dump(d, f, indent=4, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__" and "--write" in sys.argv:  # pragma: no cover
    _write()
