"""The CLI mirrors of the macros: one sub-command per macro, with the macro's parameters as options.

Options come from `params.SPECS` (kebab-case flags, e.g. `--max-idle-hours` for `maxIdleTimeHours`), values are
checked by `params.parse` exactly as the macro checks its config, the run is `macros.run`, and the output is the
macro's rows: a plain-text table, or `--json`. Acting commands are dry runs unless `--apply` is given.
A bad value ends with one line naming the option (exit 1) before anything is listed or done.
"""
import contextlib
import sys

from .. import macros, params, render
from ..errors import ConfigError


def register_macro_command(subparsers, name, macro_id, help_text):
    """Add sub-command `name` mirroring macro `macro_id`."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    params.add_cli_arguments(parser, macro_id)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (the same rows the macro shows)")
    parser.set_defaults(func=lambda args, make_client: run_command(macro_id, args, make_client))
    return parser


def run_command(macro_id, args, make_client, out=None):
    """Check the options, run the macro, print its report. Returns the exit status (0).

    A ConfigError names the CLI option (`--exclude-projects`), not the macro parameter, whether it comes from the
    options' check (before connecting: a bad option never reaches DSS) or from DSS (an unknown project key)."""
    out = out or sys.stdout
    config = params.config_from_args(macro_id, args)
    with _named_by_flags(macro_id):
        params.parse(macro_id, config)
        report = macros.run(macro_id, make_client(), config)
    out.write((render.to_json(report) if args.json else render.to_text(report)) + "\n")
    return 0


@contextlib.contextmanager
def _named_by_flags(macro_id):
    try:
        yield
    except ConfigError as e:
        raise ConfigError(params.cli_flag(macro_id, e.param), str(e).split(": ", 1)[-1]) from None
