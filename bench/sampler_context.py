"""The webapp sampler's cost with DSS's own records (issue 15) against the same sampler without them.

Setup: `--processes` sleeping processes that look like JEKs of one DSS instance (bench/scan.py's nursery, with a
temporary DIP_HOME) and its backend (dev/fleet.py's, so the sampler is "on the host"), a CRU start event for each in that DIP_HOME's audit log (so every process gets a context and
`latest_contexts` holds one row per process: the worst case for the history write), cgroup templates in its
`config/general-settings.json`, and before each sample `--rate` x `--interval` CRU update events appended
(bench/cru.py's lines). Two samplers, each with its own scanner and history: one as the webapp runs it
(`Sampler.sample_once`: scan, contexts with one long-lived AuditReader, OOM counters, history write), one whose
`_dss_records` returns nothing (what a sample cost before issue 15). Measured interleaved, CPU time of the
sampling thread per sample (`time.thread_time`), medians of `--reps`.

    .venv/bin/python bench/sampler_context.py [--processes 2000] [--rate 1000] [--interval 10] [--reps 7]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python-lib"))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import psutil  # noqa: E402

from cru import batch, event  # noqa: E402
from process_tracker.history import HistoryStore  # noqa: E402
from process_tracker.host import Scanner  # noqa: E402
from process_tracker.sampler import Sampler  # noqa: E402
from scan import spawn_sleepers, stop_sleepers  # noqa: E402

SETTINGS = {"cgroupSettings": {"enabled": True, "cgroupsVersion": "CGROUPS_V1",
                               "pythonRRecipes": {"targets": [{"cgroupPathTemplate": "memory/DSS/${projectKey}/r"}]},
                               "mlKernels": {"targets": [{"cgroupPathTemplate": "memory/DSS/${user}/ml"}]}}}


def cost(sampler):
    t0 = time.thread_time()
    assert sampler.sample_once(), "the sampler did not write"
    return time.thread_time() - t0


def run(args, home, procs):
    audit = os.path.join(home, "run", "audit", "audit.log")
    with_records = Sampler(HistoryStore(os.path.join(home, "h1")), lambda: Scanner(pss=False), dip_home=home)
    without = Sampler(HistoryStore(os.path.join(home, "h2")), lambda: Scanner(pss=False), dip_home=home)
    without._dss_records = lambda snapshot: ({}, ())
    records, real = [], with_records._dss_records

    def timed(snapshot):  # the records' own part of a sample: CRU poll and match, cgroup maps, tree, OOM counters
        t0 = time.thread_time()
        try:
            return real(snapshot)
        finally:
            records.append(time.thread_time() - t0)

    with_records._dss_records = timed
    for s in (with_records, without):  # first samples: every process new, the reader's first read of its backlog
        cost(s)
    rng, counter, a, b = random.Random(1), [0], [], []
    for _ in range(args.reps):
        with open(audit, "ab") as f:
            f.write(batch("steady", int(args.rate * args.interval), procs, counter, rng))
        a.append(cost(with_records))
        b.append(cost(without))
    latest = with_records.store.latest()
    med = statistics.median
    return med(a), med(b), med(records[1:]), len(latest.contexts), len(latest.processes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="CRU events per second")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="pt-bench-sampler-ctx-")
    from dataclasses import replace

    from dev.fleet import Fleet, demo_layout

    backend = Fleet([replace(s, parent=None) for s in demo_layout(home) if s.name == "backend"], dip_home=home)
    backend.start()
    nursery, lifeline = spawn_sleepers(args.processes, dss_dir=home)
    try:
        os.makedirs(os.path.join(home, "config"))
        with open(os.path.join(home, "config", "general-settings.json"), "w") as f:
            json.dump(SETTINGS, f)
        os.makedirs(os.path.join(home, "run", "audit"))
        procs = [(p.pid, int(p.create_time() * 1000), "cru-%d" % p.pid) for p in psutil.Process(nursery.pid).children()]
        with open(os.path.join(home, "run", "audit", "audit.log"), "w") as f:
            f.write("".join(event("start", i, pid, ms, ms) for pid, ms, i in procs))
        with_ms, without_ms, records_ms, contexts, scanned = run(args, home, procs)
    finally:
        stop_sleepers(nursery, lifeline)
        backend.stop()
        shutil.rmtree(home, ignore_errors=True)
    print("| processes scanned | contexts stored | sample with DSS's records | without | records alone"
          " | records / sample without |")
    print("|---|---|---|---|---|---|")
    print(f"| {scanned:,} | {contexts:,} | {with_ms * 1e3:.1f} ms | {without_ms * 1e3:.1f} ms"
          f" | {records_ms * 1e3:.1f} ms | {records_ms / without_ms:.1%} |")


if __name__ == "__main__":
    main()
