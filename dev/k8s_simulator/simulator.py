"""`K8sSimulator`: the simulated Kubernetes API server on a loopback port, with handles for tests.

    sim = K8sSimulator()
    sim.add(dss_pod("dataiku-exec-remote-notebook-x1", project_key="CHURN"), memory="1Gi")
    with sim.serve() as url:
        api = sim.api_client("reader-token")        # a real kubernetes.client.ApiClient
        ...
"""
import threading
from contextlib import contextmanager

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_app
from .builders import pod_metrics
from .cluster import Cluster


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass

    def log(self, *args, **kwargs):
        pass


class K8sSimulator:
    def __init__(self, cluster=None):
        self.cluster = cluster or Cluster()
        self.app = create_app(self.cluster)
        self.url = None
        self._server = None
        self._thread = None

    # ----- state ---------------------------------------------------------------------------------------------
    def add(self, pod, memory="512Mi", cpu="250m", metrics=True):
        """Add a pod (and its metrics unless `metrics` is False)."""
        return self.cluster.add_pod(pod, pod_metrics(pod, memory, cpu) if metrics else None)

    def remove(self, namespace, name):
        return self.cluster.remove_pod(namespace, name)

    @property
    def requests(self):
        return list(self.cluster.requests)

    # ----- serving -------------------------------------------------------------------------------------------
    def start(self, host="127.0.0.1", port=0):
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        self.url = "http://%s:%d" % (host, self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="k8s-simulator", daemon=True)
        self._thread.start()
        return self.url

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @contextmanager
    def serve(self, host="127.0.0.1", port=0):
        self.start(host, port)
        try:
            yield self.url
        finally:
            self.stop()

    # ----- clients -------------------------------------------------------------------------------------------
    def api_client(self, token="reader-token"):
        """A real `kubernetes.client.ApiClient` for this server with a bearer token."""
        from kubernetes import client

        config = client.Configuration(host=self.url, api_key={"authorization": token},
                                      api_key_prefix={"authorization": "Bearer"})
        return client.ApiClient(config)

    def write_kubeconfig(self, path, token="reader-token", context="sim", namespace="dss"):
        """A kubeconfig file (YAML is a superset of JSON: written as JSON) with one cluster, user and context."""
        import json

        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "sim", "cluster": {"server": self.url}}],
            "users": [{"name": "sim-user", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "sim", "user": "sim-user", "namespace": namespace}}],
        }
        with open(path, "w") as f:
            json.dump(doc, f)
        return path
