"""The fault matrix: every face of the plugin (the macros, the CLI, the webapp) against every fault the simulated
DSS can inject, judged against the simulator's own log and state, never against the plugin's report alone.

    .venv/bin/python bench/reliability.py [--faces macro,cli,webapp] [--faults none,stop_hang,...] [--list]

One cell = one face run once against a fresh simulated instance (two projects, A and B, with stale and fresh
kernels, jobs, tasks, a running scenario, webapp backends, continuous activities and code studios), with one fault
injected. Client timeout 1 s, stops verified for 2 s, hung calls hang 1.5 s. For each cell:

- finished: the run returned a result or a readable error (macro: a table or a ProcessTrackerError's message;
  CLI: exit 0, or exit 1 with one `process-tracker: error:` line; webapp: a JSON answer or envelope, never a 500)
  and nothing was logged as an unexpected exception;
- wrong aborts: stop requests (and state changes) on anything the face did not decide to stop, plus every stop
  request beyond the first for one object (actions are never retried): must be 0;
- mismatches: where the fault's effect is predictable, the stops sent and performed against the model below
  (a stop is sent when none of the reads it depends on is broken; performed unless the stop call itself fails);
- misreports: a row saying "aborted" for something still running, "failed" for something DSS did stop, or
  "spared"/"would_act"/"already_finished" for something a stop was sent to;
- leaks: the API key, a token planted in a task's payload, or a traceback, in any table, message, CLI output,
  webapp answer or log record.

Imported by tests/integration/test_reliability_faults.py, which runs cells of the same matrix.
"""
import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from dev.dss_runtime import MacroFailed, load_webapp_app, run_macro  # noqa: E402
from dev.dss_simulator import Simulator  # noqa: E402
from dev.dss_simulator.builders import (  # noqa: E402
    code_studio,
    continuous_activity,
    default_groups,
    future,
    instance,
    job,
    notebook,
    project,
    scenario,
    session,
    user,
    webapp,
)

TIMEOUT_SECONDS = 1.0  # every DSS call of every face (connect, read)
WAIT_SECONDS = 2.0  # how long stops are verified (macro/CLI waitSeconds); the webapp's own wait is 10 s
HANG_SECONDS = 1.5  # how long a hung call hangs on the server side
LATE_SECONDS = 1.5  # a late stop answers after this (above the timeout, below the wait): done, but not in time

ADMIN_KEY = "dkuaps-reliability-ADMIN-4f1d8c2b9e7a6035"
PLANTED_TOKEN = "planted-token-9c1e5f7a3b2d4086"  # in a task's payload extras: never to be shown
SECRETS = (ADMIN_KEY, PLANTED_TOKEN)
RUNNABLES = os.path.join(ROOT, "python-runnables")
WEBAPP_DIR = os.path.join(ROOT, "webapps", "process-monitor")
CLI = os.path.join(os.path.dirname(sys.executable), "process-tracker")

# which requests a fault hits (regexes on the path under /dip/publicapi)
LISTING = r"^/(admin/notebooks|futures|jobs/running|projects/[^/]+/(webapps|continuous-activities|code-studios|jupyter-notebooks))/$"
PROBE = (r"^/(futures/[^/]+|projects/[^/]+/(jupyter-notebooks/.+/sessions|jobs/[^/]+/|webapps/[^/]+/backend/state"
         r"|continuous-activities/[^/]+/|code-studios/[^/]+/status))$")
STOP = r"^/(futures/[^/]+|projects/[^/]+/(jupyter-notebooks/.+/sessions/[^/]+|jobs/[^/]+/abort|webapps/[^/]+/backend/actions/stop|continuous-activities/[^/]+/stop|code-studios/[^/]+/stop|scenarios/[^/]+/abort))$"
STOP_METHODS = ("DELETE", "POST", "PUT")


# ---- the instance ----------------------------------------------------------------------------------------------



def _summary(header):
    """A report header without the "(DSS x, dataikuapi y)" it ends with: the outcome the matrix judges."""
    return re.sub(r" \(DSS [^()]*, dataikuapi [^()]*\)$", "", header)

@dataclass(frozen=True)
class Obj:
    """One object of the instance that a face may stop: its plugin kind and id, project, and notebook."""

    kind: str
    id: str
    project: Optional[str]
    notebook: Optional[str] = None

    @property
    def sim_kind(self):
        return {"notebook_session": "session", "scenario": "future"}.get(self.kind, self.kind)

    def stop(self) -> Tuple[str, str]:
        """The (method, path) of the call that stops it."""
        pk, i = self.project, self.id
        return {
            "notebook_session": ("DELETE", "/projects/%s/jupyter-notebooks/%s/sessions/%s" % (pk, self.notebook, i)),
            "future": ("DELETE", "/futures/%s" % i),
            "scenario": ("DELETE", "/futures/%s" % i),
            "job": ("POST", "/projects/%s/jobs/%s/abort" % (pk, i)),
            "webapp": ("PUT", "/projects/%s/webapps/%s/backend/actions/stop" % (pk, i)),
            "continuous_activity": ("POST", "/projects/%s/continuous-activities/%s/stop" % (pk, i)),
            "code_studio": ("POST", "/projects/%s/code-studios/%s/stop" % (pk, i)),
        }[self.kind]

    def reads(self, face_type) -> List[Tuple[str, str]]:
        """The reads a run needs to succeed before it may stop this object (listing, re-check)."""
        pk, i = self.project, self.id
        common = [("GET", "/auth/info"), ("GET", "/admin/groups/")]
        if face_type == "webapp":  # identity, then a fresh listing of the kind (and project), then the re-check
            common = [("POST", "/auth/info-from-browser-headers"), ("GET", "/admin/groups/administrators")]
        own = {
            "notebook_session": [("GET", "/admin/notebooks/"),
                                 ("GET", "/projects/%s/jupyter-notebooks/%s/sessions" % (pk, self.notebook))],
            # a background task is acted on only once what every future runs is known: the webapps' backend
            # states and the continuous activities of every project (A and B)
            "future": [("GET", "/futures/"), ("GET", "/futures/%s" % i), ("GET", "/projects/")]
            + [r for p in "AB" for r in (("GET", "/projects/%s/webapps/" % p),
                                         ("GET", "/projects/%s/webapps/w-%s/backend/state" % (p, p)),
                                         ("GET", "/projects/%s/continuous-activities/" % p))],
            "scenario": [("GET", "/futures/"), ("GET", "/futures/%s" % i)],
            "job": [("GET", "/jobs/running/"), ("GET", "/projects/%s/jobs/%s/" % (pk, i))],
            "webapp": [("GET", "/projects/"), ("GET", "/projects/%s/webapps/" % pk),
                       ("GET", "/projects/%s/webapps/%s/backend/state" % (pk, i))],
            "continuous_activity": [("GET", "/projects/"), ("GET", "/projects/%s/continuous-activities/" % pk),
                                    ("GET", "/projects/%s/continuous-activities/%s/" % (pk, i))],
            "code_studio": [("GET", "/projects/"), ("GET", "/projects/%s/code-studios/" % pk),
                            ("GET", "/projects/%s/code-studios/%s/status" % (pk, i))],
        }[self.kind]
        return common + own


def stale_session(p):
    return Obj("notebook_session", "s-%s-stale" % p, p, "stale")


S_A, S_B = stale_session("A"), stale_session("B")
J_A, J_B = Obj("job", "j-A-long", "A"), Obj("job", "j-B-long", "B")
F_A, F_B = Obj("future", "f-A-long", None), Obj("future", "f-B-long", None)
SC_A = Obj("scenario", "f-sc-A", "A")
SERVICES = tuple(Obj(k, "%s-%s" % (prefix, p), p) for p in "AB"
                 for k, prefix in (("webapp", "w"), ("continuous_activity", "ca"), ("code_studio", "cs")))


def reliability_instance():
    """Two projects with something to stop and something to spare of every kind; an admin key that looks like
    one and a token planted in a task's payload (both must never be shown)."""
    users = [user("admin", ["administrators"], "Admin", keys=[ADMIN_KEY]), user("alice", ["data_scientists"]),
             user("bob", ["data_scientists"]), user("ops", ["ops_team"], "Ops")]

    def proj(p, with_scenario):
        return project(
            p,
            notebooks=[notebook("stale", [session("alice", session_id="s-%s-stale" % p, started_ago="3d",
                                                  idle_for="36h")]),
                       notebook("fresh", [session("bob", session_id="s-%s-fresh" % p, started_ago="2h",
                                                  idle_for="5m")])],
            jobs=[job("j-%s-long" % p, "alice", started_ago="30h"), job("j-%s-short" % p, "bob", started_ago="1h")],
            webapps=[webapp("w-%s" % p, started_ago="5d")],
            continuous_activities=[continuous_activity("ca-%s" % p, "bob", started_ago="10d")],
            code_studios=[code_studio("cs-%s" % p, "bob", started_ago="4d")],
            scenarios=[scenario("NIGHTLY", running_by="bob", started_ago="26h", future_id="f-sc-%s" % p)]
            if with_scenario else [],
        )

    return instance(
        projects=[proj("A", True), proj("B", False)],
        futures=[
            future("f-A-long", "bob", started_ago="36h", action="train_model", extras={"token": PLANTED_TOKEN},
                   targets=[{"objectType": "SAVED_MODEL", "projectKey": "A", "objectId": "m1"}]),
            future("f-B-long", "alice", started_ago="36h", action="export_dataset",
                   targets=[{"objectType": "DATASET", "projectKey": "B", "objectId": "d1"}]),
            future("f-short", "alice", started_ago="2h", action="export_dataset",
                   targets=[{"objectType": "DATASET", "projectKey": "A", "objectId": "d2"}]),
        ],
        users=users,
        groups=default_groups(),
        abortDelay=0,
    )


# ---- faces -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    name: str
    type: str  # "macro", "cli" or "webapp"
    command: str  # macro id, or CLI sub-command
    config: Dict[str, object] = field(default_factory=dict)
    targets: Tuple[Obj, ...] = ()  # what it decides to stop, fault-free (checked by the "none" cell)


def _macro(macro_id, targets, **config):
    return Face("macro %s" % macro_id, "macro", macro_id, config, tuple(targets))


FACES = {f.name: f for f in (
    _macro("kill-idle-kernels", (S_A, S_B)),
    _macro("abort-background-tasks", (F_A, F_B, SC_A)),
    _macro("abort-long-jobs", (J_A, J_B)),
    _macro("stop-idle-services", SERVICES, serviceKinds=["webapp", "continuous_activity", "code_studio"]),
    _macro("running-activities", ()),
    Face("macro install-cleanup-scenario", "macro", "install-cleanup-scenario", {"projectKey": "B"}),
    Face("cli kill-kernels", "cli", "kill-kernels", {}, (S_A, S_B)),
    Face("cli abort-tasks", "cli", "abort-tasks", {}, (F_A, F_B, SC_A)),
    Face("cli abort-jobs", "cli", "abort-jobs", {}, (J_A, J_B)),
    Face("webapp", "webapp", "apply", {}, (S_A, S_B, J_A, F_A)),
)}


# ---- faults ----------------------------------------------------------------------------------------------------

# what a rule does to the requests it hits
BREAKS_READS = ("slow", "hang", "error", "malformed")  # a read hit by these fails (after its retries)
BLOCKS_STOPS = ("hang", "error")  # a stop hit by these is not performed (slow and malformed ones are)


@dataclass(frozen=True)
class FaultSpec:
    name: str
    what: str
    rules: Tuple[Tuple[Optional[str], str, str], ...] = ()  # (method or None, path regex, effect)
    predictable: bool = True  # False: only the invariants are checked (flaky or timing-dependent faults)
    special: Optional[str] = None  # "revoke_mid_run", "revoked", "down", "project_500"


def _stops(effect):
    return tuple((m, STOP, effect) for m in STOP_METHODS)


FAULTS = {f.name: f for f in (
    FaultSpec("none", "no fault"),
    FaultSpec("latency", "50 ms on every call", ((None, ".*", "latency"),)),
    FaultSpec("listing_500", "listing calls answer 500", (("GET", LISTING, "error"),)),
    FaultSpec("listing_hang", "listing calls hang", (("GET", LISTING, "hang"),)),
    FaultSpec("listing_malformed", "listing calls answer broken JSON", (("GET", LISTING, "malformed"),)),
    FaultSpec("probe_500", "re-checks (state reads) answer 500", (("GET", PROBE, "error"),)),
    FaultSpec("flaky_reads", "30% of reads answer 500 (seeded)", (("GET", ".*", "flaky"),), predictable=False),
    FaultSpec("stop_500", "stop calls answer 500", _stops("error")),
    FaultSpec("stop_hang", "stop calls hang", _stops("hang")),
    FaultSpec("stop_late", "stop calls answer after the timeout", _stops("slow")),
    FaultSpec("stop_malformed", "stop calls answer broken JSON", _stops("malformed")),
    FaultSpec("project_500", "every call on project B answers 500", ((None, r"^/projects/B/", "error"),),
              special="project_500"),
    FaultSpec("project_hang", "every call on project B hangs", ((None, r"^/projects/B/", "hang"),)),
    FaultSpec("revoked_mid_run", "API key revoked after the first stop", predictable=False,
              special="revoke_mid_run"),
    FaultSpec("revoked", "API key revoked before the run", ((None, ".*", "error"),), special="revoked"),
    FaultSpec("api_down", "nothing listening", ((None, ".*", "error"),), special="down"),
)}


def inject(sim, fault):
    """Set the simulator up for `fault` (except what needs the run: see RevokeAfterFirstStop)."""
    sim.set_hang_seconds(HANG_SECONDS)
    sim.seed(7)
    if fault.special == "project_500":
        sim.fail_project("B")
        return
    if fault.special == "revoked":
        sim.revoke_key(ADMIN_KEY)
        return
    if fault.special == "revoke_mid_run":
        sim.add_fault(path=".*", latency=0.1)  # widens the window in which the revocation lands
        return
    if fault.special == "down":
        return
    for method, path, effect in fault.rules:
        kwargs = {"latency": {"latency": 0.05}, "slow": {"latency": LATE_SECONDS}, "hang": {"hang": True},
                  "error": {"error_rate": 1.0}, "malformed": {"malformed": True},
                  "flaky": {"error_rate": 0.3}}[effect]
        sim.add_fault(path=path, method=method, **kwargs)


def _hits(fault, method, path, effects):
    return any((m is None or m == method) and re.search(rx, path) and effect in effects
               for m, rx, effect in fault.rules)


def expected(face, fault):
    """(sent, performed): the stops the face should send and the ones DSS should perform, or None when the fault's
    effect is not predictable."""
    if not fault.predictable:
        return None
    sent, performed = set(), set()
    for obj in face.targets:
        if any(_hits(fault, m, p, BREAKS_READS) for m, p in obj.reads(face.type)):
            continue
        sent.add(obj)
        if not _hits(fault, *obj.stop(), BLOCKS_STOPS):
            performed.add(obj)
    return sent, performed


class RevokeAfterFirstStop(threading.Thread):
    """Revokes `key` as soon as the simulator has answered a first stop request."""

    def __init__(self, sim, key):
        super().__init__(name="revoke-after-first-stop", daemon=True)
        self.sim, self.key = sim, key
        self.done = threading.Event()
        self.revoked = False

    def run(self):
        while not self.done.is_set():
            if any(r.method in STOP_METHODS and re.search(STOP, r.path) for r in self.sim.requests):
                self.sim.revoke_key(self.key)
                self.revoked = True
                return
            self.done.wait(0.002)

    def stop(self):
        self.done.set()
        self.join(5)


# ---- running one cell ------------------------------------------------------------------------------------------


@dataclass
class Cell:
    face: str
    fault: str
    finished: bool = False
    outcome: str = ""  # what the user saw: a table's header, the error message, or the webapp's HTTP statuses
    stops: int = 0  # stop requests received
    wrong_aborts: int = 0
    mismatches: int = 0
    misreports: int = 0
    leaks: int = 0
    seconds: float = 0.0
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self):
        return self.finished and not (self.wrong_aborts or self.mismatches or self.misreports or self.leaks)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextmanager
def _captured_logs():
    handler = _Records()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


@contextmanager
def short_timeouts(seconds=TIMEOUT_SECONDS):
    """Every client the plugin builds in this process gets `seconds` as its connect and read timeout."""
    from process_tracker import dss, webapp

    saved = (dss.DEFAULT_CONNECT_TIMEOUT_SECONDS, dss.DEFAULT_READ_TIMEOUT_SECONDS, webapp._default_client)
    dss.DEFAULT_CONNECT_TIMEOUT_SECONDS = dss.DEFAULT_READ_TIMEOUT_SECONDS = seconds
    webapp._default_client = lambda: dss.get_client(timeout=seconds)
    try:
        yield
    finally:
        dss.DEFAULT_CONNECT_TIMEOUT_SECONDS, dss.DEFAULT_READ_TIMEOUT_SECONDS, webapp._default_client = saved


@contextmanager
def _environ(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_macro(face, url, texts, cell):
    from process_tracker.errors import ProcessTrackerError

    config = dict(face.config)
    if face.command == "running-activities":
        config["scanHost"] = False
    elif face.command != "install-cleanup-scenario":
        config.update(simulate=False, scanHost=False, waitSeconds=WAIT_SECONDS)  # unknown keys are ignored
    try:
        result = run_macro(os.path.join(RUNNABLES, face.command), config, project_key="A",
                           env={"DKU_DSS_URL": url, "DKU_API_KEY": ADMIN_KEY})
    except MacroFailed as e:
        texts.append(e.message)
        cell.finished = isinstance(e.exception, ProcessTrackerError) and bool(e.message.strip())
        cell.outcome = "error: " + e.message
        if not cell.finished:
            cell.problems.append("unexpected %s: %s" % (e.exception.__class__.__name__, e.message))
        return {}
    texts.append(result.raw)
    cell.finished = True
    rows = result.rows()
    cell.outcome = _summary(result.table["header"])
    return {r["id"]: r.get("outcome", "") for r in rows if r.get("id")}


def _run_cli(face, url, texts, cell):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    env.update(DKU_DSS_URL=url, DKU_API_KEY=ADMIN_KEY, HOME=tempfile.gettempdir())
    cmd = [CLI, "--timeout", str(TIMEOUT_SECONDS), face.command, "--json", "--wait-seconds", str(WAIT_SECONDS), "--apply"]
    cmd += ["--no-scan-host"] if face.command == "kill-kernels" else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    texts.extend([proc.stdout, proc.stderr])
    err = proc.stderr.strip()
    if proc.returncode == 0:
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            cell.problems.append("exit 0 without JSON: %r" % proc.stdout[:200])
            return {}
        cell.finished = True
        cell.outcome = _summary(out["header"])
        return {r["id"]: r.get("outcome", "") for r in out["rows"] if r.get("id")}
    one_line = len(err.splitlines()) == 1 and err.startswith("process-tracker: error: ")
    cell.finished = proc.returncode == 1 and one_line
    cell.outcome = "exit %d: %s" % (proc.returncode, err)
    if not cell.finished:
        cell.problems.append("CLI exit %d, stderr %r" % (proc.returncode, err[:300]))
    return {}


class _Browser:
    """A fresh test client per request carrying the DSS session cookie (what a logged-in browser sends)."""

    def __init__(self, app, login):
        self.app, self.login = app, login

    def call(self, method, path, **kwargs):
        client = self.app.test_client()
        client.set_cookie("dss_sim_user", self.login)
        return getattr(client, method)(path, **kwargs)


def _run_webapp(face, url, texts, cell):
    history_dir = tempfile.mkdtemp(prefix="pt-reliability-")
    with short_timeouts(), _environ(DKU_DSS_URL=url, DKU_API_KEY=ADMIN_KEY, DIP_HOME=None):
        app = load_webapp_app(WEBAPP_DIR, config={"historyDir": history_dir, "samplingIntervalSeconds": 3600})
    state = app.extensions["process_tracker"]
    browser = _Browser(app, "admin")
    outcomes, statuses = {}, []
    csrf = {"X-Process-Tracker-CSRF": "1"}
    try:
        with short_timeouts(), _environ(DKU_DSS_URL=url, DKU_API_KEY=ADMIN_KEY):
            answers = [browser.call("get", "/api/whoami"), browser.call("get", "/api/table")]
            for obj in face.targets:
                body = {"kind": obj.kind, "project_key": obj.project, "id": obj.id}
                answers.append(browser.call("post", "/api/actions/preview", json=body, headers=csrf))
                applied = browser.call("post", "/api/actions/apply", json=dict(body, confirm=True), headers=csrf)
                answers.append(applied)
                payload = applied.get_json(silent=True) or {}
                outcomes[obj.id] = payload.get("outcome") or "http %d" % applied.status_code
        for a in answers:
            text = a.get_data(as_text=True)
            texts.append(text)
            statuses.append(a.status_code)
            body = a.get_json(silent=True)
            if (a.status_code >= 500 and a.status_code != 502) or not isinstance(body, dict):
                cell.problems.append("webapp answered %d: %s" % (a.status_code, text[:200]))
            elif a.status_code >= 400 and not (body.get("error") or {}).get("message"):
                cell.problems.append("webapp error without a message: %s" % text[:200])
    finally:
        state.sampler.stop()
    cell.finished = not cell.problems
    cell.outcome = "HTTP " + ",".join(str(s) for s, _ in sorted(Counter(statuses).items()))
    return outcomes


def _received_stops(sim):
    return [(r.method, r.path) for r in sim.requests if r.method in STOP_METHODS and re.search(STOP, r.path)]


def run_cell(face_name, fault_name):
    """Run one cell of the matrix and judge it (see the module docstring). Returns a Cell."""
    face, fault = FACES[face_name], FAULTS[fault_name]
    cell = Cell(face.name, fault.name)
    sim = Simulator(reliability_instance())
    url = sim.start()
    inject(sim, fault)
    watcher = None
    if fault.special == "down":
        sim.stop()
    elif fault.special == "revoke_mid_run":
        watcher = RevokeAfterFirstStop(sim, ADMIN_KEY)
        watcher.start()
    texts = []
    started = time.monotonic()
    try:
        with _captured_logs() as records, short_timeouts():
            runner = {"macro": _run_macro, "cli": _run_cli, "webapp": _run_webapp}[face.type]
            try:
                outcomes = runner(face, url, texts, cell)
            except Exception as e:  # a crash of the harness's call: the face did not finish
                cell.finished = False
                cell.problems.append("crashed: %s: %s" % (e.__class__.__name__, e))
                outcomes = {}
        cell.seconds = time.monotonic() - started
        if watcher is not None:
            watcher.stop()
        time.sleep(0.05 if fault.special != "down" else 0)
        if fault.special != "down":
            sim.clear_faults()
            if any(effect == "hang" for _, _, effect in fault.rules):
                time.sleep(HANG_SECONDS)  # let hung calls end, so that every request received is in the log
        _judge(cell, face, fault, sim, outcomes, texts, records)
    finally:
        if watcher is not None:
            watcher.stop()
        sim.stop()
    return cell


def _judge(cell, face, fault, sim, outcomes, texts, records):
    allowed = set(face.targets)
    by_stop = {o.stop(): o for o in face.targets}
    received = _received_stops(sim) if fault.special != "down" else []
    cell.stops = len(received)
    counts = Counter(received)
    sent = set()
    for request, n in counts.items():
        obj = by_stop.get(request)
        if obj is None:
            cell.wrong_aborts += n
            cell.problems.append("stop outside the decision: %s %s" % request)
            continue
        sent.add(obj)
        if n > 1:
            cell.wrong_aborts += n - 1
            cell.problems.append("stop sent %d times: %s %s" % ((n,) + request))
    other_writes = [r for r in sim.requests if r.method != "GET" and not re.search(STOP, r.path)
                    and r.path != "/auth/info-from-browser-headers"]
    if face.command == "install-cleanup-scenario":
        creates = [r for r in other_writes if r.method == "POST" and r.path == "/projects/B/scenarios/"]
        if len(creates) > 1:
            cell.wrong_aborts += len(creates) - 1
            cell.problems.append("scenario created %d times" % len(creates))
        other_writes = [r for r in other_writes if not r.path.startswith("/projects/B/scenarios")]
    for r in other_writes:
        cell.wrong_aborts += 1
        cell.problems.append("unexpected write: %s %s" % (r.method, r.path))
    performed = set()
    with sim.state.lock:
        changed = [(k, i) for (k, i), t in sim.state.tasks.items() if t.abort_requested_at is not None]
    for sim_kind, task_id in changed:
        obj = next((o for o in face.targets if (o.sim_kind, o.id) == (sim_kind, task_id)), None)
        if obj is None:
            cell.wrong_aborts += 1
            cell.problems.append("stopped outside the decision: %s %s" % (sim_kind, task_id))
        else:
            performed.add(obj)
    model = expected(face, fault)
    if model is not None:
        want_sent, want_performed = model
        for what, got, want in (("sent", sent, want_sent), ("performed", performed, want_performed)):
            for obj in sorted(got ^ want, key=lambda o: o.id):
                cell.mismatches += 1
                cell.problems.append("%s %s: expected %s" % (what, obj.id, obj in want))
    for obj in allowed:
        said = outcomes.get(obj.id)
        if said == "aborted" and obj not in performed:
            cell.misreports += 1
            cell.problems.append("%s reported aborted but still runs" % obj.id)
        if said in ("spared", "would_act", "already_finished") and obj in sent:
            cell.misreports += 1
            cell.problems.append("%s reported %s but a stop was sent" % (obj.id, said))
        if said == "failed" and obj in performed:
            cell.misreports += 1
            cell.problems.append("%s reported failed but DSS stopped it" % obj.id)
    log_texts = []
    for r in records:
        try:
            log_texts.append(r.getMessage())
        except Exception:  # a bad log call is itself a finding
            log_texts.append(str(r.msg))
        if r.exc_info and r.name.startswith("process_tracker"):
            cell.finished = False
            cell.problems.append("unexpected exception logged by %s: %s" % (r.name, r.getMessage()[:120]))
    for text in [t for t in texts if t] + log_texts:
        for secret in SECRETS:
            if secret in text:
                cell.leaks += 1
                cell.problems.append("secret %s... shown" % secret[:12])
    for text in texts:
        if text and "Traceback" in text:
            cell.leaks += 1
            cell.problems.append("a traceback was shown")


# ---- the bench -------------------------------------------------------------------------------------------------


def run_matrix(faces, faults, out=sys.stdout):
    cells = []
    for face in faces:
        for fault in faults:
            cell = run_cell(face, fault)
            cells.append(cell)
            flag = "ok" if cell.ok else "FAIL"
            out.write("%-34s %-18s %-4s %5.1f s  stops %-2d %s\n" % (face, fault, flag, cell.seconds, cell.stops,
                                                                     cell.outcome[:80]))
            for p in cell.problems:
                out.write("      - %s\n" % p)
            out.flush()
    return cells


def summary(cells):
    """The figures of bench/RESULTS.md: cells, faults injected, completed runs, wrong aborts, leaks..."""
    return {
        "cells": len(cells),
        "faults_injected": sum(1 for c in cells if c.fault != "none"),
        "runs_completed": sum(1 for c in cells if c.finished),
        "stops_received": sum(c.stops for c in cells),
        "wrong_aborts": sum(c.wrong_aborts for c in cells),
        "model_mismatches": sum(c.mismatches for c in cells),
        "misreports": sum(c.misreports for c in cells),
        "leaked_secrets": sum(c.leaks for c in cells),
        "longest_cell_seconds": round(max((c.seconds for c in cells), default=0.0), 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", default="", help="face types or names, comma-separated (default: all)")
    parser.add_argument("--faults", default="", help="fault names, comma-separated (default: all)")
    parser.add_argument("--list", action="store_true", help="list faces and faults and exit")
    args = parser.parse_args(argv)
    if args.list:
        for f in FACES.values():
            print("face  %-34s stops %s" % (f.name, ", ".join(o.id for o in f.targets) or "-"))
        for f in FAULTS.values():
            print("fault %-18s %s" % (f.name, f.what))
        return 0
    wanted = [w.strip() for w in args.faces.split(",") if w.strip()]
    faces = [n for n, f in FACES.items() if not wanted or f.type in wanted or n in wanted]
    faults = [n for n in FAULTS if not args.faults or n in args.faults.split(",")]
    started = time.monotonic()
    cells = run_matrix(faces, faults)
    figures = summary(cells)
    print()
    print("| faces | faults | cells | runs completed | stops received | wrong aborts | model mismatches | "
          "misreports | leaked secrets | wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("| %d | %d | %d | %d | %d | %d | %d | %d | %d | %.0f s |" % (
        len(faces), len(faults), figures["cells"], figures["runs_completed"], figures["stops_received"],
        figures["wrong_aborts"], figures["model_mismatches"], figures["misreports"], figures["leaked_secrets"],
        time.monotonic() - started))
    bad = [c for c in cells if not c.ok]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
