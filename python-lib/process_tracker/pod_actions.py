"""Acting on DSS's pods: through DSS first; deleting a pod only as a separate, opt-in, admin-only action.

- `stop_pod_activity`: a pod joined to a DSS activity is stopped by stopping that activity through DSS's public
  API (`actions.perform`: unload the kernel, abort the job or task, stop the webapp backend), re-checked just
  before, dry run by default. DSS then removes its pod itself. This never deletes a pod.
- `delete_orphan_pod`: a pod DSS no longer lists (status "orphan" from pod_joins) can be deleted, like
  `kubectl delete pod`, only when ALL hold: the settings' `allow_delete` opt-in is on (off by default), the
  caller is a DSS administrator, `apply=True` (dry run by default), the namespace is a DNS-1123 label and the name
  a DNS-1123 subdomain (checked before any call), the namespace is one the settings list (when they list some),
  and the pod re-read just before still has the same uid and still carries DSS's install id label (and the
  optional `recheck` still calls it an orphan). The delete carries a uid precondition, so a new pod that took
  the name in between is never deleted. Outcomes: `would_delete`, `deleted`, `refused`, `already_gone`,
  `failed`; each is logged with who, which pod and why.
"""
import json
import logging
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from . import actions
from .errors import ConfigError
from .joins import Match
from .pods import (INSTALL_ID_LABEL, PodRecord, PodSettings, check_k8s, client_failure, is_client_failure,
                   request_timeout)
from .policy import Decision

logger = logging.getLogger(__name__)

__all__ = ["DELETE_OUTCOMES", "PodDeletion", "stop_pod_activity", "delete_orphan_pod"]

DELETE_OUTCOMES = ("would_delete", "deleted", "refused", "already_gone", "failed")


@dataclass(frozen=True)
class PodDeletion:
    pod: PodRecord
    outcome: str  # one of DELETE_OUTCOMES
    message: str  # readable, safe to show


def stop_pod_activity(client, match: Match, apply: bool = False, **perform_kwargs) -> actions.ActionResult:
    """Stop the DSS activity a pod runs, through DSS (`actions.perform` on the joined activity; keyword
    arguments go to it: wait_seconds, recheck, actor, ...). ConfigError when the pod is joined to nothing: an
    orphan has nothing DSS can stop (see delete_orphan_pod)."""
    pod = match.process
    if not isinstance(pod, PodRecord):
        raise ConfigError("pod", "not a pod record")
    if match.activity is None:
        raise ConfigError("pod", "pod %s/%s runs no activity DSS lists (%s): nothing to stop through DSS"
                          % (pod.namespace, pod.pod_name, match.status))
    reason = "runs in pod %s/%s on %s" % (pod.namespace, pod.pod_name, pod.node or "no node")
    return actions.perform(client, [Decision(match.activity, True, reason)], apply=apply, **perform_kwargs)[0]


def _refused(pod, message, actor):
    logger.info("pod delete refused: %s/%s by %s: %s", pod.namespace, pod.pod_name, actor or "unknown user", message)
    return PodDeletion(pod, "refused", message)


def _gate(match, settings, is_admin):
    """None when deletion may proceed, else the refusal's message. Names are checked first (ConfigError)."""
    pod = match.process
    check_k8s("namespace", pod.namespace, "namespace")
    check_k8s("pod_name", pod.pod_name, "pod")
    if not settings.allow_delete:
        return "deleting pods is turned off (the allow_delete setting, off by default)"
    if not is_admin:
        return "deleting a pod needs a DSS administrator"
    if match.status != "orphan":
        return "only an orphan pod can be deleted; this one is %s (stop its activity through DSS instead)" % match.status
    if settings.namespaces and pod.namespace not in settings.namespaces:
        return "namespace %s is not one of the configured namespaces" % pod.namespace
    return None


def _reread(core, pod, settings):
    """The pod as the API server has it now (a dict), or None when it is gone."""
    resp = core.list_namespaced_pod(pod.namespace, field_selector="metadata.name=%s" % pod.pod_name,
                                    label_selector=INSTALL_ID_LABEL, _request_timeout=request_timeout(settings),
                                    _preload_content=False)
    items = json.loads(resp.data).get("items") or []
    return items[0] if items else None


def delete_orphan_pod(api_client, settings: PodSettings, match: Match, apply: bool = False, is_admin: bool = False,
                      actor: Optional[str] = None,
                      recheck: Optional[Callable[[PodRecord], Tuple[bool, str]]] = None) -> PodDeletion:
    """Delete one orphan pod (see the module docstring for every condition). Dry run unless `apply`."""
    pod = match.process
    if not isinstance(pod, PodRecord):
        raise ConfigError("pod", "not a pod record")
    refusal = _gate(match, settings, is_admin)
    if refusal:
        return _refused(pod, refusal, actor)
    if not apply:
        return PodDeletion(pod, "would_delete", "dry run: would delete pod %s/%s (%s)"
                           % (pod.namespace, pod.pod_name, getattr(match, "reason", "") or "orphan"))
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    try:
        return _delete_checked(core, pod, settings, actor, recheck)
    except Exception as exc:
        if not (is_client_failure(exc) or isinstance(exc, ValueError)):
            raise
        status, message, _unreachable = client_failure(exc)
        return _outcome(pod, status, message, actor)


def _delete_checked(core, pod, settings, actor, recheck):
    from kubernetes import client

    current = _reread(core, pod, settings)
    if current is None:
        return PodDeletion(pod, "already_gone", "pod %s/%s no longer exists: nothing done" % (pod.namespace, pod.pod_name))
    meta = current.get("metadata") or {}
    if meta.get("uid") != pod.uid:
        return _refused(pod, "a new pod took the name %s/%s: nothing done" % (pod.namespace, pod.pod_name), actor)
    if INSTALL_ID_LABEL not in (meta.get("labels") or {}):
        return _refused(pod, "the pod no longer carries DSS's install id label: nothing done", actor)
    if recheck is not None:
        still, why = recheck(pod)
        if not still:
            return _refused(pod, "re-checked just before deleting: %s" % why, actor)
    logger.info("deleting pod %s/%s (uid %s) by %s", pod.namespace, pod.pod_name, pod.uid, actor or "unknown user")
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid))
    core.delete_namespaced_pod(pod.pod_name, pod.namespace, body=body, _request_timeout=request_timeout(settings),
                               _preload_content=False)
    logger.info("deleted pod %s/%s by %s", pod.namespace, pod.pod_name, actor or "unknown user")
    return PodDeletion(pod, "deleted", "deleted pod %s/%s" % (pod.namespace, pod.pod_name))


def _outcome(pod, status, message, actor):
    where = "%s/%s" % (pod.namespace, pod.pod_name)
    if status == 404:
        return PodDeletion(pod, "already_gone", "pod %s no longer exists: nothing done" % where)
    if status == 409:
        return _refused(pod, "pod %s changed (uid precondition failed): nothing done" % where, actor)
    if status == 403:
        text = ("not allowed to delete pods in namespace %s (RBAC: delete is granted only with the opt-in; "
                "see docs/kubernetes.md): %s" % (pod.namespace, message))
    else:
        text = "deleting pod %s failed (%s): %s" % (where, "HTTP %s" % status if status else "no answer", message)
    logger.info("pod delete failed: %s by %s: %s", where, actor or "unknown user", text)
    return PodDeletion(pod, "failed", text)


def dss_recheck(client, now: Optional[float] = None) -> Callable[[PodRecord], Tuple[bool, str]]:
    """A `recheck` for delete_orphan_pod: lists again, just before the delete, the DSS activities of the kind
    that would explain the pod, and re-joins it. Still an orphan -> (True, reason); anything else (joined,
    unknown, the listing failed) -> (False, why): the pod is spared."""
    from .activities import list_activities
    from .pod_joins import join_pods

    def recheck(pod):
        if pod.explained_by is None:
            return False, "nothing DSS lists explains such a pod: not an orphan"
        inventory = list_activities(client, kinds=(pod.explained_by,), now=now)
        (row,) = join_pods([pod], inventory).rows
        if row.status == "orphan":
            return True, row.reason
        return False, "no longer an orphan: %s" % (row.reason or row.status)

    return recheck
