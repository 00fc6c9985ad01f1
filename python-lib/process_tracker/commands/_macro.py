"""The CLI mirrors of the macros: one sub-command per macro, with the macro's parameters as options.

Options come from `params.SPECS` (kebab-case flags, e.g. `--max-idle-hours` for `maxIdleTimeHours`), values are
checked by `params.parse` exactly as the macro checks its config, the run is `macros.run`, and the output is the
macro's rows: a plain-text table, or `--json`. Acting commands are dry runs unless `--apply` is given.
A bad value ends with one line naming the option (exit 1) before anything is listed or done.
"""
import contextlib
import sys
import threading

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
        with progress_indicator(sys.stderr) as progress:
            report = macros.run(macro_id, make_client(), config, progress=progress,
                                title="process-tracker %s" % params.MACROS[macro_id].cli_name)
    write_report(report, out, as_json=args.json)
    return 0


def write_report(report, out, as_json=False):
    """JSON; or, on a terminal, a table that fits its width (`rich`); else the plain-text table (pipes, files)."""
    if as_json:
        out.write(render.to_json(report) + "\n")
    elif _is_terminal(out):
        _write_fitted(report, out)
    else:
        out.write(render.to_text(report) + "\n")


def _is_terminal(out):
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _write_fitted(report, out):
    """The report as a table fitted to the terminal: the most useful columns that fit, free text wrapped, short
    cells cut with an ellipsis; never a line wider than the terminal. No colours or styles (the text is already
    safe: `render.safe`, and stays so). Columns left out are named under the table."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # the CLI's own dependency; absent (e.g. inside DSS's code env): the plain table
        out.write(render.to_text(report) + "\n")
        return
    console = Console(file=out, color_system=None, highlight=False, markup=False, emoji=False)
    console.print(report.header, overflow="fold")
    if not report.rows:
        return
    shown, left_out = _fit_columns(report, console.width)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, display, width in shown:
        wrap = name in _FREE_TEXT
        table.add_column(display, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis", max_width=width)
    for row in report.rows:
        table.add_row(*[_fitted_cell(row, name) for name, _, _ in shown])
    console.print(table)
    if left_out:
        console.print("(left out to fit %d columns: %s; --json shows every column)"
                      % (console.width, ", ".join(left_out)), overflow="fold")


def _fitted_cell(row, name):
    """A cell of the fitted table: a message that only repeats the outcome the reason already states ("spared:
    nothing done" beside "spared: idle 5 min <= 24 h") is left blank, so the two columns do not say it twice."""
    value = row.get(name, "")
    outcome = row.get("outcome", "")
    if name == "message" and outcome and value.startswith(outcome + ":") and row.get("reason", "").startswith(
            outcome + ":"):
        return ""
    return value


_FREE_TEXT = ("name", "reason", "message", "note")  # wrapped; the others are cut with an ellipsis
# most useful first: columns are added in this order while they fit
_PRIORITY = ("outcome", "kind", "project", "name", "owner", "reason", "message", "note", "id", "running", "idle",
             "memory", "pid", "role", "state", "started")
_MAX_CUT = 24  # a cut column is at most this wide
_MIN_WRAPPED = 14  # a wrapped column is at least this wide
_GAP = 3  # between two columns: padding on both sides and a separator


def _fit_columns(report, total):
    """[(name, display, max width)] of the columns that fit in `total` characters, in the report's order, and the
    display names of the non-empty ones left out."""
    present = {n: d for n, d in report.columns if any(row.get(n) for row in report.rows)}
    natural = {n: max([len(d)] + [len(row.get(n, "")) for row in report.rows]) for n, d in present.items()}
    need = {n: min(natural[n], _MIN_WRAPPED if n in _FREE_TEXT else _MAX_CUT) for n in present}
    chosen, used = [], 0
    for name in sorted(present, key=lambda n: _PRIORITY.index(n) if n in _PRIORITY else len(_PRIORITY)):
        if used + need[name] + (_GAP if chosen else 0) <= total:
            chosen.append(name)
            used += need[name] + (_GAP if len(chosen) > 1 else 0)
    spare = total - used
    widths = dict(need)
    for name in [n for n in chosen if n in _FREE_TEXT]:  # what is left goes to the free text, in turn
        extra = min(spare, natural[name] - need[name])
        widths[name] += extra
        spare -= extra
    shown = [(n, d, widths[n]) for n, d in report.columns if n in chosen]
    return shown, [d for n, d in report.columns if n in present and n not in chosen]


@contextlib.contextmanager
def _named_by_flags(macro_id):
    """Errors that name a macro parameter name the CLI option instead (`--fail-if-more-than`)."""
    try:
        yield
    except ConfigError as e:
        raise e.renamed(params.cli_flag(macro_id, e.param)) from None
    except macros.ThresholdExceeded as e:
        raise macros.ThresholdExceeded(params.cli_flag(macro_id, e.param), str(e).split(": ", 1)[-1]) from None


SHOW_PROGRESS_AFTER_SECONDS = 1.0
_STAGE_TEXT = {0: "listing DSS activities", 1: "reading the host", 2: "deciding", 3: "acting (and verifying)"}


@contextlib.contextmanager
def progress_indicator(err):
    """A `progress(stage)` callback for `macros.run` that shows a spinner with the current stage on `err`, only
    when `err` is a terminal and the run takes longer than a second; it is erased when the run ends."""
    status = None
    if _is_terminal(err):
        try:
            from rich.console import Console

            status = Console(file=err, highlight=False).status(_STAGE_TEXT[0] + "...")
        except ImportError:
            status = None
    if status is None:
        yield lambda stage: None
        return
    timer = threading.Timer(SHOW_PROGRESS_AFTER_SECONDS, status.start)
    timer.daemon = True
    timer.start()

    def progress(stage):
        if stage in _STAGE_TEXT:
            status.update(_STAGE_TEXT[stage] + "...")

    try:
        yield progress
    finally:
        timer.cancel()
        timer.join()
        status.stop()
