"""Flask routes of the simulated Kubernetes API server (the few the pod source uses; see dev/README.md)."""
import copy
import json
import time

from flask import Flask, Response, request

from .cluster import POD_METRICS, PODS, Request, SimError, now_rfc3339

METRICS = "/apis/metrics.k8s.io/v1beta1"


def _json(obj, status=200):
    return Response(json.dumps(obj), status=status, mimetype="application/json")


def _status(err):
    """A `Status` object (kind Status, apiVersion v1, status Failure), as the API server answers errors."""
    return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": err.message, "reason": err.reason, "details": err.details, "code": err.code}, err.code)


def _token():
    auth = request.headers.get("Authorization", "")
    return auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else None


def _limit():
    raw = request.args.get("limit")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SimError(400, "BadRequest", "limit: not an integer: %s" % raw[:20]) from None
    return value if value > 0 else None


def _refuse_watch():
    if request.args.get("watch") in ("true", "1"):
        raise SimError(400, "BadRequest", "watch is not simulated (the plugin does not watch)")


def list_pods(cluster, token, namespace=None):
    _refuse_watch()
    cluster.authorize(token, "list", PODS, namespace)
    items, cont, remaining, version = cluster.list_pods(
        namespace, request.args.get("labelSelector"), request.args.get("fieldSelector"), _limit(),
        request.args.get("continue"))
    if cluster.malformed_lists:
        return Response("<html>502 Bad Gateway</html>", status=200, mimetype="application/json")
    meta = {"resourceVersion": version}
    if cont:
        meta["continue"] = cont
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    return _json({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items})


def _not_found(name):
    return SimError(404, "NotFound", 'pods "%s" not found' % name, {"name": name, "kind": "pods"})


def get_pod(cluster, token, namespace, name):
    cluster.authorize(token, "get", PODS, namespace)
    pod = cluster.pods.get((namespace, name))
    if pod is None:
        raise _not_found(name)
    return _json(pod)


def delete_pod(cluster, token, namespace, name):
    """Delete with an optional `preconditions.uid` (409 Conflict when it is not the pod's); answers the Pod."""
    cluster.authorize(token, "delete", PODS, namespace)
    body = request.get_json(silent=True, force=True) or {}
    wanted_uid = ((body.get("preconditions") or {}).get("uid")) if isinstance(body, dict) else None
    with cluster.lock:
        pod = cluster.pods.get((namespace, name))
        if pod is None:
            raise _not_found(name)
        if wanted_uid and wanted_uid != pod["metadata"]["uid"]:
            raise SimError(409, "Conflict", 'Operation cannot be fulfilled on Pod "%s": Precondition failed: '
                           "UID in precondition: %s, UID in object meta: %s"
                           % (name, wanted_uid, pod["metadata"]["uid"]), {"name": name, "kind": "pods"})
        cluster.remove_pod(namespace, name)
        cluster.deleted.append((namespace, name))
    gone = copy.deepcopy(pod)
    gone["metadata"]["deletionTimestamp"] = now_rfc3339()
    gone["metadata"]["deletionGracePeriodSeconds"] = 0
    return _json(gone)


def list_metrics(cluster, token, namespace=None):
    if cluster.metrics_mode == "absent":
        raise SimError(404, "NotFound", "the server could not find the requested resource")
    if cluster.metrics_mode == "unavailable":
        raise SimError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
    _refuse_watch()
    cluster.authorize(token, "list", POD_METRICS, namespace)
    items = cluster.list_metrics(namespace, request.args.get("labelSelector"))
    return _json({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items})


ROUTES = (
    ("/api/v1/pods", list_pods, "GET"),
    ("/api/v1/namespaces/<namespace>/pods", list_pods, "GET"),
    ("/api/v1/namespaces/<namespace>/pods/<name>", get_pod, "GET"),
    ("/api/v1/namespaces/<namespace>/pods/<name>", delete_pod, "DELETE"),
    (METRICS + "/pods", list_metrics, "GET"),
    (METRICS + "/namespaces/<namespace>/pods", list_metrics, "GET"),
)


def _view(cluster, fn):
    """A route's view: latency fault, the answer or the error's Status object, and the request log."""

    def view(**kw):
        token = _token()
        if cluster.latency_seconds:
            time.sleep(cluster.latency_seconds)
        try:
            resp = fn(cluster, token, **kw)
        except SimError as e:
            resp = _status(e)
        with cluster.lock:
            cluster.requests.append(Request(request.method, request.path, request.query_string.decode(), token,
                                            resp.status_code))
        return resp

    return view


def create_app(cluster):
    app = Flask("k8s_simulator")
    for i, (rule, fn, method) in enumerate(ROUTES):
        app.add_url_rule(rule, endpoint="%s_%d" % (fn.__name__, i), view_func=_view(cluster, fn), methods=[method])

    @app.errorhandler(404)
    def not_found(_e):
        return _status(SimError(404, "NotFound", "the server could not find the requested resource"))

    return app
