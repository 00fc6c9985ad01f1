"""`process-tracker kill-kernels`: the CLI mirror of the kill-idle-kernels macro."""
from ._macro import register_macro_command


def register(subparsers):
    register_macro_command(subparsers, "kill-kernels", "kill-idle-kernels", "Kill idle Jupyter kernels (dry run unless --apply)")
