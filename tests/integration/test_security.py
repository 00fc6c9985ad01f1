"""Security, end to end, on the real process fleet and the simulated DSS with hostile data planted everywhere:

- every output a user or a log can see (macro tables, CLI output, webapp answers, log records, the history's
  SQLite file) is scanned for the fleet's planted secrets (ML server secret, keystore password, Jupyter token on
  command lines), every API key, raw command-line fragments and tracebacks: none may appear;
- names carrying HTML (`<script>`, `<img onerror>`, `<svg onload>` in a notebook name, a project key and a user
  login) come back as data, unchanged, in JSON and plain-text outputs; nothing the plugin serves from DSS data is
  HTML (macros return tables, the webapp's API answers application/json);
- non-admins cannot act: not through the webapp (403, even for a group allowed to read), not through any macro or
  CLI mirror (even the webapp's "allowed to act" group: the macros need a DSS administrator);
- identity that cannot be resolved (DSS down, a failing or malformed identity answer, a group definition that
  cannot be read) fails closed.
The browser side (the page renders these names as text) is tests/browser/test_browser_security.py.
"""
import json
import logging
import os
import subprocess
import sys
import time

import pytest

from dev.dss_runtime import MacroFailed, load_webapp_app, run_macro
from dev.dss_simulator.builders import load_demo
from dev.fleet import PLANTED_SECRETS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")
WEBAPP = os.path.join(ROOT, "webapps", "process-monitor")
CLI = os.path.join(os.path.dirname(sys.executable), "process-tracker")
MACROS = sorted(os.listdir(RUNNABLES))
CSRF = {"X-Process-Tracker-CSRF": "1"}

NOTEBOOK = '<img src=x onerror=window.__ptInjected=1>notes'  # a notebook name holds no "/" (identifiers)
PROJECT = "<img src=x onerror=window.__ptInjected=2>"  # not a valid project key: its items are error rows
HOSTILE_KEY = "HOSTILE"  # the project holding the hostile notebook, session, user and job
USER = "<svg onload=window.__ptInjected=3>"
USER_KEY = "dkuaps-hostile-user-1d3f5a7c9e0b2d4f"
HOSTILE_SESSION = "0badf00d-0000-4000-8000-000000000001"
HOSTILE = (NOTEBOOK, PROJECT, USER)
# what a raw command line of the fleet would give away (labels and ids never contain these)
CMDLINE_FRAGMENTS = ("-Ddku.", "ipykernel_launcher", "dkulauncher.py", " -cp ", "supervisord.conf", "execwrapper.sh",
                     "dataiku.doctor.server", "-Xmx2g")


def hostile_instance():
    inst = load_demo()
    inst["users"].append({"login": USER, "displayName": USER, "groups": ["data_scientists"], "apiKeys": [USER_KEY]})
    inst["projects"].append({"projectKey": PROJECT, "name": PROJECT, "owner": USER})
    inst["projects"].append({"projectKey": HOSTILE_KEY, "name": PROJECT, "owner": USER, "notebooks": [
        {"name": NOTEBOOK, "language": "python", "sessions": [
            {"sessionId": HOSTILE_SESSION, "creator": USER, "startedAgo": "3d", "idleFor": "2d", "state": "idle",
             "connections": 0}]}],
        "jobs": [{"id": "job<b>1</b>", "initiator": USER, "startedAgo": "30h", "state": "RUNNING"}]})
    return inst


def every_key(inst):
    return [k for u in inst["users"] for k in u.get("apiKeys", [])]


@pytest.fixture
def dss(fleet, simulator):
    inst = hostile_instance()
    sim = simulator(inst, fleet_pids=fleet.pids)
    sim.keys = every_key(inst)
    return sim


def assert_clean(texts, keys):
    """No planted secret, API key, command-line fragment nor traceback in any of `texts` (name -> text)."""
    for name, text in texts.items():
        for secret in tuple(PLANTED_SECRETS) + tuple(keys):
            assert secret not in text, "%s shows a secret (%s...)" % (name, secret[:10])
        for fragment in CMDLINE_FRAGMENTS:
            assert fragment not in text, "%s shows a command-line fragment %r" % (name, fragment)
        assert "Traceback" not in text, name


def rows_with(rows, value):
    return [r for r in rows if value in json.dumps(r, ensure_ascii=False)]


# ---- everything the plugin outputs, scanned -----------------------------------------------------------------------


def test_no_output_shows_a_secret_a_key_a_command_line_or_a_traceback(fleet, dss, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    env = {"DKU_DSS_URL": dss.url, "DKU_API_KEY": dss.admin_key, "DIP_HOME": fleet.dip_home}
    texts = {}
    # the macros, as DSS runs them (dry runs, with the host scan where they have one)
    for macro_id in MACROS:
        with open(os.path.join(RUNNABLES, macro_id, "runnable.json")) as f:
            assert json.load(f)["resultType"] == "RESULT_TABLE", macro_id  # never HTML
        config = {"projectKey": "SANDBOX"} if macro_id == "install-cleanup-scenario" else {}
        result = run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="SANDBOX", env=env)
        texts["macro " + macro_id] = result.raw
    rows = json.loads(texts["macro running-activities"])["records"]
    assert rows_with(rows, NOTEBOOK) and rows_with(rows, PROJECT) and rows_with(rows, USER)  # as data, unchanged
    # a bad parameter and a refused user: their messages too
    with pytest.raises(MacroFailed) as info:
        run_macro(os.path.join(RUNNABLES, "kill-idle-kernels"), {"maxIdleTimeHours": NOTEBOOK}, env=env)
    texts["macro bad parameter"] = info.value.message
    with pytest.raises(MacroFailed) as info:
        run_macro(os.path.join(RUNNABLES, "running-activities"), {}, env=dict(env, DKU_API_KEY=USER_KEY))
    texts["macro non-admin"] = info.value.message
    assert USER in info.value.message
    # the CLI, the real console script
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    cli_env.update(DKU_DSS_URL=dss.url, DKU_API_KEY=dss.admin_key, DIP_HOME=fleet.dip_home)
    for argv in (["scan", "--json", "--all"], ["scan", "--top", "50"], ["activities", "--json"], ["activities"],
                 ["kill-kernels", "--max-idle-hours", "1"], ["abort-jobs", "--json", "--min-running-hours", "0"],
                 ["abort-tasks", "--json"], ["stop-services", "--json"]):
        proc = subprocess.run([CLI] + argv, capture_output=True, text=True, timeout=120, env=cli_env)
        assert proc.returncode == 0, (argv, proc.stderr)
        texts["cli " + " ".join(argv)] = proc.stdout + proc.stderr
    cli_rows = json.loads(texts["cli activities --json"])["rows"]
    assert rows_with(cli_rows, NOTEBOOK) and rows_with(cli_rows, PROJECT)
    assert NOTEBOOK in texts["cli activities"]  # plain text, as is
    # the webapp, as DSS loads it, with its own sampler scanning the fleet
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = load_webapp_app(WEBAPP, config={"historyDir": str(tmp_path / "h"), "samplingIntervalSeconds": 2})
    state = app.extensions["process_tracker"]
    try:
        deadline = time.monotonic() + 60
        while state.sampler.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.sampler.samples >= 1, state.sampler.status()
        client = app.test_client()
        client.set_cookie("dss_sim_user", "admin")
        answers = {p: client.get(p) for p in ("/api/whoami", "/api/snapshot", "/api/history?window=1h",
                                              "/api/history?window=7d", "/api/table")}
        target = {"kind": "notebook_session", "project_key": HOSTILE_KEY, "id": HOSTILE_SESSION}
        answers["preview"] = client.post("/api/actions/preview", json=target, headers=CSRF)
        answers["apply"] = client.post("/api/actions/apply", json=dict(target, confirm=True), headers=CSRF)
        answers["bad body"] = client.post("/api/actions/preview", json={"kind": NOTEBOOK}, headers=CSRF)
        for name, response in answers.items():
            assert response.mimetype == "application/json", name  # never text/html
            texts["webapp " + name] = response.get_data(as_text=True)
        # the hostile names live in a valid project: the session is listed, previewed and stopped like any other
        assert answers["preview"].status_code == 200, texts["webapp preview"]
        assert answers["preview"].get_json()["outcome"] == "would_act"
        assert answers["apply"].status_code == 200, texts["webapp apply"]
        assert answers["bad body"].status_code == 400
        table = answers["/api/table"].get_json()
        assert rows_with(table["rows"] + table["activities_without_process"], NOTEBOOK)
        assert [r["owner"] for r in table["rows"] + table["activities_without_process"]
                if r["activity_name"] == NOTEBOOK] == [USER]
    finally:
        state.sampler.stop()
    for suffix in ("", "-wal"):
        path = state.store.path + suffix
        if os.path.exists(path):
            with open(path, "rb") as f:
                texts["history " + suffix] = f.read().decode("latin-1")
    texts["logs"] = "\n".join(r.getMessage() for r in caplog.records)
    assert any('"event": "apply"' in r.getMessage() and '"user": "admin"' in r.getMessage()
               for r in caplog.records)  # actions are logged (one JSON object per line), with who, refused ones too
    assert_clean(texts, dss.keys)


# ---- who may act ---------------------------------------------------------------------------------------------------


@pytest.fixture
def webapp(dss, tmp_path, monkeypatch):
    monkeypatch.setenv("DKU_DSS_URL", dss.url)
    monkeypatch.setenv("DKU_API_KEY", dss.admin_key)
    monkeypatch.delenv("DIP_HOME", raising=False)
    app = load_webapp_app(WEBAPP, config={"historyDir": str(tmp_path / "h"), "samplingIntervalSeconds": 3600,
                                          "allowedGroups": ["ops_team"]})
    yield app
    app.extensions["process_tracker"].sampler.stop()


def post(app, login, path, body, headers=CSRF):
    client = app.test_client()
    if login is not None:
        client.set_cookie("dss_sim_user", login)
    return client.post(path, json=body, headers=headers)


def changes(sim):
    return [(r.method, r.path) for r in sim.actions if r.path != "/auth/info-from-browser-headers"]


def _targets(sim):
    client = sim.client()
    from process_tracker.activities import list_activities

    inv = list_activities(client, kinds=["notebook_session", "job", "future", "scenario"])
    picked = {}
    for a in inv.activities:
        if a.details.get("runs"):  # the future of a webapp backend or continuous activity: spared, not a target
            continue
        picked.setdefault(a.kind, {"kind": a.kind, "project_key": a.project_key, "id": a.id})
    return list(picked.values())


@pytest.mark.parametrize("login", ["alice", "bob", USER, "nobody", None])
def test_non_admins_cannot_act_through_the_webapp(dss, webapp, login):
    targets = _targets(dss)
    assert {t["kind"] for t in targets} >= {"notebook_session", "job", "future", "scenario"}
    for target in targets:
        for path in ("/api/actions/preview", "/api/actions/apply"):
            response = post(webapp, login, path, dict(target, confirm=True))
            assert response.status_code == 403, response.get_data(as_text=True)
            code = response.get_json()["error"]["code"]
            assert code == ("not_allowed" if login in ("alice", "bob", USER) else "identity_unknown")
    assert changes(dss) == []


@pytest.mark.parametrize("macro_id", MACROS)
def test_admin_macros_and_their_cli_mirrors_refuse_non_admins_even_the_webapp_group(dss, macro_id):
    config = {} if macro_id == "install-cleanup-scenario" else {"simulate": False, "scanHost": False}
    for login in ("ops", "alice"):  # ops may act in the webapp (allowed group): not an administrator
        with pytest.raises(MacroFailed) as info:
            run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="CHURN",
                      env={"DKU_DSS_URL": dss.url, "DKU_API_KEY": dss.key_for(login)})
        assert "needs a DSS administrator: user %s is not one" % login in info.value.message
    command = {"kill-idle-kernels": "kill-kernels", "abort-background-tasks": "abort-tasks",
               "abort-long-jobs": "abort-jobs", "stop-idle-services": "stop-services",
               "running-activities": "activities", "install-cleanup-scenario": "install-cleanup"}[macro_id]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    env.update(DKU_DSS_URL=dss.url, DKU_API_KEY=dss.key_for("ops"))
    argv = [CLI, command] + (["--apply"] if command not in ("activities", "install-cleanup") else []) + (
        ["--project", "CHURN"] if command == "install-cleanup" else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "needs a DSS administrator: user ops is not one" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert changes(dss) == []


def test_the_allowed_group_and_admins_can_act(dss, webapp):
    from process_tracker import policy
    from process_tracker.activities import list_activities

    # a task the policy does not spare (here every plain future is spared: a project that cannot be listed leaves
    # "cannot tell whether it runs a webapp ..."; a running scenario is a task it may stop)
    target = next(a for a in list_activities(dss.client(), kinds=["future", "scenario"]).activities
                  if policy.protection_reason(a, policy.NO_PROTECTION) is None)
    body = {"kind": target.kind, "project_key": target.project_key, "id": target.id, "confirm": True}
    response = post(webapp, "ops", "/api/actions/apply", body)
    assert response.status_code == 200 and response.get_json()["outcome"] in ("aborted", "abort_requested"), \
        response.get_json()
    assert len(changes(dss)) == 1 and target.id in changes(dss)[0][1], changes(dss)


@pytest.mark.parametrize(("fault", "code"), [
    ({"path": "^/auth/info-from-browser-headers$", "error_rate": 1.0}, "identity_unknown"),
    ({"path": "^/auth/info-from-browser-headers$", "malformed": True}, "identity_unknown"),
    ({"path": "^/admin/groups/administrators$", "error_rate": 1.0}, "not_allowed"),
    ({"path": "^/admin/groups/administrators$", "malformed": True}, "not_allowed"),
])
def test_identity_that_cannot_be_resolved_fails_closed(dss, webapp, fault, code):
    fault_handle = dss.add_fault(**fault)
    future_id = next(t["id"] for t in _targets(dss) if t["kind"] == "future")
    body = {"kind": "future", "id": future_id, "confirm": True}
    response = post(webapp, "admin", "/api/actions/apply", body)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == code, response.get_json()
    assert changes(dss) == []
    whoami = webapp.test_client()
    whoami.set_cookie("dss_sim_user", "admin")
    assert whoami.get("/api/whoami").get_json()["can_act"] is False
    dss.remove_fault(fault_handle)  # once DSS answers again, the admin is recognised (a failure is not cached)
    assert post(webapp, "admin", "/api/actions/preview", body).status_code == 200


def test_dss_down_fails_closed_for_actions(dss, webapp):
    dss.stop()
    response = post(webapp, "admin", "/api/actions/apply", {"kind": "future", "id": "x", "confirm": True})
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "identity_unknown"
