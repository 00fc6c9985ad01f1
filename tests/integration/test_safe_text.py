"""Text from DSS reaches a terminal, a macro table or a log only as safe text (issue 10, finding 7).

A notebook named `report\\r\\x1b[2K...` used to rewrite a `would_act` row into "spared" on the admin's terminal and
retitle the window; an HTML 502 page from a proxy was printed as 2,000 lines. Now every cell, header and error
line goes through `identifiers.safe_text` (control and bidi characters escaped, length bounded), and an error
body that is an HTML page reads "DSS answered an HTML page (HTTP 502)". Tested on a real pseudo-terminal, with the
console script against the simulator over HTTP, and with macros run as DSS runs them.
"""
import json
import os
import re
import subprocess
import sys

from dev.dss_runtime import MacroFailed, run_macro
from dev.dss_simulator.builders import future, instance, job, notebook, project, session, user, default_users
from tests.hostile_dss import html_errors, run_in_pty

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNABLES = os.path.join(ROOT, "python-runnables")
SCRIPT = os.path.join(os.path.dirname(sys.executable), "process-tracker")

FORGED = "report\r\x1b[2Kspared  \x1b]0;pwned\x07\u202enoitca"
EVIL_LOGIN = "eve\x1b[31m"
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")  # what must never reach the terminal


def hostile():
    users = default_users() + [user(EVIL_LOGIN, ["data_scientists"], keys=["eve-key"])]
    return instance(users=users, projects=[project("P", notebooks=[
        notebook(FORGED, [session("alice", session_id="s-forged", started_ago="3d", idle_for="2d")]),
        notebook("plain", [session("alice", session_id="s-plain", started_ago="3d", idle_for="2d")])],
        jobs=[job("j-evil", EVIL_LOGIN, started_ago="3d")])],
        futures=[future("f-evil", "bob", display_name="train\x1b]0;title\x07\nforged line", started_ago="3d")],
        abortDelay=0)


def env_without_dss():
    return {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}


def test_names_with_escape_sequences_are_escaped_on_a_real_terminal(simulator):
    sim = simulator(hostile())
    for command in (["kill-kernels", "--no-scan-host"], ["abort-jobs"], ["abort-tasks", "--min-running-hours", "0"],
                    ["activities", "--no-scan-host"]):
        # stdout on the terminal; stderr apart (a slow run shows a progress spinner there, escape codes of ours)
        status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key] + command,
                                    env=env_without_dss(), stderr=subprocess.DEVNULL)
        assert status == 0, output
        text = output.replace("\r\n", "\n")  # the terminal's own line endings
        assert not RAW.search(text), (command, [m.group(0) for m in RAW.finditer(text)])
        assert "\x1b" not in text and "\r" not in text
        lines = text.splitlines()
        assert not any(line.startswith("forged line") for line in lines)
    assert "\\x1b" in output  # shown escaped, not dropped
    assert sim.actions == []


def test_the_would_act_row_stays_would_act(simulator):
    sim = simulator(hostile())
    status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key, "kill-kernels",
                                 "--no-scan-host"], env=env_without_dss(), columns=400)
    # listed and acted on as itself, or refused as an error row (its name fails the identifiers gate): never "spared"
    row = [line for line in output.splitlines() if "s-forged" in line or "report\\r" in line]
    assert row and (row[0].startswith("would_act") or row[0].startswith("error")), output


def test_json_output_carries_no_raw_control_characters(simulator):
    sim = simulator(hostile())
    status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key, "abort-tasks", "--json",
                                 "--min-running-hours", "0"], env=env_without_dss(), stderr=subprocess.DEVNULL)
    assert status == 0
    assert "\x1b" not in output and not RAW.search(output.replace("\r\n", "\n"))
    rows = json.loads(output.replace("\r\n", "\n"))["rows"]
    assert any("\\x1b" in r["name"] for r in rows)


def test_macro_tables_hold_safe_text(simulator):
    sim = simulator(hostile())
    for macro_id in ("kill-idle-kernels", "abort-long-jobs", "abort-background-tasks", "running-activities"):
        result = run_macro(os.path.join(RUNNABLES, macro_id), {"scanHost": False, "minRunningHours": 0},
                           project_key="P", env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})
        table = result.table
        texts = [table["header"], table["name"]] + [c for record in table["records"] for c in record]
        assert not any(RAW.search(t or "") or "\n" in (t or "") for t in texts), macro_id


def test_an_html_error_page_is_one_short_line(simulator):
    sim = simulator(hostile())
    html_errors(sim, r"jobs")  # the listing of jobs, whichever call lists them
    status, output = run_in_pty([SCRIPT, "--url", sim.url, "--api-key", sim.admin_key, "--timeout", "5",
                                 "abort-jobs"], env=env_without_dss(), columns=400)
    assert "<html" not in output.lower() and "<!doctype" not in output.lower()
    assert "DSS answered an HTML page (HTTP 502)" in output, output
    assert len(output.splitlines()) < 20


def test_an_html_error_page_in_a_macro_is_one_short_message(simulator):
    sim = simulator(hostile())
    html_errors(sim, r"^/admin/groups/?$", status=503)
    try:
        run_macro(os.path.join(RUNNABLES, "abort-long-jobs"), {}, project_key="P",
                  env={"DKU_DSS_URL": sim.url, "DKU_API_KEY": sim.admin_key})
    except MacroFailed as failed:
        message = failed.message
    else:
        raise AssertionError("the macro should fail: DSS answers an HTML page to the admin check")
    assert "DSS answered an HTML page (HTTP 503)" in message and "<" not in message and len(message) < 300


def test_readable_error_keeps_what_was_done_and_names_the_status():
    from process_tracker.render import readable_error, safe

    page = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>" + "<p>x</p>\n" * 2000
    assert readable_error("listing jobs of P: Unknown error: " + page) == (
        "listing jobs of P: DSS answered an HTML page (HTTP 502)")
    assert readable_error("<html><body>down</body></html>", status=503) == "DSS answered an HTML page (HTTP 503)"
    assert readable_error("a <b>bold</b> name") == "a <b>bold</b> name"  # HTML in a name is data, not a page
    assert safe("a\x1b[2Kb\u202e", 10) == "a\\x1b[2..."
    assert safe("<html> notes") == "<html> notes"  # names are never read as pages


def test_scan_table_escapes_host_text():
    from process_tracker.commands.scan import format_table
    from tests.sample_records import proc, snapshot

    evil = proc(4242, "jupyter_kernel", "python3\x1b]0;pwned\x07", 100, user="ev\u202eil",
                instance="/data/\x1b[2Kdss")
    text = format_table(snapshot(1_700_000_000.0, processes=[evil]))
    assert not RAW.search(text) and "\\x1b" in text


def test_log_lines_on_the_terminal_are_safe_text(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        "import logging, sys\n"
        "from process_tracker import cli\n"
        "from process_tracker.commands import scan\n"
        "def noisy(args, make_client=None, out=None):\n"
        "    logging.getLogger('process_tracker.activities').warning('listing %s: %s', 'nb\\x1b]0;pwned\\x07',\n"
        "        'Unknown error: <!DOCTYPE html><html><title>502 Bad Gateway</title>' + '<p>x</p>' * 500)\n"
        "    return 0\n"
        "scan.run = noisy\n"
        "sys.exit(cli.main(['scan']))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python-lib")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ("WARNING process_tracker.activities: listing nb\\x1b]0;pwned\\x07: DSS answered "
                                   "an HTML page (HTTP 502)")
