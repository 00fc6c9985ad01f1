"""A simulated DSS public API (the subset in docs dss-reference.md section 2), for tests and the demo.

See dev/README.md for the instance JSON schema, and `Simulator` for the handles tests use.
"""
from .simulator import ManualClock, Simulator
from .state import Fault, Request, SimError

__all__ = ["Simulator", "ManualClock", "Fault", "Request", "SimError"]
