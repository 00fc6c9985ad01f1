"""`make demo` (python -m dev.demo): it starts the fleet, the simulated DSS and the webapp, serves them, prints how
to reach them (and the printed CLI command works), stops on --duration, Ctrl-C or SIGTERM, and leaves no process
and no temporary DSS data directory behind."""
import json
import os
import signal
import subprocess
import sys
import urllib.request

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
        assert json.loads(body) == {"user": "alice", "can_act": False, "reason": json.loads(body)["reason"]}
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
