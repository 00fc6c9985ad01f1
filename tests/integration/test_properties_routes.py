"""Hostile ids and keys through every CLI command and every macro (issue 10, "Show"): wherever they come from, the
plugin's requests stay inside the route table of what it lists and acts on, and it stops only what DSS listed.

Two sources of hostile values, generated with hypothesis (`../`, `%2e%2e/`, `/`, `?`, `#`, `%`, newlines, NUL,
unicode, bidi, very long strings):
- what a user types: CLI options and macro configs (project keys, logins, the installer's project, task types,
  the scenario name); a malformed key or login must be refused before DSS is asked anything;
- what DSS answers: per example, the simulator gains a project (its key sometimes hostile too) whose notebook,
  session, job, webapp, continuous activity, code studio and running scenario carry hostile ids, and a future
  with a hostile id; every command runs with --apply / simulate false and rules that select everything.

After each run, every request in the simulator's log must match `tests/hostile_dss.ALLOWED_ROUTES` (a path a
face may call), name a project DSS has, and, for a read or stop of one activity, name an id DSS listed.
`scan` reads the host only and makes no DSS request: it is left out. One simulator for the module, bounded
examples.
"""
import contextlib
import io
import itertools
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dev.dss_runtime import MacroFailed, run_macro
from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import (code_studio, continuous_activity, future, instance, job, notebook, project,
                                        scenario, session, webapp)
from process_tracker import cli, identifiers, params
from process_tracker.errors import ProcessTrackerError
from tests.hostile_dss import outside_routes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])

ATTACKS = ["../admin/users/alice", "../projects/PROD", "..", ".", "%2e%2e/admin", "%2e%2e%2fadmin", "a/b", "a?b=1",
           "a#frag", "100%", "a%2Fb", "line\nforged", "nul\x00x", "caf\u00e9", "\u202eevil", "x" * 300, "A" * 5000,
           "PROD/../PROD", "//", "?", "#", "%"]
PIECES = st.sampled_from(["../", "%2e%2e/", "/", "?", "#", "%", "\n", "\x00", "\u00e9", "\u202e", "..", "P", "x"])
HOSTILE = st.sampled_from(ATTACKS) | st.lists(PIECES, min_size=1, max_size=6).map("".join)
ANY_ID = HOSTILE | st.sampled_from(["ok1", "Build_x_2024-01-01T00-00-00.000"])

COUNTER = itertools.count()


def registry():
    """What the simulator was seeded with, per kind (a simulator's `seeded` attribute)."""
    return {"projects": {"PROD"}, "notebook_session": {"s-prod"}, "job": {"j-prod"}, "future": {"f-prod"},
            "webapp": {"prodapp"}, "continuous_activity": set(), "code_studio": set(), "scenario": set()}


def baseline():
    return instance(projects=[project("PROD", notebooks=[notebook("nb", [session("alice", session_id="s-prod",
                                                                                 started_ago="30d",
                                                                                 idle_for="30d")])],
                                      jobs=[job("j-prod", "alice", started_ago="30d")],
                                      webapps=[webapp("prodapp", started_ago="30d")])],
                    futures=[future("f-prod", "bob", started_ago="30d")], abortDelay=0)


@pytest.fixture(scope="module")
def sim():
    """DSS answers ordinary ids: only the options are hostile."""
    s = Simulator(baseline())
    s.seeded = registry()
    with s.serve():
        yield s


@pytest.fixture(scope="module")
def hostile_sim():
    """DSS answers hostile ids (each example adds a project of them)."""
    s = Simulator(baseline())
    s.seeded = registry()
    with s.serve():
        yield s


@st.composite
def hostile_project(draw):
    """A project (and a future) whose ids are hostile; its key too, sometimes."""
    n = next(COUNTER)
    key = draw(st.sampled_from(["H%d" % n]) | HOSTILE.map(lambda v: v + str(n)), label="project key")
    ids = {kind: draw(ANY_ID, label=kind) + "-%d" % n for kind in
           ("notebook", "session", "job", "webapp", "continuous_activity", "code_studio", "scenario", "future")}
    proj = project(key, owner="alice",
                   notebooks=[notebook(ids["notebook"], [session("alice", session_id=ids["session"],
                                                                 started_ago="30d", idle_for="30d")])],
                   jobs=[job(ids["job"], "alice", started_ago="30d")],
                   webapps=[webapp(ids["webapp"], started_ago="30d")],
                   continuous_activities=[continuous_activity(ids["continuous_activity"], "bob",
                                                              started_ago="30d")],
                   code_studios=[code_studio(ids["code_studio"], "bob", started_ago="30d")],
                   scenarios=[scenario(ids["scenario"], running_by="alice", started_ago="30d",
                                       future_id="run-%d" % n)])
    ids["scenario_future"] = "run-%d" % n
    return key, ids, proj, future(ids["future"], "bob", started_ago="30d")


def seed(sim, drawn):
    key, ids, proj, fut = drawn
    sim.extend(instance(projects=[proj], futures=[fut], users=[], groups=[]))
    sim.seeded["projects"].add(key)
    for kind, name in (("notebook_session", "session"), ("job", "job"), ("webapp", "webapp"),
                       ("continuous_activity", "continuous_activity"), ("code_studio", "code_studio"),
                       ("scenario", "scenario"), ("future", "future")):
        sim.seeded[kind].add(ids[name])
    sim.seeded["future"].update({ids["scenario_future"], "wb-%s" % ids["webapp"], "ca-%s" % ids["continuous_activity"]})


def listed_ids(sim):
    """Every id DSS lists now (whatever the plugin could have listed), per kind; futures include scenario runs."""
    state = sim.state
    with state.lock:
        out = {kind: {t.id for t in state._tasks(kind)} for kind in ("session", "job", "future")}
    ids = dict(sim.seeded)
    ids["notebook_session"] = sim.seeded["notebook_session"] | out["session"]
    ids["job"] = sim.seeded["job"] | out["job"]
    ids["future"] = sim.seeded["future"] | out["future"]
    return ids


def check_requests(sim, before):
    new = sim.requests[before:]
    bad = outside_routes(new, sim.seeded["projects"], listed_ids(sim))
    assert bad == [], bad


# ---- what a user types -------------------------------------------------------------------------------------------

LIST_OPTIONS = {"projects": "project_key", "excludedProjects": "project_key", "users": "login",
                "excludedUsers": "login"}


@st.composite
def user_input(draw, macro_id):
    """A config with valid rules that select everything, plus some hostile and some valid list values."""
    names = {p.name: p for p in params.SPECS[macro_id]}
    config = {"simulate": False, "scanHost": False, "minRunningHours": 0, "maxIdleTimeHours": 0.001,
              "maxSessionAgeHours": 0.001, "dontKillBusyKernels": False, "dontKillConnectedKernels": False,
              "waitSeconds": 0}
    config = {k: v for k, v in config.items() if k in names}
    hostile = draw(st.booleans(), label="hostile options")
    keys = (HOSTILE | st.just("PROD")) if hostile else st.sampled_from(["PROD", "H0", "NOPE"])
    logins = (HOSTILE | st.just("alice")) if hostile else st.sampled_from(["alice", "bob", "nobody"])
    for name in [n for n in LIST_OPTIONS if n in names]:
        config[name] = draw(st.lists(keys if LIST_OPTIONS[name] == "project_key" else logins, max_size=2),
                            label=name)
    if "projectKey" in names:
        config["projectKey"] = draw(keys, label="projectKey")
    for name in ("taskTypes", "scenarioName"):
        if name in names:
            config[name] = draw(HOSTILE.map(lambda v: v.replace("\x00", "").replace("\n", " ").strip() or "x"), label=name)
    return config


def malformed(config):
    """True when a key or login of the config fails the identifiers gate (the run must stop before DSS)."""
    for name, kind in list(LIST_OPTIONS.items()) + [("projectKey", "project_key")]:
        values = config.get(name)
        values = [values] if isinstance(values, str) else values or []
        parts = [p.strip() for v in values for p in v.split(",") if p.strip()]
        if any(not identifiers.is_valid(kind, p) for p in parts):
            return True
    return False


def cli_argv(macro_id, config, sim):
    flags = {p.name: p.flag for p in params.SPECS[macro_id]}
    argv = ["--url", sim.url, "--api-key", sim.admin_key, params.MACROS[macro_id].cli_name, "--json"]
    for name, value in config.items():
        if name == "simulate":
            argv.append("--apply")
        elif name in ("scanHost", "dontKillBusyKernels", "dontKillConnectedKernels"):
            argv.append("--%s%s" % ("" if value else "no-", flags[name]))
        elif isinstance(value, list):
            argv += ["--%s=%s" % (flags[name], v) for v in value]
        else:
            argv.append("--%s=%s" % (flags[name], value))
    return argv


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as e:  # argparse usage errors (an option value argparse itself refuses)
            status = e.code
    return status, out.getvalue(), err.getvalue()


def run_face(sim, face, macro_id, config):
    """Run one CLI command or one macro (as DSS runs it) with `config`; checks what a user sees."""
    before = len(sim.requests)
    if face == "cli":
        status, out, err = run_cli(cli_argv(macro_id, config, sim))
        assert status in (0, 1, 2), err
        assert "unexpected" not in err and "Traceback" not in err, err
        refused = status != 0
    else:
        try:
            run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="PROD",
                      env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})
        except MacroFailed as failed:
            assert isinstance(failed.exception, ProcessTrackerError), repr(failed.exception)
            refused = True
        else:
            refused = False
    if malformed(config):
        assert refused and sim.requests[before:] == [], config
    return before


FACES = st.sampled_from(["cli", "macro"])


@EXAMPLES
@given(face=FACES, macro_id=st.sampled_from(sorted(params.MACROS)), data=st.data())
def test_hostile_options_never_steer_a_request(sim, face, macro_id, data):
    n = next(COUNTER)
    fresh = project("B%d" % n, jobs=[job("jb-%d" % n, "alice", started_ago="30d")],
                    webapps=[webapp("wb%d" % n, started_ago="30d")])
    sim.extend(instance(projects=[fresh], futures=[future("fb-%d" % n, "bob", started_ago="30d")], users=[],
                        groups=[]))
    sim.seeded["projects"].add("B%d" % n)
    sim.seeded["webapp"].add("wb%d" % n)
    config = data.draw(user_input(macro_id), label="options")
    before = run_face(sim, face, macro_id, config)
    check_requests(sim, before)
    excluded = {k for k in config.get("excludedProjects") or () if identifiers.is_valid("project_key", k)}
    stopped_there = [r.path for r in sim.actions[before:] if "/scenarios/" not in r.path
                     and any(r.path.startswith("/projects/%s/" % k) for k in excluded)]
    assert stopped_there == []


@settings(EXAMPLES, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: one failure is enough
@given(face=FACES, macro_id=st.sampled_from(sorted(params.MACROS)), data=st.data())
def test_hostile_ids_from_dss_never_steer_a_request(hostile_sim, face, macro_id, data):
    seed(hostile_sim, data.draw(hostile_project(), label="DSS answers"))
    config = data.draw(user_input(macro_id), label="options")
    before = run_face(hostile_sim, face, macro_id, config)
    check_requests(hostile_sim, before)
