"""`process-tracker activities`: the CLI mirror of the running-activities macro."""
from ._macro import register_macro_command


def register(subparsers):
    register_macro_command(subparsers, "activities", "running-activities", "List what DSS is running (kernels, tasks, scenarios, jobs, webapps...), with host pid, role and memory, and orphan processes")
