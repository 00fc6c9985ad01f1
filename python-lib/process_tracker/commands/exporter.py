"""`process-tracker exporter`: a Prometheus exporter of this host's DSS processes (and, with DSS, its activities).

Scans every --scan-interval seconds (default 15) and serves /metrics from the last scan: a scrape costs no scan.
With a DSS connection (--url/--api-key, the DKU_* environment or ~/.dataiku/config.json) it also lists DSS
activities every --listing-interval seconds and joins them to the processes; without one it reports the host
side only. Binds 127.0.0.1:9101 by default (--listen to expose); TLS with --tls-cert-file/--tls-key-file; basic
auth with --basic-auth-user and the password in the PT_EXPORTER_PASSWORD environment variable or a file
(--basic-auth-password-file; never on the command line). /healthz answers 200 while scans succeed. SIGTERM and
SIGINT stop it cleanly (exit 0). See docs/prometheus.md.
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
                "max_activity_series": "--max-activity-series", "dss_datadirs": "--dss-datadir"}


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
            dss_datadirs=tuple(os.path.abspath(d) for d in args.dss_datadir))
    except ConfigError as exc:  # name the command-line option, not the field
        option = OPTION_NAMES.get(exc.param, exc.param)
        raise ConfigError(option, str(exc).split(": ", 1)[-1]) from None
    serve_options = ServeOptions(listen=args.listen, tls_cert_file=args.tls_cert_file, tls_key_file=args.tls_key_file,
                                 basic_auth_user=args.basic_auth_user, basic_auth_password=_password(args))
    return Exporter(options, make_client=None if args.no_dss else _dss_client(make_client)), serve_options


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
    out.write("process-tracker exporter: serving %s://%s:%d/metrics (DSS listing: %s)\n" % (
        scheme, "[%s]" % host if ":" in host else host, server.server_port, "on" if exporter.lists_dss else "off"))
    out.flush()
