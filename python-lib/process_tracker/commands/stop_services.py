"""`process-tracker stop-services`: the CLI mirror of the stop-idle-services macro."""
from ._macro import register_macro_command


def register(subparsers):
    register_macro_command(subparsers, "stop-services", "stop-idle-services", "Stop long-running webapp backends, code studios, continuous activities (dry run unless --apply)")
