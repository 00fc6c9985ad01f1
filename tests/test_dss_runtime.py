"""The DSS harnesses themselves: they must run plugin code exactly as DSS does, or every other test lies."""
import os

import pytest

from dev.dss_runtime import MacroFailed, load_webapp, run_macro

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_run_macro_instantiates_first_runnable_subclass_with_three_args_and_records_progress():
    result = run_macro(os.path.join(FIXTURES, "macros", "echo"), {"b": 2, "a": 1}, project_key="PRJ")
    assert result.result_type == "RESULT_TABLE"
    assert result.progress_target == (3, "NONE")
    assert result.progress == [1, 2]
    table = result.table
    assert table["name"] == "echo"
    assert table["columns"][1] == {"name": "value", "displayName": "Value", "type": "STRING_LIST"}
    assert result.rows() == [
        {"key": "a", "value": ["1"]},
        {"key": "b", "value": ["2"]},
        {"key": "project", "value": ["PRJ"]},
    ]


def test_run_macro_passes_only_as_many_args_as_the_constructor_takes_and_dumps_dicts():
    result = run_macro(os.path.join(FIXTURES, "macros", "two_args"), {"x": 1}, project_key="P2")
    assert result.table == {"project_key": "P2", "config": {"x": 1}}


def test_run_macro_surfaces_exceptions_as_the_message_dss_shows():
    with pytest.raises(MacroFailed) as info:
        run_macro(os.path.join(FIXTURES, "macros", "failing"), {})
    assert info.value.message == "maxIdleTimeHours: must be a number of hours >= 0, got 'abc'"


def test_run_macro_restores_the_environment():
    before = dict(os.environ)
    run_macro(os.path.join(FIXTURES, "macros", "echo"), {}, project_key="PRJ", env={"DKU_X": "1"})
    assert dict(os.environ) == before


def test_load_webapp_execs_backend_with_injected_app_and_config():
    client = load_webapp(os.path.join(FIXTURES, "webapp"), config={"interval": 10})
    assert client.get("/__ping").data == b"pong"
    assert client.get("/config").get_json() == {"interval": 10}
