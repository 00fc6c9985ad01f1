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
