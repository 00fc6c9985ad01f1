"""Host views while one DSS endpoint is slow (issue 12.2): the webapp's answer times with `GET /futures/` slowed to
`--latency` seconds, on a cold page (nothing listed yet) and once a listing exists but has expired, as a fraction
of the fault's latency (a view that waited on the slow call would be >= 1).

    .venv/bin/python bench/slow_dss.py [--latency 45]

Real dataikuapi over HTTP against the simulator; the webapp loaded as DSS loads it; one hand-built sample.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

from dev.dss_runtime import load_webapp  # noqa: E402
from dev.dss_simulator import Simulator  # noqa: E402
from process_tracker.history import HistoryStore  # noqa: E402
from process_tracker.sampler import Sampler  # noqa: E402
from test_webapp_backend import WEBAPP, Browser, FakeScanner, as_user, dss_instance  # noqa: E402

PATHS = ("/api/snapshot", "/api/history?window=24h", "/api/table")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=45.0, help="seconds added to GET /futures/ (default 45)")
    args = parser.parse_args()
    sim = Simulator(dss_instance())
    with sim.serve():
        os.environ.update(DKU_DSS_URL=sim.url, DKU_API_KEY=sim.admin_key)
        os.environ.pop("DIP_HOME", None)
        directory = tempfile.mkdtemp(prefix="pt-slow-dss-")
        writer = Sampler(HistoryStore(directory), lambda: FakeScanner(), interval_seconds=10)
        writer.try_elect()
        writer.sample_once()
        print("| page | endpoint | HTTP | seconds | fraction of the %g s fault |" % args.latency)
        print("|---|---|---|---|---|")
        for phase in ("cold", "listing expired"):
            app = load_webapp(WEBAPP, config={"historyDir": directory}).application
            client, state = Browser(app), app.extensions["process_tracker"]
            client.get("/api/whoami", headers=as_user("admin"))
            if phase != "cold":
                client.get("/api/table", headers=as_user("admin"))
                state.listing.forget()
            sim.add_fault(path="/futures/.*", latency=args.latency)
            for path in PATHS:
                started = time.monotonic()
                status = client.get(path, headers=as_user("admin")).status_code
                seconds = time.monotonic() - started
                print("| %s | `%s` | %d | %.2f | %.3f |" % (phase, path, status, seconds, seconds / args.latency))
            state.sampler.stop()
            sim.clear_faults()
        writer.stop()


if __name__ == "__main__":
    main()
