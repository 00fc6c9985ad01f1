"""Shared pytest fixtures. The DSS simulator's come first; other helpers add theirs below."""
import pytest

from dev.dss_simulator import ManualClock, Simulator
from dev.dss_simulator.builders import load_demo


@pytest.fixture
def demo_instance():
    """The demo instance description (dev/instances/demo.json) as a fresh dict."""
    return load_demo()


@pytest.fixture
def manual_clock():
    """A clock that stands still until `advance(seconds)`: pass it to `simulator(..., clock=manual_clock)`."""
    return ManualClock()


@pytest.fixture
def simulator():
    """Factory: `simulator(instance, clock=None, fleet_pids=None)` -> a Simulator already serving on a loopback
    port (`sim.url`, `sim.admin_key`, `sim.client(login)`); every one is stopped at teardown."""
    started = []

    def make(instance=None, clock=None, fleet_pids=None):
        sim = Simulator(instance, clock=clock, fleet_pids=fleet_pids)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


# ---- the process fleet (dev/fleet.py) ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fleet():
    """The demo fleet (dev.fleet.demo_layout): ~30 real DSS-shaped processes in a temporary DIP_HOME, started once
    per test session and stopped at its end. `fleet.pid(name)`, `fleet.pids`, `fleet.dip_home`, `fleet.spec(name)`.
    Shared: do not kill its processes (build your own `Fleet` for that)."""
    from dev.fleet import Fleet, demo_layout

    with Fleet(demo_layout) as running:
        yield running
