"""Webapp backend latency and payload, as ratios to reading the same rows straight from SQLite in the same run.

Setup: a history with 7 days of 10 s samples (synthetic series for 16 roles written into the history DB through
HistoryStore.record_series, then pruned as the sampler would), a last sample of 2,000 processes, and the
simulated DSS (real dataikuapi over HTTP) with 40 notebook sessions for identity and the activity listing.
The routes are registered on a Flask app as in DSS and called through its test client; the webapp's own sampler
writes each new sample (a scanner giving the same 2,000 processes, the clock 10 s later) and, the page being
watched, precomputes the views on its tick, as the sampler thread does.

Each endpoint is timed four ways, interleaved call by call: the raw SQLite read; a repeat request (the view
already computed for this sample); the first request after a new sample (precomputed by the sampler's tick:
what a polling page gets); and a lazy request (the view computed by the request: nobody watched when the sample
came, or a reader process has not noticed it yet). The warm-up's own cost (on the sampler thread) is printed.

    .venv/bin/python bench/webapp.py [--requests 60] [--processes 2000]

Targets (issue 6): 7-day history payload < 500 KB; p95 of each endpoint < 4x the raw SQLite read.
"""
import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

from flask import Flask  # noqa: E402

from dev.dss_simulator import Simulator  # noqa: E402
from dev.dss_simulator.builders import instance, notebook, project, session  # noqa: E402
from process_tracker.history import HistoryStore, RoleSample  # noqa: E402
from process_tracker.host import ProcessRecord, RoleTotals, ScanStats, Snapshot  # noqa: E402
from process_tracker.webapp import WebappOptions, register_routes  # noqa: E402

MiB = 1024 * 1024
ROLES = ("supervisord", "nginx", "backend", "jek", "fek", "cak", "jupyter_server", "jupyter_kernel", "ml_training",
         "webapp_backend", "python_recipe", "spark_driver", "eventserver", "apimain", "governserver", "not_dss")
DAY = 86400


def synthetic_processes(n, now):
    rng = random.Random(7)
    procs = []
    weights = {"jupyter_kernel": 30, "not_dss": 40, "jek": 8, "fek": 4, "python_recipe": 8, "webapp_backend": 4}
    population = [r for r in ROLES for _ in range(weights.get(r, 1))]
    for i in range(n):
        role = population[rng.randrange(len(population))] if i > 2 else ("supervisord", "nginx", "backend")[i]
        pid = 1000 + i
        ids = {"xmx_bytes": 2048 * MiB} if role in ("backend", "jek", "fek", "cak") else {}
        if role == "jupyter_kernel":
            ids["kernel_id"] = "%08d-0000-4000-8000-000000000000" % i
        procs.append(ProcessRecord(
            pid=pid, ppid=2 if i < 3 else 1002, created_at=now - rng.randrange(DAY), name=role, role=role,
            label=role.replace("_", " "), user="dataiku", instance=None if role == "not_dss" else "/data/dss",
            rss_bytes=rng.randrange(20, 3000) * MiB, rss_anon_bytes=rng.randrange(10, 2500) * MiB,
            cpu_percent=rng.random() * 50, num_threads=rng.randrange(1, 80), age_seconds=rng.randrange(DAY), ids=ids,
        ))
    return tuple(procs)


def snapshot_of(processes, now):
    roles = {}
    for p in processes:
        t = roles.get(p.role, RoleTotals(0, 0, 0, 0.0))
        roles[p.role] = RoleTotals(t.count + 1, t.rss_anon_bytes + p.rss_anon_bytes, t.rss_bytes + p.rss_bytes,
                                   t.cpu_percent + p.cpu_percent)
    return Snapshot(taken_at=now, hostname="bench-host", processes=processes, roles=roles, cgroups=(),
                    stats=ScanStats(0.3, 0.25, len(processes), 0, len(processes), 0, 0))


def fill_history(store, clock, now, processes):
    base = {}
    for p in processes:
        c, anon, rss, cpu = base.get(p.role, (0, 0, 0, 0.0))
        base[p.role] = (c + 1, anon + p.rss_anon_bytes, rss + p.rss_bytes, cpu + p.cpu_percent)
    start = now - 7 * DAY
    batch = []
    for i in range(7 * DAY // 10):
        ts = start + i * 10
        wave = 1.0 + 0.2 * ((i // 360) % 10) / 10.0
        batch.append((ts, [RoleSample(r, c, int(a * wave), int(s * wave), cpu) for r, (c, a, s, cpu) in base.items()],
                      []))
        if len(batch) == 8640:
            clock.now = ts
            store.record_series(batch)
            batch = []
    if batch:
        clock.now = batch[-1][0]
        store.record_series(batch)
    clock.now = now
    store.prune()


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def percentiles(samples):
    """(p50, p95) of a list of durations."""
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def timed(cases, n):
    """p50 and p95 (seconds) of each (setup, fn) case, called in turn n times (setup untimed, may be None):
    interleaved, so that load from other processes on the machine weighs on each the same way and the ratios
    stay meaningful."""
    samples = [[] for _ in cases]
    for _ in range(n):
        for i, (setup, fn) in enumerate(cases):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - t0)
    return [percentiles(s) for s in samples]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per endpoint (default 60)")
    parser.add_argument("--processes", type=int, default=2000)
    args = parser.parse_args(argv)

    now = time.time()
    tmp = tempfile.TemporaryDirectory(prefix="bench-webapp-")
    clock = Clock(now)
    store = HistoryStore(tmp.name, clock=clock)
    processes = synthetic_processes(args.processes, now)
    t0 = time.perf_counter()
    fill_history(store, clock, now, processes)
    store.record(snapshot_of(processes, now), sampler={"interval_seconds": 10, "cpu_percent_of_core": 2.5})
    fill_seconds = time.perf_counter() - t0
    rows, db_bytes = store.size()
    print("history: 7 days of 10 s samples, %d roles, %d rows, %.1f MB on disk, written in %.1f s"
          % (len(ROLES), rows, db_bytes / 1e6, fill_seconds))

    kernels = [p for p in processes if p.role == "jupyter_kernel"][:40]
    fleet = {"k%d" % i: p.pid for i, p in enumerate(kernels)}
    sessions = [session("alice", session_id="s%d" % i, kernel_id=p.ids["kernel_id"], kernel_pid={"fleet": "k%d" % i},
                        idle_for="%dm" % (i * 7 + 1)) for i, p in enumerate(kernels)]
    sim = Simulator(instance(projects=[project("BENCH", notebooks=[notebook("nb%d" % i, [s])
                                                                   for i, s in enumerate(sessions)])]),
                    fleet_pids=fleet)
    class Scanner:
        def scan(self):
            return snapshot_of(processes, clock.now)

    with sim.serve():
        app = Flask("bench")
        options = WebappOptions(history_dir=tmp.name, client_factory=sim.client, clock=clock, start_sampler=False,
                                scanner_factory=Scanner, watch_window_seconds=3600.0)  # the page stays open
        register_routes(app, options)
        client = app.test_client()
        client.set_cookie("dss_sim_user", "admin")
        for path in ("/api/snapshot", "/api/table", "/api/history?window=7d"):  # warm caches and imports
            assert client.get(path).status_code == 200, client.get(path).get_data(as_text=True)[:300]

        def raw(sql, params=()):
            def read():
                conn = sqlite3.connect(store.path)
                try:
                    conn.execute(sql, params).fetchall()
                finally:
                    conn.close()
            return read

        since = int((now - 7 * DAY) // 300) * 300
        cases = [
            ("/api/snapshot", "SELECT * FROM latest_processes", ()),
            ("/api/table", "SELECT * FROM latest_processes", ()),
            ("/api/history?window=7d", "SELECT * FROM role_bucket WHERE bucket >= ?", (since,)),
        ]
        state = app.extensions["process_tracker"]
        assert state.sampler.try_elect()
        warm_seconds = []

        def warm_up():  # the sampler's on_tick, timed
            t0 = time.perf_counter()
            state.warm_views()
            warm_seconds.append(time.perf_counter() - t0)

        state.sampler.on_tick = warm_up

        def new_sample():  # what the sampler thread does every interval: scan, write, warm the watched views
            clock.now += 10
            assert state.sampler.tick() and state.warm_errors == 0

        def forget_views():  # as if nobody watched when the sample came: the request computes the view
            with state._views_lock:
                state._views.clear()

        print("\nrepeat: the view already computed for this sample; first: the first request after a new sample, "
              "precomputed by the sampler's tick (what a polling page gets); lazy: computed by the request "
              "(nobody watched when the sample came, or a reader process had not noticed it yet)")
        print("\n| endpoint | raw SQLite p50 / p95 ms | repeat p50 / p95 ms | repeat p95 ratio "
              "| first after sample p50 / p95 ms | first p95 ratio | lazy p50 / p95 ms | lazy p95 ratio "
              "| payload KB |")
        print("|---|---|---|---|---|---|---|---|---|")
        ok = True
        for path, sql, params in cases:
            size = len(client.get(path).data)

            def get(p=path):
                return client.get(p)

            (rp50, rp95), (wp50, wp95), (fp50, fp95), (cp50, cp95) = timed(
                [(None, raw(sql, params)), (None, get), (new_sample, get), (forget_views, get)], args.requests)
            ok = ok and wp95 / rp95 < 4.0 and fp95 / rp95 < 4.0
            print("| `%s` | %.1f / %.1f | %.1f / %.1f | %.2f | %.1f / %.1f | %.2f | %.1f / %.1f | %.2f | %.0f |"
                  % (path, rp50 * 1e3, rp95 * 1e3, wp50 * 1e3, wp95 * 1e3, wp95 / rp95, fp50 * 1e3, fp95 * 1e3,
                     fp95 / rp95, cp50 * 1e3, cp95 * 1e3, cp95 / rp95, size / 1024.0))
        week = len(client.get("/api/history?window=7d").data)
        wp50, wp95 = percentiles(warm_seconds)
        print("\n7-day history payload: %.0f KB (target < 500 KB): %s" % (week / 1024.0, "ok" if week < 500_000 else "OVER"))
        print("warm-up on the sampler thread after each sample (listing + snapshot, table, 7d history): "
              "p50 %.0f ms, p95 %.0f ms over %d samples (%.1f%% of a 10 s interval at p50)"
              % (wp50 * 1e3, wp95 * 1e3, len(warm_seconds), wp50 / 10 * 100))
        print("repeat and first-after-sample p95 ratios under 4x: %s" % ("ok" if ok else "NOT MET"))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
