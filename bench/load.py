"""The monitoring webapp under load, and the history over simulated days.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--days 2] [--no-fleet]

1. Load: the webapp as DSS serves it (backend.py exec'd with `app` injected, behind DSS's proxy prefix; the real
   scanner sampling this host every 2 s, with the demo process fleet running; the simulated DSS over HTTP), and N
   client threads on loopback, each a logged-in user polling the page's endpoints (snapshot, table, history
   windows, whoami) as fast as answers come, for S seconds. Reported: requests served, errors (anything but 200),
   latency p50/p95, RSS of the serving process (after warm-up, then its growth), the sampler's samples, missed
   ticks, errors and the spacing of its samples.
2. History: the sampler writing a real scan of this host every 10 s of an injected clock for `--days` simulated
   days with a 1-day retention; rows and database size per simulated day must stop growing after the first.

Imported by tests/integration/test_load.py, which runs short versions.
"""
import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psutil  # noqa: E402
import requests  # noqa: E402

ENDPOINTS = ("/api/snapshot", "/api/table", "/api/history?window=1h", "/api/history?window=24h",
             "/api/history?window=7d", "/api/whoami")
USERS = ("admin", "alice", "bob", "ops")
SAMPLING_SECONDS = 2


@dataclasses.dataclass
class LoadResult:
    clients: int
    seconds: float
    requests: int
    errors: int
    statuses: dict
    p50_ms: float
    p95_ms: float
    rss_start_mb: float
    rss_end_mb: float
    rss_growth_mb: float  # max RSS over the second half of the run minus RSS after warm-up
    samples: int
    missed_ticks: int
    sampler_errors: int
    sample_gaps_seconds: tuple  # spacing of consecutive samples written during the run
    error_examples: list


@contextmanager
def _env(**values):
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def served_webapp(fleet_pids, dip_home, history_dir):
    """The simulated DSS (demo instance) and the webapp served as DSS serves it; yields (base URL, WebappState)."""
    from dev.dss_runtime import load_webapp_app
    from dev.dss_simulator import Simulator
    from dev.dss_simulator.builders import load_demo
    from dev.webapp_server import WebappServer, backend_prefix, build_app

    sim = Simulator(load_demo(), fleet_pids=fleet_pids)
    with ExitStack() as stack:
        url = stack.enter_context(sim.serve())
        config = {"historyDir": history_dir, "samplingIntervalSeconds": SAMPLING_SECONDS, "allowedGroups": ["ops_team"]}
        # the backend process's environment, as DSS's webapp runner sets it, for as long as it serves
        stack.enter_context(_env(DKU_DSS_URL=url, DKU_API_KEY=sim.admin_key, DIP_HOME=dip_home))
        backend = load_webapp_app(os.path.join(ROOT, "webapps", "process-monitor"), config)
        state = backend.extensions["process_tracker"]
        stack.callback(state.sampler.stop)
        server = stack.enter_context(WebappServer(build_app(backend, config), port=0))
        yield server.url + backend_prefix(), state


def _client(base, login, stop, out, lock):
    session = requests.Session()
    session.cookies.set("dss_sim_user", login)
    i = 0
    local = []
    while not stop.is_set():
        path = ENDPOINTS[i % len(ENDPOINTS)]
        i += 1
        t0 = time.perf_counter()
        try:
            r = session.get(base + path, timeout=30)
            status, ok = r.status_code, r.status_code == 200 and r.headers.get("Content-Type", "").startswith(
                "application/json")
            detail = "" if ok else r.text[:200]
        except requests.RequestException as e:
            status, ok, detail = e.__class__.__name__, False, str(e)[:200]
        local.append((time.perf_counter() - t0, status, ok, path, detail))
    session.close()
    with lock:
        out.extend(local)


def run_load(base, state, clients, seconds, warmup_seconds=None):
    """N client threads for `seconds` against the served webapp at `base`; returns a LoadResult."""
    proc = psutil.Process()
    warmup_seconds = seconds * 0.2 if warmup_seconds is None else warmup_seconds
    first = requests.get(base + "/api/snapshot", cookies={"dss_sim_user": "admin"}, timeout=60)
    first.raise_for_status()
    stop, lock, results = threading.Event(), threading.Lock(), []
    before = (state.sampler.samples, state.sampler.missed_ticks, state.sampler.errors)
    started_at = time.time()
    threads = [threading.Thread(target=_client, args=(base, USERS[i % len(USERS)], stop, results, lock),
                                name="load-client-%d" % i, daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    rss = []
    t_start = time.monotonic()
    while time.monotonic() - t_start < seconds:
        time.sleep(0.25)
        rss.append((time.monotonic() - t_start, proc.memory_info().rss))
    stop.set()
    for t in threads:
        t.join(60)
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        raise RuntimeError("client threads still running: %s" % alive)
    latencies = sorted(r[0] for r in results)
    statuses = {}
    for r in results:
        statuses[r[1]] = statuses.get(r[1], 0) + 1
    errors = [r for r in results if not r[2]]
    after_warmup = [m for t, m in rss if t >= warmup_seconds] or [rss[-1][1]]
    second_half = [m for t, m in rss if t >= seconds / 2] or [rss[-1][1]]
    times = _sample_times(state.store, started_at)
    return LoadResult(
        clients=clients, seconds=seconds, requests=len(results), errors=len(errors), statuses=statuses,
        p50_ms=round(1000 * _pct(latencies, 50), 1), p95_ms=round(1000 * _pct(latencies, 95), 1),
        rss_start_mb=round(after_warmup[0] / 2**20, 1), rss_end_mb=round(rss[-1][1] / 2**20, 1),
        rss_growth_mb=round((max(second_half) - after_warmup[0]) / 2**20, 1),
        samples=state.sampler.samples - before[0], missed_ticks=state.sampler.missed_ticks - before[1],
        sampler_errors=state.sampler.errors - before[2],
        sample_gaps_seconds=tuple(round(b - a, 2) for a, b in zip(times, times[1:])),
        error_examples=[(r[1], r[3], r[4]) for r in errors[:5]],
    )


def _pct(values, p):
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def _sample_times(store, since):
    conn = store.connect()
    try:
        return [row[0] for row in conn.execute("SELECT ts FROM samples WHERE ts >= ? ORDER BY ts", (since,))]
    finally:
        conn.close()


# ---- the history over simulated days ------------------------------------------------------------------------


class _ManualClock:
    def __init__(self, t):
        self.t = float(t)

    def __call__(self):
        return self.t


class _Replay:
    """A scanner giving one real scan of this host again and again, stamped with the injected clock."""

    def __init__(self, snapshot, clock):
        self.snapshot, self.clock = snapshot, clock

    def scan(self):
        return dataclasses.replace(self.snapshot, taken_at=self.clock())


def simulate_history(directory, days, interval_seconds=10, retention_days=1, snapshot=None, on_day=None):
    """Write `days` of samples every `interval_seconds` seconds of an injected clock through the real Sampler and
    HistoryStore. Returns [(day, rows, db_bytes, wal_bytes)] after each simulated day (`on_day` gets each too)."""
    from process_tracker.history import HistoryStore
    from process_tracker.host import Scanner
    from process_tracker.sampler import Sampler

    snapshot = snapshot or Scanner().scan()
    clock = _ManualClock(time.time() - days * 86400)
    store = HistoryStore(directory, retention_days=retention_days, clock=clock)
    sampler = Sampler(store, lambda: _Replay(snapshot, clock), interval_seconds=interval_seconds)
    per_day = int(round(86400 / interval_seconds))
    sizes = []
    try:
        for day in range(1, int(days) + 1):
            for _ in range(per_day):
                clock.t += interval_seconds
                if not sampler.sample_once():
                    raise RuntimeError("a sample was not written (errors: %d)" % sampler.errors)
            rows, db_bytes = store.size()
            wal = store.path + "-wal"
            entry = (day, rows, db_bytes, os.path.getsize(wal) if os.path.exists(wal) else 0)
            sizes.append(entry)
            if on_day:
                on_day(entry)
    finally:
        sampler.stop()
    return sizes


# ---- main ---------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--days", type=int, default=2, help="simulated days of history (0: skip)")
    parser.add_argument("--no-fleet", action="store_true", help="do not start the demo process fleet")
    args = parser.parse_args(argv)
    from dev.fleet import Fleet, demo_layout

    with ExitStack() as stack:
        dip_home = None
        pids = {}
        if not args.no_fleet:
            fleet = stack.enter_context(Fleet(demo_layout))
            dip_home, pids = fleet.dip_home, dict(fleet.pids)
        history_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pt-load-"))
        base, state = stack.enter_context(served_webapp(pids, dip_home, history_dir))
        deadline = time.monotonic() + 60
        while state.sampler.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        print("load: %d clients for %.0f s on %s (sampling every %d s)" % (args.clients, args.seconds, base,
                                                                          SAMPLING_SECONDS))
        r = run_load(base, state, args.clients, args.seconds)
        gaps = r.sample_gaps_seconds
        print("| clients | seconds | requests served | errors | req/s | p50 | p95 | RSS after warm-up | RSS growth "
              "| samples | missed ticks | sampler errors | sample spacing (median / max) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("| %d | %.0f | %d | %d | %.0f | %.0f ms | %.0f ms | %.0f MiB | %+.1f MiB | %d | %d | %d | %s / %s s |" % (
            r.clients, r.seconds, r.requests, r.errors, r.requests / r.seconds, r.p50_ms, r.p95_ms, r.rss_start_mb,
            r.rss_growth_mb, r.samples, r.missed_ticks, r.sampler_errors,
            statistics.median(gaps) if gaps else "-", max(gaps) if gaps else "-"))
        if r.error_examples:
            print("errors, first ones: %s" % r.error_examples)
    bad = r.errors or r.sampler_errors
    if args.days:
        print()
        print("history: %d simulated days, a sample every 10 s, retention 1 day" % args.days)
        print("| simulated day | rows | database | WAL | wall time |")
        print("|---|---|---|---|---|")
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="pt-history-") as d:
            def show(entry):
                print("| %d | %d | %.2f MiB | %.2f MiB | %.0f s |" % (entry[0], entry[1], entry[2] / 2**20,
                                                                    entry[3] / 2**20, time.monotonic() - t0))
                sys.stdout.flush()

            sizes = simulate_history(d, args.days, on_day=show)
        if len(sizes) >= 2 and sizes[-1][1] > sizes[0][1] * 1.05:
            print("the history kept growing after the first day")
            bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
