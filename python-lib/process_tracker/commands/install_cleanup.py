"""`process-tracker install-cleanup`: the CLI mirror of the install-cleanup-scenario macro."""
from ._macro import register_macro_command


def register(subparsers):
    register_macro_command(subparsers, "install-cleanup", "install-cleanup-scenario", "Create or update the daily clean-up scenario in a project (its steps are dry runs unless --act)")
