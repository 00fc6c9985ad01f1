"""Bad and hostile input, generated (hypothesis), through the faces a user has: macro configs run the way DSS runs a
macro, CLI arguments through the CLI's entry point, webapp requests with any method, headers, origin, body and
query. Whatever the input: never a traceback, a message naming the parameter, and nothing acted on unless the input
was valid and asked for it (checked in the simulator's log, not in the plugin's report).
"""
import contextlib
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.dss_runtime import MacroFailed, load_webapp_app, run_macro
from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import future, instance, job, notebook, project, session
from process_tracker import params
from process_tracker.macros import ThresholdExceeded
from process_tracker.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")
WEBAPP = os.path.join(ROOT, "webapps", "process-monitor")
MACROS = sorted(params.SPECS)
SESSIONS = 40
HOSTILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def stale_instance():
    """Everything here is old enough to be acted on by any rule: a bad input that slipped through would show."""
    return instance(projects=[project(
        "P",
        notebooks=[notebook("nb%d" % i, [session("alice", session_id="s%d" % i, started_ago="9d", idle_for="9d")])
                   for i in range(SESSIONS)],
        jobs=[job("j1", "alice", started_ago="9d")],
    )], futures=[future("f1", "bob", started_ago="9d")], abortDelay=0)


@pytest.fixture(scope="module")
def sim():
    s = Simulator(stale_instance())
    with s.serve():
        yield s


def changes(sim):
    """The change requests DSS received, identity lookups aside."""
    return [(r.method, r.path) for r in sim.actions if r.path != "/auth/info-from-browser-headers"]


# ---- macro configs, as DSS runs the macros -----------------------------------------------------------------------

NAMES = st.lists(st.sampled_from(["P", "Q", "alice", "bob", "x_1"]), max_size=3)
VALID = {
    "hours": st.sampled_from([0, 0.0, 1, "0", " 2.5 ", 48]),
    "gib": st.just(0),
    "seconds": st.sampled_from([0, 1, "0.5"]),
    "count": st.sampled_from([0, "0", 5]),
    "hour_of_day": st.integers(0, 23),
    "minute": st.integers(0, 59),
    "bool": st.sampled_from([True, False, "true", "false", 0, 1]),
    "names": NAMES | NAMES.map(",".join),
    # Q and x_1 are well-formed but unknown to DSS: an error naming the include list, a warning row if excluded
    "project_keys": st.lists(st.sampled_from(["P", "Q"]), max_size=2) | st.sampled_from(["", "P", "P,Q"]),
    "logins": st.lists(st.sampled_from(["alice", "bob", "x_1"]), max_size=2),
    "string": st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30).filter(str.strip),
    "project_key": st.sampled_from(["", "P"]),
    "text": st.just(""),  # the k8s settings: unset (a value is checked as a path, context or namespace list)
}
JUNK = st.sampled_from([None, [], {}, [1], {"a": 1}, True, 3.5, -1, "", "nan", "1e400", "-0.1", "abc", "<script>"])
INVALID = {
    "hours": st.sampled_from([-1, "-0.5", "nan", "inf", "1e400", "abc", True, [1], {}, 1e12, "<script>"]),
    "gib": st.sampled_from([-1, "nan", "abc", True, [], 1e13]),
    "seconds": st.sampled_from([-1, 3601, "nan", "abc", False, {}]),
    "count": st.sampled_from([-1, 1.5, "2.5", "abc", True, [], 10 ** 7]),
    "hour_of_day": st.sampled_from([-1, 24, 1.5, "abc", True]),
    "minute": st.sampled_from([-1, 60, "abc", 0.5]),
    "bool": st.sampled_from(["maybe", 2, -1, 0.5, [], {}, "yes please"]),
    "names": st.sampled_from([5, {"a": 1}, [1], ["a\x00b"], ["x" * 300], [None], True]),
    "project_keys": st.sampled_from([5, {"a": 1}, [1], "a/b", ["NOPE/../P"], ["%2e%2e"], ["x" * 300], ["P", None],
                                     "P?x", ["P#"], True]),
    "logins": st.sampled_from([5, {"a": 1}, [1], "a/b", ["../alice"], ["a\nb"], ["x" * 300], [None], True]),
    "choices": st.sampled_from([["bogus"], [], 3, {"a": 1}, ["future", "kernel"], ""]),
    "string": st.sampled_from(["", "   ", 5, "a\nb", "x" * 300, [], None]).filter(lambda v: v is not None),
    "project_key": st.sampled_from(["a b", "A-B", 5, "x" * 200, "<script>", ["P"]]),
    "text": st.sampled_from([5, [], {"a": 1}, "a\nb", "x" * 1001, "tab\there"]),
}


def valid_value(p):
    if p.type == "choices":
        accepted = [v for v, _ in p.choices]
        return st.lists(st.sampled_from(accepted), min_size=1, max_size=len(accepted), unique=True)
    return VALID[p.type]


@HOSTILE
@given(macro_id=st.sampled_from(MACROS), data=st.data())
def test_a_bad_macro_parameter_is_named_and_nothing_is_done_even_when_asked_to_act(sim, macro_id, data):
    specs = params.SPECS[macro_id]
    bad = data.draw(st.sampled_from(specs), label="bad parameter")
    config = {p.name: data.draw(valid_value(p), label=p.name) for p in specs if p is not bad}
    config.update(simulate=False, scanHost=False)  # act for real, on everything the rules select
    config[bad.name] = data.draw(INVALID[bad.type], label="bad value")
    before = len(sim.requests)
    with pytest.raises(MacroFailed) as info:
        run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="P",
                  env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})
    assert isinstance(info.value.exception, ConfigError), info.value.exception
    assert info.value.message.startswith(bad.name + ": "), (info.value.message, bad.name)
    assert "Traceback" not in info.value.message and len(info.value.message) < 400
    assert sim.requests[before:] == []  # refused before DSS is even asked


@HOSTILE
@given(macro_id=st.sampled_from(params.ACTING_MACROS), data=st.data())
def test_any_valid_dry_run_config_lists_and_changes_nothing(sim, macro_id, data):
    config = {p.name: data.draw(valid_value(p), label=p.name) for p in params.SPECS[macro_id]
              if p.name not in ("simulate", "scanHost", "freeMemoryGB", "failIfMoreThanGB")}
    if data.draw(st.booleans(), label="omit simulate"):
        config.pop("simulate", None)
    else:
        config["simulate"] = data.draw(st.sampled_from([True, "true", 1]), label="simulate")
    config["scanHost"] = False
    before = len(sim.actions)
    try:
        result = run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="P",
                           env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})
    except MacroFailed as e:  # a cross-parameter check, or failIfMoreThan exceeded (then nothing is done either);
        # k8sThisNodeOnly needs this node's install id, which a run without a DIP_HOME cannot read
        assert (isinstance(e.exception, ConfigError) and e.exception.param in (
            "projects", "users", "k8sThisNodeOnly")) or isinstance(
            e.exception, ThresholdExceeded), e.message
    else:
        assert result.table["header"].startswith("Dry run (nothing was done)")
        assert {r["outcome"] for r in result.rows()} <= {"would_act", "spared", "warning"}  # warning: excluded Q
    assert sim.actions[before:] == []


# ---- CLI arguments -----------------------------------------------------------------------------------------------

TEXT = st.text(max_size=12)


@HOSTILE
@given(data=st.data())
def test_any_connection_option_is_a_result_or_one_line_and_never_an_action(sim, data):
    from process_tracker import cli

    url = data.draw(st.sampled_from([sim.url, sim.url + "/", "http://127.0.0.1:9", "ftp://127.0.0.1", "", "http://",
                                     "127.0.0.1:80", "http://127.0.0.1:notaport", "https://[::1"]) | TEXT, label="url")
    key = data.draw(st.sampled_from([sim.admin_key, "alice-key", "", "revoked", "admin-key\n"]) | TEXT, label="key")
    timeout = data.draw(st.sampled_from(["1", "0", "-1", "nan", "inf", "1e400", "abc", "0.001"]), label="timeout")
    command = data.draw(st.sampled_from([["activities", "--no-scan-host"], ["kill-kernels", "--no-scan-host"],
                                         ["abort-jobs"], ["abort-tasks", "--json"]]), label="command")
    argv = ["--url=" + url, "--api-key=" + key, "--timeout=" + timeout] + command
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as e:
            status = e.code
    text = err.getvalue()
    assert status in (0, 1, 2), (argv, text)
    assert "Traceback" not in text and "unexpected" not in text, text
    if status == 1:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("process-tracker: error: "), lines
    assert sim.admin_key not in out.getvalue() + text
    assert changes(sim) == []


# ---- webapp requests ---------------------------------------------------------------------------------------------


class _Client:
    def __init__(self, app):
        self.app = app

    def open(self, method, path, login=None, **kwargs):
        client = self.app.test_client()
        if login is not None:
            client.set_cookie("dss_sim_user", login)
        return client.open(path, method=method, **kwargs)


@pytest.fixture(scope="module")
def webapp(sim, tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("DKU_DSS_URL", "DKU_API_KEY", "DIP_HOME")}
    os.environ.update(DKU_DSS_URL=sim.url, DKU_API_KEY=sim.admin_key)
    os.environ.pop("DIP_HOME", None)
    app = load_webapp_app(WEBAPP, config={"historyDir": str(tmp_path_factory.mktemp("h")),
                                          "samplingIntervalSeconds": 3600, "allowedGroups": ["ops_team"]})
    try:
        yield _Client(app)
    finally:
        app.extensions["process_tracker"].sampler.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _answer_is_clean(response):
    text = response.get_data(as_text=True)
    assert response.status_code != 500 and response.status_code < 600, text
    assert "Traceback" not in text
    if response.status_code == 405:  # a wrong method is refused by Flask's routing, before the webapp's routes
        return text
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and body["error"]["message"], text
    return text


# each condition an action needs, with values that satisfy it and values that do not
GOOD = {
    "method": ["POST"],
    "endpoint": ["/api/actions/apply"],
    "login": ["admin", "ops"],  # an admin, a member of an allowed group
    "csrf": ["1"],
    "origin": [None, "http://localhost", "http://LOCALHOST"],
    "content_type": ["application/json", "application/json; charset=utf-8"],
    "raw": ["json"],
    "confirm": [True],
}
BAD = {
    "method": ["GET", "PUT", "DELETE"],
    "endpoint": ["/api/actions/preview"],  # a preview never acts
    "login": [None, "alice", "mallory", "", "<script>"],
    "csrf": [None, "0", "true", " 1", ""],
    "origin": ["https://evil.example", "null", "", "http://localhost.evil", "http://localhost:1"],
    "content_type": ["text/plain", "application/x-www-form-urlencoded", None],
    "raw": ["broken", "empty"],
    "confirm": [False, "true", 1, None],
}


@HOSTILE
@given(data=st.data())
def test_webapp_acts_only_when_every_condition_holds(sim, webapp, data):
    """Requests that satisfy every condition but at most one: each condition alone is shown to be necessary, and
    together sufficient."""
    broken = data.draw(st.sampled_from([None, None] + sorted(GOOD)), label="broken condition")
    req = {c: data.draw(st.sampled_from(BAD[c] if c == broken else GOOD[c]), label=c) for c in GOOD}
    target = data.draw(st.sampled_from([{"kind": "notebook_session", "project_key": "P", "id": "s%d" % i}
                                        for i in range(SESSIONS)]), label="target")
    body = dict(target)
    if req["confirm"] is not None:
        body["confirm"] = req["confirm"]
    payload = {"json": json.dumps(body), "broken": json.dumps(body)[:-1], "empty": ""}[req["raw"]]
    headers = {k: v for k, v in (("X-Process-Tracker-CSRF", req["csrf"]), ("Origin", req["origin"])) if v is not None}
    alive = target["id"] in sim.session_ids()
    before = len(changes(sim))
    response = webapp.open(req["method"], req["endpoint"], login=req["login"], data=payload, headers=headers,
                           content_type=req["content_type"])
    _answer_is_clean(response)
    sent = changes(sim)[before:]
    if broken is None and alive:
        assert response.status_code == 200 and response.get_json()["outcome"] == "aborted", response.get_json()
        assert len(sent) == 1 and sent[0][0] == "DELETE" and sent[0][1].endswith("/" + target["id"])
        assert target["id"] not in sim.session_ids()
    else:
        assert sent == [], (broken, req)
        if broken not in (None, "endpoint"):
            assert response.status_code in (400, 403, 405), (broken, response.get_data(as_text=True))


@HOSTILE
@given(path=st.sampled_from(["/api/whoami", "/api/snapshot", "/api/table", "/api/history"]),
       query=st.dictionaries(st.sampled_from(["window", "w", "sort", "limit", "__proto__", ""]),
                             st.text(max_size=10), max_size=3),
       login=st.sampled_from(["admin", "bob", None, "mallory"]))
def test_webapp_reads_with_any_query_are_answers_or_named_errors(sim, webapp, path, query, login):
    before = len(changes(sim))
    response = webapp.open("GET", path, login=login, query_string=query)
    _answer_is_clean(response)
    if response.status_code == 400:
        assert response.get_json()["error"]["message"].startswith("window: ")
    if login in (None, "mallory") and path != "/api/whoami":
        assert response.status_code == 403
    assert len(changes(sim)) == before


def test_the_hostile_inputs_did_not_disturb_the_instance(sim):
    """Run last in this module: whatever was refused left DSS as it was; what was accepted is in the log."""
    stops = changes(sim)
    assert stops and all(m == "DELETE" for m, _ in stops)  # the valid webapp requests, kernel unloads only
    assert len(set(stops)) == len(stops)  # no stop was ever sent twice
    assert sim.phase("job", "j1") == "RUNNING" and sim.phase("future", "f1") == "RUNNING"
