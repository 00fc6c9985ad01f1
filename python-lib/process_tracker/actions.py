"""Performing stops through DSS's public API and verifying their outcome.

One outcome per decision, from a closed set (OUTCOMES):

- ``would_act``: dry run, the activity would be stopped (no call is made at all in a dry run).
- ``spared``: not acted on: the decision said so, or the re-check just before acting said no (e.g. the kernel
  became busy); the reason says why.
- ``already_finished``: re-checked just before acting, it no longer ran: nothing was done.
- ``aborted``: the stop was requested and DSS confirmed it within the wait (gone, ABORTED, aborted future,
  stopped backend).
- ``abort_requested``: the stop was requested and accepted, but the activity still ran when the wait ended
  (a future that ignores aborts, a job slow to abort). DSS may still stop it later.
- ``finished_before_abort``: it ended on its own between the re-check and the stop (a future done without
  abort, a job DONE or FAILED, or the stop call answered "not found").
- ``failed``: the re-check or the stop call failed; the message says why. Nothing is retried.

Design: actions are performed one after the other (never in parallel: a clean-up must not add load to a DSS
that is already struggling, and every stop is a distinct decision the log must show in order), then all the
requested stops are verified together by polling, with one bounded wait for the whole batch. The total time is
therefore about (number of stops x one call) + `wait_seconds`, not a wait per activity.
Actions are never retried (only reads are, by dss.py). Each result is logged on ``process_tracker.actions`` with
the acting user when known, the kind, project and id, and the outcome; never a command line or a secret.
"""
import logging
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from . import identifiers, kinds
from .activities import KINDS, LIVE_STATUSES, Activity, probe
from .errors import ConfigError, DSSError, DSSNotFound

AUTH_INFO = kinds.Route("GET", "/auth/info")
OUTCOMES = ("aborted", "abort_requested", "already_finished", "finished_before_abort", "failed", "spared", "would_act")
# what stopping means for each kind, for messages (kinds.KIND[kind].verb)
VERBS = {name: k.verb for name, k in kinds.KIND.items()}

logger = logging.getLogger(__name__)

__all__ = ["OUTCOMES", "ActionResult", "perform"]


@dataclass(frozen=True)
class ActionResult:
    """What happened to one decision: `outcome` is one of OUTCOMES; `message` is readable and safe to show;
    `reason` is the decision's reason (or the re-check's when it spared the activity)."""

    activity: Activity  # the freshest record known (re-fetched just before acting when applied)
    outcome: str
    message: str
    reason: str


def _stop(client, activity):
    """The kind's stop call (kinds.KIND[kind].stop), its path built from checked, quoted ids."""
    k = kinds.KIND[activity.kind]
    kinds.call(client, k.stop, "trying to %s" % k.verb, **kinds.ids_of(activity.kind, activity))


def _is_uncertain(err):
    """The stop call may have been applied although it failed: no answer in time, or a 2xx with a body that is
    not JSON. Those are verified by polling rather than reported as failures straight away."""
    import requests
    from dataikuapi.utils import DataikuException

    cause = err.__cause__
    if isinstance(cause, requests.exceptions.Timeout):
        return True
    return isinstance(cause, ValueError) and not isinstance(cause, DataikuException)


# --------------------------------------------------------------------------------------------------------------


def _where(a):
    return "%s %s%s" % (a.kind, ("%s/" % a.project_key) if a.project_key else "", a.id)


def _validate(decisions, wait_seconds, poll_seconds):
    for name, value, minimum in (("wait_seconds", wait_seconds, 0.0), ("poll_seconds", poll_seconds, None)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(name, "a number of seconds, got %r" % (value,))
        if (minimum is not None and value < minimum) or (minimum is None and value <= 0):
            raise ConfigError(name, "must be %s, got %r" % ("0 or more" if minimum is not None else "more than 0", value))
    decisions = list(decisions)
    for d in decisions:
        a = getattr(d, "activity", None)
        if not isinstance(a, Activity) or a.kind not in KINDS:
            raise ConfigError("decisions", "each decision needs an activity of a known kind (%s)" % ", ".join(KINDS))
        if kinds.KIND[a.kind].in_project and not a.project_key:
            raise ConfigError("decisions", "%s %s has no project key: cannot act on it" % (a.kind, a.id))
        if getattr(d, "act", False):
            _check_ids(a)
    return decisions


def _check_ids(activity):
    """Every id a stop of `activity` would put in a path is valid (else ConfigError before anything is done)."""
    k = kinds.KIND[activity.kind]
    ids = kinds.ids_of(activity.kind, activity)
    for name in set(k.stop.placeholders) | set(k.probe.placeholders):
        if not identifiers.is_valid(name, ids.get(name)):
            raise ConfigError("decisions", "%s %s: not a valid %s, cannot act on it" % (
                k.label, identifiers.shown(activity.id, 80), name.replace("_", " ")))


def _actor(client):
    try:
        info = kinds.call(client, AUTH_INFO, "reading identity")
    except DSSError as err:  # who acts is for the log only: unknown is fine
        logger.debug("could not read the acting identity: %s", err)
        return None
    login = info.get("authIdentifier") if isinstance(info, dict) else None
    return identifiers.safe_text(login, 200) if isinstance(login, str) else None


class _Pending:
    def __init__(self, index, activity, reason, note=None):
        self.index = index
        self.activity = activity
        self.reason = reason
        self.note = note  # set when the stop call's answer was uncertain (timeout, malformed body)
        self.last_error = None


def perform(
    client,
    decisions,
    apply: bool = False,
    wait_seconds: float = 10.0,
    poll_seconds: float = 0.5,
    recheck: Optional[Callable[[Activity], Tuple[bool, str]]] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    actor: Optional[str] = None,
) -> List[ActionResult]:
    """Apply decisions (objects with `.activity`, `.act`, `.reason`); one ActionResult per decision, in order.

    Dry run (`apply` False): `would_act` / `spared`, and no call to DSS at all.
    Applied: each acted-on activity is re-fetched just before acting; gone -> `already_finished`; `recheck`
    (called with the fresh record, returns (still_act, reason)) may spare it. Then it is stopped through the API,
    and all stops are verified by polling every `poll_seconds` for at most `wait_seconds` (seconds, shared by the
    batch). `clock` and `sleep` are injectable for tests. `actor` names who acts in the log (default: the API
    identity, read once). Bad arguments raise ConfigError before anything is done.
    """
    decisions = _validate(decisions, wait_seconds, poll_seconds)
    results: List[Optional[ActionResult]] = [None] * len(decisions)

    def done(i, activity, outcome, message, reason):
        results[i] = ActionResult(activity, outcome, message, reason)
        logger.info(
            "%s %s by %s: %s (%s)", outcome, _where(activity), actor or "unknown user", message, reason or "-"
        )

    if apply and actor is None and any(d.act for d in decisions):
        actor = _actor(client)

    pending = []
    for i, d in enumerate(decisions):
        a, reason = d.activity, str(d.reason or "")
        if not d.act:
            done(i, a, "spared", "spared: nothing done", reason)
        elif not apply:
            done(i, a, "would_act", "dry run: would %s" % VERBS[a.kind], reason)
        else:
            _act(client, i, a, reason, recheck, actor, done, pending)

    _verify(client, pending, wait_seconds, poll_seconds, clock, sleep, done)
    return results  # type: ignore[return-value]


def _act(client, i, a, reason, recheck, actor, done, pending):
    """Re-check one activity, stop it, and leave it to verify (in `pending`) or say why not (`done`)."""
    verb = VERBS[a.kind]
    try:
        fresh = probe(client, a)
    except DSSError as e:
        return done(i, a, "failed", "could not re-check it before acting, nothing done: %s" % e, reason)
    if fresh.status not in LIVE_STATUSES:
        return done(i, a, "already_finished", "no longer running when re-checked: nothing done", reason)
    current = fresh.activity or a
    if recheck is not None:
        still_act, why = recheck(current)
        if not still_act:
            return done(i, current, "spared", "re-checked just before acting: spared", str(why or ""))
    logger.info("requesting: %s %s by %s (%s)", verb, _where(current), actor or "unknown user", reason or "-")
    try:
        _stop(client, current)
    except DSSNotFound:
        return done(i, current, "finished_before_abort", "it ended before the stop reached DSS (not found)", reason)
    except DSSError as err:  # an action is never retried
        if not _is_uncertain(err):
            return done(i, current, "failed", str(err), reason)
        return pending.append(_Pending(i, current, reason, note=str(err)))
    pending.append(_Pending(i, current, reason))


def _verify(client, pending, wait_seconds, poll_seconds, clock, sleep, done):
    """Poll the stopped activities until each is resolved or the shared wait is over."""
    started = clock()
    deadline = started + wait_seconds
    first = True
    while pending:
        if not first:
            remaining = deadline - clock()
            if remaining <= 0:
                break
            sleep(min(poll_seconds, remaining))
        first = False
        still = []
        for p in pending:
            try:
                state = probe(client, p.activity)
            except DSSError as e:
                p.last_error = str(e)
                still.append(p)
                continue
            elapsed = max(0.0, clock() - started)
            if state.status in ("gone", "aborted"):
                done(p.index, p.activity, "aborted", "stopped: confirmed by DSS within %.1f s" % elapsed, p.reason)
            elif state.status == "finished":
                detail = (" (%s)" % state.detail) if state.detail else ""
                done(p.index, p.activity, "finished_before_abort", "it finished on its own%s" % detail, p.reason)
            else:
                p.activity = state.activity or p.activity
                still.append(p)
        pending = still
    for p in pending:
        if p.note:
            done(p.index, p.activity, "failed", "%s; still running after %g s" % (p.note, wait_seconds), p.reason)
            continue
        message = "stop requested and accepted; still running after %g s (DSS may stop it later)" % wait_seconds
        if p.last_error:
            message += "; last state check failed: %s" % p.last_error
        done(p.index, p.activity, "abort_requested", message, p.reason)
