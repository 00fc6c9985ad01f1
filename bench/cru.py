"""CRU reader cost: tailing an audit log growing at 1,000 events/s, per sample, against the scan's own cost.

Setup: 2,000 sleeping processes (bench/scan.py's nursery; they exit with this script), a temporary DIP_HOME whose
run/audit/audit.log gets, before each sample, `--rate` x `--interval` CRU events (1,000/s x 10 s, the sampler's
default interval) written the way DSS writes them (one JSON record per line, the message nested in an envelope,
every localProcess field: ~700 bytes a line). The reader already knows the items of live processes (steady state).
Mixes (`--mix`), over the 2,000 live processes whose items the reader knows:
- "updates": every event an update of a live item (DSS's periodic reporting: most of the CRU traffic);
- "steady":  98% updates, 1% starts of new items (parsed: pid reuse or a new process), 1% completes of known
             items (parsed to check the item id);
- "starts":  every event a start of a new item of a live pid already known (parsed only when the pid's item is
             stale: here they are not, the starts name the process's own start time);
- "unknown": the steady mix, but the reader forgets every item before each sample: every line names a live pid
             whose item is unknown and is parsed (the worst case: a reader's first read of a backlog).
Measured, interleaved (CPU time of this process, medians of `--reps`): one steady `Scanner.scan()` of the host,
and one `AuditReader.contexts(snapshot)` (poll of the new lines + the pid/start-time match over the snapshot).
The figure the issue targets: reader / scan, under 10% at 2,000 processes.

    .venv/bin/python bench/cru.py [--processes 2000] [--rate 1000] [--interval 10] [--reps 7] [--mix all]
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

from process_tracker.cru import AuditReader  # noqa: E402
from process_tracker.host import Scanner  # noqa: E402
from scan import spawn_sleepers, stop_sleepers  # noqa: E402

CONTEXT = {"type": "JOB_ACTIVITY", "projectKey": "SALES", "authIdentifier": "alice", "initiator": "alice",
           "jobId": "Build_orders_by_day_2026-05-02T09-12-44.118", "activityId": "compute_orders_by_day_NP"}


def event(phase, item_id, pid, start_ms, now_ms):
    local = {"pid": pid, "commandName": "python", "vmRSSMB": 812.4, "vmHWMMB": 903.1, "vmPeakMB": 1911.0,
             "vmSizeMB": 1890.2, "vmDataMB": 1022.7, "rssAnonMB": 640.9, "rssMBSeconds": 1234567.8,
             "userTimeMS": 51230, "systemTimeMS": 2231, "cuserTimeMS": 0, "csystemTimeMS": 0, "majorFaults": 3,
             "cmajorFaults": 0, "currentCPUUsage": 0.93}
    cru = {"id": item_id, "type": "LOCAL_PROCESS", "startTime": start_ms, "context": CONTEXT, "localProcess": local}
    if phase == "complete":
        cru["endTime"] = now_ms
    message = {"msgType": "compute-resource-usage-" + phase, "computeResourceUsage": cru}
    return json.dumps({"timestamp": now_ms, "topic": "compute-resource-usage", "severity": "INFO",
                       "message": message}, separators=(",", ":")) + "\n"


# (start below, complete below); "unknown" is "steady" with a reader that forgets its items before each sample
SHARES = {"updates": (0.0, 0.0), "steady": (0.01, 0.02), "starts": (1.0, 1.0), "unknown": (0.01, 0.02)}


def batch(mix, count, procs, counter, rng):
    """`count` lines of the mix over the live processes `procs` [(pid, start_ms, item id)]."""
    now_ms = int(time.time() * 1000)
    starts, completes = SHARES[mix]
    lines = []
    for _ in range(count):
        pid, start_ms, item_id = procs[rng.randrange(len(procs))]
        roll = rng.random()
        if roll < starts:
            counter[0] += 1
            lines.append(event("start", "new-%d" % counter[0], pid, start_ms, now_ms))
        elif roll < completes:
            lines.append(event("complete", "other-%d" % counter[0], pid, start_ms, now_ms))  # another item's
        else:
            lines.append(event("update", item_id, pid, start_ms, now_ms))
    return "".join(lines).encode()


def measure(mix, snapshot, scanner, procs, args):
    home = tempfile.mkdtemp(prefix="pt-bench-cru-")
    audit = os.path.join(home, "run", "audit")
    os.makedirs(audit)
    path = os.path.join(audit, "audit.log")
    rng, counter = random.Random(1), [0]
    try:
        with open(path, "wb") as f:  # the items of live processes, already known
            f.write("".join(event("start", item_id, pid, start_ms, start_ms) for pid, start_ms, item_id in procs)
                    .encode())
        reader = AuditReader([home])
        reader.contexts(snapshot)
        per_sample = int(args.rate * args.interval)
        scans, reads, sizes, counts = [], [], [], []
        for _ in range(args.reps):
            data = batch(mix, per_sample, procs, counter, rng)
            sizes.append(len(data))
            with open(path, "ab") as f:
                f.write(data)
            t0 = time.process_time()
            snapshot = scanner.scan()
            scans.append(time.process_time() - t0)
            counts.append(len(snapshot.processes))
            if mix == "unknown":
                reader.items.clear()
            t0 = time.process_time()
            got = reader.contexts(snapshot)
            reads.append(time.process_time() - t0)
        med = statistics.median
        return {"mix": mix, "events": per_sample, "mb": med(sizes) / 1e6, "scan_ms": med(scans) * 1e3,
                "reader_ms": med(reads) * 1e3, "ratio": med(reads) / med(scans), "joined": len(got),
                "items": len(reader.items), "parsed": reader.stats.parsed, "processes": max(counts)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="CRU events per second")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--mix", choices=("all",) + tuple(SHARES), default="all")
    args = parser.parse_args(argv)
    nursery, lifeline = spawn_sleepers(args.processes)
    try:
        kids = psutil.Process(nursery.pid).children()
        procs = [(p.pid, int(p.create_time() * 1000), "item-%d" % p.pid) for p in kids]
        scanner = Scanner(young_seconds=0.0)
        scanner.scan()
        snapshot = scanner.scan()
        print("%d sleepers, %d processes on the host; %d events per sample (%d/s x %.0f s)"
              % (len(procs), len(snapshot.processes), args.rate * args.interval, args.rate, args.interval))
        mixes = tuple(SHARES) if args.mix == "all" else (args.mix,)
        for mix in mixes:
            r = measure(mix, snapshot, scanner, procs, args)
            print("%-8s %6d events %5.1f MB | scan %6.1f ms (<= %d processes) | reader %6.1f ms | reader/scan %5.1f%% "
                  "| joined %d, items %d" % (r["mix"], r["events"], r["mb"], r["scan_ms"], r["processes"],
                                             r["reader_ms"], 100 * r["ratio"], r["joined"], r["items"]), flush=True)
    finally:
        stop_sleepers(nursery, lifeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
