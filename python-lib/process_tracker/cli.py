"""process-tracker: the plugin's capabilities from a terminal, for admins who script and outside DSS.

Every sub-command is a thin adapter: parse, call one python-lib function, render. Expected errors (bad
arguments, unreachable DSS, refused calls) end with one line on stderr and exit 1; an unexpected error keeps
its traceback in a log file, never on the terminal.
"""
import argparse
import logging
import os
import sys
import tempfile
import traceback

from . import __version__, commands
from .errors import ProcessTrackerError

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
    conn = parser.add_argument_group("DSS connection (default: DKU_DSS_URL, DKU_API_KEY, ~/.dataiku/config.json)")
    conn.add_argument("--url", help="DSS base URL, e.g. https://dss.example.com:11200")
    conn.add_argument("--api-key", help="a DSS API key (prefer the DKU_API_KEY environment variable)")
    conn.add_argument(
        "--no-check-certificate", action="store_true", default=None, help="do not verify DSS's TLS certificate"
    )
    conn.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each DSS call (default 30)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in commands.load():
        module.register(sub)
    return parser


def client_factory(args):
    """A zero-argument callable giving a DSSClient from the global connection options (created on demand)."""

    def make():
        from .dss import get_client

        return get_client(
            url=args.url, api_key=args.api_key, no_check_certificate=args.no_check_certificate, timeout=args.timeout,
            inside_dss=False,
        )

    return make


def _log_unexpected():
    path = os.path.join(tempfile.gettempdir(), "process-tracker-error.log")
    try:
        with open(path, "a") as f:
            f.write(traceback.format_exc())
    except OSError:
        return None
    return path


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # urllib3 warns on every retried read; the retries are expected and the final error is reported once.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        return args.func(args, client_factory(args)) or EXIT_OK
    except ProcessTrackerError as e:
        print("process-tracker: error: %s" % e, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("process-tracker: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - last resort: one line on the terminal, the traceback in a log
        path = _log_unexpected()
        where = (" (traceback in %s)" % path) if path else ""
        print("process-tracker: unexpected %s%s" % (e.__class__.__name__, where), file=sys.stderr)
        return EXIT_ERROR
