"""Project keys and logins in the macros' and CLI mirrors' include/exclude lists (issue 10, finding 2).

Every key and login is checked by `process_tracker.identifiers` before anything is listed: a malformed one is an
error naming the option (CLI flag on the CLI, macro parameter in a macro); a well-formed one that DSS does not know
is an error in an include list ("only these projects": a typo would silently select nothing or, worse, something
else) and a warning row in an exclude list (the run goes on: excluding a project that does not exist excludes
nothing, and the admin is told). Keys are compared exactly after validation.
"""
import os
import subprocess
import sys

import pytest

from dev.dss_runtime import MacroFailed, run_macro
from dev.dss_simulator.builders import instance, job, project, webapp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")
SCRIPT = os.path.join(os.path.dirname(sys.executable), "process-tracker")


def two_projects():
    return instance(projects=[
        project("PROD", webapps=[webapp("prodapp", started_ago="10d")], jobs=[job("j-prod", "alice", started_ago="3d")]),
        project("CHURN", webapps=[webapp("churnapp", started_ago="10d")],
                jobs=[job("j-churn", "bob", started_ago="3d")]),
    ], abortDelay=0)


def cli(sim, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    cmd = [SCRIPT, "--url", sim.url, "--api-key", sim.admin_key] + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def macro(sim, macro_id, config):
    return run_macro(os.path.join(RUNNABLES, macro_id), config, project_key="CHURN",
                     env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})


def test_a_dot_segment_project_key_is_refused_and_nothing_is_stopped(simulator):
    sim = simulator(two_projects())
    proc = cli(sim, "stop-services", "--projects", "NOPE/../PROD", "--exclude-projects", "PROD",
               "--min-running-hours", "0", "--apply")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(
        "process-tracker: error: --projects: not a valid project key: 'NOPE/../PROD'"), proc.stderr
    assert sim.requests == [] and sim.actions == []


@pytest.mark.parametrize("argv, message", [
    (["abort-jobs", "--projects", "PORD"],
     "process-tracker: error: --projects: unknown project key: PORD (not a project of this DSS)"),
    (["abort-jobs", "--users", "alcie,bob"],
     "process-tracker: error: --users: unknown user: alcie (not a user of this DSS)"),
    (["kill-kernels", "--exclude-users", "a/b"],
     "process-tracker: error: --exclude-users: not a valid login: 'a/b'"),
])
def test_include_lists_name_unknown_keys_before_anything_is_listed(simulator, argv, message):
    sim = simulator(two_projects())
    proc = cli(sim, *argv, "--apply", "--min-running-hours", "0") if argv[0] != "kill-kernels" else cli(sim, *argv)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.strip().startswith(message), proc.stderr
    listed = [r.path for r in sim.requests if "/jobs/" in r.path or "/futures/" in r.path or "notebooks" in r.path]
    assert listed == [] and sim.actions == []


def test_a_mistyped_excluded_project_is_a_warning_row_and_the_real_one_stays_excluded(simulator):
    sim = simulator(two_projects())
    proc = cli(sim, "abort-jobs", "--exclude-projects", "CHRN,PROD", "--min-running-hours", "0")
    assert proc.returncode == 0, proc.stderr
    assert "1 would_act, 1 spared, 1 warning" in proc.stdout.splitlines()[0]
    assert "excluded project CHRN is not a project of this DSS" in proc.stdout
    assert sim.actions == []


def test_macro_errors_name_the_macro_parameter(simulator):
    sim = simulator(two_projects())
    with pytest.raises(MacroFailed) as failed:
        macro(sim, "stop-idle-services", {"projects": ["NOPE/../PROD"], "excludedProjects": ["PROD"],
                                          "minRunningHours": 0, "simulate": False})
    assert failed.value.message.startswith("projects: not a valid project key: 'NOPE/../PROD'")
    with pytest.raises(MacroFailed) as failed:
        macro(sim, "abort-long-jobs", {"users": ["alice", "nobody"]})
    assert failed.value.message == "users: unknown user: nobody (not a user of this DSS)"
    assert sim.actions == []


def test_macro_exclude_warning_row(simulator):
    sim = simulator(two_projects())
    result = macro(sim, "abort-long-jobs", {"excludedProjects": ["CHRN"], "excludedUsers": ["bobb"],
                                            "minRunningHours": 0})
    warnings = [r for r in result.rows() if r["outcome"] == "warning"]
    assert [w["message"] for w in warnings] == [
        "excluded project CHRN is not a project of this DSS (a typo?): nothing is excluded by it",
        "excluded user bobb is not a user of this DSS (a typo?): nothing is excluded by it"]
    assert sorted(r["id"] for r in result.rows() if r["outcome"] == "would_act") == ["j-churn", "j-prod"]


def test_keys_are_compared_exactly(simulator):
    sim = simulator(two_projects())
    proc = cli(sim, "abort-jobs", "--projects", "prod", "--min-running-hours", "0")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "process-tracker: error: --projects: unknown project key: prod (not a project of this DSS)"


def test_install_cleanup_checks_its_lists_too(simulator):
    sim = simulator(two_projects())
    proc = cli(sim, "install-cleanup", "--project", "CHURN", "--exclude-projects", "NOPE/../PROD")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("process-tracker: error: --exclude-projects: not a valid project key")
    assert sim.actions == []


def test_the_inventory_shows_warning_rows_too(simulator):
    sim = simulator(two_projects())
    result = macro(sim, "running-activities", {"excludedProjects": ["CHRN"], "scanHost": False})
    warnings = [r for r in result.rows() if r["kind"] == "warning"]
    assert [w["note"] for w in warnings] == [
        "excluded project CHRN is not a project of this DSS (a typo?): nothing is excluded by it"]
    assert "1 warning" in result.table["header"]


def test_users_that_cannot_be_read_are_a_warning_not_a_failure(simulator):
    sim = simulator(two_projects())
    sim.add_fault(r"^/admin/users/?$", error_rate=1.0)
    result = macro(sim, "abort-long-jobs", {"excludedUsers": ["bob"], "minRunningHours": 0})
    (warning,) = [r for r in result.rows() if r["outcome"] == "warning"]
    assert warning["message"].startswith("could not check the users against DSS (listing the users: ")
    assert {r["id"]: r["outcome"] for r in result.rows() if r["id"]} == {"j-prod": "would_act", "j-churn": "spared"}
