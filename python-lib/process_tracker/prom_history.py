"""History read from Prometheus (range queries over the exporter's metrics), in the SQLite history's shapes.

When the webapp's "Prometheus URL" is set, its history charts come from here instead of history.HistoryStore:
`PrometheusHistory(url).role_series(window, node=...)` returns a `history.RoleSeries` (the same record the
SQLite store returns, so charts.memory_by_role / count_by_role draw it unchanged) and `history_view(...)` the
same /api/history body. `nodes()` lists the DSS hosts Prometheus scrapes (the `instance` of each exporter).

Semantics, as close to the SQLite store as Prometheus allows: one point per display step of history.WINDOWS;
each point is the average over its step (`avg_over_time`, over at least a minute so that a 15 s scrape interval
leaves no gaps), evaluated at the step's end and labelled with its start, summed over the roles' series; a role absent at a step counts as zero. CPU percent is the rate of
`dss_process_cpu_seconds_total` x 100 over the same range. `node=None` sums every node. DSS's pods (the
exporter's `where="pod"` series) are their own series, "pod:<role>", as in the SQLite history.

Only plain HTTP GETs with `requests`; a failure raises PrometheusError (a ProcessTrackerError, message safe to
show), never a raw exception text from the server.
"""
import math
import time
from typing import Dict, List, Optional

from . import history
from .errors import ConfigError, ProcessTrackerError
from .identifiers import safe_text

NODE_METRIC = "process_tracker_exporter_build_info"
MIN_RANGE_SECONDS = 60
MAX_NODE_CHARS = 200
# RoleSeries metric -> PromQL over a selector ({sel}) and a range ({rng})
QUERIES = {
    "count": "sum by (role, where) (avg_over_time(dss_processes{sel}[{rng}]))",
    "rss_anon_bytes": "sum by (role, where) (avg_over_time(dss_process_rss_anon_bytes{sel}[{rng}]))",
    "rss_bytes": "sum by (role, where) (avg_over_time(dss_process_rss_bytes{sel}[{rng}]))",
    "cpu_percent": "sum by (role, where) (rate(dss_process_cpu_seconds_total{sel}[{rng}])) * 100",
}


class PrometheusError(ProcessTrackerError):
    """Prometheus could not be queried (unreachable, refused, or an answer that is not a Prometheus answer)."""


def check_url(url, param="prometheusUrl"):
    """An http(s) base URL without query or fragment; ConfigError naming `param` otherwise."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.strip():
        raise ConfigError(param, "must be an http(s) URL such as http://prometheus:9090")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(param, "must be an http(s) URL such as http://prometheus:9090, got %s"
                          % safe_text(url, 80))
    return url.strip().rstrip("/")


def selector(node: Optional[str]) -> str:
    """`{instance="<node>"}` with the value escaped as a PromQL string; "" for every node."""
    if node is None:
        return ""
    if not isinstance(node, str) or not node or len(node) > MAX_NODE_CHARS or any(
            ord(c) < 32 or ord(c) == 127 for c in node):
        raise ConfigError("node", "must be a node name as Prometheus lists it (instance label), got %s"
                          % safe_text(str(node), 60))
    escaped = node.replace("\\", "\\\\").replace('"', '\\"')
    return '{instance="%s"}' % escaped


class PrometheusHistory:
    """Reads the exporter's series from one Prometheus server."""

    def __init__(self, url: str, timeout_seconds: float = 10.0, verify=True, session=None,
                 clock=time.time):
        self.url = check_url(url)
        self.timeout_seconds = timeout_seconds
        self.verify = verify
        self._session = session
        self._clock = clock

    def _get(self, path: str, params) -> object:
        import requests

        session = self._session or requests
        try:
            response = session.get(self.url + path, params=params, timeout=self.timeout_seconds, verify=self.verify)
        except requests.RequestException as exc:
            raise PrometheusError("Prometheus at %s is unreachable (%s)" % (safe_text(self.url, 80),
                                                                            exc.__class__.__name__)) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = safe_text(str(body.get("error", ""))[:200]) if isinstance(body, dict) else ""
            raise PrometheusError("Prometheus answered HTTP %d%s" % (response.status_code,
                                                                    (": " + error) if error else ""))
        return body.get("data")

    def query(self, promql: str, at: Optional[float] = None) -> List[dict]:
        params = {"query": promql}
        if at is not None:
            params["time"] = "%.3f" % at
        data = self._get("/api/v1/query", params)
        return data.get("result", []) if isinstance(data, dict) else []

    def query_range(self, promql: str, start: float, end: float, step: int) -> List[dict]:
        data = self._get("/api/v1/query_range", {"query": promql, "start": "%.3f" % start, "end": "%.3f" % end,
                                                  "step": str(step)})
        return data.get("result", []) if isinstance(data, dict) else []

    def nodes(self) -> List[Dict[str, object]]:
        """Every exporter Prometheus scrapes: [{"node", "up", "dss_datadirs"}], sorted by node."""
        found = {}
        for row in self.query("max by (instance) (%s)" % NODE_METRIC):
            node = row.get("metric", {}).get("instance")
            if isinstance(node, str) and node:
                found[node] = {"node": node, "up": False, "dss_datadirs": []}
        for row in self.query("max by (instance) (up)"):
            node = row.get("metric", {}).get("instance")
            if node in found:
                found[node]["up"] = _number(row.get("value")) == 1
        for row in self.query("count by (instance, dss_datadir) (dss_processes)"):
            labels = row.get("metric", {})
            if labels.get("instance") in found and labels.get("dss_datadir"):
                found[labels["instance"]]["dss_datadirs"].append(labels["dss_datadir"])
        for entry in found.values():
            entry["dss_datadirs"].sort()
        return [found[n] for n in sorted(found)]

    def role_series(self, window: str = "24h", node: Optional[str] = None,
                    now: Optional[float] = None) -> history.RoleSeries:
        """Per-role series over `window` ("1h", "24h", "7d") for one node (None: every node summed)."""
        seconds, step, _ = history.HistoryStore.window(window)
        sel = selector(node)
        now = self._clock() if now is None else now
        end = math.ceil(now / step) * step  # the end of the current step: its data is in, as in SQLite's
        start = end - seconds + step
        rng = "%ds" % max(step, MIN_RANGE_SECONDS)
        raw = {name: self.query_range(q.replace("{sel}", sel).replace("{rng}", rng), start, end, step)
               for name, q in QUERIES.items()}
        return _series(window, step, raw, offset=step)


def _number(pair):
    try:
        return float(pair[1])
    except (TypeError, ValueError, IndexError):
        return None


def _series(window, step, raw, offset=0):
    """A RoleSeries from {metric: range-query result}: times are every evaluation time any series has, minus
    `offset` (a point evaluated at the end of a step is labelled with the step's start, as SQLite's are)."""
    times = sorted({float(v[0]) for result in raw.values() for row in result for v in row.get("values", [])
                    if isinstance(v, (list, tuple)) and v})
    index = {t: i for i, t in enumerate(times)}
    roles = {}
    for name, result in raw.items():
        for row in result:
            role = _series_role(row.get("metric", {}))
            if role is None:
                continue
            series = roles.setdefault(role, {n: [0.0] * len(times) for n in QUERIES})
            for pair in row.get("values", []):
                value = _number(pair)
                if value is not None and math.isfinite(value):
                    series[name][index[float(pair[0])]] = value
    return history.RoleSeries(
        window=window, step_seconds=step, times=tuple(t - offset for t in times),
        roles={role: {n: tuple(v) for n, v in s.items()} for role, s in sorted(roles.items())})


def _series_role(labels):
    """The RoleSeries key of a result row: its role, or "pod:<role>" for DSS's pods (pods.series_role)."""
    from .pods import series_role

    role = labels.get("role")
    if not isinstance(role, str) or not role:
        return None
    return series_role(role) if labels.get("where") == "pod" else role


def history_view(source: PrometheusHistory, window: str, node: Optional[str] = None) -> Dict[str, object]:
    """The /api/history body from Prometheus: the SQLite view's keys plus "source" and "node"."""
    from . import charts

    return dict(charts.history_body(window, source.role_series(window, node=node)), source="prometheus", node=node)


def nodes_view(source: Optional[PrometheusHistory]) -> Dict[str, object]:
    """The /api/nodes body: `{"source": "prometheus", "nodes": [{"node", "up", "dss_datadirs"}]}`, or
    `{"source": "sqlite", "nodes": []}` when no Prometheus is configured (the page then shows no node selector)."""
    if source is None:
        return {"source": "sqlite", "nodes": []}
    return {"source": "prometheus", "nodes": source.nodes()}
