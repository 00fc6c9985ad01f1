"""DSS cgroup paths as context (python-lib/process_tracker/cgroup_context.py): templates from an instance's
general-settings.json (keys unverified: parsed defensively), paths mapped back to workload and user or project,
OOM kills from real files of a cgroup tree laid out as v1 and v2 mounts are."""
import json
import os

from process_tracker import cgroup_context, context
from process_tracker.host import CgroupRecord, ProcessRecord, ScanStats, Snapshot

D = "/data/dss"
SETTINGS = {"cgroupSettings": {
    "enabled": True, "cgroupsVersion": "CGROUPS_V1", "hierarchiesMountPoint": "/sys/fs/cgroup",
    "jupyterKernels": {"targets": [{"cgroupPathTemplate": "memory/DSS/${user}/jupyterKernels",
                                    "limits": [{"key": "memory.limit_in_bytes", "value": "8G"}]}]},
    "pythonRRecipes": {"targets": [{"cgroupPathTemplate": "memory/DSS/${projectKey}/pythonRRecipes"}]},
    "mlKernels": {"targets": [{"cgroupPathTemplate": "memory/DSS/ml/${user}"}, {"cgroupPathTemplate": 42},
                              {"cgroupPathTemplate": "memory/../etc/${user}"}, "junk"]},
    "webappDevBackends": {"targets": []},
    "cgroups": [{"cgroupPathTemplate": "memory/DSS", "limits": []}],
    "bad key!": {"targets": [{"cgroupPathTemplate": "x/${user}"}]},
}}


def write_settings(home, settings):
    os.makedirs(os.path.join(home, "config"), exist_ok=True)
    with open(os.path.join(home, "config", "general-settings.json"), "w") as f:
        f.write(settings if isinstance(settings, str) else json.dumps(settings))
    return home


def rec(pid, ppid, role, cgroup=None, instance=D):
    return ProcessRecord(pid=pid, ppid=ppid, created_at=1000.0 + pid, name="x", role=role, label=role,
                         user="dataiku", instance=instance, rss_bytes=1, rss_anon_bytes=1, cgroup=cgroup)


def snapshot(processes, cgroups=()):
    stats = ScanStats(wall_seconds=0.0, cpu_seconds=0.0, seen=len(processes), new=0, classified=0, access_denied=0,
                      vanished=0)
    return Snapshot(taken_at=0.0, hostname="h", processes=tuple(processes), roles={}, cgroups=tuple(cgroups),
                    stats=stats)


def test_paths_map_back_to_workload_user_and_project(tmp_path):
    cmap = cgroup_context.load_map(write_settings(str(tmp_path), SETTINGS))
    assert sorted({t.workload for t in cmap.templates}) == ["jupyterKernels", "mlKernels", "pythonRRecipes"]
    assert cmap.version == 1
    kernel = cgroup_context.describe("/DSS/alice/jupyterKernels", [cmap])
    assert (kernel.source, kernel.kind, kernel.user, kernel.project_key) == ("cgroup", "jupyterKernels", "alice", None)
    recipe = cgroup_context.describe("/DSS/SALES/pythonRRecipes/job-17", [cmap])  # a sub-cgroup of its own
    assert (recipe.kind, recipe.project_key, recipe.user) == ("pythonRRecipes", "SALES", None)
    ml = cgroup_context.describe("/DSS/ml/bob", [cmap])  # "ml" is literal here: the more specific template wins
    assert (ml.kind, ml.user) == ("mlKernels", "bob")
    assert cgroup_context.describe("/DSS", [cmap]) is None
    assert cgroup_context.describe("/user.slice/session-1.scope", [cmap]) is None
    bad = cgroup_context.describe("/DSS/bad%0a/jupyterKernels", [cmap])
    assert bad.kind == "jupyterKernels" and bad.user is None  # an invalid login is left out


def test_missing_disabled_or_broken_settings_are_notes(tmp_path):
    assert "no " in cgroup_context.load_map(str(tmp_path / "nothing")).note
    broken = cgroup_context.load_map(write_settings(str(tmp_path / "b"), "{not json"))
    assert broken.templates == () and "unreadable" in broken.note
    off = cgroup_context.load_map(write_settings(str(tmp_path / "o"), {"cgroupSettings": {"enabled": False}}))
    assert off.templates == () and "disabled" in off.note
    for weird in ([], {"cgroupSettings": []}, {"cgroupSettings": {"jupyterKernels": {"targets": "x"}}}):
        assert cgroup_context.parse_settings(weird, D).templates == ()


def test_contexts_cru_first_then_cgroup_then_the_tree(tmp_path):
    cmap = cgroup_context.parse_settings(SETTINGS, D)
    procs = (rec(10, 1, "backend"), rec(11, 10, "jek", cgroup="/DSS/alice/jupyterKernels"),
             rec(12, 11, "python_recipe", cgroup="/DSS/SALES/pythonRRecipes"), rec(13, 12, "python_recipe"),
             rec(14, 1, "not_dss", cgroup="/DSS/alice/jupyterKernels", instance=None))
    snap = snapshot(procs)
    cru = {11: context.Context("cru", "JOB_MAIN_PROCESS", "SALES", "alice", {"job_id": "j"}, D)}
    got = context.with_tree(snap, context.merge(cru, cgroup_context.contexts(snap, [cmap])))
    assert (got[11].source, got[12].source, got[13].source) == ("cru", "cgroup", "tree")
    assert (got[13].kind, got[13].project_key, got[13].via_pid) == ("pythonRRecipes", "SALES", 12)
    assert 10 not in got and 14 not in got  # the backend has none; a non-DSS process is never given one
    payload = context.add_context(snap, {"processes": [{"pid": 12}, {"pid": 10}]}, got)
    assert payload["processes"][0]["context"] == {"source": "cgroup", "kind": "pythonRRecipes",
                                                  "project_key": "SALES", "user": None, "ids": {}}
    assert payload["processes"][1]["context"] is None


def test_oom_kills_per_dss_cgroup_v1_and_v2(tmp_path):
    root = str(tmp_path)
    v1 = os.path.join(root, "memory", "DSS", "alice", "jupyterKernels")
    v2 = os.path.join(root, "DSS", "SALES", "pythonRRecipes")
    os.makedirs(v1)
    os.makedirs(v2)
    with open(os.path.join(v1, "memory.oom_control"), "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    with open(os.path.join(v2, "memory.events"), "w") as f:
        f.write("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n")
    cgroups = (CgroupRecord("/DSS/alice/jupyterKernels", 100, None, 1),
               CgroupRecord("/DSS/SALES/pythonRRecipes", 200, 400, 2), CgroupRecord("/DSS/gone", 1, None, 2))
    infos = {i.path: i for i in cgroup_context.cgroup_infos(snapshot((), cgroups),
                                                            [cgroup_context.parse_settings(SETTINGS, D)], root)}
    kernels, recipes, gone = (infos["/DSS/alice/jupyterKernels"], infos["/DSS/SALES/pythonRRecipes"],
                              infos["/DSS/gone"])
    assert (kernels.oom_kills, kernels.workload, kernels.user) == (3, "jupyterKernels", "alice")
    assert (recipes.oom_kills, recipes.workload, recipes.project_key, recipes.limit_bytes) == (
        2, "pythonRRecipes", "SALES", 400)
    assert (gone.oom_kills, gone.workload) == (None, None)
