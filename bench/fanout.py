"""Listing all activities of a large instance: `activities.list_activities` (bounded concurrent fan-out) as a ratio to
a plain sequential dataikuapi loop doing the same calls over the same simulated instance, measured in one run.

Setup: the DSS simulator in its own process, as a DSS backend would be (real HTTP, real dataikuapi), with N
projects (default 500) and a latency fault of L ms (default 20) on every call. Each project has a webapp (half
of them running), a code studio (a quarter running), and some have a continuous activity, a notebook session or a
running job; 20 background tasks run. The sequential loop is what a script without this plugin would do: the
instance-wide calls, then per project webapps (+ backend state of each), continuous activities, code studios
(+ status of each). Both make the same calls (counted by a response hook) and must find the same activities.

    .venv/bin/python bench/fanout.py [--projects 500] [--latency-ms 20] [--workers 16] [--repeat 1]

Target (issue 5): list_activities at least 8x faster than the sequential loop, with bounded concurrency.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

import dataikuapi  # noqa: E402

from dev.dss_simulator.builders import (  # noqa: E402
    code_studio,
    continuous_activity,
    future,
    instance,
    job,
    notebook,
    project,
    session,
    webapp,
)
from process_tracker import dss  # noqa: E402
from process_tracker.activities import list_activities  # noqa: E402

TARGET_RATIO = 8.0


def big_instance(n_projects):
    users = ("alice", "bob")
    projects = []
    for i in range(n_projects):
        key = "P%04d" % i
        owner = users[i % 2]
        projects.append(project(
            key,
            notebooks=[notebook("nb", [session(owner)])] if i % 5 == 0 else [],
            jobs=[job("job-%s" % key, owner)] if i % 3 == 0 else [],
            webapps=[webapp("w%d" % i, running=i % 2 == 0, backend_owner=owner)],
            code_studios=[code_studio("cs%d" % i, owner, state="RUNNING" if i % 4 == 0 else "STOPPED")],
            continuous_activities=[continuous_activity("ca%d" % i, owner)] if i % 10 == 0 else [],
        ))
    futures = [future("f%02d" % i, ("alice", "bob")[i % 2]) for i in range(20)]
    return instance(projects=projects, futures=futures)


def sequential_loop(client):
    """A plain sequential dataikuapi script listing the same things with the same calls; returns a count."""
    found = 0
    keys = client.list_project_keys()
    for nb in client.list_running_notebooks(as_objects=False):
        found += len(nb.get("activeSessions") or [])
    found += len(client.list_futures(as_objects=False, all_users=True))
    found += len(client.list_running_scenarios(all_users=True))
    found += len(client.list_running_jobs(all_users=True))
    for key in keys:
        p = client.get_project(key)
        for w in p.list_webapps():
            if p.get_webapp(w.id).get_state().running:
                found += 1
        found += sum(1 for ca in p.list_continuous_activities(as_objects=False) if ca.get("desiredState") == "STARTED")
        for cs in p.list_code_studios():
            if p.get_code_studio(cs.id).get_status().state in ("RUNNING", "STARTING"):
                found += 1
    return found


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


class CallCounter:
    """Counts the HTTP answers a client receives (a requests response hook)."""

    def __init__(self, client):
        self._count = itertools.count()
        self.n = 0
        client._session.hooks["response"].append(self._hook)

    def _hook(self, response, *args, **kwargs):
        self.n = next(self._count) + 1
        return response


def start_simulator(inst, workdir):
    """python -m dev.dss_simulator in its own process; returns (process, url, admin key)."""
    path = os.path.join(workdir, "instance.json")
    with open(path, "w") as f:
        json.dump(inst, f)
    proc = subprocess.Popen([sys.executable, "-m", "dev.dss_simulator", "--instance", path, "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    values = {}
    while len(values) < 2:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise RuntimeError("the simulator exited (status %s)" % proc.returncode)
        name, _, value = line.strip().partition("=")
        values[name] = value
    return proc, values["url"], values["admin_key"]


def stop_simulator(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16, help="list_activities' concurrency bound")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    inst = big_instance(args.projects)
    inst["faults"] = {"routes": [{"path": ".*", "latency": args.latency_ms / 1000.0}]}
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as workdir:
        proc, url, key = start_simulator(inst, workdir)
        try:
            plain = dataikuapi.DSSClient(url, key)
            plugin = dss.install_timeouts(dataikuapi.DSSClient(url, key), timeout=30)
            seq_calls, par_calls = CallCounter(plain), CallCounter(plugin)
            seq_times, par_times = [], []
            for _ in range(args.repeat):
                t_seq, n_seq = timed(lambda: sequential_loop(plain))
                t_par, inv = timed(lambda: list_activities(plugin, max_workers=args.workers))
                if inv.errors or len(inv.activities) != n_seq:
                    print("MISMATCH: list_activities found %d (errors %d), the loop %d"
                          % (len(inv.activities), len(inv.errors), n_seq))
                    return 1
                seq_times.append(t_seq)
                par_times.append(t_par)
        finally:
            stop_simulator(proc)
    t_seq, t_par = min(seq_times), min(par_times)
    ratio = t_seq / t_par
    print("instance: %d projects, %.0f ms latency per call, %d activities" % (args.projects, args.latency_ms, n_seq))
    print("sequential dataikuapi loop: %.2f s for %d calls" % (t_seq, seq_calls.n // args.repeat))
    print("list_activities (max_workers=%d): %.2f s for %d calls" % (args.workers, t_par, par_calls.n // args.repeat))
    print("ratio: %.1fx faster (target >= %.0fx) %s" % (ratio, TARGET_RATIO, "OK" if ratio >= TARGET_RATIO else "BELOW"))
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
