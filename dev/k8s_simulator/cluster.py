"""The simulated cluster's state: pods, their metrics, who may do what, and the request log.

Shapes and behaviours, each with its public source, are listed in dev/README.md ("A simulated Kubernetes API").
Everything here is plain dicts in the JSON shapes the API server serves; `app.py` turns them into answers.
"""
import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# RBAC resources the simulator checks (resource, API group): "pods" in the core group, "pods" in metrics.k8s.io
PODS = "pods"
POD_METRICS = "pods.metrics.k8s.io"
ALL_NAMESPACES = None  # a rule that applies cluster-wide (a ClusterRoleBinding)


@dataclass(frozen=True)
class Rule:
    """One RBAC grant: verbs on a resource, in `namespaces` (None: every namespace and cluster-wide lists)."""

    verbs: Tuple[str, ...]
    resource: str
    namespaces: Optional[Tuple[str, ...]] = ALL_NAMESPACES


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    token: Optional[str]
    status: int


READ = ("get", "list", "watch")
# default identities (bearer tokens) and what they may do
DEFAULT_TOKENS = {
    "admin-token": (Rule(READ + ("delete",), PODS), Rule(READ, POD_METRICS)),
    "reader-token": (Rule(READ, PODS), Rule(READ, POD_METRICS)),
    "dss-ns-token": (Rule(READ, PODS, ("dss",)), Rule(READ, POD_METRICS, ("dss",))),
    "pods-only-token": (Rule(READ, PODS),),
    "nothing-token": (),
}


class SimError(Exception):
    """An API error: answered as a `Status` object with `code`, `reason` and `message`."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


def user_of(token, users=None):
    """The user a token authenticates (the API server names the user, never the token, in its messages)."""
    return (users or {}).get(token) or "system:serviceaccount:dss:process-tracker"


@dataclass
class Cluster:
    """Pods (by (namespace, name)), pod metrics (same key), RBAC grants by token, and the request log."""

    pods: Dict[Tuple[str, str], dict] = field(default_factory=dict)
    metrics: Dict[Tuple[str, str], dict] = field(default_factory=dict)
    tokens: Dict[str, Tuple[Rule, ...]] = field(default_factory=lambda: dict(DEFAULT_TOKENS))
    users: Dict[str, str] = field(default_factory=dict)  # token -> user name in messages (default: a service account)
    # "ok"; "absent": metrics-server not installed (metrics.k8s.io routes answer 404); "unavailable": its
    # APIService is registered but metrics-server does not answer (503)
    metrics_mode: str = "ok"
    resource_version: int = 1000
    requests: List[Request] = field(default_factory=list)
    deleted: List[Tuple[str, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # faults: every answer delayed by `latency_seconds`; pod lists answered 200 with a body that is not JSON
    latency_seconds: float = 0.0
    malformed_lists: bool = False

    # ----- state ---------------------------------------------------------------------------------------------
    def add_pod(self, pod, metrics=None):
        with self.lock:
            meta = pod["metadata"]
            self.resource_version += 1
            meta["resourceVersion"] = str(self.resource_version)
            key = (meta["namespace"], meta["name"])
            self.pods[key] = pod
            if metrics is not None:
                self.metrics[key] = metrics
        return pod

    def remove_pod(self, namespace, name):
        with self.lock:
            self.resource_version += 1
            self.metrics.pop((namespace, name), None)
            return self.pods.pop((namespace, name), None)

    # ----- RBAC ----------------------------------------------------------------------------------------------
    def authorize(self, token, verb, resource, namespace):
        """Raise SimError 401 (no or unknown token) or 403 (no rule allows it), like the API server's RBAC."""
        if token is None or token not in self.tokens:
            raise SimError(401, "Unauthorized", "Unauthorized")
        for rule in self.tokens[token]:
            if rule.resource != resource or verb not in rule.verbs:
                continue
            if rule.namespaces is ALL_NAMESPACES or (namespace is not None and namespace in rule.namespaces):
                return
        name, _, group = resource.partition(".")
        where = 'in the namespace "%s"' % namespace if namespace else "at the cluster scope"
        raise SimError(403, "Forbidden", '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s'
                       % (resource, user_of(token, self.users), verb, name, group, where), {"kind": name})

    # ----- listing -------------------------------------------------------------------------------------------
    def list_pods(self, namespace, label_selector, field_selector, limit, continue_token):
        with self.lock:
            items = [p for (ns, _), p in sorted(self.pods.items()) if namespace is None or ns == namespace]
            version = str(self.resource_version)
        return _page(items, label_selector, field_selector, limit, continue_token, version)

    def list_metrics(self, namespace, label_selector):
        with self.lock:
            out = []
            for key, m in sorted(self.metrics.items()):
                pod = self.pods.get(key)
                if pod is None or (namespace is not None and key[0] != namespace):
                    continue
                if label_selector and not matches_labels(pod["metadata"].get("labels") or {}, label_selector):
                    continue
                out.append(m)
            return out


# ----- selectors (label: =, ==, !=, in, notin, exists, !exists; field: =, ==, != on a few pod fields) ----------

_SET_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*$")
POD_FIELDS = {
    "metadata.name": lambda p: p["metadata"]["name"],
    "metadata.namespace": lambda p: p["metadata"]["namespace"],
    "spec.nodeName": lambda p: (p.get("spec") or {}).get("nodeName") or "",
    "status.phase": lambda p: (p.get("status") or {}).get("phase") or "",
}


def _split_requirements(selector):
    """Split on commas that are not inside a set's parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def matches_labels(labels, selector):
    for req in _split_requirements(selector):
        m = _SET_RE.match(req)
        if m:
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            inside = labels.get(m.group(1)) in values
            if inside != (m.group(2) == "in"):
                return False
            continue
        m = _EQ_RE.match(req)
        if m:
            equal = labels.get(m.group(1)) == m.group(3)
            if equal != (m.group(2) != "!="):
                return False
            continue
        m = _EXISTS_RE.match(req)
        if not m:
            raise SimError(400, "BadRequest", "unable to parse requirement: %r" % req)
        if (m.group(2) in labels) == bool(m.group(1)):
            return False
    return True


def matches_fields(pod, selector):
    for req in _split_requirements(selector):
        m = _EQ_RE.match(req)
        if not m or m.group(1) not in POD_FIELDS:
            raise SimError(400, "BadRequest", '"%s" is not a known field selector: only "%s"'
                           % (req.strip(), '", "'.join(POD_FIELDS)))
        equal = POD_FIELDS[m.group(1)](pod) == m.group(3)
        if equal != (m.group(2) != "!="):
            return False
    return True


def _encode_continue(version, after):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": version, "start": after}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token):
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
        return data["rv"], tuple(data["start"])
    except (ValueError, KeyError, TypeError):
        raise SimError(400, "BadRequest", "continue key is not valid: %s" % token[:40]) from None


def _page(items, label_selector, field_selector, limit, continue_token, version):
    """(items of this page, continue token or "", remainingItemCount or None, resourceVersion)."""
    if continue_token:
        version, after = _decode_continue(continue_token)
        items = [p for p in items if (p["metadata"]["namespace"], p["metadata"]["name"]) > after]
    if label_selector:
        items = [p for p in items if matches_labels(p["metadata"].get("labels") or {}, label_selector)]
    if field_selector:
        items = [p for p in items if matches_fields(p, field_selector)]
    if not limit or len(items) <= limit:
        return items, "", None, version
    page, rest = items[:limit], len(items) - limit
    last = page[-1]["metadata"]
    token = _encode_continue(version, (last["namespace"], last["name"]))
    remaining = None if (label_selector or field_selector) else rest
    return page, token, remaining, version


def now_rfc3339(epoch=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch is None else epoch))
