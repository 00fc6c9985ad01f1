"""The fault matrix: every face of the plugin (the macros, the CLI, the webapp) against every fault the simulated
DSS can inject, judged against the simulator's own log and state, never against the plugin's report alone.

    .venv/bin/python bench/reliability.py [--faces macro,cli,webapp] [--faults none,stop_hang,...|issue12] [--list]

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
  webapp answer or log record;
- views blocked (webapp): the host views (/api/snapshot, /api/history, /api/table) are timed first thing, while
  the fault is on; one slower than VIEW_LIMIT_SECONDS (2 s) is blocked: must be 0;
- time past the deadline: the run's time from its first DSS request to its end, minus its budget: the same
  face's fault-free time plus one call deadline (DEADLINE_SECONDS) per wave of calls the fault can hold or make retry
  (`_Arrivals.waves`); printed per cell, its maximum per fault in the last table (must be <= 1 s for the faults of
  issue 12; the verification waits of hung stops, 10 s per stop in the webapp, are not in that budget).

The faults of issue 12 (`--faults issue12`): a DSS trickling its answers, answers over `dss.MAX_ANSWER_BYTES`
(streamed), wrong JSON types and non-finite numbers (the simulator's real answers rewritten on the way out), a
proxy's HTML 502 page, one slow endpoint, a /proc mounted hidepid=1 with the face run as `nobody` (root only;
a fleet of root's and another user's DSS-shaped processes runs meanwhile), and a truncated, garbled or read-only
history (the webapp only). Each runs on the faces it concerns (`FaultSpec.faces`).

Imported by tests/integration/test_reliability_faults.py, which runs cells of the same matrix.
"""
import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from dev.dss_runtime import MacroFailed, load_webapp_app, run_macro  # noqa: E402
from dev.dss_simulator import Simulator  # noqa: E402
from hostile_dss import html_errors, literal, oversized, rewrite_answers, set_fields, trickle  # noqa: E402
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
SLOW_SECONDS = 45.0  # one slow endpoint: far beyond every deadline
TRICKLE_GAP_SECONDS = 0.2  # a trickling answer sends one byte this often (a per-read timeout never fires)
VIEW_LIMIT_SECONDS = 2.0  # a host view (snapshot, history, table) slower than this while DSS misbehaves is "blocked"
# the total deadline of one DSS call (dss.install_timeouts): the macros' client has the (connect, read) pair of
# short_timeouts (deadline: their sum), the CLI and the webapp a single timeout (deadline: that timeout)
DEADLINE_SECONDS = {"macro": 2 * TIMEOUT_SECONDS, "cli": TIMEOUT_SECONDS, "webapp": TIMEOUT_SECONDS}
HOST_VIEWS = ("/api/snapshot", "/api/history?window=1h", "/api/table")

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
    Face("webapp views", "webapp", "views", {}, ()),  # the page opened and read: identity, the host views, no action
)}


# ---- faults ----------------------------------------------------------------------------------------------------

# what a rule does to the requests it hits
BREAKS_READS = ("slow", "hang", "error", "malformed",  # a read hit by these fails (after its retries)
                "trickle", "oversized", "html", "very_slow", "as_object")
# a call hit by these may last until its deadline: held by DSS, or a read retried (5xx, a proxy's 502 page)
HOLDS_CALLS = ("slow", "hang", "trickle", "oversized", "very_slow", "error", "flaky", "html")
BLOCKS_STOPS = ("hang", "error")  # a stop hit by these is not performed (slow and malformed ones are)


@dataclass(frozen=True)
class FaultSpec:
    name: str
    what: str
    rules: Tuple[Tuple[Optional[str], str, str], ...] = ()  # (method or None, path regex, effect)
    predictable: bool = True  # False: only the invariants are checked (flaky or timing-dependent faults)
    special: Optional[str] = None  # "revoke_mid_run", "revoked", "down", "project_500", "hidepid", "history_*"...
    faces: Optional[Tuple[str, ...]] = None  # the faces (types or names) the fault is run against; None: all
    spoils: Tuple[str, ...] = ()  # ids of the objects whose records the fault damages: never to be acted on


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
    # issue 12: answers slow, huge or odd, a host that hides processes, a damaged history
    FaultSpec("trickle", "listing calls answer one byte every 0.2 s", (("GET", LISTING, "trickle"),)),
    FaultSpec("oversized", "instance-wide listings answer a JSON list over dss.MAX_ANSWER_BYTES (streamed)",
              (("GET", r"^/(admin/notebooks|futures|jobs/running)/$", "oversized"),)),
    FaultSpec("wrong_types", "the project list answered as an object; strings for 3 start times",
              (("GET", r"^/projects/$", "as_object"),), special="wrong_types",
              spoils=("f-A-long", "s-B-stale", "j-A-long")),
    FaultSpec("non_finite", "start times 1e999, NaN, 1e20 ms; a kernelPid 1e999", special="non_finite",
              spoils=("f-A-long", "f-B-long", "j-B-long", "s-A-stale")),
    FaultSpec("html_502", "listing calls answer a proxy's HTML 502 page", (("GET", LISTING, "html"),)),
    FaultSpec("slow_futures", "only GET /futures/ slowed to 45 s", (("GET", r"^/futures/$", "very_slow"),)),
    FaultSpec("hidepid", "/proc hidepid=1, the face run as nobody; a fleet of other users' processes",
              special="hidepid", faces=("macro kill-idle-kernels", "macro running-activities", "cli kill-kernels",
                                        "webapp")),
    FaultSpec("history_truncated", "the history file truncated to half", special="history", faces=("webapp",)),
    FaultSpec("history_garbage", "the history file's header overwritten", special="history", faces=("webapp",)),
    FaultSpec("history_readonly", "the history folder on a read-only mount", special="history",
              faces=("webapp",)),
)}
ISSUE_12 = ("trickle", "oversized", "wrong_types", "non_finite", "html_502", "slow_futures", "hidepid",
            "history_truncated", "history_garbage", "history_readonly")

# what wrong_types and non_finite change in every answer DSS gives (listings and re-checks alike)
ODD_VALUES = {
    "wrong_types": {("jobId", "f-A-long"): {"startTime": "yesterday"},
                    ("sessionId", "s-B-stale"): {"sessionStartTime": "3 days ago"},
                    ("def.id", "j-A-long"): {"startTime": "30h", "jobStartTime": "30h"}},
    "non_finite": {("jobId", "f-A-long"): {"startTime": literal("1e999")},
                   ("jobId", "f-B-long"): {"startTime": literal("NaN")},
                   ("def.id", "j-B-long"): {"startTime": 1e20, "jobStartTime": 1e20},
                   ("sessionId", "s-A-stale"): {"kernelPid": literal("1e999")}},
}


def runs_on(fault, face):
    return fault.faces is None or face.name in fault.faces or face.type in fault.faces


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
    if fault.special in ODD_VALUES:
        rewrite_answers(sim, ".*", lambda value, changes=ODD_VALUES[fault.special]: set_fields(value, changes))
    wrappers = {"trickle": lambda path: trickle(sim, path, gap_seconds=TRICKLE_GAP_SECONDS),
                "oversized": lambda path: oversized(sim, path, _max_answer_bytes() + 1),
                "html": lambda path: html_errors(sim, path),
                "as_object": lambda path: rewrite_answers(sim, path, lambda value: {"items": value})}
    for method, path, effect in fault.rules:
        if effect in wrappers:  # answers built outside the simulator's routes (WSGI), over the same HTTP
            wrappers[effect](path)
            continue
        kwargs = {"latency": {"latency": 0.05}, "slow": {"latency": LATE_SECONDS}, "hang": {"hang": True},
                  "error": {"error_rate": 1.0}, "malformed": {"malformed": True},
                  "flaky": {"error_rate": 0.3}, "very_slow": {"latency": SLOW_SECONDS}}[effect]
        sim.add_fault(path=path, method=method, **kwargs)


def _max_answer_bytes():
    from process_tracker import dss

    return dss.MAX_ANSWER_BYTES


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
        if obj.id in fault.spoils or any(_hits(fault, m, p, BREAKS_READS) for m, p in obj.reads(face.type)):
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
    dss_seconds: float = 0.0  # from the run's first DSS request to its end (start-up left out: the CLI's
    # interpreter, the webapp's load and first host scan)
    ready_monotonic: float = 0.0  # (monotonic) when the face was ready to be used: the webapp loaded and sampled
    past_deadline_seconds: float = 0.0  # dss_seconds - budget_seconds(the face's fault-free dss_seconds)
    views_blocked: int = 0  # webapp: host views (HOST_VIEWS) slower than VIEW_LIMIT_SECONDS
    view_seconds: Dict[str, float] = field(default_factory=dict)
    waves: int = 0  # waves of calls the fault could hold until their deadline (arrivals >= half a deadline apart)
    deadline_seconds: float = 0.0  # of one DSS call of this face
    notes: List[str] = field(default_factory=list)  # what the user saw besides the outcome (banners, stats)

    @property
    def ok(self):
        return self.finished and not (self.wrong_aborts or self.mismatches or self.misreports or self.leaks
                                      or self.views_blocked)

    def budget_seconds(self, baseline_seconds):
        """The run's deadline: the same face's fault-free time plus one call deadline per wave of held calls."""
        return baseline_seconds + self.waves * self.deadline_seconds


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
    scan_host = cell.fault == "hidepid"  # the host is read only where the fault is the host's
    if face.command == "running-activities":
        config["scanHost"] = scan_host
    elif face.command != "install-cleanup-scenario":
        config.update(simulate=False, scanHost=scan_host, waitSeconds=WAIT_SECONDS)  # unknown keys are ignored
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
    env.update(DKU_DSS_URL=url, DKU_API_KEY=ADMIN_KEY, HOME=tempfile.gettempdir(),
               PYTHONPATH=os.path.join(ROOT, "python-lib"))  # this checkout's code, whatever the venv points at
    cmd = [CLI, "--timeout", str(TIMEOUT_SECONDS), face.command, "--json", "--wait-seconds", str(WAIT_SECONDS), "--apply"]
    if cell.fault == "hidepid":
        if not _can_hide_pids():
            cell.problems.append("not run: a hidepid /proc needs root, unshare and setpriv")
            return {}
        python, env["PYTHONPATH"] = _as_nobody()
        cmd = AS_NOBODY_WITH_HIDEPID + [python, "-m", "process_tracker"] + cmd[1:]
    cmd += ["--no-scan-host"] if face.command == "kill-kernels" and cell.fault != "hidepid" else []
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


def _remount(mountpoint, mode):
    """Remount read-only or read-write, again for a while when the kernel still says busy."""
    for _ in range(50):
        done = subprocess.run(["mount", "-o", "remount,%s" % mode, mountpoint], capture_output=True, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("cannot remount %s %s: %s" % (mountpoint, mode, done.stderr.decode(errors="replace")))


def _history_dir(fault, cleanups):
    """The webapp's history folder: a new one, or (history_* faults) a filled history damaged for real on disk:
    truncated, its header overwritten, or on a tmpfs remounted read-only (needs root)."""
    base = tempfile.mkdtemp(prefix="pt-reliability-")
    if fault.special != "history":
        return base
    import sqlite3

    from process_tracker.history import HistoryStore
    from sample_records import snapshot

    if fault.name == "history_readonly":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", base], check=True, capture_output=True)
        cleanups.append(lambda: subprocess.run(["umount", "-l", base], check=False))
    store = HistoryStore(os.path.join(base, "history"))
    for i in range(3):
        store.record(snapshot(time.time() - 10 * (3 - i)))
    conn = sqlite3.connect(store.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, as after a quiet period
    conn.close()
    if fault.name == "history_truncated":
        os.truncate(store.path, os.path.getsize(store.path) // 2)
    elif fault.name == "history_garbage":
        with open(store.path, "r+b") as f:
            f.write(b"this is no sqlite header at all!")
    else:
        _remount(base, "ro")
    return store.directory


def _host_views(browser, cell, answers):
    """The host views, timed: a view slower than VIEW_LIMIT_SECONDS is blocked (by DSS, the only slow party here)."""
    for path in HOST_VIEWS:
        started = time.monotonic()
        answer = browser.call("get", path)
        cell.view_seconds[path] = round(time.monotonic() - started, 2)
        if cell.view_seconds[path] > VIEW_LIMIT_SECONDS:
            cell.views_blocked += 1
            cell.problems.append("%s took %.1f s" % (path, cell.view_seconds[path]))
        answers.append(answer)
    body, table = (answers[-3].get_json(silent=True) or {}), (answers[-1].get_json(silent=True) or {})
    stats, history = body.get("stats") or {}, body.get("history_state") or {}
    error = (body.get("error") or {}).get("message")
    cell.notes.append("snapshot: %s" % ("error: %s" % error if error else "sample %s; stats %s; history %s" % (
        "yes" if body.get("taken_at") else "none", json.dumps(stats, sort_keys=True),
        history.get("reason") or history.get("notice") or "ok")))
    cell.notes.append("table: %s host rows; listing: %s; errors: %s" % (
        len(table.get("rows") or ()), (table.get("listing") or {}).get("note"),
        " | ".join(sorted(e.get("message", "") for e in table.get("errors") or ())) or "none"))


def _readable_error(answer, body):
    """A 503 from the history (read-only, full) is an answer with its reason, not a failure of the webapp."""
    code = ((body or {}).get("error") or {}).get("code")
    return answer.status_code == 502 or (answer.status_code == 503 and code == "history_unavailable")


def _sampled(state, seconds=30.0):
    """Wait (bounded) until the sampler has tried its first sample: the host views are served from it."""
    until = time.monotonic() + seconds
    while not (state.sampler.samples or state.sampler.errors) and time.monotonic() < until:
        time.sleep(0.05)


def _run_webapp(face, url, texts, cell):
    cleanups = []
    history_dir = _history_dir(FAULTS[cell.fault], cleanups)
    with short_timeouts(), _environ(DKU_DSS_URL=url, DKU_API_KEY=ADMIN_KEY, DIP_HOME=None):
        app = load_webapp_app(WEBAPP_DIR, config={"historyDir": history_dir, "samplingIntervalSeconds": 3600})
    state = app.extensions["process_tracker"]
    browser = _Browser(app, "admin")
    outcomes, statuses = {}, []
    csrf = {"X-Process-Tracker-CSRF": "1"}
    try:
        if FAULTS[cell.fault].special in ("hidepid", "history"):  # faults of the host: the views need a sample
            _sampled(state)
        cell.ready_monotonic = time.monotonic()
        with short_timeouts(), _environ(DKU_DSS_URL=url, DKU_API_KEY=ADMIN_KEY):
            answers = [browser.call("get", "/api/whoami")]
            _host_views(browser, cell, answers)
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
            if (a.status_code >= 500 and not _readable_error(a, body)) or not isinstance(body, dict):
                cell.problems.append("webapp answered %d: %s" % (a.status_code, text[:200]))
            elif a.status_code >= 400 and not (body.get("error") or {}).get("message"):
                cell.problems.append("webapp error without a message: %s" % text[:200])
    finally:
        state.sampler.stop()
        for cleanup in cleanups:
            cleanup()
    cell.finished = not [p for p in cell.problems if " took " not in p]
    cell.outcome = "HTTP " + ",".join(str(s) for s, _ in sorted(Counter(statuses).items()))
    return outcomes


def _received_stops(sim):
    return [(r.method, r.path) for r in sim.requests if r.method in STOP_METHODS and re.search(STOP, r.path)]


class _Arrivals:
    """The outermost WSGI wrapper of a simulator: when each request arrived, before any fault held it."""

    def __init__(self, sim):
        self.seen = []
        inner = sim.app.wsgi_app

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path.startswith("/dip/publicapi"):
                self.seen.append((time.monotonic(), environ.get("REQUEST_METHOD"), path[len("/dip/publicapi"):]))
            return inner(environ, start_response)

        sim.app.wsgi_app = app

    def waves(self, fault, deadline_seconds):
        """Waves of calls the fault may hold until their deadline: hit calls arriving at least half a deadline
        after the first call of the current wave start a new one (calls fanned out together are one wave)."""
        waves, start = 0, None
        for at in sorted(t for t, method, path in self.seen if _hits(fault, method, path, HOLDS_CALLS)):
            if start is None or at - start >= deadline_seconds / 2:
                waves, start = waves + 1, at
        return waves


# run a command as `nobody` in a private mount namespace whose /proc is mounted hidepid=1 (other users'
# /proc/<pid> unreadable), as on a hardened host (needs root; the host's own /proc is untouched)
AS_NOBODY_WITH_HIDEPID = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                          'mount -t proc -o hidepid=1 proc /proc && exec setpriv --reuid=nobody --regid=nogroup '
                          '--clear-groups "$@"', "sh"]


def _can_hide_pids():
    return os.geteuid() == 0 and all(shutil.which(c) for c in ("unshare", "setpriv"))


# what a run as `nobody` never imports, left out of its copy of the venv's packages
NOT_FOR_NOBODY = ("playwright", "kubernetes", "pip", "setuptools", "ruff", "vermin", "__pycache__")
_READABLE = {}


def _as_nobody():
    """(python, PYTHONPATH) for a face run as `nobody`: the checkout and its venv may sit under a 0700 directory
    (a `mktemp -d` clone, root's home), which `nobody` cannot enter; so a copy it can read of this checkout (no
    .git, no venvs) and of the venv's packages, made once per process and removed at exit; the system
    interpreter the venv is made from."""
    if not _READABLE:
        import atexit
        import sysconfig

        top = tempfile.mkdtemp(prefix="pt-nobody-")
        atexit.register(shutil.rmtree, top, True)
        shutil.copytree(ROOT, os.path.join(top, "repo"), symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "dist", "__pycache__", ".pytest_cache", ".hypothesis", "screenshots"))
        shutil.copytree(sysconfig.get_paths()["purelib"], os.path.join(top, "site"), symlinks=True,
                        ignore=shutil.ignore_patterns(*NOT_FOR_NOBODY))
        for dirpath, _, filenames in os.walk(top):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o644)
        repo = os.path.join(top, "repo")
        _READABLE["python"] = os.path.realpath(sys.executable)
        _READABLE["path"] = os.pathsep.join([os.path.join(repo, "python-lib"), os.path.join(repo, "tests"), repo,
                                             os.path.join(top, "site")])
    return _READABLE["python"], _READABLE["path"]


def _run_cell_as_nobody(face_name, fault_name):
    """A macro or webapp cell in a child process run AS_NOBODY_WITH_HIDEPID (the CLI face runs its command so,
    from this process). The simulator and the judge run in the child too; the Cell comes back as JSON."""
    if not _can_hide_pids():
        cell = Cell(face_name, fault_name)
        cell.problems.append("not run: a hidepid /proc needs root, unshare and setpriv")
        return cell
    python, path = _as_nobody()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PT_RELIABILITY_CHILD": "1", "PYTHONPATH": path}
    argv = AS_NOBODY_WITH_HIDEPID + [python, "-m", "bench.reliability", "--cell", face_name, fault_name]
    done = subprocess.run(argv, env=env, cwd="/tmp", capture_output=True, text=True, timeout=600)
    try:
        return Cell(**json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError, TypeError):
        cell = Cell(face_name, fault_name)
        cell.problems.append("child exit %d: %s" % (done.returncode, (done.stderr or done.stdout)[-400:]))
        return cell


def run_cell(face_name, fault_name):
    """Run one cell of the matrix and judge it (see the module docstring). Returns a Cell."""
    face, fault = FACES[face_name], FAULTS[fault_name]
    if fault.special == "hidepid" and face.type != "cli" and not os.environ.get("PT_RELIABILITY_CHILD"):
        return _run_cell_as_nobody(face_name, fault_name)
    cell = Cell(face.name, fault.name, deadline_seconds=DEADLINE_SECONDS[face.type])
    sim = Simulator(reliability_instance())
    url = sim.start()
    inject(sim, fault)
    arrivals = _Arrivals(sim)
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
        ended = time.monotonic()
        cell.seconds = ended - started
        cell.dss_seconds = ended - max(cell.ready_monotonic, min((t for t, _, _ in arrivals.seen), default=started))
        cell.waves = arrivals.waves(fault, cell.deadline_seconds)
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


@contextmanager
def _fleet_for(faults):
    """A fleet of DSS-shaped processes of root's (and another user's) while a hidepid fault runs: the processes
    a scanner run as `nobody` under hidepid=1 cannot read."""
    if not any(FAULTS[f].special == "hidepid" for f in faults):
        yield None
        return
    from dev.fleet import Fleet, demo_layout

    with Fleet(demo_layout) as fleet:
        yield fleet


def run_matrix(faces, faults, out=sys.stdout):
    """Every face against every fault it runs on. The fault-free cell of each face is run first (its time is the
    baseline of that face's deadlines: `Cell.budget_seconds`). Returns the cells."""
    cells = []
    with _fleet_for(faults):
        for face in faces:
            baseline = None
            for fault in (["none"] if "none" not in faults else []) + list(faults):
                if not runs_on(FAULTS[fault], FACES[face]):
                    continue
                cell = run_cell(face, fault)
                if fault == "none":
                    baseline = cell.dss_seconds
                cell.past_deadline_seconds = cell.dss_seconds - cell.budget_seconds(baseline or 0.0)
                cells.append(cell)
                _print_cell(out, cell)
    return cells


def _print_cell(out, cell):
    flag = "ok" if cell.ok else "FAIL"
    out.write("%-34s %-18s %-4s %5.1f s  past deadline %+5.1f s  stops %-2d %s\n" % (
        cell.face, cell.fault, flag, cell.seconds, cell.past_deadline_seconds, cell.stops, cell.outcome[:80]))
    for line in cell.problems + cell.notes + (["views: " + json.dumps(cell.view_seconds)] if cell.view_seconds
                                              else []):
        out.write("      - %s\n" % line)
    out.flush()


def fault_rows(cells, faults):
    """One row per fault: runs completed of N, wrong aborts, host views blocked, max time past the deadline."""
    rows = []
    for fault in faults:
        mine = [c for c in cells if c.fault == fault]
        rows.append({"fault": fault, "what": FAULTS[fault].what, "runs": len(mine),
                     "completed": sum(1 for c in mine if c.finished), "wrong_aborts": sum(c.wrong_aborts for c in mine),
                     "views_blocked": sum(c.views_blocked for c in mine),
                     "views_timed": sum(len(c.view_seconds) for c in mine),
                     "max_past_deadline_seconds": max((c.past_deadline_seconds for c in mine), default=0.0),
                     "problems": sum(1 for c in mine if not c.ok)})
    return rows


def print_fault_rows(rows, out=sys.stdout):
    out.write("| fault | runs completed | wrong aborts | host views blocked (> %g s) | time past the deadline "
              "(max) | cells not ok |\n|---|---|---|---|---|---|\n" % VIEW_LIMIT_SECONDS)
    for r in rows:
        out.write("| `%s`: %s | %d of %d | %d | %d of %d | %+.1f s | %d |\n" % (
            r["fault"], r["what"], r["completed"], r["runs"], r["wrong_aborts"], r["views_blocked"],
            r["views_timed"], r["max_past_deadline_seconds"], r["problems"]))


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
    parser.add_argument("--faults", default="", help="fault names, comma-separated, or `issue12` for the faults of "
                                                      "issue 12 (default: all)")
    parser.add_argument("--list", action="store_true", help="list faces and faults and exit")
    parser.add_argument("--cell", nargs=2, metavar=("FACE", "FAULT"), help=argparse.SUPPRESS)  # one cell, as JSON
    args = parser.parse_args(argv)
    if args.cell:  # a child of _run_cell_as_nobody
        print(json.dumps(asdict(run_cell(*args.cell))))
        return 0
    if args.list:
        for f in FACES.values():
            print("face  %-34s stops %s" % (f.name, ", ".join(o.id for o in f.targets) or "-"))
        for f in FAULTS.values():
            print("fault %-18s %s" % (f.name, f.what))
        return 0
    wanted = [w.strip() for w in args.faces.split(",") if w.strip()]
    faces = [n for n, f in FACES.items() if not wanted or f.type in wanted or n in wanted]
    named = set(args.faults.split(",")) | (set(ISSUE_12) if "issue12" in args.faults.split(",") else set())
    faults = [n for n in FAULTS if not args.faults or n in named]
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
    print()
    print_fault_rows(fault_rows(cells, faults))
    bad = [c for c in cells if not c.ok]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
