"""The Prometheus exporter: scans on its own interval, lists DSS on another, serves /metrics from the last build.

    exporter = Exporter(ExporterOptions(...), make_client=None)   # make_client: DSS enrichment (optional)
    server = serve(exporter, ServeOptions(listen="127.0.0.1:9101"))  # /metrics, /healthz; TLS, basic auth
    exporter.run(stop_event)                                         # scan and listing loops until stop_event

A scrape costs no scan: the scan loop (host.Scanner, every `scan_interval_seconds`) and the listing loop
(activities.list_activities, every `listing_interval_seconds`, only with DSS) each rebuild the metric families
(metrics.py) once and swap them in under a lock; the collector hands the last families to prometheus_client,
which writes the exposition, once per rebuild and format (text or OpenMetrics, gzipped or not): later scrapes
copy those bytes. A failing scan or listing is counted (the previous data is served) and logged in one
line; the loops never die from one.

With pod settings (`ExporterOptions.pods`, pods.PodSettings), a third loop lists DSS's pods on Kubernetes every
`pod_interval_seconds`: they count in the per-role families with `where="pod"`, join to the DSS listing like host
processes (pod_joins), and an unreachable cluster, a refusal or a missing kubernetes client is counted and logged
(the last good pods are served; `process_tracker_exporter_pods_reachable` says so).
"""
import base64
import binascii
import gzip
import hmac
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from socketserver import ThreadingMixIn
from typing import Callable, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from . import metrics
from .errors import ConfigError, ProcessTrackerError
from .host import Scanner, ScanOptions

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9101
HEALTHY_AFTER_INTERVALS = 3  # /healthz fails when the last good scan is older than this many intervals,
HEALTHY_AFTER_SECONDS = 60.0  # and than this (a scan of a busy host may take longer than a short interval)


@dataclass(frozen=True)
class ExporterOptions:
    """scan_interval_seconds: between two scans. listing_interval_seconds: between two DSS listings.
    max_activity_series: activity series kept per metric (the rest summed per kind into activity="other").
    dss_datadirs: report only the processes of these DSS data directories (empty: every DSS process).
    listing_datadir: the data directory of the DSS instance listed (joins are restricted to it; its activities
      are labelled with it); by default the only one of `dss_datadirs`, if one was given."""

    scan_interval_seconds: float = 15.0
    listing_interval_seconds: float = 60.0
    max_activity_series: int = 200
    dss_datadirs: Tuple[str, ...] = ()
    listing_datadir: Optional[str] = None
    scan: ScanOptions = field(default_factory=ScanOptions)
    pods: Optional[object] = None  # pods.PodSettings: list DSS's pods on Kubernetes too
    pod_interval_seconds: float = 30.0
    max_pod_nodes: int = 50  # nodes with their own dss_node_pod* series; the rest are node="other"

    def __post_init__(self):
        n = self.max_pod_nodes
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1000:
            raise ConfigError("max_pod_nodes", "must be an integer from 0 to 1000, got %r" % (n,))
        for name in ("scan_interval_seconds", "listing_interval_seconds", "pod_interval_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 3600:
                raise ConfigError(name, "must be a number of seconds from 0.1 to 3600, got %r" % (value,))
        n = self.max_activity_series
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10000:
            raise ConfigError("max_activity_series", "must be an integer from 0 to 10000, got %r" % (n,))
        if isinstance(self.dss_datadirs, str) or not all(isinstance(d, str) and d for d in self.dss_datadirs):
            raise ConfigError("dss_datadirs", "must be a list of data directory paths")
        if self.listing_datadir is None and len(self.dss_datadirs) == 1:
            object.__setattr__(self, "listing_datadir", self.dss_datadirs[0])


class Exporter:
    """Scans, lists and keeps the last metric families. `collect()` makes it a prometheus_client collector."""

    def __init__(self, options: ExporterOptions, make_client: Optional[Callable[[], object]] = None,
                 clock: Callable[[], float] = time.time, pod_api_factory: Optional[Callable[[], object]] = None):
        self.options = options
        self._pods = None  # pod_views.PodSource when options.pods is set
        if options.pods is not None:
            from .pod_views import PodSource

            self._pods = PodSource(options.pods, ttl_seconds=0.0, now=clock, api_client_factory=pod_api_factory)
        self._make_client = make_client
        self._client = None
        self._clock = clock
        self._scanner = Scanner(options.scan, clock=clock)
        self._lock = threading.Lock()
        self._view = metrics.View(now=clock(), listing_datadir=options.listing_datadir or "",
                                  max_activity_series=options.max_activity_series, max_pod_nodes=options.max_pod_nodes)
        self._snapshot = None
        self._families = metrics.families(self._view)
        self.generation = 0  # +1 at every rebuild of the families (the HTTP side caches its output per generation)

    @property
    def lists_dss(self):
        return self._make_client is not None

    @property
    def lists_pods(self):
        return self._pods is not None

    # -- the prometheus_client collector ----------------------------------------------------------------------
    def collect(self):
        with self._lock:
            return list(self._families)

    def describe(self):
        return self.collect()  # every family exists from the start (empty until a scan): the names are known

    def series_count(self):
        with self._lock:
            return metrics.series_count(self._families)

    # -- scans and listings -----------------------------------------------------------------------------------
    def _reported(self, snapshot):
        dirs = set(self.options.dss_datadirs)
        return tuple(r for r in snapshot.processes if r.role != "not_dss" and (not dirs or r.instance in dirs))

    def scan_once(self):
        """One scan; returns True when it succeeded. A failure is counted and the previous data kept."""
        previous = self._snapshot
        try:
            snapshot = self._scanner.scan()
        except Exception as exc:  # noqa: BLE001 - one failed scan is a counter and a log line, not a dead loop
            logger.warning("scan failed: %s", exc.__class__.__name__)
            self._update(lambda v: replace(v, counters=replace(v.counters, scan_errors=v.counters.scan_errors + 1)))
            return False
        records = self._reported(snapshot)
        paths = {r.cgroup for r in records if r.cgroup}
        cgroups = tuple(c for c in snapshot.cgroups if c.path in paths)
        interval = snapshot.taken_at - previous.taken_at if previous is not None else None

        def apply(view):
            c = view.counters
            cpu = dict(c.cpu_seconds)
            for r in records:
                key = metrics.role_key(r)
                cpu.setdefault(key, 0.0)
                if interval and r.cpu_percent is not None:
                    cpu[key] += r.cpu_percent * interval / 100.0
            kills = dict(c.oom_kills)
            for cg in cgroups:
                value = metrics.oom_kills(self.options.scan.cgroup_root, cg)
                if value is not None:
                    kills[cg.path] = value
            counters = replace(c, scans=c.scans + 1, scan_cpu_seconds=c.scan_cpu_seconds + snapshot.stats.cpu_seconds,
                               cpu_seconds=cpu, oom_kills=kills)
            return replace(view, records=records, cgroups=cgroups, counters=counters, last_scan=snapshot.stats,
                           last_scan_at=snapshot.taken_at, joined=self._join(snapshot, view.inventory, view.pods))

        self._snapshot = snapshot
        self._update(apply)
        return True

    def _join(self, snapshot, inventory, pods=()):
        """The host's processes (and DSS's pods) joined to the DSS listing; None without a listing."""
        if inventory is None or (snapshot is None and not pods):
            return None
        from .joins import join

        joined = join(snapshot, inventory, instance=self.options.listing_datadir) if snapshot is not None else None
        if not pods:
            return joined
        from .pod_joins import join_pods

        return join_pods(pods, inventory, host=joined)

    def list_once(self):
        """One DSS listing (when DSS is configured); returns True when it succeeded without failing calls."""
        if self._make_client is None:
            return False
        from .activities import list_activities

        try:
            if self._client is None:
                self._client = self._make_client()
            inventory = list_activities(self._client, now=self._clock())
        except Exception as exc:  # noqa: BLE001 - one failed listing is a counter and a log line, not a dead loop
            shown = exc if isinstance(exc, ProcessTrackerError) else exc.__class__.__name__  # translated: safe text
            logger.warning("listing DSS activities failed: %s", shown)
            inventory = None
        failed = 1 if inventory is None or inventory.errors else 0
        if inventory is not None and inventory.errors:
            logger.warning("listing DSS activities: %d failing call(s)", len(inventory.errors))
        snapshot = self._snapshot

        def apply(view):
            counters = replace(view.counters, listings=view.counters.listings + 1,
                               listing_errors=view.counters.listing_errors + failed)
            if inventory is None:
                return replace(view, counters=counters)
            return replace(view, inventory=inventory, joined=self._join(snapshot, inventory, view.pods),
                           counters=counters)

        self._update(apply)
        return not failed

    def pods_once(self):
        """One listing of DSS's pods (when configured); returns True when it reached the cluster without refusal.
        A failed listing is counted and logged; the previous pods are kept."""
        if self._pods is None:
            return False
        listing = self._pods.listing(fresh=True)
        failed = not listing.reachable or bool(listing.errors)
        if failed:  # texts from pods.py: already safe
            logger.warning("listing DSS's pods: %s", "; ".join(listing.notes + tuple(e.message for e in listing.errors)))
        snapshot = self._snapshot

        def apply(view):
            c = view.counters
            counters = replace(c, pod_listings=c.pod_listings + 1, pod_listing_errors=c.pod_listing_errors + failed,
                               cpu_seconds=self._pod_cpu(c.cpu_seconds, view, listing))
            if not listing.reachable:
                return replace(view, counters=counters, pods_reachable=False)
            return replace(view, pods=listing.pods, pods_reachable=True, pod_listed_at=listing.taken_at,
                           counters=counters, joined=self._join(snapshot, view.inventory, listing.pods))

        self._update(apply)
        return not failed

    @staticmethod
    def _pod_cpu(cpu_seconds, view, listing):
        """The pods' CPU counters: each pod's usage (cores, from the metrics API) over the time since the previous
        listing, per (dss_datadir, role, where)."""
        cpu = dict(cpu_seconds)
        interval = listing.taken_at - view.pod_listed_at if view.pod_listed_at is not None else None
        for p in listing.pods if listing.reachable else ():
            key = metrics.role_key(p)
            cpu.setdefault(key, 0.0)
            if interval and interval > 0 and p.cpu_percent is not None:
                cpu[key] += p.cpu_percent * interval / 100.0
        return cpu

    def _update(self, change):
        with self._lock:
            view = replace(change(self._view), now=self._clock())
            built = metrics.families(view)
            self._view, self._families = view, built
            self.generation += 1

    # -- health and loops -------------------------------------------------------------------------------------
    def health(self):
        """(healthy, message): healthy while the last good scan is recent (3 intervals, at least a minute)."""
        with self._lock:
            at = self._view.last_scan_at
        if at is None:
            return False, "no scan yet"
        age = self._clock() - at
        if age > max(HEALTHY_AFTER_INTERVALS * self.options.scan_interval_seconds, HEALTHY_AFTER_SECONDS):
            return False, "last scan %.0f s ago" % age
        return True, "ok"

    def run(self, stop: threading.Event):
        """The scan loop in this thread and the listing loop in another, until `stop` is set."""
        loops = []
        if self.lists_dss:
            loops.append(("pt-exporter-listing", self.list_once, self.options.listing_interval_seconds))
        if self._pods is not None:
            loops.append(("pt-exporter-pods", self.pods_once, self.options.pod_interval_seconds))
        threads = []
        for name, step, interval in loops:
            t = threading.Thread(target=self._loop, args=(stop, step, interval), name=name, daemon=True)
            t.start()
            threads.append(t)
        self._loop(stop, self.scan_once, self.options.scan_interval_seconds)
        for t in threads:
            t.join(timeout=5.0)

    @staticmethod
    def _loop(stop, step, interval):
        next_at = time.monotonic()
        while not stop.is_set():
            step()
            next_at = max(next_at + interval, time.monotonic())
            stop.wait(max(next_at - time.monotonic(), 0.0))


# --- HTTP ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeOptions:
    """listen: "host:port" ("[::1]:9101" for IPv6). tls_cert_file/tls_key_file: serve HTTPS. basic_auth_user and
    basic_auth_password: require HTTP basic auth on every path but /healthz."""

    listen: str = "127.0.0.1:%d" % DEFAULT_PORT
    tls_cert_file: Optional[str] = None
    tls_key_file: Optional[str] = None
    basic_auth_user: Optional[str] = None
    basic_auth_password: Optional[str] = field(default=None, repr=False)

    def address(self):
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError("listen", "must be host:port, got %r" % (self.listen,))
        host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":port" means every address, as other exporters
        return host, int(port)

    def __post_init__(self):
        self.address()
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("tls", "give both a certificate file and a key file")
        if bool(self.basic_auth_user) != bool(self.basic_auth_password):
            raise ConfigError("basic_auth", "give both a user and a password")


def _authorized(environ, user, password):
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, _, given_password = given.partition(":")
    ok_user = hmac.compare_digest(given_user.encode(), user.encode())
    return hmac.compare_digest(given_password.encode(), password.encode()) and ok_user


class _Exposition:
    """The exposition of one generation of families, per content type and compression, written once: a scrape
    between two scans only copies bytes (the exporter's own process_* figures are as of that first write)."""

    def __init__(self, exporter, registry):
        self._exporter, self._registry = exporter, registry
        self._lock = threading.Lock()
        self._cache = {}

    def body(self, accept, accept_encoding):
        encoder, content_type = choose_encoder(accept)
        compress = gzip_accepted(accept_encoding)
        key, generation = (content_type, compress), self._exporter.generation
        with self._lock:
            cached = self._cache.get(key)
            if cached is None or cached[0] != generation:
                output = encoder(self._registry)
                cached = self._cache[key] = (generation, gzip.compress(output) if compress else output)
        headers = [("Content-Type", content_type)] + ([("Content-Encoding", "gzip")] if compress else [])
        return headers, cached[1]


def make_app(exporter: Exporter, options: ServeOptions, registry=None):
    """The WSGI app: /healthz (no auth, no data), /metrics and / (prometheus_client's exposition)."""
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(exporter)
        ProcessCollector(registry=registry)  # the exporter's own CPU and memory: process_* metrics
    metrics_app = make_wsgi_app(registry)  # OPTIONS, name[] filters: prometheus_client as is
    exposition = _Exposition(exporter, registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            ok, message = exporter.health()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [(message + "\n").encode()]
        if options.basic_auth_user and not _authorized(environ, options.basic_auth_user, options.basic_auth_password):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="process-tracker"'),
                                                ("Content-Type", "text/plain")])
            return [b"unauthorized\n"]
        if path not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics, /healthz\n"]
        if environ.get("REQUEST_METHOD") == "GET" and not environ.get("QUERY_STRING"):
            headers, body = exposition.body(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"))
            start_response("200 OK", headers + [("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        return None


def serve(exporter: Exporter, options: ServeOptions):
    """Start serving in a daemon thread; returns the server (`server.server_port`, `server.shutdown()`)."""
    host, port = options.address()
    server_class = _Server
    if ":" in host:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    try:
        server = make_server(host, port, make_app(exporter, options), server_class=server_class,
                             handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError("listen", "cannot listen on %s: %s" % (options.listen, exc.strerror or exc)) from None
    if options.tls_cert_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(options.tls_cert_file, options.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            server.server_close()
            raise ConfigError("tls", "cannot load the certificate or key: %s" % exc.__class__.__name__) from None
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="pt-exporter-http", daemon=True)
    thread.start()
    return server
