"""The Kubernetes side: DSS's pods (containerized execution) as process-like records.

A pod source beside the host scanner. With the official `kubernetes` client (in-cluster config, a kubeconfig
path, or a context name) it lists the pods carrying DSS's label `dataiku.com/dku-install-id` (optionally only
one install id: this DSS node's), in the configured namespaces (or cluster-wide), page by page (`limit` /
`continue`), with labels, phase, node, start time, requests and limits; memory and CPU come from the metrics API
(`metrics.k8s.io/v1beta1` pods, served by metrics-server) where it answers, else the record carries requests and
limits only and the listing says so.

Records, not a new world: each pod becomes a `PodRecord`, a `host.ProcessRecord` with a few more fields, so
what takes process records (role totals, charts, history, rendering) takes pods too:
- `role` comes from the pod's execution type label (POD_ROLES, data) and Spark's own `spark-role` label;
- there is no pid: `pid` is a synthetic NEGATIVE number below -PID_MAX_LIMIT (derived from the pod's uid, unique
  within a listing), which no process and no process group can have (Linux pids are at most 2**22), so it can
  never be joined to, confused with or signalled as a host process; `ppid == pid` (a root: no tree);
  `created_at` is the pod's start time; `where` says where it runs (`k8s/<node>`), `node`, `namespace`,
  `pod_name`, `uid` say which pod it is;
- memory: `rss_bytes` and `rss_anon_bytes` are the metrics API's memory usage (the containers' working set, the
  closest figure Kubernetes gives to RssAnon; summed over containers), None without metrics; `cpu_percent` is
  the usage in cores x 100. `memory_source` says which (`metrics` or `requests/limits only`).

Failures are notes and error rows, never a crash: a 403 names the namespace and the missing permission (see
docs/kubernetes.md for the minimal RBAC), an unreachable cluster is `reachable=False` with one note, a missing
metrics API is a note. No `kubernetes` object leaves this module: records in, records out. The `kubernetes`
package is imported lazily (the rest of the plugin works without it).
"""
import calendar
import json
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from . import roles as catalogue
from .errors import ConfigError, ProcessTrackerError
from .host import ProcessRecord
from .identifiers import safe_text, shown

logger = logging.getLogger(__name__)

__all__ = ["PodSettings", "PodRecord", "PodError", "PodListing", "PodSourceError", "POD_ROLES", "make_api_client",
           "list_pods", "check_k8s", "settings_from_config", "dss_label"]

LABEL_PREFIX = "dataiku.com/"
INSTALL_ID_LABEL = LABEL_PREFIX + "dku-install-id"
PID_MAX_LIMIT = 1 << 22  # Linux's highest possible pid (and process group id)
_PID_SPAN = (1 << 31) - PID_MAX_LIMIT - 2
MEMORY_FROM_METRICS = "metrics"
MEMORY_FROM_SPEC = "requests/limits only"

# execution type (DSS's `dku-execution-type` label, compared lower-cased) -> (role id, label, the activity kind
# DSS lists for it: what explains such a pod, None when DSS's public API lists nothing for it)
POD_ROLES = {
    "jupyter_notebook_kernel": ("jupyter_kernel", "notebook kernel pod", "notebook_session"),
    "job_activity": ("container_recipe", "recipe pod", "job"),
    "webapp_backend": ("webapp_backend", "webapp backend pod", "webapp"),
    "analysis_ml_train": ("ml_training", "ML training pod", "future"),
    "api_deployer_deployment": ("apinode", "API deployment pod", None),
}
# Spark's own `spark-role` label wins over the execution type for the role (the explaining kind stays the type's)
SPARK_ROLES = {"driver": ("spark_driver", "Spark driver pod"), "executor": ("spark_executor", "Spark executor pod")}
OTHER_POD = ("dss_other", "DSS pod", None)
FALLBACK_ROLE = "dss_other"  # a role id the catalogue does not know (yet) shows as this, keeping its label

# DSS labels kept on a record (short name without the prefix); values are label values (checked)
KEPT_LABELS = ("dku-exec-submitter", "dku-execution-id", "dku-install-id", "dku-execution-type", "dku-project-key",
               "dku-job-id", "dku-activity-id", "dku-webapp-id", "dku-analysis-id", "dku-mltask-id",
               "dku-mltask-session-id", "dku-apideployer-infra-id", "dku-apideployer-service-id",
               "dku-apideployer-deployment-id")
SPARK_LABELS = ("spark-role", "spark-app-selector")

# Kubernetes names (docs/kubernetes.md cites the rules): a namespace is a DNS-1123 label, a pod name a DNS-1123
# subdomain, label values are at most 63 characters of [A-Za-z0-9_.-] starting and ending alphanumeric.
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
K8S_KINDS = {
    "namespace": (re.compile(r"\A%s\Z" % _DNS_LABEL), 63, "a DNS-1123 label (lower-case letters, digits, '-')"),
    "pod_name": (re.compile(r"\A%s(?:\.%s)*\Z" % (_DNS_LABEL, _DNS_LABEL)), 253,
                 "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')"),
    "label_value": (re.compile(r"\A(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)\Z"), 63,
                    "a label value (letters, digits, '-', '_', '.'; at most 63)"),
    "context": (re.compile(r"\A[A-Za-z0-9_.@:/-]{1,253}\Z"), 253, "a kubeconfig context name"),
}


NOT_INSTALLED = ("kubernetes client not installed: the `kubernetes` package is missing from this code environment "
                 "(add kubernetes>=29,<38 to it; docs/kubernetes.md): pods are not listed")


class PodSourceError(ProcessTrackerError):
    """The pod source cannot work at all (no kubernetes client, an unreadable kubeconfig): said once, readable."""


def check_k8s(kind, value, param=None):
    """`value` if it is a valid Kubernetes `kind` (namespace, pod_name, label_value, context), else ConfigError."""
    regex, limit, accepted = K8S_KINDS[kind]
    if not isinstance(value, str) or len(value) > limit or not regex.match(value):
        raise ConfigError(param or kind, "not a valid %s: %s; accepted: %s"
                          % (kind.replace("_", " "), shown(value, 80), accepted))
    return value


def _valid(kind, value):
    try:
        check_k8s(kind, value)
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class PodSettings:
    """Where the cluster is and what to list. One of `in_cluster`, `kubeconfig` (a path) or `context` (a context
    of the default kubeconfig, or of `kubeconfig`); none: the default kubeconfig's current context.
    `namespaces`: empty lists cluster-wide (needs a ClusterRole); `install_id`: only this DSS node's pods.
    `allow_delete`: the opt-in for deleting orphan pods (off by default; see pod_actions)."""

    in_cluster: bool = False
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespaces: Tuple[str, ...] = ()
    install_id: Optional[str] = None
    page_size: int = 500
    timeout_seconds: float = 10.0
    metrics: bool = True
    allow_delete: bool = False

    def __post_init__(self):
        if isinstance(self.namespaces, str) or not isinstance(self.namespaces, (tuple, list)):
            raise ConfigError("namespaces", "a list of namespaces, got %s" % shown(self.namespaces))
        object.__setattr__(self, "namespaces", tuple(dict.fromkeys(
            check_k8s("namespace", n, "namespaces") for n in self.namespaces)))
        if self.install_id is not None:
            check_k8s("label_value", self.install_id.lower(), "install_id")
        if self.context is not None:
            check_k8s("context", self.context, "context")
        if self.kubeconfig is not None and (not isinstance(self.kubeconfig, str) or not self.kubeconfig.strip()):
            raise ConfigError("kubeconfig", "a path to a kubeconfig file, got %s" % shown(self.kubeconfig))
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or not 1 <= self.page_size <= 5000:
            raise ConfigError("page_size", "an integer from 1 to 5000, got %s" % shown(self.page_size))
        t = self.timeout_seconds
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 600:
            raise ConfigError("timeout_seconds", "a number of seconds in (0, 600], got %s" % shown(t))
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ConfigError("in_cluster", "in-cluster configuration excludes a kubeconfig path or context")


# macro / webapp parameter name -> PodSettings field
CONFIG_KEYS = {"k8sInCluster": "in_cluster", "k8sKubeconfig": "kubeconfig", "k8sContext": "context",
               "k8sNamespaces": "namespaces", "k8sInstallId": "install_id", "k8sPageSize": "page_size",
               "k8sTimeoutSeconds": "timeout_seconds", "k8sMetrics": "metrics", "k8sAllowDelete": "allow_delete"}


def settings_from_config(config: Mapping[str, object]) -> PodSettings:
    """PodSettings from a macro or webapp config (CONFIG_KEYS); empty strings are unset; bad values raise
    ConfigError naming the parameter."""
    kwargs = {}
    for key, name in CONFIG_KEYS.items():
        value = config.get(key)
        if value is None or value == "":
            continue
        if name == "namespaces" and isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value) if v]
        kwargs[name] = value
    try:
        return PodSettings(**kwargs)
    except ConfigError as e:
        reverse = {v: k for k, v in CONFIG_KEYS.items()}
        raise e.renamed(reverse.get(e.param, e.param)) from None


def install_id_from_dip_home(dip_home: Optional[str]) -> Optional[str]:
    """This DSS node's install id from `<DIP_HOME>/install.ini` (DSS labels its pods with it), or None when the
    file or the value is missing or is not a label value. The option's name is taken as `installid` in any
    section (unconfirmed: see docs/kubernetes.md)."""
    import configparser

    if not dip_home:
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(os.path.join(dip_home, "install.ini")) as f:
            parser.read_file(f)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    for section in parser.sections():
        value = parser[section].get("installid")
        if value and _valid("label_value", value.strip().lower()):
            return value.strip().lower()
    return None


def settings_if_enabled(config: Mapping[str, object], dip_home: Optional[str] = None) -> Optional[PodSettings]:
    """PodSettings when `config` turns the pod source on (`k8sEnabled` true), else None (the default: off).
    `k8sThisNodeOnly` (without `k8sInstallId`): only the pods of this node's install id, read from `dip_home`."""
    if config.get("k8sEnabled") not in (True, "true", "True", 1):
        return None
    config = dict(config)
    if config.get("k8sThisNodeOnly") in (True, "true", "True", 1) and not config.get("k8sInstallId"):
        install_id = install_id_from_dip_home(dip_home)
        if install_id is None:
            raise ConfigError("k8sThisNodeOnly", "cannot read this DSS node's install id (installid in install.ini "
                              "of the data directory %s); turn this setting off to list the pods of every install id"
                              % shown(dip_home or "(DIP_HOME is not set)", 200))
        config["k8sInstallId"] = install_id
    return settings_from_config(config)


@dataclass(frozen=True)
class PodRecord(ProcessRecord):
    """A pod as a process-like record (see the module docstring: synthetic negative pid, `where`)."""

    where: str = ""  # "k8s/<node>" (or "k8s/unscheduled")
    namespace: str = ""
    pod_name: str = ""
    node: Optional[str] = None
    uid: str = ""
    phase: str = ""  # Pending, Running, Succeeded, Failed, Unknown
    execution_type: Optional[str] = None  # DSS's label, lower-cased
    labels: Mapping[str, str] = field(default_factory=dict)  # DSS and Spark labels, short names, checked values
    explained_by: Optional[str] = None  # the activity kind that explains such a pod (POD_ROLES)
    memory_source: str = MEMORY_FROM_SPEC
    memory_request_bytes: Optional[int] = None
    memory_limit_bytes: Optional[int] = None
    cpu_request_cores: Optional[float] = None
    cpu_limit_cores: Optional[float] = None


@dataclass(frozen=True)
class PodError:
    """A namespace (None: cluster-wide) whose pods or metrics could not be read; `status` the HTTP status."""

    namespace: Optional[str]
    what: str  # "pods" or "metrics"
    message: str
    status: Optional[int] = None


@dataclass(frozen=True)
class PodListing:
    taken_at: float
    pods: Tuple[PodRecord, ...]
    errors: Tuple[PodError, ...]
    notes: Tuple[str, ...]
    reachable: bool = True  # False: the cluster did not answer (a banner)
    memory_source: str = MEMORY_FROM_METRICS  # for the whole listing: metrics, or requests/limits only


def dss_label(pod: PodRecord, short_name: str) -> Optional[str]:
    """A DSS label of a pod record by its short name (e.g. "dku-project-key"), None when absent."""
    return pod.labels.get(short_name)


# ----- the client --------------------------------------------------------------------------------------------


def make_api_client(settings: PodSettings):
    """A `kubernetes.client.ApiClient` from the settings. PodSourceError when the client is missing or the
    configuration cannot be loaded (the message names the setting)."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise PodSourceError(NOT_INSTALLED) from None
    cfg = client.Configuration()
    try:
        if settings.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(config_file=settings.kubeconfig, context=settings.context,
                                    client_configuration=cfg, persist_config=False)
    except (config.ConfigException, OSError, ValueError, TypeError) as e:
        where = "in-cluster configuration" if settings.in_cluster else "kubeconfig %s" % (
            shown(settings.kubeconfig) if settings.kubeconfig else "(default)")
        raise PodSourceError("cannot load the %s: %s" % (where, safe_text(str(e), 200))) from None
    cfg.retries = 1  # one retry of a failed connection, then the cluster is unreachable (a note)
    return client.ApiClient(cfg)


def _apis(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)


def client_failure(exc):
    """(HTTP status or None, readable message, unreachable?) for an exception from the kubernetes client."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = exc.reason or ""
        try:
            body = json.loads(exc.body) if exc.body else {}
            message = body.get("message") or message
        except (ValueError, TypeError, AttributeError):
            pass
        return exc.status, safe_text(message, 300), False
    # a ValueError is an answer that could not be read (not JSON, not a list): the cluster did answer
    return None, safe_text("%s: %s" % (type(exc).__name__, exc), 300), not isinstance(exc, ValueError)


def is_client_failure(exc):
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, (ApiException, urllib3.exceptions.HTTPError, OSError))


# ----- listing -----------------------------------------------------------------------------------------------

MAX_PAGES = 10000  # a server that keeps answering `continue` forever is cut here (a note)


def _selector(settings):
    if settings.install_id:
        return "%s=%s" % (INSTALL_ID_LABEL, settings.install_id.lower())
    return INSTALL_ID_LABEL


def request_timeout(settings):
    return (min(5.0, settings.timeout_seconds), settings.timeout_seconds)


def _list_pages(core, namespace, selector, settings):
    """Every pod of one namespace (None: cluster-wide) matching `selector`, page by page (`limit` / `continue`).
    A `continue` token that expired (410) restarts the list once. Raises the client's exceptions."""
    from kubernetes.client.exceptions import ApiException

    items, token, restarted = [], None, False
    for _ in range(MAX_PAGES):
        kwargs = {"label_selector": selector, "limit": settings.page_size, "_request_timeout": request_timeout(settings),
                  "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        try:
            if namespace is None:
                resp = core.list_pod_for_all_namespaces(**kwargs)
            else:
                resp = core.list_namespaced_pod(namespace, **kwargs)
        except ApiException as e:
            if e.status == 410 and token and not restarted:
                items, token, restarted = [], None, True
                continue
            raise
        doc = json.loads(resp.data)
        if not isinstance(doc, dict) or not isinstance(doc.get("items") or [], list):
            raise ValueError("the API server answered with an unexpected shape (not a PodList)")
        items.extend(i for i in (doc.get("items") or []) if isinstance(i, dict))
        meta = doc.get("metadata")
        token = meta.get("continue") if isinstance(meta, dict) else None
        if not token:
            return items
    raise ValueError("more than %d pages of pods: listing cut" % MAX_PAGES)


def _explain(status, message, namespace, what, resource="pods"):
    where = 'in namespace "%s"' % namespace if namespace else "cluster-wide"
    if status == 403:
        return ("not allowed to %s %s (RBAC: grant get, list and watch on %s there; see docs/kubernetes.md): %s"
                % (what, where, resource, message))
    if status == 401:
        return "the cluster refused the credentials (401) to %s %s: %s" % (what, where, message)
    return "could not %s %s (HTTP %s): %s" % (what, where, status, message)


def _read_metrics(custom, scopes, selector, settings):
    """({(namespace, name): (memory bytes, cpu cores)}, notes, complete?) from metrics.k8s.io/v1beta1 pods."""
    usage, notes, complete = {}, [], True
    for ns in scopes:
        kwargs = {"label_selector": selector, "_request_timeout": request_timeout(settings)}
        try:
            if ns is None:
                doc = custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "pods", **kwargs)
            else:
                doc = custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", ns, "pods", **kwargs)
        except Exception as exc:
            if not (is_client_failure(exc) or isinstance(exc, ValueError)):
                raise
            status, message, _unreachable = client_failure(exc)
            complete = False
            if status == 404:
                notes.append("the metrics API (metrics.k8s.io) is not served (is metrics-server installed?): "
                             "pods show requests and limits only")
                return {}, notes, False
            notes.append("%s; pods there show requests and limits only"
                         % _explain(status, message, ns, "read pod metrics", "pods.metrics.k8s.io"))
            continue
        for item in (doc.get("items") or []) if isinstance(doc, dict) else []:
            key, value = _usage(item)
            if key is not None:
                usage[key] = value
    return usage, notes, complete


def _usage(item):
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict):
        return None, None
    memory, cpu = 0, 0.0
    for c in item.get("containers") or []:
        u = (c or {}).get("usage") or {}
        m, k = _quantity(u.get("memory")), _quantity(u.get("cpu"))
        if m is None or k is None:
            return None, None
        memory, cpu = memory + int(m), cpu + float(k)
    return (meta.get("namespace"), meta.get("name")), (memory, cpu)


def list_pods(api_client, settings: PodSettings, now: Optional[float] = None) -> PodListing:
    """DSS's pods (see the module docstring) through `api_client` (make_api_client, or any configured
    kubernetes ApiClient). Never raises for what the cluster answers: errors and notes are in the listing."""
    now = time.time() if now is None else now
    core, custom = _apis(api_client)
    selector = _selector(settings)
    scopes = settings.namespaces or (None,)
    raw, errors, notes = [], [], []
    for ns in scopes:
        try:
            raw.extend(_list_pages(core, ns, selector, settings))
        except Exception as exc:
            if not (is_client_failure(exc) or isinstance(exc, ValueError)):
                raise
            status, message, unreachable = client_failure(exc)
            if unreachable:
                notes.append("the Kubernetes cluster did not answer: %s" % message)
                return PodListing(now, (), tuple(errors), tuple(notes), reachable=False, memory_source=MEMORY_FROM_SPEC)
            errors.append(PodError(ns, "pods", _explain(status, message, ns, "list pods"), status))
    if settings.metrics and raw:
        usage, metric_notes, complete = _read_metrics(custom, scopes, selector, settings)
        notes.extend(metric_notes)
    else:
        usage, complete = {}, settings.metrics
        if not settings.metrics:
            notes.append("pod metrics are turned off: pods show requests and limits only")
    records, skipped = _records(raw, usage, now)
    if skipped:
        notes.append("%d pod(s) skipped: a name, namespace or uid the API should never give" % skipped)
    source = MEMORY_FROM_METRICS if complete else MEMORY_FROM_SPEC
    return PodListing(now, tuple(records), tuple(errors), tuple(notes), True, source)


# ----- records -----------------------------------------------------------------------------------------------

_TIME_RE = re.compile(r"\A(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")


def _epoch(value):
    """RFC 3339 time (as the API serves it) -> epoch seconds; None when absent or odd."""
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if not m:
        return None
    seconds = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)
    zone = m.group(3)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds


def _quantity(value):
    """A Kubernetes quantity ("512Mi", "250m", "2") as a Decimal; None when absent or not a quantity."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        return None


def _resources(containers, which, name):
    """Sum of one resource (`which` requests|limits, `name` memory|cpu) over containers; None if none sets it."""
    total, seen = 0, False
    for c in containers:
        q = _quantity((((c or {}).get("resources") or {}).get(which) or {}).get(name))
        if q is not None:
            total, seen = total + q, True
    return total if seen else None


def _pod_pid(uid, taken):
    pid = -(PID_MAX_LIMIT + 1 + zlib.crc32(uid.encode()) % _PID_SPAN)
    while pid in taken:
        pid -= 1
    taken.add(pid)
    return pid


def _labels(raw):
    out = {}
    for key, value in (raw or {}).items():
        short = key[len(LABEL_PREFIX):] if isinstance(key, str) and key.startswith(LABEL_PREFIX) else key
        if (short in KEPT_LABELS or short in SPARK_LABELS) and _valid("label_value", value):
            out[short] = value.lower() if short in KEPT_LABELS else value
    return out


def role_of(labels: Mapping[str, str]) -> Tuple[str, str, Optional[str]]:
    """(role id, label, explaining activity kind) of a pod from its labels (POD_ROLES, SPARK_ROLES)."""
    etype = labels.get("dku-execution-type")
    role, label, kind = POD_ROLES.get(etype, OTHER_POD) if etype else OTHER_POD
    spark = SPARK_ROLES.get(labels.get("spark-role", ""))
    if spark is not None:
        role, label = spark
    if role not in catalogue.ROLE_IDS:
        role = FALLBACK_ROLE
    return role, label, kind


def _record(item, usage, now, taken):
    meta, spec, status = (item.get(k) if isinstance(item.get(k), dict) else {} for k in ("metadata", "spec", "status"))
    ns, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid")
    if not (_valid("namespace", ns) and _valid("pod_name", name) and isinstance(uid, str) and 0 < len(uid) <= 128):
        return None
    labels = _labels(meta.get("labels"))
    role, label, kind = role_of(labels)
    node = spec.get("nodeName") if _valid("pod_name", spec.get("nodeName")) else None
    started = _epoch(status.get("startTime")) or _epoch(meta.get("creationTimestamp")) or now
    containers = [c for c in (spec.get("containers") or []) if isinstance(c, dict)]
    used = usage.get((ns, name))
    pid = _pod_pid(uid, taken)
    mem_req, mem_lim = _resources(containers, "requests", "memory"), _resources(containers, "limits", "memory")
    cpu_req, cpu_lim = _resources(containers, "requests", "cpu"), _resources(containers, "limits", "cpu")
    return PodRecord(
        pid=pid, ppid=pid, created_at=started, name=name, role=role, label=label,
        user=labels.get("dku-exec-submitter"), instance=None,
        rss_bytes=used[0] if used else None, rss_anon_bytes=used[0] if used else None,
        cpu_percent=round(used[1] * 100.0, 2) if used else None,
        age_seconds=max(0.0, now - started),
        ids={k: v for k, v in (("namespace", ns), ("pod", name), ("node", node),
                               ("project_key", labels.get("dku-project-key")),
                               ("execution_id", labels.get("dku-execution-id"))) if v},
        where="k8s/%s" % (node or "unscheduled"), namespace=ns, pod_name=name, node=node, uid=uid,
        phase=status.get("phase") if isinstance(status.get("phase"), str) else "Unknown",
        execution_type=labels.get("dku-execution-type"), labels=labels, explained_by=kind,
        memory_source=MEMORY_FROM_METRICS if used else MEMORY_FROM_SPEC,
        memory_request_bytes=None if mem_req is None else int(mem_req),
        memory_limit_bytes=None if mem_lim is None else int(mem_lim),
        cpu_request_cores=None if cpu_req is None else float(cpu_req),
        cpu_limit_cores=None if cpu_lim is None else float(cpu_lim),
    )


def _records(raw, usage, now) -> Tuple[List[PodRecord], int]:
    """Records sorted by (namespace, name); pods seen twice (a restarted list) once; (records, skipped)."""
    taken, seen, out, skipped = set(), set(), [], 0
    for item in sorted(raw, key=lambda i: str((i.get("metadata") or {}).get("uid"))):
        uid = (item.get("metadata") or {}).get("uid")
        if uid in seen:
            continue
        seen.add(uid)
        rec = _record(item, usage, now, taken)
        if rec is None:
            skipped += 1
        else:
            out.append(rec)
    out.sort(key=lambda p: (p.namespace, p.pod_name))
    return out, skipped


def by_node(pods) -> Dict[str, List[PodRecord]]:
    """Pods grouped by node ("unscheduled" for pending pods), for a treemap by node."""
    out: Dict[str, List[PodRecord]] = {}
    for p in pods:
        out.setdefault(p.node or "unscheduled", []).append(p)
    return out


def with_pods(snapshot, pods):
    """A host.Snapshot with the pods added to its processes and role totals: what the history, the charts and
    the exporter take. The scan's own stats are the host's (pods are not scanned)."""
    from dataclasses import replace

    from .host import role_totals

    processes = tuple(snapshot.processes) + tuple(pods)
    return replace(snapshot, processes=processes, roles=role_totals(processes))


def where_text(pod: PodRecord) -> str:
    """Where a pod runs, for a table's "where" column: `pod <namespace>/<name> on <node>`."""
    return "pod %s/%s on %s" % (pod.namespace, pod.pod_name, pod.node or "no node (unscheduled)")


# The role series of pods, in the history and in Prometheus-mode history, are kept apart from the host's:
# "pod:<role>" (e.g. "pod:jupyter_kernel"), drawn as "<role's name> (pods)" in the role's colour.
SERIES_PREFIX = "pod:"


def series_role(role: str) -> str:
    """The history's role key of a pod role (see SERIES_PREFIX)."""
    return SERIES_PREFIX + role


def base_role(series: str) -> Optional[str]:
    """The role of a pod series key ("pod:jupyter_kernel" -> "jupyter_kernel"), None for a host role."""
    return series[len(SERIES_PREFIX):] if isinstance(series, str) and series.startswith(SERIES_PREFIX) else None


def pod_to_json(p: PodRecord) -> Dict[str, object]:
    """The documented JSON of one pod: host.process_to_json's keys (pid synthetic, negative) plus where it runs,
    its phase, requests, limits and where its memory figure comes from."""
    from .host import process_to_json

    out = process_to_json(p)
    out.update({"where": p.where, "namespace": p.namespace, "pod": p.pod_name, "node": p.node, "phase": p.phase,
                "execution_type": p.execution_type, "labels": dict(p.labels), "memory_source": p.memory_source,
                "memory_request_bytes": p.memory_request_bytes, "memory_limit_bytes": p.memory_limit_bytes,
                "cpu_request_cores": p.cpu_request_cores, "cpu_limit_cores": p.cpu_limit_cores,
                "age_seconds": p.age_seconds})
    return out


def for_treemap(records):
    """Records for `charts.treemap`, which groups by `instance`: a pod's `where` (`k8s/<node>`) takes that place,
    so pods group by node beside the host's instances. Host records are returned as they are."""
    from dataclasses import replace

    return [replace(r, instance=r.where) if isinstance(r, PodRecord) else r for r in records]
