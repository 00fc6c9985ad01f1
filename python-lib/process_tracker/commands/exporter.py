"""`process-tracker exporter`: a Prometheus exporter of this host's DSS processes (and, with DSS, its activities).

Scans every --scan-interval seconds (default 15) and serves /metrics from the last scan: a scrape costs no scan.
With a DSS connection (--url/--api-key, the DKU_* environment or ~/.dataiku/config.json) it also lists DSS
activities every --listing-interval seconds and joins them to the processes; without one it reports the host
side only. Binds 127.0.0.1:9101 by default (--listen to expose); TLS with --tls-cert-file/--tls-key-file; basic
auth with --basic-auth-user and the password in the PT_EXPORTER_PASSWORD environment variable or a file
(--basic-auth-password-file; never on the command line). /healthz answers 200 while scans succeed. SIGTERM and
SIGINT stop it cleanly (exit 0). With --k8s (or --kubeconfig, --k8s-context, --k8s-in-cluster) it also lists
DSS's pods on Kubernetes every --pod-interval seconds (docs/kubernetes.md). See docs/prometheus.md.
"""
import logging
import os
import signal
import sys
import threading

from ..errors import ConfigError

logger = logging.getLogger(__name__)
PASSWORD_ENV = "PT_EXPORTER_PASSWORD"  # noqa: S105 - the name of a variable, not a password
SWITCH_INTERVAL_SECONDS = 0.001
OPTION_NAMES = {"scan_interval_seconds": "--scan-interval", "listing_interval_seconds": "--listing-interval",
                "max_activity_series": "--max-activity-series", "dss_datadirs": "--dss-datadir",
                "pod_interval_seconds": "--pod-interval", "max_pod_nodes": "--max-pod-nodes"}
# pods.CONFIG_KEYS name -> this command's option (a bad value names the option)
K8S_OPTIONS = {"k8sKubeconfig": "--kubeconfig", "k8sContext": "--k8s-context", "k8sInCluster": "--k8s-in-cluster",
               "k8sNamespaces": "--k8s-namespaces", "k8sInstallId": "--k8s-install-id"}


def register(subparsers):
    parser = subparsers.add_parser(
        "exporter", help="serve this host's DSS processes (and activities) as Prometheus metrics",
        description="A long-running Prometheus exporter: scans on its own interval and serves /metrics from the "
        "last scan. See docs/prometheus.md.")
    parser.add_argument("--listen", default="127.0.0.1:9101",
                        help="host:port to serve on (default 127.0.0.1:9101; ':9101' for every address)")
    parser.add_argument("--scan-interval", type=float, default=15.0, help="seconds between scans (default 15)")
    parser.add_argument("--listing-interval", type=float, default=60.0,
                        help="seconds between DSS listings (default 60)")
    parser.add_argument("--no-dss", action="store_true", help="never list DSS activities (host metrics only)")
    parser.add_argument("--max-activity-series", type=int, default=200,
                        help="activity series kept per metric; the rest summed into activity=\"other\" (default 200)")
    parser.add_argument("--dss-datadir", action="append", default=[], metavar="DIR",
                        help="report only this DSS data directory's processes (repeatable; default: all)")
    parser.add_argument("--cgroup-root", default="/sys/fs/cgroup", help="where the cgroup file system is mounted")
    parser.add_argument("--cgroup-marker", action="append", default=[], metavar="NAME",
                        help="a cgroup path component that marks a DSS cgroup (repeatable; default DSS)")
    parser.add_argument("--tls-cert-file", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key-file", help="the certificate's private key (PEM)")
    parser.add_argument("--basic-auth-user", help="require HTTP basic auth with this user")
    parser.add_argument("--basic-auth-password-file",
                        help="file holding the basic auth password (else %s)" % PASSWORD_ENV)
    k8s = parser.add_argument_group("DSS's pods on Kubernetes (off unless one of these is given; docs/kubernetes.md)")
    k8s.add_argument("--k8s", action="store_true", help="list DSS's pods (default kubeconfig and context)")
    k8s.add_argument("--kubeconfig", help="path of a kubeconfig file (turns pods on)")
    k8s.add_argument("--k8s-context", help="a context name of the kubeconfig (turns pods on)")
    k8s.add_argument("--k8s-in-cluster", action="store_true", help="use the in-cluster service account (turns pods on)")
    k8s.add_argument("--k8s-namespaces", help="namespaces DSS runs pods in, comma-separated (default: cluster-wide)")
    k8s.add_argument("--k8s-install-id", help="only the pods of this DSS install id")
    k8s.add_argument("--pod-interval", type=float, default=30.0, help="seconds between pod listings (default 30)")
    k8s.add_argument("--max-pod-nodes", type=int, default=50,
                     help="nodes with their own dss_node_pod* series; the rest as node=\"other\" (default 50)")
    # the DSS connection may also be given after the sub-command: cli.build_parser adds it to every sub-command
    parser.set_defaults(func=run)
    return parser


def _password(args):
    if not args.basic_auth_user:
        return None
    if args.basic_auth_password_file:
        try:
            with open(args.basic_auth_password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError("--basic-auth-password-file", "cannot read it: %s" % exc.strerror) from None
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise ConfigError("--basic-auth-user", "needs a password: set %s or --basic-auth-password-file"
                          % PASSWORD_ENV)
    return password


def build(args, make_client=None):
    """(Exporter, ServeOptions) from parsed arguments (ConfigError naming the option when one is bad)."""
    from ..exporter import Exporter, ExporterOptions, ServeOptions
    from ..host import ScanOptions

    scan = ScanOptions(cgroup_root=args.cgroup_root, cgroup_markers=tuple(args.cgroup_marker) or ("DSS",))
    try:
        options = ExporterOptions(
            scan_interval_seconds=args.scan_interval, listing_interval_seconds=args.listing_interval,
            max_activity_series=args.max_activity_series, scan=scan,
            dss_datadirs=tuple(os.path.abspath(d) for d in args.dss_datadir), pods=pod_settings(args),
            pod_interval_seconds=args.pod_interval, max_pod_nodes=args.max_pod_nodes)
    except ConfigError as exc:  # name the command-line option, not the field
        option = OPTION_NAMES.get(exc.param, exc.param)
        raise exc.renamed(option) from None
    serve_options = ServeOptions(listen=args.listen, tls_cert_file=args.tls_cert_file, tls_key_file=args.tls_key_file,
                                 basic_auth_user=args.basic_auth_user, basic_auth_password=_password(args))
    return Exporter(options, make_client=None if args.no_dss else _dss_client(make_client)), serve_options


def pod_settings(args):
    """pods.PodSettings when an option turns pods on, else None; a bad value raises ConfigError naming the option."""
    from ..pods import settings_from_config

    if not (args.k8s or args.kubeconfig or args.k8s_context or args.k8s_in_cluster):
        return None
    config = {"k8sKubeconfig": args.kubeconfig, "k8sContext": args.k8s_context, "k8sInCluster": args.k8s_in_cluster,
              "k8sNamespaces": args.k8s_namespaces, "k8sInstallId": args.k8s_install_id}
    try:
        return settings_from_config(config)
    except ConfigError as exc:
        raise exc.renamed(K8S_OPTIONS.get(exc.param, exc.param)) from None


def _dss_client(make_client):
    """The client factory when a DSS connection is configured, else None (host metrics only)."""
    if make_client is None:
        return None
    try:
        client = make_client()
    except ConfigError as exc:
        logger.warning("no DSS listing (%s); host metrics only", exc)
        return None
    return lambda: client


def run(args, make_client=None, out=None):
    """Serve until SIGTERM or SIGINT."""
    from ..exporter import serve

    out = out or sys.stdout
    exporter, serve_options = build(args, make_client)
    # a scrape that arrives during a scan waits for the GIL at each of its system calls: 1 ms slices instead of
    # Python's 5 ms bound that wait (this process only; the switch happens only when a thread is waiting)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        exporter.scan_once()  # the first scrape already has data
        server = serve(exporter, serve_options)
        try:
            _announce(out, serve_options, server, exporter)
            exporter.run(stop)
        finally:
            server.shutdown()
            server.server_close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(switch_interval)
    return 0


def _announce(out, serve_options, server, exporter):
    scheme = "https" if serve_options.tls_cert_file else "http"
    host, _ = serve_options.address()
    out.write("process-tracker exporter: serving %s://%s:%d/metrics (DSS listing: %s, pods: %s)\n" % (
        scheme, "[%s]" % host if ":" in host else host, server.server_port, "on" if exporter.lists_dss else "off",
        "on" if exporter.lists_pods else "off"))
    out.flush()
