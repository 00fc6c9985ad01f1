"""`make demo`: a simulated DSS, a fleet of real DSS-shaped processes and the monitoring webapp, on this machine.

    python -m dev.demo [--port 8765] [--no-fleet] [--duration S] [--memory-mib 1200] [--status-file F]

It starts, in this order (and stops in the reverse order on Ctrl-C, SIGTERM or after --duration):
1. the fleet (`dev.fleet`, demo layout) in a temporary DSS data directory (DIP_HOME), its memory scaled so the
   whole fleet holds about --memory-mib MiB of real memory;
2. the simulated DSS public API (`dev.dss_simulator`) seeded from `dev/instances/demo.json`, with the fleet's pids
   wherever DSS reports one (kernelPid, job kernelPid, webapp backend pid);
3. the monitoring webapp served the way DSS serves it (`dev.webapp_server`): backend.py exec'd with `app`
   injected, running as the admin's API key, and its page with DSS's `dataiku` JS library stand-in.
Then it waits for the webapp's first host sample, backfills 7 days of synthetic history shaped on it (so the
"over time" charts have something to show; --no-backfill to skip), and prints the URLs and a one-screen summary.
Nothing is left behind: the fleet's processes and the temporary DIP_HOME are removed on exit.
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack

from dev.dss_simulator.loader import parse_duration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_INSTANCE = os.path.join(ROOT, "dev", "instances", "demo.json")
DEFAULT_PORT = 8765
DEFAULT_MEMORY_MIB = 1200
USERS = ("admin", "alice", "bob", "ops")
ALLOWED_GROUPS = ["ops_team"]  # the webapp's "groups allowed to act" example: ops may act without being admin
# A notebook whose name is HTML: DSS accepts such names, and the webapp must show them as text (the browser tests
# check that nothing runs). Its session has no kernel pid, so it shows as an activity without a process. No "/" in
# it: a notebook name with one could steer a path, and is an error row instead (identifiers.notebook_name).
HOSTILE_NOTEBOOK = '<img src=x onerror="window.__ptInjected=1"><script>window.__ptInjected=1<script> scratch'
HOSTILE_FRAGMENT = {"projects": [{"projectKey": "SANDBOX", "notebooks": [
    {"name": HOSTILE_NOTEBOOK, "language": "python", "sessions": [
        {"sessionId": "0f0f0f0f-7777-4777-8777-777777777777", "creator": "ops", "startedAgo": "3d",
         "idleFor": "2d", "state": "idle", "connections": 0}]}]}]}
JOB_PROCESSES = ("jek-1", "jek-2")  # the demo's running jobs' JEKs (dev.fleet.DEMO_JOBS)
STEADY_ROLES = {"supervisord", "nginx", "backend", "jupyter_server", "governserver", "eventserver", "apinode"}


class Stop(Exception):
    """Raised by the SIGTERM handler, so that every `with` block unwinds and cleans up."""


def _on_signal(signum, frame):
    """First Ctrl-C or SIGTERM: unwind and clean up; later ones are ignored so the cleanup finishes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dev.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None,
                        help="webapp port (default %d, or any free port when taken; 0: any free port)" % DEFAULT_PORT)
    parser.add_argument("--no-fleet", action="store_true",
                        help="do not start the process fleet: the webapp then shows API views only (degraded mode)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--memory-mib", type=float, default=DEFAULT_MEMORY_MIB,
                        help="real memory the whole fleet holds, MiB (default %d)" % DEFAULT_MEMORY_MIB)
    parser.add_argument("--sampling", type=int, default=5, help="the webapp's sampling interval, seconds (default 5)")
    parser.add_argument("--no-backfill", action="store_true", help="do not backfill synthetic history")
    parser.add_argument("--failing-project", action="append", default=[], metavar="KEY",
                        help="make every DSS API call about this project fail (HTTP 500), to see how the webapp "
                        "reports a partial listing (repeatable)")
    parser.add_argument("--k8s", action="store_true",
                        help="also a simulated Kubernetes cluster with a few DSS pods (dev/k8s_simulator), shown "
                        "beside the host's processes")
    parser.add_argument("--status-file", help="write the URLs, keys and pids as JSON to this file once ready (tests)")
    parser.add_argument("--prometheus-url", default="", help="the webapp's Prometheus URL setting (docs/prometheus.md)")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration: must be > 0 seconds")
    if args.memory_mib <= 0:
        parser.error("--memory-mib: must be > 0")
    if args.sampling < 2:
        parser.error("--sampling: must be >= 2 seconds")
    return args


# ---------------------------------------------------------------------------------------------------- fleet

def memory_scale(specs, budget_mib):
    """The fleet's memory_scale so that all `specs` together hold about `budget_mib` MiB."""
    total = sum(float(getattr(s, "memory_mib", 0) or 0) for s in _walk_specs(specs))
    return budget_mib / total if total > 0 else 1.0


def _walk_specs(specs):
    for spec in specs:
        yield spec
        yield from _walk_specs(getattr(spec, "children", ()) or ())


def start_fleet(stack, dip_home, budget_mib, jobs_started_at):
    from dev.fleet import Fleet, demo_layout

    specs = demo_layout(dip_home, jobs_started_at)
    fleet = stack.enter_context(Fleet(specs, memory_scale=memory_scale(specs, budget_mib)))
    from dev.cru_writer import DEMO_CONTEXTS, write_demo_records
    from dev.fleet import dss_job_id

    # the running jobs' ids are dated with their start, as the simulated DSS lists them (seed_instance)
    contexts = {name: dict(c, jobId=dss_job_id(JOB_DATE.sub("", c["jobId"]), jobs_started_at)) if "jobId" in c
                else c for name, c in DEMO_CONTEXTS.items()}
    note = write_demo_records(fleet, stack, contexts)  # DSS's audit log and (as root) cgroups (issue 15)
    if note:
        print("demo: %s" % note, flush=True)
    return fleet


def fleet_ender(fleet):
    """The simulator's `end_process`: stopping an activity in DSS ends its process (and its children) in the fleet,
    so its memory goes away and it never shows as an orphan."""
    names = {pid: name for name, pid in fleet.pids.items()}

    def end(pid):
        if pid in names and fleet.alive(names[pid]):
            fleet.kill(names[pid])

    return end


# ---------------------------------------------------------------------------------------------------- instance

PID_FIELDS = ("kernelPid", "pid", "processPid")  # where the demo instance names a fleet process
JOB_DATE = re.compile(r"_\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}$")


def _fleet_name(obj, started_at):
    """The fleet process `obj` (a session, job, webapp backend...) names as its pid, if the fleet started it."""
    for key in PID_FIELDS:
        ref = obj.get(key)
        if isinstance(ref, dict) and ref.get("fleet") in started_at:
            return ref["fleet"]
    return None


def _agree(obj, started_at, now):
    """`obj` and what it holds, every object naming a fleet process started when that process started, and idle
    at most since then (a kernel idle for 3 weeks becomes a kernel idle since its process started)."""
    if isinstance(obj, list):
        return [_agree(x, started_at, now) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _agree(v, started_at, now) for k, v in obj.items()}
    name = _fleet_name(obj, started_at)
    if name is not None:
        age = max(0.0, now - started_at[name])
        out["startedAgo"] = age
        if "idleFor" in out:
            out["idleFor"] = min(parse_duration(out["idleFor"], "idleFor"), age)
    return out


def _dated_jobs(instance, now):
    """Every job id re-dated with the job's start (`startedAgo` before `now`), as DSS dates its job ids; returns
    {old id: new id}."""
    from dev.fleet import dss_job_id

    renamed = {}
    for project in instance.get("projects", []):
        for job in project.get("jobs", []):
            started = now - parse_duration(job.get("startedAgo", 0), "startedAgo")
            new = dss_job_id(JOB_DATE.sub("", job["id"]), started)
            renamed[job["id"]] = new
            job["id"] = new
    return renamed


def seed_instance(instance, now, started_at=None, jobs_started_at=None):
    """The demo instance as DSS would report it for this fleet, and {old job id: new id}.

    `started_at`: {fleet name: process start time}; every activity running in a fleet process starts with it
    (jobs at `jobs_started_at`: when the fleet dated its recipe's job directory, just before their JEKs started).
    Then every job id is dated with its start. Times stay relative (`startedAgo`, `idleFor`) to `now`."""
    started_at = dict(started_at or {})
    for jek in JOB_PROCESSES:
        if jek in started_at and jobs_started_at is not None:
            started_at[jek] = jobs_started_at  # (psutil's create times are only exact to the second)
    out = _agree(instance, started_at, now)
    return out, _dated_jobs(out, now)


# ---------------------------------------------------------------------------------------------------- webapp

class WebappClient:
    """The webapp's JSON API as a signed-in user sees it (the demo's summary and readiness checks)."""

    def __init__(self, server_url, prefix, user="admin"):
        self.base = server_url + prefix
        self.user = user

    def get(self, path, timeout=30):
        req = urllib.request.Request(self.base + path, headers={"Cookie": "dss_sim_user=%s" % self.user})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return json.loads(resp.read().decode("utf-8"))


def wait_first_sample(client, timeout_seconds=60.0):
    """The first snapshot the webapp's sampler wrote (None if none came within `timeout_seconds`)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            snap = client.get("/api/snapshot")
        except OSError:
            snap = None
        if snap and snap.get("taken_at"):
            return snap
        time.sleep(0.5)
    return None


def _activity_level(ts):
    """0.25 at night and on weekends, up to 1.0 in working hours: how busy the data scientists are."""
    local = time.localtime(ts)
    hour = local.tm_hour + local.tm_min / 60.0
    day = max(0.0, math.sin(math.pi * (hour - 8.0) / 11.0)) if 8.0 <= hour <= 19.0 else 0.0
    if local.tm_wday >= 5:
        day *= 0.2
    return 0.25 + 0.75 * day


def synthetic_history(roles, now, interval_seconds):
    """Samples for the last 7 days shaped on the current per-role totals, as HistoryStore.record_series takes.

    Steady roles (backend, nginx...) keep their count with a little memory drift; the others follow the working
    day, and Jupyter kernels pile up over the week until someone cleans them (two days ago). Raw points every
    `interval_seconds` for the last hour, every minute for the last day, every 5 minutes before, up to `now`
    (excluded): every factor is 1 at `now`, so the series join the live samples at the same totals.
    """
    from process_tracker.history import RoleSample

    times = []
    t = now - 7 * 86400
    while t < now - interval_seconds:
        age = now - t
        times.append(t)
        t += 300 if age > 86400 else (60 if age > 3600 else interval_seconds)
    now_level = _activity_level(now)
    samples = []
    for ts in times:
        age_days = (now - ts) / 86400.0
        level = _activity_level(ts) / now_level
        out = []
        for r in roles:
            count = int(r.get("count") or 0)
            anon = float(r.get("rss_anon_bytes") or 0)
            rss = float(r.get("rss_bytes") or 0)
            if count <= 0:
                continue
            phase = len(r["role"])
            drift = 1.0 + 0.04 * (math.sin(ts / 5400.0 + phase) - math.sin(now / 5400.0 + phase))  # 1 at `now`
            if r["role"] in STEADY_ROLES:
                factor_count, factor_mem = 1.0, drift
            else:
                piling = 1.0 + (0.6 * (age_days - 2.0) / 5.0 if "kernel" in r["role"] and age_days > 2.0 else 0.0)
                factor_count = max(0.0, level * piling)
                factor_mem = factor_count * drift
            n = int(round(count * factor_count))
            if n <= 0:
                continue
            out.append(RoleSample(r["role"], n, int(anon * factor_mem), int(rss * factor_mem),
                                  float(r.get("cpu_percent") or 0.0) * factor_count))
        samples.append((ts, out, []))
    return samples


def backfill(history_dir, roles, interval_seconds, until):
    """Write the synthetic history up to `until` (the first live sample's time), joining it at the same totals."""
    from process_tracker.history import HistoryStore

    samples = synthetic_history(roles, until, interval_seconds)
    HistoryStore(history_dir, retention_days=7).record_series(samples)
    return len(samples)


# ---------------------------------------------------------------------------------------------------- output

def _mib(n):
    return "%.0f MiB" % ((n or 0) / 1048576.0)


def summary_lines(snap, table):
    lines = []
    if snap:
        if not snap.get("on_host", True):
            lines.append("  Host views are empty (degraded mode): %s" % (snap.get("degraded_reason") or ""))
        roles = sorted(snap.get("roles") or [], key=lambda r: -(r.get("rss_anon_bytes") or 0))
        if roles:
            lines.append("  On this host now, by role (RssAnon):")
            for r in roles:
                lines.append("    %-34s %3d  %9s" % (r.get("display") or r["role"], r.get("count") or 0,
                                                     _mib(r.get("rss_anon_bytes"))))
    if table:
        rows = (table.get("rows") or []) + (table.get("activities_without_process") or [])
        activities = {(r["activity_kind"], r.get("project_key"), r.get("activity_id")): r
                      for r in rows if r.get("activity_kind")}
        kinds = {}
        for kind, _, _ in activities:
            kinds[kind] = kinds.get(kind, 0) + 1
        described = ", ".join("%d %s" % (n, k.replace("_", " ")) for k, n in sorted(kinds.items())) or "none"
        lines.append("  DSS activities: %s." % described)
        lines.append("  Stoppable from the webapp: %d; orphan processes: %d; listing errors: %d."
                     % (sum(1 for r in activities.values() if r.get("actionable")), len(table.get("orphans") or []),
                        len(table.get("errors") or [])))
    return lines


def print_banner(status, snap, table, backfilled):
    w = status["webapp"]
    out = [
        "",
        "process-tracker demo: a simulated DSS%s and the monitoring webapp" % (
            ", %d real DSS-shaped processes" % len(status["fleet_pids"]) if status["fleet_pids"] else ""),
        "",
        "  Webapp, as DSS shows it:  %s   (signed in as admin)" % w["url"],
        "  Sign in as another user:  %s/login?user=alice   (alice, bob: data scientists, view only;" % w["server"],
        "                            ops: not an admin but in the webapp's allowed group ops_team)",
        "  Webapp page alone:        %s" % w["view_url"],
        "  Webapp JSON API:          %s/api/table   (see docs/webapp-api.md)" % w["backend_url"],
        "  Simulated DSS API:        %s   admin API key: %s" % (status["dss_url"], status["admin_key"]),
        "  CLI against it:           DKU_DSS_URL=%s DKU_API_KEY=%s .venv/bin/process-tracker activities"
        % (status["dss_url"], status["admin_key"]),
        "  DSS data directory:       %s (temporary)" % status["dip_home"],
        "",
    ]
    out.extend(summary_lines(snap, table))
    if backfilled:
        out.append("  History: %d synthetic samples backfilled over 7 days (demo only), then live samples every %d s."
                   % (backfilled, status["sampling_interval_seconds"]))
    out.extend(["", "Stop with Ctrl-C.", ""])
    print("\n".join(out), flush=True)


# ---------------------------------------------------------------------------------------------------- main

def start_cluster(stack, sim, dip_home, job_ids):
    """A simulated Kubernetes API with the demo's DSS pods, what DSS lists for them, and the webapp params.
    `job_ids` ({demo.json job id: the demo's dated id}) relabels the job pods (DSS lower-cases label values)."""
    from dev.k8s_simulator import DEMO_DSS_FRAGMENT, K8sSimulator, demo_pods

    cluster = K8sSimulator()
    demo_pods(cluster)
    relabel = {old.lower(): new.lower() for old, new in job_ids.items()}
    for pod in cluster.cluster.pods.values():
        labels = pod["metadata"]["labels"]
        for key, value in labels.items():
            labels[key] = relabel.get(value, value)
    sim.extend(DEMO_DSS_FRAGMENT)
    stack.enter_context(cluster.serve())
    kubeconfig = cluster.write_kubeconfig(os.path.join(dip_home, "kubeconfig"), token="reader-token")
    return {"k8sEnabled": True, "k8sKubeconfig": kubeconfig}


def run(args):
    from dev.dss_simulator import Simulator
    from dev.webapp_server import WebappServer, backend_prefix, build_app, load_backend, view_path

    dip_home = tempfile.mkdtemp(prefix="dss-demo-dip-home-")
    try:
        with ExitStack() as stack:
            fleet_pids, started_at, end_process = {}, {}, None
            jobs_started_at = time.time()
            if not args.no_fleet:
                print("starting the process fleet...", flush=True)
                fleet = start_fleet(stack, dip_home, args.memory_mib, jobs_started_at)
                fleet_pids = dict(fleet.pids)
                started_at = {name: fleet.create_time(name) for name in fleet_pids}
                end_process = fleet_ender(fleet)
            with open(DEMO_INSTANCE) as f:
                instance, job_ids = seed_instance(json.load(f), time.time(), started_at, jobs_started_at)
            sim = Simulator(instance, fleet_pids=fleet_pids, end_process=end_process)
            sim.extend(HOSTILE_FRAGMENT)
            for key in args.failing_project:
                sim.fail_project(key)
            dss_url = stack.enter_context(sim.serve())
            history_dir = os.path.join(dip_home, "tmp", "process-tracker", "history")
            config = {
                "samplingIntervalSeconds": args.sampling,
                "retentionDays": 7,
                "historyDir": history_dir,
                "allowedGroups": list(ALLOWED_GROUPS),
                "prometheusUrl": args.prometheus_url,
            }
            if args.k8s:
                config.update(start_cluster(stack, sim, dip_home, job_ids))
            backend = load_backend(dss_url, sim.admin_key, config, dip_home=dip_home)
            server = WebappServer(build_app(backend, config, users=USERS), port=args.port, preferred_port=DEFAULT_PORT)
            stack.enter_context(server)
            client = WebappClient(server.url, backend_prefix())
            snap = wait_first_sample(client)
            backfilled = 0
            if snap and snap.get("roles") and not args.no_backfill:
                backfilled = backfill(history_dir, snap["roles"], args.sampling, float(snap["taken_at"]))
            try:
                table = client.get("/api/table")
            except OSError:
                table = None
            status = {
                "webapp": {
                    "server": server.url,
                    "url": server.url + "/",
                    "view_url": server.url + view_path(),
                    "backend_url": server.url + backend_prefix(),
                },
                "dss_url": dss_url,
                "admin_key": sim.admin_key,
                "keys": {u: sim.key_for(u) for u in USERS},
                "dip_home": dip_home,
                "fleet_pids": fleet_pids,
                "job_ids": job_ids,
                "demo_pid": os.getpid(),
                "sampling_interval_seconds": args.sampling,
            }
            print_banner(status, snap, table, backfilled)
            if args.status_file:
                tmp = args.status_file + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(status, f, indent=2)
                os.replace(tmp, args.status_file)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
            print("demo: --duration reached, stopping", flush=True)
    finally:
        shutil.rmtree(dip_home, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run(args)
    except Stop:
        print("\ndemo: stopped; the fleet, the simulated DSS and the webapp are down", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
