"""The demo and the fleet with DSS's own records (issue 15): CRU events in the fleet's audit log and, as root,
DSS-style cgroups with a real OOM kill (dev/cru_writer.py), so the demo's table shows recipe processes and ML
trainings with their project and user, and its history the OOM kills of a DSS cgroup."""
import json
import os
import urllib.request
from contextlib import ExitStack

import pytest
from demo_process import running_demo

from dev.cru_writer import DemoCgroups, write_demo_records
from dev.fleet import Fleet, demo_layout
from process_tracker import cgroup_context, context
from process_tracker.cru import AuditReader
from process_tracker.host import Scanner, parse_proc_cgroup

NAMES = ("supervisord", "backend", "jek-1", "recipe-1", "ml-1", "jupyter", "kernel-1", "kernel-orphan")


def _cgroup_of(pid):
    with open("/proc/%d/cgroup" % pid, "rb") as f:
        return parse_proc_cgroup(f.read())[0]


def test_the_fleet_gets_cru_events_and_dss_style_cgroups_with_an_oom_kill():
    with Fleet(lambda home: [s for s in demo_layout(home) if s.name in NAMES]) as fleet, ExitStack() as stack:
        note = write_demo_records(fleet, stack)
        snapshot = Scanner().scan()
        contexts = context.read_contexts(snapshot, AuditReader([fleet.dip_home]))
        ml = contexts[fleet.pid("ml-1")]
        assert (ml.source, ml.kind, ml.project_key, ml.user) == ("cru", "ANALYSIS_ML_TRAIN", "CHURN", "alice")
        assert contexts[fleet.pid("recipe-1")].kind == "JOB_ACTIVITY"
        if os.geteuid() != 0:  # no cgroup can be made: said, and nothing else changes
            assert note.startswith("no DSS-style cgroups") and not os.path.exists(
                os.path.join(fleet.dip_home, "config", "general-settings.json"))
            return
        assert note == ""
        maps = cgroup_context.maps_for(snapshot, (fleet.dip_home,))
        infos = {c.path: c for c in cgroup_context.cgroup_infos(snapshot, maps)}
        recipe = infos[_cgroup_of(fleet.pid("recipe-1"))]
        assert (recipe.workload, recipe.project_key, recipe.oom_kills) == ("pythonRRecipes", "CHURN", 1)
        kernel = cgroup_context.describe(_cgroup_of(fleet.pid("kernel-1")), maps)
        assert (kernel.source, kernel.kind, kernel.user) == ("cgroup", "jupyterKernels", "alice")
        assert fleet.pid("recipe-1") in {p.pid for p in snapshot.processes}  # the OOM killer spared the fleet
        made = _cgroup_of(fleet.pid("ml-1"))
    assert not os.path.isdir("/sys/fs/cgroup/memory" + made)  # removed on exit


def test_demo_cgroups_say_why_when_the_host_does_not_allow_them(tmp_path):
    class NoFleet:
        pids, dip_home = {}, str(tmp_path)

    cgroups = DemoCgroups(NoFleet(), cgroup_root=str(tmp_path / "no-cgroup-mount"))
    assert cgroups.create() is False and "cgroup" in cgroups.note and cgroups.made == []


def _get(status, path):
    req = urllib.request.Request(status["webapp"]["backend_url"] + path, headers={"Cookie": "dss_sim_user=admin"})
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - the demo's loopback URL
        return json.loads(resp.read().decode("utf-8"))


@pytest.mark.slow
def test_the_demo_shows_recipes_and_ml_trainings_with_project_and_user(tmp_path):
    with running_demo(tmp_path, "--sampling", "2", "--memory-mib", "400", "--no-backfill") as demo:
        pids = demo.status["fleet_pids"]
        table = _get(demo.status, "/api/table")["rows"]
        rows = {r["pid"]: r for r in table}
        # the recipe's CRU item names the running job: it is one of the processes of that job's row
        job = next(r for r in table if pids["recipe-1"] in [p["pid"] for p in r.get("processes") or ()])
        recipe = next(p for p in job["processes"] if p["pid"] == pids["recipe-1"])
        assert (recipe["via"], recipe["source"]) == ("cru", "cru")
        assert (job["activity_kind"], job["project_key"], job["owner"]) == ("job", "CHURN", "alice")
        ml = rows[pids["ml-1"]]
        assert (ml["status"], ml["source"], ml["context_kind"], ml["project_key"], ml["owner"]) == (
            "explained", "cru", "ANALYSIS_ML_TRAIN", "CHURN", "alice")
        oom = _get(demo.status, "/api/history?window=1h")["figures"]["oom_kills"]
        if os.geteuid() == 0:
            names = [t["name"] for t in oom["data"]]
            assert any(n.endswith("pythonRRecipes (CHURN)") for n in names), names
            assert max(max(v for v in t["y"] if v is not None) for t in oom["data"]) == 1
        else:
            assert oom is None
