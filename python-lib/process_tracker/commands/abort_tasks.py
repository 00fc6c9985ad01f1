"""`process-tracker abort-tasks`: the CLI mirror of the abort-background-tasks macro."""
from ._macro import register_macro_command


def register(subparsers):
    register_macro_command(subparsers, "abort-tasks", "abort-background-tasks", "Abort long-running background tasks and scenarios (dry run unless --apply)")
