"""The webapp's action use case, without Flask: authorise, parse, look up in a fresh listing, protect, perform
(once per activity, across backend processes), build the answer and write one JSON line to the action log.

`run_action(client, identity, body, apply=..., ...)` is what the routes `/api/actions/preview` and
`/api/actions/apply` call; it returns the JSON answer (a dict) or raises `ApiError` / `ConfigError` / `DSSError`,
which the webapp turns into its error envelope (docs/webapp-api.md).

Safety (issue 10, threat model in docs/reliability.md):
- every id and key of the body passes `identifiers.check` (400 naming the field) before anything is called;
- the target is resolved as `(kind, project_key, id)` in the backend's own fresh listing of that kind (and project):
  anything it does not list is 404 `not_listed`, and nothing but the listing was called; the action then works on
  the listed record, never on the body's values;
- an apply takes the activity's in-flight claim (`InFlight`: an exclusive lock file per activity in the history
  folder, so every backend process of the webapp shares it). A second confirm while the first runs waits for it and
  answers its outcome; an activity DSS already says is stopping is not stopped again (`abort_requested`).
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Optional, Tuple

from . import identifiers
from .errors import ConfigError, DSSError, ProcessTrackerError

ACTION_KINDS = ("notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio")
PROJECTLESS_KINDS = ("future", "scenario")
# activity kind -> the identifier kind of its id (identifiers.KINDS)
ID_KINDS = {
    "notebook_session": "session_id",
    "future": "future_id",
    "scenario": "future_id",
    "job": "job_id",
    "webapp": "webapp_id",
    "continuous_activity": "recipe_id",
    "code_studio": "code_studio_id",
}
INFLIGHT_DIRNAME = "inflight"
DSS_MESSAGE_LIMIT = 300  # characters of a DSS error message shown or logged

# the action log: one JSON object per line (json.dumps escapes newlines: an id cannot forge a line)
action_log = logging.getLogger("process_tracker.webapp")

__all__ = ["ACTION_KINDS", "ActionRequest", "ApiError", "InFlight", "parse_action", "find_listed", "run_action"]


class ApiError(ProcessTrackerError):
    """An error answered as the JSON envelope with `status` and `code`; `message` is safe to show."""

    def __init__(self, status, code, message):
        self.status = status
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ActionRequest:
    kind: str
    project_key: Optional[str]
    id: str
    confirm: bool = False
    anyway: Tuple[str, ...] = ()  # the warning kinds the preview showed that an administrator overrides

    @property
    def key(self):
        return (self.kind, self.project_key, self.id)


def parse_action(body, apply):
    """The ActionRequest of a JSON body; ConfigError naming the field (kind, project_key, id, confirm, body)."""
    if not isinstance(body, dict):
        raise ConfigError("body", "a JSON object {\"kind\", \"project_key\", \"id\"} is expected")
    kind = body.get("kind")
    if kind not in ACTION_KINDS:
        raise ConfigError("kind", "must be one of %s, got %s" % (", ".join(ACTION_KINDS), identifiers.shown(kind)))
    activity_id = body.get("id")
    if activity_id is None or activity_id == "":
        raise ConfigError("id", "the activity id (a non-empty string) is required")
    identifiers.check(ID_KINDS[kind], activity_id, "id")
    project_key = body.get("project_key")
    if project_key is not None and project_key != "":
        identifiers.check("project_key", project_key, "project_key")
    elif kind not in PROJECTLESS_KINDS:
        raise ConfigError("project_key", "a %s is identified within a project: give its project key" % kind)
    if apply and body.get("confirm") is not True:
        raise ConfigError("confirm", "applying an action needs \"confirm\": true (preview it first)")
    anyway = _anyway(body.get("anyway", []))
    if anyway and not apply:
        raise ConfigError("anyway", "only an apply stops anyway: the preview shows the warnings")
    return ActionRequest(kind, project_key or None, activity_id, body.get("confirm") is True, anyway)


def _anyway(value):
    """The warning kinds an apply overrides: a list of the preview's `warning_kinds` (ConfigError otherwise; a bare
    `true` too: it would override warnings that appeared after the preview, which the administrator never saw)."""
    from .policy import CAUTION_KINDS

    if value is False:
        return ()
    wrong = value if not isinstance(value, list) else next((v for v in value if v not in CAUTION_KINDS), None)
    if wrong is not None:
        raise ConfigError("anyway", "must list the kinds of warning the preview showed (%s), got %s"
                          % (", ".join(CAUTION_KINDS), identifiers.shown(wrong)))
    return tuple(value)


def find_listed(client, request, now=None):
    """The activity `request` names, from a fresh listing of its kind (and project). ApiError 404 `not_listed` when
    the listing does not hold it; DSSError when the listing failed and does not hold it (DSS could not say)."""
    from .activities import list_activities

    projects = [request.project_key] if request.project_key else None
    inv = list_activities(client, kinds=(request.kind,), projects=projects, now=now)
    for a in inv.activities:
        if a.kind == request.kind and a.id == request.id and (
                a.project_key == request.project_key or
                (request.project_key is None and request.kind in PROJECTLESS_KINDS)):
            return a
    if inv.errors and not all(e.not_found for e in inv.errors):  # 404s: DSS says nothing is there (no project)
        raise DSSError("listing %s activities failed, cannot tell whether %s runs: %s"
                       % (request.kind.replace("_", " "), identifiers.shown(request.id),
                          identifiers.safe_text(inv.errors[0].message, DSS_MESSAGE_LIMIT)))
    where = (" in project %s" % request.project_key) if request.project_key else ""
    raise ApiError(404, "not_listed", "no running %s %s%s is listed by DSS (finished, or never listed by this webapp)"
                   % (request.kind.replace("_", " "), identifiers.shown(request.id), where))


# ------------------------------------------------------------------------------------------------------------
# in-flight stops, shared by every backend process of the webapp


class InFlight:
    """One exclusive claim per activity: `<directory>/inflight/<sha256 of kind, project, id>.lock` held with
    `fcntl.flock` while a stop is requested and verified; its outcome is written beside it (`.json`) before the
    claim is released, so a confirm that had to wait answers that outcome instead of stopping again.
    When the folder cannot be written, claims fall back to this process only (logged once)."""

    def __init__(self, directory, wait_seconds=30.0, poll_seconds=0.05):
        self.directory = os.path.join(directory, INFLIGHT_DIRNAME)
        self.wait_seconds = float(wait_seconds)
        self.poll_seconds = float(poll_seconds)
        self._local = {}  # key -> threading.Lock, when the folder cannot be written
        self._local_results = {}  # key -> the last outcome recorded in this process
        self._local_guard = threading.Lock()

    def _paths(self, key):
        digest = hashlib.sha256(json.dumps(list(key)).encode("utf-8")).hexdigest()[:32]
        base = os.path.join(self.directory, digest)
        return base + ".lock", base + ".json"

    @contextlib.contextmanager
    def claim(self, key):
        """Yields (claimed, earlier): claimed True when this caller must act (then `record(key, outcome)` before
        leaving); False when another caller acted meanwhile: `earlier` is its outcome (a dict) or None."""
        lock_path, result_path = self._paths(key)
        fd = self._open(lock_path)
        if fd is None:
            with self._local_claim(key) as got:
                yield got
            return
        try:
            if self._lock(fd, blocking=False):
                self._forget(result_path)  # an outcome left by an earlier stop is not this one's
                yield True, None
                return
            waited = self._lock(fd, blocking=True)
            yield False, (self._read(result_path) if waited else None)
        finally:
            os.close(fd)  # closing releases the lock

    def record(self, key, outcome):
        """Write the outcome of a claimed stop (a JSON object) for confirms waiting on the same activity."""
        _, result_path = self._paths(key)
        self._local_results[key] = outcome
        try:
            tmp = "%s.%d.tmp" % (result_path, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(outcome, f)
            os.replace(tmp, result_path)
        except OSError as e:
            action_log.warning("could not record an action outcome (%s)", e.__class__.__name__)

    def _open(self, lock_path):
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            return os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as e:
            action_log.warning("in-flight claims fall back to this process: cannot write %s (%s)",
                               self.directory, errno.errorcode.get(e.errno, e.__class__.__name__))
            return None

    def _lock(self, fd, blocking):
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                if not blocking or time.monotonic() >= deadline:
                    return False
                time.sleep(self.poll_seconds)

    @staticmethod
    def _forget(result_path):
        try:
            os.unlink(result_path)
        except OSError:
            pass

    @staticmethod
    def _read(result_path):
        try:
            with open(result_path, encoding="utf-8") as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    @contextlib.contextmanager
    def _local_claim(self, key):
        with self._local_guard:
            lock = self._local.setdefault(key, threading.Lock())
        if lock.acquire(blocking=False):
            try:
                yield True, None
            finally:
                lock.release()
            return
        got = lock.acquire(timeout=self.wait_seconds)
        try:
            yield False, (self._local_results.get(key) if got else None)
        finally:
            if got:
                lock.release()


# ------------------------------------------------------------------------------------------------------------
# the use case


def _decision(activity, identity, protection, anyway, clock):
    """The decision the macros' soft rules give an activity picked by hand (policy.by_hand), and its re-check on
    the fresh record just before acting (a kernel that became busy meanwhile is then spared, unless `anyway`)."""
    from . import policy

    decision = policy.by_hand(activity, clock(), protection, identity.user, anyway)

    def recheck(fresh):
        d = policy.by_hand(fresh, clock(), protection, identity.user, anyway)
        return d.act, d.reason

    return decision, recheck


def _warned(answer, decision):
    """The answer with the decision's warnings; "warned" instead of "spared" when they are why it was spared."""
    answer["warnings"] = [identifiers.safe_text(w, DSS_MESSAGE_LIMIT) for w in decision.warnings]
    answer["warning_kinds"] = list(decision.warning_kinds)
    if answer.get("outcome") == "spared" and decision.warnings:
        answer["outcome"] = "warned"
    return answer


def _answer(result):
    return {"outcome": result.outcome,
            "message": identifiers.safe_text(result.message, DSS_MESSAGE_LIMIT),
            "reason": identifiers.safe_text(result.reason, DSS_MESSAGE_LIMIT)}


def _already_stopping(client, activity):
    """Whether DSS says a stop of `activity` is in progress (a failed read: not known, perform re-checks anyway)."""
    from . import activities

    try:
        return activities.probe(client, activity).status == "stopping"
    except DSSError:
        return False


def _stop_once(client, activity, decision, recheck, identity, wait_seconds, inflight):
    """Perform the stop unless another confirm is doing it or DSS already stops it. Returns the answer dict."""
    from . import actions

    key = (activity.kind, activity.project_key, activity.id)
    with inflight.claim(key) as (claimed, earlier):
        if not claimed:
            if earlier is not None:
                return dict(earlier, shared=True)
            return {"outcome": "abort_requested", "message": "a stop of this activity is already in flight: not "
                    "sent again", "reason": decision.reason, "shared": True}
        if decision.act and _already_stopping(client, activity):
            answer = {"outcome": "abort_requested", "message": "DSS is already stopping it: not sent again",
                      "reason": decision.reason}
            inflight.record(key, answer)
            return answer
        result = actions.perform(client, [decision], apply=True, recheck=recheck, wait_seconds=wait_seconds,
                                 actor=identity.user)[0]
        answer = _answer(result)
        inflight.record(key, answer)
        return answer


def log_action(identity, request, answer, apply):
    """One JSON object per line on the action log (ids are checked already; JSON escapes whatever remains)."""
    action_log.info(json.dumps({
        "event": "apply" if apply else "preview", "user": identifiers.safe_text(identity.user),
        "kind": request.kind, "project_key": request.project_key, "id": request.id,
        "outcome": answer.get("outcome"), "shared": bool(answer.get("shared")), "anyway": list(request.anyway),
        "warnings": answer.get("warnings") or [],
    }, sort_keys=True))


def log_refusal(identity, body, apply, error):
    """A refused preview or apply on the action log too (one JSON object; the body's values escaped and cut)."""
    body = body if isinstance(body, dict) else {}
    action_log.info(json.dumps({
        "event": "apply" if apply else "preview", "user": identifiers.safe_text(identity.user),
        "kind": identifiers.shown(body.get("kind")), "project_key": identifiers.shown(body.get("project_key")),
        "id": identifiers.shown(body.get("id")), "outcome": "refused",
        "error": getattr(error, "code", None) or ("bad_parameter" if isinstance(error, ConfigError) else "dss_error"),
    }, sort_keys=True))


def run_action(client, identity, body, apply, inflight, wait_seconds=10.0, protection=None, now=None,
               describe=None):
    """The preview or apply of one action for `identity` (an object with `.user`, `.can_act`, `.reason` and
    `.admin`).

    The macros' soft rules (policy.cautions: busy, someone connected, just started) are the answer's `warnings`;
    a warned activity is not stopped (outcome "warned") unless an administrator applies with `"anyway"` listing
    every warning kind it meets at that moment (the preview's `warning_kinds`).
    `inflight` is an InFlight (used by apply only); `protection` a policy.Protection (default: this process and its
    parent); `describe(activity)` builds the preview's table row; `now` (epoch seconds) is the clock of the listing
    and the rules (default: time.time()). Returns the JSON answer (a dict)."""
    from . import actions, policy

    try:
        if not identity.can_act:
            raise ApiError(403, "not_allowed", "%s: only DSS administrators and the groups allowed by the webapp "
                           "may act" % identity.reason)
        request = parse_action(body, apply)
        if request.anyway and not getattr(identity, "admin", False):
            raise ApiError(403, "not_allowed", "%s is not a DSS administrator: only an administrator may stop an "
                           "activity anyway (despite its warnings)" % identifiers.safe_text(identity.user))
        activity = find_listed(client, request, now=now)
    except (ConfigError, ApiError, DSSError) as e:
        log_refusal(identity, body, apply, e)
        raise
    if protection is None:
        protection = policy.Protection(pids=frozenset({os.getpid(), os.getppid()}))
    clock = (lambda: now) if now is not None else time.time
    decision, recheck = _decision(activity, identity, protection, request.anyway, clock)
    if apply:
        answer = _stop_once(client, activity, decision, recheck, identity, wait_seconds, inflight)
    else:
        result = actions.perform(client, [decision], apply=False, actor=identity.user)[0]
        answer = {"outcome": result.outcome, "reason": identifiers.safe_text(result.reason, DSS_MESSAGE_LIMIT)}
        if describe is not None:
            answer["activity"] = describe(activity)
    answer = _warned(dict(answer), decision)
    log_action(identity, request, answer, apply)
    return answer
