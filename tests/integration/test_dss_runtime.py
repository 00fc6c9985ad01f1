"""The DSS harnesses themselves: they must run plugin code exactly as DSS does, or every other test lies."""
import json
import os

import pytest

from dev.dss_runtime import MacroFailed, load_webapp, run_macro

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


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


# ----- identity: inside DSS the client is DSS's own, whatever the environment and ~/.dataiku say -----------------
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def elsewhere(simulator, tmp_path, monkeypatch):
    """Another DSS, with another user's key in DKU_DSS_URL/DKU_API_KEY and in ~/.dataiku/config.json: what a CLI
    user of the DSS unix account may have configured. Plugin code inside DSS must never reach it."""
    from dev.dss_simulator.builders import instance

    other = simulator(instance())
    home = tmp_path / "home"
    (home / ".dataiku").mkdir(parents=True)
    (home / ".dataiku" / "config.json").write_text(json.dumps({
        "dss_instances": {"default": {"url": other.url, "api_key": other.key_for("bob"),
                                      "no_check_certificate": True}},
        "default_instance": "default"}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DKU_DSS_URL", other.url)
    monkeypatch.setenv("DKU_API_KEY", other.admin_key)
    return other


def _kernels():
    from dev.dss_simulator.builders import default_users, instance, notebook, project, session, user

    return instance(users=default_users() + [user("sysadm", ["administrators"])], projects=[project("CHURN", notebooks=[
        notebook("explore", [session("alice", session_id="s-idle", started_ago="3d", idle_for="36h")])])])


def test_a_macro_acts_as_its_tickets_user_even_with_env_and_config_file_pointing_elsewhere(simulator, elsewhere):
    sim = simulator(_kernels())
    result = run_macro(os.path.join(ROOT, "python-runnables", "running-activities"), {"scanHost": False},
                       dss=sim, user="sysadm", env={"DKU_DSS_URL": elsewhere.url, "DKU_API_KEY": elsewhere.admin_key})
    assert [r.path for r in elsewhere.requests] == []
    assert sim.requests and {r.user for r in sim.requests} == {"sysadm"}  # a user only the ticket's DSS has
    assert "s-idle" in json.dumps(result.table)


def test_the_webapp_backend_acts_as_its_run_as_user_even_with_env_and_config_file_pointing_elsewhere(
        simulator, elsewhere, tmp_path):
    sim = simulator(_kernels())
    client = load_webapp(os.path.join(ROOT, "webapps", "process-monitor"), dss=sim, user="ops",
                         config={"historyDir": str(tmp_path / "history")})
    try:
        client.set_cookie("dss_sim_user", "alice")
        assert client.get("/api/whoami").get_json()["user"] == "alice"
    finally:
        client.application.extensions["process_tracker"].sampler.stop()
    assert [r.path for r in elsewhere.requests] == []
    assert "/auth/info-from-browser-headers" in [r.path for r in sim.requests]
    assert {r.user for r in sim.requests} == {"ops"}


def test_the_stand_in_builds_api_client_as_dss_does_from_the_backend_port_and_the_ticket(simulator, monkeypatch):
    import dataiku

    sim = simulator(_kernels())
    monkeypatch.setenv("DKU_BACKEND_PORT", str(sim.port))
    monkeypatch.setenv("DKU_API_TICKET", sim.ticket_for("bob"))
    client = dataiku.api_client()
    assert client.host == "http://127.0.0.1:%d" % sim.port
    assert client._session.headers["X-DKU-APITicket"] == os.environ["DKU_API_TICKET"]
    assert client.get_auth_info()["authIdentifier"] == "bob"
    monkeypatch.setenv("DKU_API_TICKET", "a-ticket-nobody-issued")
    with pytest.raises(Exception, match="Unknown API"):
        dataiku.api_client().get_auth_info()
    monkeypatch.delenv("DKU_API_TICKET")
    with pytest.raises(Exception, match="DKU_API_TICKET"):
        dataiku.api_client()
