"""CLI sub-commands: one module each, with `register(subparsers)` that adds a parser whose default `func`
takes the parsed args and a `dss.get_client`-like factory. Add a command by adding a module name here."""
import importlib

COMMAND_MODULES = ("activities", "kill_kernels", "abort_tasks", "abort_jobs", "stop_services", "install_cleanup", "scan",
                   "exporter", "pods")


def load():
    return [importlib.import_module("%s.%s" % (__name__, name)) for name in COMMAND_MODULES]
