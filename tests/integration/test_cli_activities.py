"""The CLI mirrors, through the real console script (`.venv/bin/process-tracker`) in a subprocess, against the
simulator over HTTP: the same rows as the macros (--json), dry run unless --apply, one line for bad input."""
import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.dss_simulator.builders import instance, job, notebook, project, session

SCRIPT = os.path.join(os.path.dirname(sys.executable), "process-tracker")


def demo():
    return instance(projects=[
        project("CHURN",
                notebooks=[notebook("explore", [session("alice", session_id="s-idle", started_ago="3d",
                                                        idle_for="36h")]),
                           notebook("fresh", [session("bob", session_id="s-fresh", started_ago="1h",
                                                      idle_for="5m")])],
                jobs=[job("j-long", "alice", started_ago="30h"), job("j-short", "bob", started_ago="1h")]),
    ], abortDelay=0)


def cli(sim, *argv, key=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    env["HOME"] = os.environ.get("HOME", "/tmp")
    cmd = [SCRIPT, "--url", sim.url, "--api-key", key or sim.admin_key] + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def rows(proc):
    assert proc.returncode == 0, proc.stderr
    return {r["id"]: r for r in json.loads(proc.stdout)["rows"]}


def test_kill_kernels_json_dry_run_then_apply(simulator):
    sim = simulator(demo())
    dry = cli(sim, "kill-kernels", "--json", "--no-scan-host")
    out = json.loads(dry.stdout)
    assert out["name"] == "Idle Jupyter kernels" and out["counts"] == {"would_act": 1, "spared": 1}
    assert out["header"].startswith("Dry run (nothing was done)")
    assert rows(dry)["s-idle"]["reason"] == "idle 1.5 d > 24 h, age 3.0 d > 48 h"
    assert sim.actions == [] and sorted(sim.session_ids()) == ["s-fresh", "s-idle"]
    applied = cli(sim, "kill-kernels", "--json", "--no-scan-host", "--apply")
    assert rows(applied)["s-idle"]["outcome"] == "aborted"
    assert sim.session_ids() == ["s-fresh"]


def test_the_cli_prints_the_same_rows_as_the_macro(simulator):
    from dev.dss_runtime import run_macro

    sim = simulator(demo())
    macro = run_macro(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "python-runnables",
                                   "abort-long-jobs"), {"minRunningHours": 2},
                      project_key="CHURN", env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})
    proc = cli(sim, "abort-jobs", "--min-running-hours", "2", "--json")
    from_cli = json.loads(proc.stdout)["rows"]

    def stable(r):  # the running time moves between the two runs
        return {k: v for k, v in r.items() if k not in ("running", "idle")}

    assert [stable(r) for r in from_cli] == [stable(r) for r in macro.rows()]


def test_text_output_is_a_table_with_the_summary_first(simulator):
    sim = simulator(demo())
    proc = cli(sim, "abort-jobs")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Dry run (nothing was done): 1 would_act, 1 spared")
    assert lines[1].split()[:3] == ["Outcome", "Kind", "Project"]
    assert any("j-long" in line and "would_act" in line for line in lines[3:])
    assert sim.actions == []


def test_abort_jobs_apply_aborts_only_the_long_one(simulator):
    sim = simulator(demo())
    got = rows(cli(sim, "abort-jobs", "--apply", "--json", "--exclude-users", "bob"))
    assert got["j-long"]["outcome"] == "aborted"
    assert sim.phase("job", "j-long") == "ABORTED" and sim.phase("job", "j-short") == "RUNNING"


def test_activities_inventory(simulator):
    sim = simulator(demo())
    got = rows(cli(sim, "activities", "--json", "--no-scan-host"))
    assert {"s-idle", "s-fresh", "j-long", "j-short"} <= set(got)
    assert got["j-long"]["kind"] == "job" and got["j-long"]["owner"] == "alice"
    assert sim.actions == []


def test_install_cleanup_is_a_dry_run_unless_apply(simulator):
    sim = simulator(demo())
    proc = cli(sim, "install-cleanup", "--project", "CHURN", "--macros", "kill-idle-kernels,abort-long-jobs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Dry run (nothing was done): 1 would_create.")
    (row,) = rows(cli(sim, "install-cleanup", "--project", "CHURN", "--macros", "kill-idle-kernels,abort-long-jobs",
                      "--json")).values()
    assert row["reason"] == "daily at 02:00 (DSS server time); steps: kill-idle-kernels, abort-long-jobs (dry run)"
    assert sim.actions == []
    cli(sim, "install-cleanup", "--project", "CHURN", "--apply")
    again = rows(cli(sim, "install-cleanup", "--project", "CHURN", "--hour", "5", "--json"))
    assert list(again.values())[0]["outcome"] == "would_update"
    assert [r.method for r in sim.actions] == ["POST", "PUT"]  # the one --apply: created, then configured


def test_install_cleanup_twice_is_one_scenario(simulator):
    sim = simulator(demo())
    first = rows(cli(sim, "install-cleanup", "--project", "CHURN", "--json", "--hour", "1", "--apply"))
    (row,) = first.values()
    assert row["outcome"] == "created"
    second = rows(cli(sim, "install-cleanup", "--project", "CHURN", "--json", "--hour", "1", "--apply"))
    assert list(second.values())[0]["outcome"] == "unchanged"
    scenarios = sim.client().get_project("CHURN").list_scenarios(as_type="listitems")
    assert len(scenarios) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kill-kernels", "--max-idle-hours", "abc"],
         "process-tracker: error: --max-idle-hours: must be a number of hours between 0 and 8760, got 'abc'"),
        (["kill-kernels", "--max-age-hours", "-3"],
         "process-tracker: error: --max-age-hours: must be a number of hours between 0 and 8760, got -3.0"),
        (["abort-tasks", "--task-kinds", "kernel"],
         "process-tracker: error: --task-kinds: unknown value 'kernel'; accepted: future, scenario"),
        (["stop-services", "--service-kinds", ","],
         "process-tracker: error: --service-kinds: select at least one of webapp, continuous_activity, code_studio"),
        (["install-cleanup"],
         "process-tracker: error: --project: no project: run the macro from a project or set the project key"),
    ],
)
def test_bad_values_are_one_line_naming_the_option_and_nothing_is_done(simulator, argv, message):
    sim = simulator(demo())
    proc = cli(sim, *argv)
    assert proc.returncode == 1
    assert proc.stderr.strip() == message
    assert proc.stdout == ""
    assert sim.actions == []


def test_unknown_option_is_a_usage_error(simulator):
    sim = simulator(demo())
    proc = cli(sim, "kill-kernels", "--max-idle", "3", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    assert sim.requests == []


def test_non_admin_key_is_refused_in_one_line(simulator):
    sim = simulator(demo())
    proc = cli(sim, "kill-kernels", "--apply", key=sim.key_for("alice"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "process-tracker: error: process-tracker kill-kernels needs a DSS administrator: user alice is not one "
        "(it lists and stops every user's activities). Run it as an administrator, or with an administrator's API key.")
    assert sim.actions == [] and len(sim.session_ids()) == 2


def test_unreachable_dss_is_one_line(simulator):
    sim = simulator(demo())
    url = sim.url
    sim.stop()
    proc = subprocess.run([SCRIPT, "--url", url, "--api-key", "k", "--timeout", "5", "abort-jobs"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    # the last line is the error; urllib3's retry warnings may precede it (cli.py's logging, reported to the lead)
    assert proc.stderr.strip().splitlines()[-1] == (
        "process-tracker: error: checking who runs process-tracker abort-jobs: cannot reach DSS (connection refused) "
        "at %s" % url)
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_threshold_exceeded_is_one_line_and_nothing_is_done(simulator):
    sim = simulator(demo())
    proc = cli(sim, "abort-jobs", "--apply", "--min-running-hours", "0", "--fail-if-more-than", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("process-tracker: error: --fail-if-more-than: 2 jobs would be aborted, more than the "
                                   "limit of 1; nothing was done")
    assert sim.actions == []


_SIMS = {}
VALUES = st.one_of(st.text(max_size=6), st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(repr),
                   st.sampled_from(["", ",", "-1", "1e400", "nan", "inf", "future,kernel", "0x10", "  3 "]))
OPTIONS = {
    "kill-kernels": ["--max-idle-hours", "--max-age-hours", "--exclude-projects", "--free-memory-gb",
                     "--fail-if-more-than", "--fail-if-more-than-gb", "--wait-seconds"],
    "abort-tasks": ["--task-kinds", "--min-running-hours", "--task-types", "--users"],
    "abort-jobs": ["--min-running-hours", "--projects", "--exclude-projects"],
    "stop-services": ["--service-kinds", "--min-running-hours"],
    "install-cleanup": ["--project", "--hour", "--minute", "--macros", "--scenario-name"],
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_option_value_is_a_result_or_one_line_naming_the_option_and_never_an_action(simulator, data):
    from process_tracker import cli

    if id(simulator) not in _SIMS:  # one simulator for all the examples of this test (the factory is the same)
        _SIMS.clear()
        _SIMS[id(simulator)] = simulator(demo())
    sim = _SIMS[id(simulator)]
    command = data.draw(st.sampled_from(sorted(OPTIONS)))
    chosen = data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=3, unique=True))
    argv = ["--url", sim.url, "--api-key", sim.admin_key, command, "--json"]
    for option in chosen:
        argv += [option + "=" + data.draw(VALUES)]  # "=" so a value starting with "-" stays a value
    if command == "kill-kernels":
        argv.append("--no-scan-host")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as e:  # argparse usage errors
            status = e.code
    assert status in (0, 1, 2), (argv, err.getvalue())
    if status == 1:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("process-tracker: error: "), lines
        named = lines[0][len("process-tracker: error: "):].split(":")[0]
        if named.startswith("--"):  # the option at fault; or the installer's project, required and not given
            assert named in chosen or (command, named) == ("install-cleanup", "--project"), (named, chosen)
    assert "Traceback" not in err.getvalue()
    assert [r for r in sim.actions if not r.path.endswith("/scenarios/") and "/scenarios/" not in r.path] == []


@pytest.mark.parametrize("argv, message", [
    (["kill-kernels", "--max-idle-hours", "1e9"],
     "process-tracker: error: --max-idle-hours: must be a number of hours between 0 and 8760, got 1000000000.0"),
    (["kill-kernels", "--free-memory-gb", "-1"],
     "process-tracker: error: --free-memory-gb: must be a number of GiB between 0 and 1048576, got -1.0"),
    (["abort-jobs", "--fail-if-more-than", "-2"],
     "process-tracker: error: --fail-if-more-than: must be a whole number between 0 and 1000000, got -2.0"),
])
def test_out_of_range_values_say_the_range(argv, message):
    proc = subprocess.run([SCRIPT, "--url", "http://127.0.0.1:9", "--api-key", "k"] + argv, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip() == message


def test_connection_options_are_accepted_after_the_sub_command(simulator):
    sim = simulator(demo())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    proc = subprocess.run([SCRIPT, "abort-jobs", "--json", "--url", sim.url, "--api-key", sim.admin_key,
                           "--timeout", "20"], capture_output=True, text=True, timeout=120, env=env)
    assert rows(proc)["j-long"]["outcome"] == "would_act"
    # before the sub-command still works, and a value given before is kept when not repeated after
    proc = subprocess.run([SCRIPT, "--url", sim.url, "abort-jobs", "--json", "--api-key", sim.admin_key],
                          capture_output=True, text=True, timeout=120, env=env)
    assert rows(proc)["j-long"]["outcome"] == "would_act"


def test_tables_fit_a_terminal_of_100_columns_and_stay_plain_in_a_pipe(simulator):
    from tests.hostile_dss import run_in_pty

    sim = simulator(demo())
    sim.extend(instance(projects=[project("LONG_NAMES", notebooks=[notebook("a notebook with a very long name " * 4, [
        session("alice", session_id="s-long", started_ago="3d", idle_for="36h")])])], users=[], groups=[]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    for command in (["kill-kernels", "--no-scan-host"], ["abort-jobs"], ["abort-tasks"], ["stop-services"],
                    ["activities", "--no-scan-host"], ["install-cleanup", "--project", "CHURN"], ["scan"]):
        status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key] + command, env=env,
                                    columns=100)
        assert status == 0, output
        lines = output.replace("\r\n", "\n").splitlines()
        assert max(len(line) for line in lines) <= 100, (command, [line for line in lines if len(line) > 100])
    plain = cli(sim, "kill-kernels", "--no-scan-host").stdout  # not a terminal: the plain table, every column
    assert "Started (UTC)" in plain and "left out" not in plain and "spared: nothing done" in plain
    status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key, "kill-kernels",
                                 "--no-scan-host"], env=env, columns=100)
    assert "spared: nothing done" not in output  # on the terminal, the message does not repeat the reason


@pytest.mark.parametrize("case, message", [
    ("dns", "checking who runs process-tracker abort-jobs: cannot reach DSS (name not resolved) at "
            "http://dss.invalid:11200"),
    ("tls", "checking who runs process-tracker abort-jobs: cannot reach DSS (TLS error) at {https}"),
    ("html", "checking who runs process-tracker abort-jobs: DSS answered an HTML page (HTTP 404) at {url}"),
])
def test_connection_errors_name_the_url_and_the_cause(simulator, case, message):
    from tests.hostile_dss import html_errors

    sim = simulator(demo())
    https = sim.url.replace("http://", "https://")  # the simulator speaks plain HTTP: the TLS handshake fails
    url = {"dns": "http://dss.invalid:11200", "tls": https, "html": sim.url}[case]
    if case == "html":
        html_errors(sim, r"^/auth/info", status=404, lines=50)
    proc = subprocess.run([SCRIPT, "--url", url, "--api-key", sim.admin_key, "--timeout", "5", "abort-jobs"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "process-tracker: error: " + message.format(https=https,
                                                                                               url=sim.url)


def test_a_slow_listing_shows_progress_on_a_terminal_only(simulator):
    from tests.hostile_dss import run_in_pty

    sim = simulator(demo())
    sim.add_fault(r"^/admin/groups/?$", latency=2.5)  # the first check of every run
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key, "abort-jobs"], env=env)
    assert status == 0, output
    assert "listing DSS activities..." in output
    assert "would_act" in output.split("listing DSS activities...")[-1]  # the table, after the spinner
    piped = cli(sim, "abort-jobs")
    assert piped.returncode == 0 and piped.stderr == ""


def test_the_url_in_an_error_line_never_shows_credentials(simulator):
    proc = subprocess.run([SCRIPT, "--url", "http://admin:admin-key@127.0.0.1:9/", "--api-key", "k", "--timeout", "2",
                           "abort-jobs"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "admin-key" not in proc.stderr
    assert proc.stderr.strip().endswith("cannot reach DSS (connection refused) at http://127.0.0.1:9")


def test_connection_settings_are_named_by_their_option():
    proc = subprocess.run([SCRIPT, "--url", "dss.example.com", "--api-key", "k", "abort-jobs"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("process-tracker: error: --url: the DSS URL must start with http:// or https://, "
                                   "got 'dss.example.com'")


def test_every_command_module_is_registered_and_its_help_works():
    from process_tracker import cli, commands

    folder = os.path.dirname(commands.__file__)
    on_disk = sorted(n[:-3] for n in os.listdir(folder) if n.endswith(".py") and not n.startswith("_"))
    assert sorted(commands.COMMAND_MODULES) == on_disk
    parser = cli.build_parser()  # options declared twice (a command's own --url) would raise here
    for name in parser._subparsers._group_actions[0].choices:
        proc = subprocess.run([SCRIPT, name, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "--timeout" in proc.stdout, (name, proc.stderr[-300:])
