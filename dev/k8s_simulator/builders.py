"""Pods and pod metrics in the API server's JSON shapes, labelled the way DSS labels its pods.

DSS's labels (docs: /work/shared/dss-reference.md section 5): `dataiku.com/dku-exec-submitter`,
`dku-execution-id`, `dku-install-id`, `dku-execution-type` and, where they apply, `dku-project-key`,
`dku-job-id`, `dku-activity-id`, `dku-webapp-id`, `dku-analysis-id`, `dku-mltask-id`, ... Label values are
lower-cased, as DSS does (project keys and job ids appear lower-case on real pods).
"""
import time
import uuid

from .cluster import now_rfc3339

PREFIX = "dataiku.com/"
# builder keyword -> DSS label key
DSS_LABELS = {
    "submitter": "dku-exec-submitter",
    "execution_id": "dku-execution-id",
    "install_id": "dku-install-id",
    "execution_type": "dku-execution-type",
    "project_key": "dku-project-key",
    "job_id": "dku-job-id",
    "activity_id": "dku-activity-id",
    "webapp_id": "dku-webapp-id",
    "analysis_id": "dku-analysis-id",
    "mltask_id": "dku-mltask-id",
    "deployment_id": "dku-apideployer-deployment-id",
}
DEFAULT_INSTALL_ID = "a1b2c3d4e5"


def dss_pod(name, namespace="dss", execution_type="JUPYTER_NOTEBOOK_KERNEL", node="node-1", phase="Running",
            started_ago=3600.0, requests=None, limits=None, extra_labels=None, now=None, uid=None,
            containers=("c",), **dss):
    """A Pod (v1) as the API server serves it. `dss` keywords are DSS_LABELS keys (values are lower-cased);
    `requests` / `limits` are per-container resource dicts such as {"memory": "2Gi", "cpu": "500m"}."""
    now = time.time() if now is None else now
    dss.setdefault("install_id", DEFAULT_INSTALL_ID)
    dss.setdefault("submitter", "admin")
    dss.setdefault("execution_id", name.rsplit("-", 1)[-1])
    labels = {PREFIX + DSS_LABELS["execution_type"]: execution_type.lower()}
    for key, value in dss.items():
        if value is not None:
            labels[PREFIX + DSS_LABELS[key]] = str(value).lower()
    labels.update(extra_labels or {})
    resources = {}
    if requests:
        resources["requests"] = dict(requests)
    if limits:
        resources["limits"] = dict(limits)
    started = now_rfc3339(now - started_ago)
    status = {"phase": phase, "podIP": "10.0.0.%d" % (abs(hash(name)) % 250 + 1), "qosClass": "Burstable"}
    if phase != "Pending":
        status["startTime"] = started
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
                     "creationTimestamp": started, "labels": labels},
        "spec": {"nodeName": node if phase != "Pending" else None,
                 "containers": [{"name": c, "image": "dku-exec-base-%s:dss-15.2.0" % DEFAULT_INSTALL_ID,
                                 "resources": resources} for c in containers]},
        "status": status,
    }


def pod_metrics(pod, memory="512Mi", cpu="250m", now=None):
    """PodMetrics (metrics.k8s.io/v1beta1) for `pod`: every container uses `memory` (working set) and `cpu`."""
    meta = pod["metadata"]
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": dict(meta.get("labels") or {}),
                     "creationTimestamp": now_rfc3339(now)},
        "timestamp": now_rfc3339(now),
        "window": "30s",
        "containers": [{"name": c["name"], "usage": {"cpu": cpu, "memory": memory}}
                       for c in pod["spec"]["containers"]],
    }


def spark_labels(role, app_id="spark-0123456789abcdef"):
    """Spark's own labels on a Spark-on-Kubernetes pod (`spark-role` driver / executor, `spark-app-selector`)."""
    return {"spark-role": role, "spark-app-selector": app_id}


def notebook_kernel_labels():
    """The extra label of a notebook kernel pod (`jobgroup=dataiku-exec`)."""
    return {"jobgroup": "dataiku-exec"}
