"""`make demo` (python -m dev.demo): it starts the fleet, the simulated DSS and the webapp, serves them, prints how
to reach them (and the printed CLI command works), stops on --duration, Ctrl-C or SIGTERM, and leaves no process
and no temporary DSS data directory behind."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import dataikuapi
import psutil
import pytest
from demo_process import ROOT, DemoProcess

pytestmark = pytest.mark.slow


def _get(url, user="admin"):
    req = urllib.request.Request(url, headers={"Cookie": "dss_sim_user=%s" % user})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


def test_the_demo_serves_prints_its_urls_and_stops_after_its_duration_leaving_nothing(tmp_path):
    demo = DemoProcess(tmp_path, "--duration", "10", "--memory-mib", "300")
    try:
        status = demo.start()
        assert len(status["fleet_pids"]) >= 20 and "kernel-1" in status["fleet_pids"]
        assert os.path.isdir(status["dip_home"])
        # The webapp page as DSS builds it, and its backend behind DSS's proxy path.
        code, ctype, body = _get(status["webapp"]["view_url"])
        assert code == 200 and ctype.startswith("text/html")
        assert b'id="pt-app"' in body and b"getWebAppBackendUrl" in body
        code, _, body = _get(status["webapp"]["backend_url"] + "/api/whoami", user="alice")
        assert json.loads(body) == {"user": "alice", "can_act": False, "admin": False,
                                    "reason": json.loads(body)["reason"]}
        code, _, body = _get(status["webapp"]["backend_url"] + "/api/table")
        table = json.loads(body)
        assert {r["pid"] for r in table["rows"]} & set(status["fleet_pids"].values())
        # The printed CLI command works against the simulated DSS.
        cli = os.path.join(os.path.dirname(sys.executable), "process-tracker")
        env = dict(os.environ, DKU_DSS_URL=status["dss_url"], DKU_API_KEY=status["admin_key"])
        out = subprocess.run([cli, "activities"], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "CHURN" in out.stdout
        assert demo.wait(60) == 0  # --duration: it ends by itself
    finally:
        demo.kill()
    output = demo.output()
    for needle in (status["webapp"]["url"], status["webapp"]["view_url"], status["dss_url"], status["admin_key"],
                   "DKU_DSS_URL=%s DKU_API_KEY=%s .venv/bin/process-tracker activities" % (status["dss_url"], status["admin_key"]),
                   "/login?user=alice", "On this host now, by role", "Jupyter"):
        assert needle in output, needle
    assert "Traceback" not in output, output
    assert demo.leftovers() == []
    assert not os.path.exists(status["dip_home"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_everything(tmp_path, sig):
    demo = DemoProcess(tmp_path, "--memory-mib", "200", "--no-backfill")
    try:
        status = demo.start()
        assert len(demo.tree) > len(status["fleet_pids"])  # the demo itself, the fleet controller's children...
        assert demo.stop(sig) == 0
    finally:
        demo.kill()
    assert demo.leftovers() == []
    assert not os.path.exists(status["dip_home"])
    assert "demo: stopped" in demo.output()
    assert "Traceback" not in demo.output(), demo.output()


def test_without_the_fleet_the_webapp_runs_in_degraded_mode(tmp_path):
    demo = DemoProcess(tmp_path, "--no-fleet", "--no-backfill", "--duration", "5")
    try:
        status = demo.start()
        assert status["fleet_pids"] == {}
        _, _, body = _get(status["webapp"]["backend_url"] + "/api/snapshot")
        snap = json.loads(body)
        assert snap["on_host"] is False and snap["degraded_reason"]
        assert demo.wait(60) == 0
    finally:
        demo.kill()
    assert "degraded mode" in demo.output()
    assert demo.leftovers() == []


def test_bad_options_are_refused_naming_the_option():
    out = subprocess.run([sys.executable, "-m", "dev.demo", "--duration", "0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "--duration" in out.stderr


# ---- an honest demo: DSS's times agree with the fleet's processes, and stopping an activity ends its process ----

def _wait_until(condition, what, timeout_seconds=60.0):
    """Poll `condition()` until it returns a true value (the value), failing with `what` after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("still not true after %.0f s: %s" % (timeout_seconds, what))
        time.sleep(0.3)


def _kernel_memory(status):
    """(sample time, number, RssAnon) of this demo's Jupyter kernels (other DSS-shaped processes may share the host)."""
    _, _, body = _get(status["webapp"]["backend_url"] + "/api/table")
    table = json.loads(body)
    home = os.path.realpath(status["dip_home"])
    kernels = [r for r in table["rows"] + table["orphans"]
               if r.get("role") == "jupyter_kernel" and os.path.realpath(r.get("instance") or "/") == home]
    return table["taken_at"], len(kernels), sum(r["rss_anon_bytes"] or 0 for r in kernels)


def test_dss_times_agree_with_the_processes_and_stopping_an_activity_ends_its_process(tmp_path):
    demo = DemoProcess(tmp_path, "--memory-mib", "200", "--sampling", "2")
    try:
        status = demo.start()
        pids = status["fleet_pids"]
        client = dataikuapi.DSSClient(status["dss_url"], status["admin_key"])
        # Sessions start when their kernel process started, and are idle at most since then.
        sessions = {s["kernelPid"]: s for p in ("CHURN", "FRAUD", "SALES", "MARKETING", "FORECAST")
                    for nb in client.get_project(p).list_jupyter_notebooks()
                    for s in nb.get_sessions() if s.get("kernelPid")}
        assert set(sessions) == {pids[k] for k in ("kernel-1", "kernel-2", "kernel-3", "kernel-4", "kernel-uif")}
        for pid, s in sessions.items():
            created = psutil.Process(pid).create_time()
            assert abs(s["sessionStartTime"] / 1000.0 - created) < 1.0, s
            assert s["kernelLastActivityTime"] >= s["sessionStartTime"], s
        # Running jobs are dated with their start, which is their JEK's (within a second), and the recipe's
        # working directory names the same job.
        jobs = {j["def"]["id"]: j for j in client.get_project("CHURN").list_jobs()}
        churn = status["job_ids"]["Build_churn_scored_2026-11-25T09-41-12.304"]
        assert churn in jobs and jobs[churn]["state"] == "RUNNING"
        stamp, millis = churn[len("Build_churn_scored_"):].split(".")
        dated = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H-%M-%S")) + int(millis) / 1000.0  # local time, as DSS
        assert abs(dated - jobs[churn]["startTime"] / 1000.0) < 0.1, (churn, jobs[churn]["startTime"])
        assert abs(jobs[churn]["startTime"] / 1000.0 - psutil.Process(pids["jek-1"]).create_time()) < 1.0
        assert "/jobs/CHURN/%s/" % churn in " ".join(psutil.Process(pids["recipe-1"]).cmdline())
        # Unloading a kernel ends its process: the kernels' memory goes down, and no orphan appears.
        _, count, memory = _kernel_memory(status)
        client.get_project("CHURN").get_jupyter_notebook("Churn exploration").unload(
            "c1a7e0f2-0b6d-4b8e-9a41-1f3c2d5e6a01")
        _wait_until(lambda: not psutil.pid_exists(pids["kernel-1"]), "kernel-1 ended")
        gone_at = time.time()
        after = _wait_until(lambda: (lambda k: k if k[0] > gone_at + 0.5 else None)(_kernel_memory(status)),
                            "a sample taken after the kernel ended")
        assert after[1] == count - 1 and after[2] < memory
        _, _, body = _get(status["webapp"]["backend_url"] + "/api/table")
        table = json.loads(body)
        assert pids["kernel-1"] not in {r["pid"] for r in table["rows"] + table["orphans"]}
        # Aborting a job ends its JEK and the JEK's children; stopping a webapp its backend; aborting a training
        # future its ML process.
        client.get_project("CHURN").get_job(churn).abort()
        client.get_project("CHURN").get_webapp("Xb3k9Qa").stop_backend()
        client.get_future("tR4m8Lp2").abort()
        for name in ("jek-1", "recipe-1", "webapp-1", "ml-1"):
            _wait_until(lambda name=name: not psutil.pid_exists(pids[name]), name + " ended")
        for name in ("jek-2", "spark-1", "kernel-2", "backend"):
            assert psutil.pid_exists(pids[name]), name
        assert demo.stop() == 0
    finally:
        demo.kill()
    assert "Traceback" not in demo.output(), demo.output()
    assert demo.leftovers() == []


def test_the_seeded_instance_starts_activities_with_their_processes_and_dates_job_ids():
    from dev.demo import seed_instance
    from dev.dss_simulator.builders import load_demo

    now = 1796206272.5  # 2026-12-02
    started = {"kernel-1": now - 24.0, "kernel-uif": now - 20.0, "jek-1": now - 10.0, "webapp-1": now - 30.0}
    inst, renamed = seed_instance(load_demo(), now, started, jobs_started_at=now - 11.0)
    projects = {p["projectKey"]: p for p in inst["projects"]}
    kernel_1 = projects["CHURN"]["notebooks"][0]["sessions"][0]
    assert (kernel_1["startedAgo"], kernel_1["idleFor"]) == (24.0, 24.0)  # was 9 days, idle 8 days
    uif = projects["FORECAST"]["notebooks"][0]["sessions"][0]
    assert (uif["startedAgo"], uif["idleFor"]) == (20.0, 20.0)
    assert projects["CHURN"]["webapps"][0]["backend"]["startedAgo"] == 30.0
    churn_job = projects["CHURN"]["jobs"][0]
    assert churn_job["startedAgo"] == 11.0  # the job started just before its JEK
    from dev.fleet import dss_job_id

    assert churn_job["id"] == renamed["Build_churn_scored_2026-11-25T09-41-12.304"] == dss_job_id(
        "Build_churn_scored", now - 11.0)
    done = projects["CHURN"]["jobs"][1]  # no process: its age stays, its id is dated with it
    assert done["id"] == dss_job_id("Build_churn_features", now - 86400.0)
    # A session without a fleet process keeps its times.
    assert projects["FRAUD"]["notebooks"][0]["sessions"][0]["startedAgo"] == "3h"


def test_the_backfilled_history_joins_the_live_samples_at_the_same_totals():
    from dev.demo import synthetic_history

    roles = [{"role": "backend", "count": 1, "rss_anon_bytes": 600e6, "rss_bytes": 700e6, "cpu_percent": 3.0},
             {"role": "jupyter_kernel", "count": 5, "rss_anon_bytes": 900e6, "rss_bytes": 1e9, "cpu_percent": 1.0},
             {"role": "nginx", "count": 3, "rss_anon_bytes": 30e6, "rss_bytes": 40e6, "cpu_percent": 0.0}]
    for now in (1796206272.5, 1796206272.5 + 3 * 3600, 1796206272.5 + 13 * 3600):  # any time of day
        ts, last, _ = synthetic_history(roles, now, 5)[-1]
        assert now - 10 <= ts < now
        by_role = {r.role: r for r in last}
        for r in roles:
            got = by_role[r["role"]]
            assert got.count == r["count"], r["role"]
            assert abs(got.rss_anon_bytes - r["rss_anon_bytes"]) <= 0.005 * r["rss_anon_bytes"], r["role"]
