"""`process-tracker abort-jobs`: the CLI mirror of the abort-long-jobs macro."""
from ._macro import register_macro_command


def register(subparsers):
    register_macro_command(subparsers, "abort-jobs", "abort-long-jobs", "Abort long-running jobs (dry run unless --apply)")
