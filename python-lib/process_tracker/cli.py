"""process-tracker: the plugin's capabilities from a terminal, for admins who script and outside DSS.

Every sub-command is a thin adapter: parse, call one python-lib function, render. Expected errors (bad
arguments, unreachable DSS, refused calls) end with one line on stderr and exit 1; an unexpected error keeps
its traceback in a log file, never on the terminal.
"""
import argparse
import contextlib
import logging
import os
import sys
import stat
import time
import traceback

from . import __version__, commands
from .errors import ConfigError, ProcessTrackerError
from .render import error_text, safe_message

logger = logging.getLogger("process_tracker.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="process-tracker",
        description="See DSS processes by role and memory, list DSS activities and stop stale ones "
        "through the DSS public API. Actions are dry runs unless --apply is given.",
    )
    parser.add_argument("--version", action="version", version="process-tracker %s" % __version__)
    add_connection_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in commands.load():
        module.register(sub)
    for command in sub.choices.values():  # the same options after the sub-command: `activities --url ...`
        add_connection_options(command, after_command=True)
    return parser


_CONNECTION_OPTIONS = (
    ("--url", dict(default=None, help="DSS base URL, e.g. https://dss.example.com:11200")),
    ("--api-key", dict(default=None, help="a DSS API key (prefer the DKU_API_KEY environment variable)")),
    ("--no-check-certificate", dict(action="store_true", default=None, help="do not verify DSS's TLS certificate")),
    ("--timeout", dict(type=float, default=30.0, help="seconds to wait for each DSS call (default 30)")),
)


def add_connection_options(parser, after_command=False):
    """--url, --api-key, --no-check-certificate, --timeout. After the sub-command they default to nothing, so that
    a value given before it is kept unless given again; a sub-command that declares one itself keeps its own."""
    conn = parser.add_argument_group("DSS connection (default: DKU_DSS_URL, DKU_API_KEY, ~/.dataiku/config.json)")
    for flag, options in _CONNECTION_OPTIONS:
        if flag in parser._option_string_actions:  # argparse's own registry of the parser's option strings
            continue
        options = dict(options, default=argparse.SUPPRESS) if after_command else options
        conn.add_argument(flag, **options)


def client_factory(args, made=None):
    """A zero-argument callable giving a DSSClient from the global connection options (created on demand).
    `made`: a list the created clients are appended to (the error line names their URL)."""

    def make():
        from .dss import get_client

        client = get_client(
            url=args.url, api_key=args.api_key, no_check_certificate=args.no_check_certificate, timeout=args.timeout,
            inside_dss=False,
        )
        if made is not None:
            made.append(client)
        return client

    return make


# the cause of a failed connection, from the exceptions under the typed error (first match wins)
_CAUSES = (
    ("connection refused", ("connection refused", "errno 111")),
    ("name not resolved", ("name or service not known", "nodename nor servname", "name resolution",
                           "getaddrinfo failed")),
    ("TLS error", ("ssl", "certificate")),
    ("timeout", ("timed out", "timeout")),
)


def connection_cause(exc):
    """"connection refused", "name not resolved", "TLS error" or "timeout" from the exception chain, else None."""
    seen, texts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append("%s %s" % (exc.__class__.__name__, exc))
        exc = exc.__cause__ or exc.__context__
    text = " ".join(texts).lower()
    for cause, markers in _CAUSES:
        if any(m in text for m in markers):
            return cause
    return None


def _shown_url(url):
    """The DSS URL for an error line: without any user:password@ part, as safe text."""
    text = url if isinstance(url, str) else "?"
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        text = "%s://%s" % (scheme, rest.split("@", 1)[1])
    return error_text(text, 200)


def error_line(exc, clients=()):
    """The one line of an expected error: its safe text, and for a DSS error the cause and the URL."""
    from .errors import DSSNotFound, DSSUnreachable

    line = error_text(exc)
    if isinstance(exc, DSSUnreachable):
        cause = connection_cause(exc.__cause__ or exc.__context__)
        if cause and cause not in line:
            line += " (%s)" % cause
    # where it went, when the question is whether this URL is a DSS at all
    if clients and (isinstance(exc, (DSSUnreachable, DSSNotFound)) or "answered an HTML page" in line):
        line += " at %s" % _shown_url(getattr(clients[-1], "host", None))
    return line


MAX_CRASH_REPORTS = 20  # older reports are removed when a new one is written


def crash_dir():
    """The private per-user folder for crash reports: $XDG_STATE_HOME/process-tracker (default
    ~/.local/state/process-tracker). Never the shared temp folder, where another local user can plant a symlink."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "process-tracker")


def _open_private_dir(path):
    """A descriptor of `path`, created 0700 if missing; None unless it is a real directory (not a symlink) owned by
    this user and closed to others."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        os.close(fd)
        return None
    return fd


def _prune(dir_fd):
    names = sorted(n for n in os.listdir(dir_fd) if n.startswith("crash-") and n.endswith(".log"))
    for name in names[: max(0, len(names) - MAX_CRASH_REPORTS)]:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass


def write_crash_report(text):
    """Write `text` to a new file (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600) in `crash_dir()`; its path, or None
    when no safe place exists (the caller logs the traceback instead)."""
    path = crash_dir()
    dir_fd = _open_private_dir(path)
    if dir_fd is None:
        return None
    name = "crash-%s-%d-%s.log" % (time.strftime("%Y%m%dT%H%M%S", time.gmtime()), os.getpid(), os.urandom(4).hex())
    try:
        _prune(dir_fd)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    return os.path.join(path, name)


def _report_unexpected(exc):
    text = traceback.format_exc()
    path = write_crash_report(text)
    if path:
        where = " (traceback in %s)" % path
    else:
        logger.debug("unexpected error:\n%s", text)  # shown only where debug logging is on, never by default
        where = " (traceback not kept: %s is not a private folder of this user; set XDG_STATE_HOME)" % crash_dir()
    print("process-tracker: unexpected %s%s" % (exc.__class__.__name__, where), file=sys.stderr)


_CONNECTION_FLAGS = {"url": "--url", "timeout": "--timeout", "api_key": "--api-key", "api-key": "--api-key"}


@contextlib.contextmanager
def _connection_errors_named_by_flags():
    """A bad connection setting names the CLI option (`--timeout: ...`), as every other bad option does."""
    try:
        yield
    except ConfigError as e:
        if e.param not in _CONNECTION_FLAGS:
            raise
        raise e.renamed(_CONNECTION_FLAGS[e.param]) from e


class SafeFormatter(logging.Formatter):
    """A log line as safe text: control and bidi characters of the message (DSS names, error bodies) escaped, an
    HTML page told in one phrase, the line bounded. A traceback, when one is logged, is not printed here."""

    def format(self, record):
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = record.stack_info = None
        return safe_message(super().format(record), 2000)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:  # log lines on the terminal are safe text too
        handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    # urllib3 warns on every retried read; the retries are expected and the final error is reported once.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    clients = []
    try:
        with _connection_errors_named_by_flags():
            return args.func(args, client_factory(args, clients)) or EXIT_OK
    except ProcessTrackerError as e:
        print("process-tracker: error: %s" % error_line(e, clients), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("process-tracker: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - last resort: one line on the terminal, the traceback in a log
        _report_unexpected(e)
        return EXIT_ERROR
