"""The webapp under concurrent load while its sampler scans the host, and the history over a simulated day and a
half: short versions of bench/load.py (which runs 50 clients for 60 s and several days, with the figures).

Load: 10 logged-in clients poll every endpoint for 5 s against the webapp served as DSS serves it (real HTTP on
loopback, the real scanner over the real fleet, the simulated DSS): every answer is a 200 JSON, the sampler keeps
writing samples with no error, memory stays bounded, and no client thread is left behind.
History: the real Sampler and HistoryStore, fed a real scan of this host every 2 minutes of an injected clock for
two days with a one-day retention: after the first day the rows and the database stop growing.
"""
import threading

from bench.load import run_load, served_webapp, simulate_history


def test_the_webapp_serves_concurrent_clients_while_the_sampler_runs(fleet, tmp_path):
    import time

    before = {t.ident for t in threading.enumerate()}
    with served_webapp(fleet.pids, fleet.dip_home, str(tmp_path / "history")) as (base, state):
        deadline = time.monotonic() + 60
        while state.sampler.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.sampler.is_writer and state.sampler.samples >= 1, state.sampler.status()
        result = run_load(base, state, clients=10, seconds=5)
    assert result.requests >= 50, result
    assert result.errors == 0, result.error_examples
    assert set(result.statuses) == {200}
    assert result.samples >= 1 and result.sampler_errors == 0, result  # it kept sampling under load
    assert result.rss_growth_mb < 150, result  # bounded (the bench measures it over 60 s)
    leftover = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("load-client")]
    assert leftover == []


def test_the_history_is_bounded_by_its_retention_over_simulated_days(fleet, tmp_path):
    import dataclasses

    from process_tracker.host import Scanner, role_totals

    scan = Scanner().scan()  # the fleet's processes only: other processes on this machine come and go
    ours = tuple(p for p in scan.processes if p.instance == fleet.dip_home)
    assert len(ours) >= 20
    snapshot = dataclasses.replace(scan, processes=ours, roles=role_totals(ours))
    sizes = simulate_history(str(tmp_path), days=2, interval_seconds=120, retention_days=1, snapshot=snapshot)
    (_, rows_1, bytes_1, _), (_, rows_2, bytes_2, _) = sizes
    assert rows_2 <= rows_1 * 1.02 + 50, sizes  # raw rows kept 24 h, buckets kept 1 day: flat after day one
    assert bytes_2 <= bytes_1 * 1.10 + 64 * 1024, sizes  # freed pages are reused: the file stops growing
