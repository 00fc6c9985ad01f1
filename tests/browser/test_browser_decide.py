"""Issue 13, "One decision everywhere", as a DSS admin sees it in real headless Chromium against the demo (the
simulated DSS, the real process fleet, the webapp served the way DSS serves it):

- the dry run shows the macros' soft rules as warnings (a busy kernel, a kernel someone has open) and does not
  offer the plain confirm; an administrator can "Stop anyway", which stops it; a non-admin allowed to act cannot;
- the Kernels chart's red "orphan kernels" are exactly the Orphans tab's rows (no UIF wrapper among them);
- one running job is one row with one Abort button, its processes (the JEK and its child) listed in the row;
  the UIF kernel is one row with its wrappers.
One demo and one browser for the module.
"""
import dataikuapi
import pytest
from demo_process import running_demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# dev/instances/demo.json
BUSY_SESSION = ("FRAUD", "Fraud features", "f2b8e1a3-1c7e-4c9f-8b52-2a4d3e6f7b02")  # busy, bob has it open
OPEN_SESSION = ("SALES", "Sales weekly", "a3c9f2b4-2d8f-4da0-9c63-3b5e4f708c03")  # idle, alice has it open
UIF_SESSION = "e5ebf4d6-4fa1-4fc2-9e85-5d70a6920e05"
JOBS = {"Build_churn_scored_2026-11-25T09-41-12.304": ("jek-1", "recipe-1"),  # as in demo.json (re-dated)
        "Build_sales_monthly_2026-11-25T08-02-51.663": ("jek-2", "spark-1")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_demo(tmp_path_factory.mktemp("demo"), "--sampling", "2", "--memory-mib", "400") as process:
        yield process


def _preview(p, session_id):
    """Open the row's action and wait for the dry run's answer; the dialog's text."""
    p.tab("processes")
    p.page.click('#pt-table tr[data-id="%s"] button[data-kind]' % session_id)
    p.page.wait_for_selector("#pt-dialog[data-phase]:not([data-phase=preview])")
    return p.page.inner_text("#pt-dialog")


def _warnings(p):
    """The dry run's warnings; the demo's sessions started with its fleet, seconds or minutes ago (DSS times agree
    with the processes' ages), so each also has the young-session warning, last: "started 5 s ago" becomes
    "started <age>"."""
    shown = p.page.eval_on_selector_all("#pt-dialog .pt-warnings li", "els => els.map(e => e.textContent)")
    return [w if not (w.startswith("started ") and w.endswith(" ago")) else "started <age>" for w in shown]


def test_the_dry_run_warns_for_a_busy_kernel_and_a_connected_kernel(open_page):
    p = open_page("admin")
    text = _preview(p, BUSY_SESSION[2])
    assert p.page.get_attribute("#pt-dialog", "data-phase") == "warned", text
    assert "Warned: not stopped unless you stop it anyway" in text
    assert _warnings(p) == ["busy: running code now", "bob has it open (1 connection)", "started <age>"]
    assert p.page.inner_text("#pt-dialog-confirm") == "Stop anyway"
    p.shot("action-warned.png", full_page=False)
    p.page.click("#pt-dialog-cancel")
    _preview(p, OPEN_SESSION[2])
    assert p.page.get_attribute("#pt-dialog", "data-phase") == "warned"
    assert _warnings(p) == ["alice has it open (1 connection)", "started <age>"]
    p.page.click("#pt-dialog-cancel")
    # ops may act (an allowed group) but is no administrator: warned, and no way to stop it anyway
    ops = open_page("ops")
    text = _preview(ops, BUSY_SESSION[2])
    assert ops.page.get_attribute("#pt-dialog", "data-phase") == "warned"
    assert ops.page.is_hidden("#pt-dialog-confirm") and "Only a DSS administrator can stop it anyway." in text
    assert p.errors == [] and ops.errors == []


def test_stop_anyway_stops_the_warned_kernel(open_page, demo):
    project, notebook, session_id = OPEN_SESSION
    client = dataikuapi.DSSClient(demo.status["dss_url"], demo.status["admin_key"])

    def session_ids():
        nb = client.get_project(project).get_jupyter_notebook(notebook)
        return [s.session_id for s in nb.get_sessions(as_objects=True)]

    p = open_page("admin")
    _preview(p, session_id)
    assert session_id in session_ids(), "a dry run must not touch DSS"
    p.page.click("#pt-dialog-confirm")  # "Stop anyway"
    p.page.wait_for_selector("#pt-dialog[data-phase=done]", timeout=60000)
    assert p.page.get_attribute("#pt-dialog", "data-outcome") == "aborted", p.page.inner_text("#pt-dialog")
    assert "anyway (alice has it open (1 connection); started " in p.page.inner_text("#pt-dialog")
    p.page.wait_for_selector('#pt-table tr[data-id="%s"]' % session_id, state="detached", timeout=30000)
    p.page.click("#pt-dialog-cancel")
    assert session_id not in session_ids()
    assert p.errors == []


def test_the_kernels_chart_and_the_orphans_tab_agree(open_page, demo):
    p = open_page("admin")
    p.tab("kernels")
    p.chart("pt-chart-kernels")
    red = p.page.evaluate(
        """() => (document.getElementById('pt-chart-kernels').data.find(t => t.name === 'orphan kernels') || {})
                   .customdata || []""")
    p.tab("orphans")
    orphan_pids = {int(r["pid"]) for r in p.rows("#pt-orphans")}
    charted = {int(text.split("pid ")[1].split(",")[0]) for text in red}
    fleet = demo.status["fleet_pids"]
    assert charted == orphan_pids and len(red) == len(orphan_pids), (red, orphan_pids)
    assert fleet["kernel-orphan"] in orphan_pids
    assert not {fleet["kernel-uif-sudo"], fleet["kernel-uif-exec"]} & charted
    assert p.page.inner_text("#pt-count-orphans") == str(len(orphan_pids))
    assert p.errors == []


def test_one_row_per_job_with_one_abort_and_its_processes_in_the_row(open_page, demo):
    p = open_page("admin")
    p.tab("processes")
    fleet = demo.status["fleet_pids"]
    rows = p.rows()
    job_ids = demo.status["job_ids"]  # demo.json's ids, re-dated with the jobs' real start
    for seeded_id, (jek, child) in JOBS.items():
        job_id = job_ids[seeded_id]
        mine = [r for r in rows if r["id"] == job_id]
        assert len(mine) == 1, mine
        assert int(mine[0]["pid"]) == fleet[jek]
        row = '#pt-table tr[data-id="%s"]' % job_id
        assert p.page.locator(row + " button[data-kind]").count() == 1
        assert p.page.inner_text(row + " button[data-kind]") == "Abort job\u2026"
        listed = p.page.eval_on_selector_all(row + " .pt-procs li", "els => els.map(e => Number(e.dataset.pid))")
        assert listed == [fleet[jek], fleet[child]]
        assert not [r for r in rows if r["pid"] == str(fleet[child])]  # not a row of its own
    uif = [r for r in rows if r["id"] == UIF_SESSION]
    assert len(uif) == 1 and int(uif[0]["pid"]) == fleet["kernel-uif"]
    listed = p.page.eval_on_selector_all('#pt-table tr[data-id="%s"] .pt-procs li' % UIF_SESSION,
                                         "els => els.map(e => Number(e.dataset.pid))")
    assert sorted(listed) == sorted(fleet[n] for n in ("kernel-uif", "kernel-uif-sudo", "kernel-uif-exec"))
    p.page.click('#pt-table tr[data-id="%s"] summary' % job_ids[next(iter(JOBS))])
    p.shot("one-row-per-job.png", full_page=False)
    assert p.errors == []
