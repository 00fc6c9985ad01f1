"""The monitoring webapp in real headless Chromium, against the demo (`python -m dev.demo` in a subprocess: the
simulated DSS, the real process fleet and the webapp served the way DSS serves it).

What a DSS admin sees: the page loads with no console error and no request outside the demo's host; every chart
renders with data; the table sorts and filters; a kernel unload goes dry run -> confirm -> gone from the table and
from DSS (the simulator, through the real dataikuapi client); a non-admin sees actions refused; a notebook named
with HTML renders as text. Screenshots of the main views go to tests/artifacts/screenshots/ (docs/screenshots/
with `make screenshots`).
"""
import dataikuapi
import pytest
from demo_process import running_demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHART_IDS = {
    "overview": ["pt-chart-treemap", "pt-chart-memory-history", "pt-chart-count-history"],
    "kernels": ["pt-chart-kernels", "pt-chart-java"],
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_demo(tmp_path_factory.mktemp("demo"), "--sampling", "2", "--memory-mib", "1000") as process:
        yield process


def _num(value):
    return float(value) if value not in (None, "") else None


def test_the_page_loads_clean_and_only_talks_to_the_demo_host(open_page, demo):
    p = open_page("admin")
    p.chart("pt-chart-treemap")
    assert p.page.inner_text("#pt-identity") == "admin \u00b7 can stop activities"
    assert p.page.inner_text("#pt-host").startswith("on ")
    assert p.errors == []
    assert p.hosts == {p.demo_host}
    # The DSS-like shell shows the same webapp in an iframe, as DSS does.
    p.page.goto(demo.status["webapp"]["url"])
    frame = p.page.frame_locator("iframe#webapp")
    frame.locator("body[data-loaded=true]").wait_for(timeout=60000)
    assert frame.locator("#pt-identity").inner_text() == "admin \u00b7 can stop activities"
    assert p.errors == []
    assert p.hosts == {p.demo_host}


def test_every_chart_renders_with_data(open_page):
    p = open_page("admin")
    for element_id in CHART_IDS["overview"]:
        traces, svgs, points = p.chart(element_id)
        assert traces >= 1 and svgs >= 1 and points >= 1, element_id
    labels = p.page.evaluate("() => document.getElementById('pt-chart-treemap').data[0].labels.join('|')")
    assert "Jupyter" in labels or "kernel" in labels.lower()
    # Each window of the history reloads both charts, with data.
    for window in ("1h", "7d", "24h"):
        p.page.click("[data-window='%s']" % window)
        p.page.wait_for_selector("[data-window='%s'][aria-pressed=true]" % window)
        p.page.wait_for_function("w => document.getElementById('pt-history-points').textContent.includes(w)", arg=window)
        assert p.chart("pt-chart-memory-history")[2] >= 1
        assert p.chart("pt-chart-count-history")[2] >= 1
        assert ", one point per " in p.page.inner_text("#pt-history-points")  # /api/history's step_seconds
    assert p.page.inner_text("#pt-footer").startswith("Sampled every 2 s")  # the sampler's interval_seconds
    chips = p.page.locator("#pt-summary .pt-chip").count()
    assert chips >= 5
    p.shot("overview.png")
    p.tab("kernels")
    for element_id in CHART_IDS["kernels"]:
        traces, svgs, points = p.chart(element_id)
        assert traces >= 1 and svgs >= 1 and points >= 1, element_id
    p.shot("kernels-java.png")
    p.tab("cgroups")  # the fleet runs in no DSS cgroup: the view says so instead of an empty chart
    cgroups = p.page.locator("#pt-chart-cgroups")
    assert cgroups.get_attribute("data-rendered") == "true" or "No DSS cgroup" in cgroups.inner_text()
    p.tab("orphans")
    orphans = p.rows("#pt-orphans")
    assert any("kernel" in (o.get("role") or "") for o in orphans), orphans  # kernel-orphan: no session lists it
    p.shot("orphans.png")
    assert p.errors == []


def test_the_table_sorts_and_filters(open_page):
    p = open_page("admin")
    p.tab("processes")
    rows = p.rows()
    assert len(rows) >= 10
    assert {"notebook_session", "job"} <= {r["kind"] for r in rows}
    # Sorted by memory, largest first, by default; unknown values always last.
    values = [_num(r["rss_anon_bytes"]) for r in rows]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True) and values[: len(known)] == known
    p.page.click("th[data-key=rss_anon_bytes] button")
    assert p.page.get_attribute("th[data-key=rss_anon_bytes]", "aria-sort") == "ascending"
    known = [_num(r["rss_anon_bytes"]) for r in p.rows() if r["rss_anon_bytes"]]
    assert known == sorted(known)
    p.page.click("th[data-key=project_key] button")
    projects = [r["project_key"] for r in p.rows() if r["project_key"]]
    assert projects == sorted(projects, key=str.lower)
    p.page.click("th[data-key=idle_seconds] button")
    idle = [_num(r["idle_seconds"]) for r in p.rows() if r["idle_seconds"]]
    assert idle == sorted(idle, reverse=True) and idle
    p.shot("processes.png")
    # Free-text filter: every word must match somewhere in the row.
    p.page.fill("#pt-filter", "churn")
    filtered = p.rows()
    assert 0 < len(filtered) < len(rows)
    assert all("CHURN" in r["text"] or "churn" in r["text"].lower() for r in filtered)
    assert p.page.inner_text("#pt-table-count") == "%d of %d rows" % (len(filtered), len(rows))
    p.page.fill("#pt-filter", "")
    # Role filter.
    role = p.page.evaluate(
        "() => Array.from(document.querySelectorAll('#pt-role-filter option')).map(o => o.value)"
        ".find(v => v.includes('kernel') && !v.includes('job'))"
    )
    p.page.select_option("#pt-role-filter", role)
    by_role = p.rows()
    assert by_role and all(r["role"] == role for r in by_role)
    p.page.select_option("#pt-role-filter", "")
    # Only what can be stopped.
    p.page.check("#pt-actionable-only")
    stoppable = p.rows()
    assert stoppable and all(r["button"] for r in stoppable) and len(stoppable) < len(rows)
    assert p.errors == []


def test_a_notebook_named_with_html_renders_as_text(open_page):
    p = open_page("admin")
    p.tab("processes")
    p.page.fill("#pt-filter", "scratch")
    rows = p.rows()
    assert len(rows) == 1
    assert '<script>window.__ptInjected=1<script>' in rows[0]["text"]
    assert '<img src=x onerror="window.__ptInjected=1">' in rows[0]["text"]
    assert p.page.locator("#pt-app script, #pt-app img").count() == 0
    assert p.page.evaluate("() => window.__ptInjected") is None
    # The dry-run dialog shows the name as text too.
    p.page.click("#pt-table tbody tr[data-pid] button[data-kind]")
    p.page.wait_for_selector("#pt-dialog[data-phase]:not([data-phase=preview])")
    assert "<script>window.__ptInjected=1<script>" in p.page.inner_text("#pt-dialog")
    assert p.page.evaluate("() => window.__ptInjected") is None
    p.page.click("#pt-dialog-cancel")
    assert p.errors == []


def test_a_non_admin_sees_everything_but_actions_are_refused(open_page, demo):
    p = open_page("alice")
    assert p.page.inner_text("#pt-identity") == "alice \u00b7 view only"
    assert "not stop anything" in p.page.inner_text("#pt-banners")
    p.tab("processes")
    rows = p.rows()
    assert any(r["button"] for r in rows)
    assert not any(r["enabled"] for r in rows), "alice must not get an enabled action button"
    p.shot("view-only.png", full_page=False)
    # Even when called directly, the backend refuses: 403 with the error envelope.
    target = next(r for r in rows if r["kind"] == "notebook_session" and r["button"])
    project = p.page.get_attribute('#pt-table tr[data-id="%s"] button' % target["id"], "data-project")
    answer = p.page.evaluate(
        """([url, body]) => fetch(url, {method: 'POST', body: JSON.stringify(body),
               headers: {'Content-Type': 'application/json', 'X-Process-Tracker-CSRF': '1'}})
             .then(r => r.json().then(j => [r.status, j]))""",
        [demo.status["webapp"]["backend_url"] + "/api/actions/preview",
         {"kind": "notebook_session", "project_key": project, "id": target["id"]}],
    )
    assert answer[0] == 403 and answer[1]["error"]["code"] == "not_allowed", answer
    # ops is no admin but in the group the demo's webapp settings allow to act.
    ops = open_page("ops")
    assert ops.page.inner_text("#pt-identity") == "ops \u00b7 can stop activities"


def test_a_kernel_unload_goes_dry_run_then_confirm_then_is_gone(open_page, demo):
    p = open_page("admin")
    p.tab("processes")
    kernels = [r for r in p.rows() if r["kind"] == "notebook_session" and r["pid"] and r["enabled"]]
    assert kernels
    target = max(kernels, key=lambda r: _num(r["idle_seconds"]) or 0)  # the kernel idle the longest
    row = '#pt-table tr[data-id="%s"]' % target["id"]
    project = p.page.get_attribute(row + " button", "data-project")
    notebook = p.page.evaluate("sel => document.querySelector(sel + ' td[data-key=activity_name]').dataset.value", row)
    client = dataikuapi.DSSClient(demo.status["dss_url"], demo.status["admin_key"])

    def session_ids():
        nb = client.get_project(project).get_jupyter_notebook(notebook)
        return [s.session_id for s in nb.get_sessions(as_objects=True)]

    assert target["id"] in session_ids()
    p.page.click(row + " button")
    p.page.wait_for_selector("#pt-dialog[data-phase=confirm], #pt-dialog[data-phase=warned]")
    dialog = p.page.inner_text("#pt-dialog")
    if p.page.get_attribute("#pt-dialog", "data-phase") == "warned":
        # the demo's sessions started with its fleet (DSS times agree with the processes): under 10 minutes old,
        # the dry run says so, and the administrator confirms with "Stop anyway"
        warnings = p.page.eval_on_selector_all("#pt-dialog .pt-warnings li", "els => els.map(e => e.textContent)")
        assert warnings[-1].startswith("started ") and warnings[-1].endswith(" ago"), warnings
        assert "dry run" in dialog and p.page.inner_text("#pt-dialog-confirm") == "Stop anyway"
    else:
        assert "dry run" in dialog and "Would be stopped" in dialog and "Why:" in dialog
    assert target["id"] in session_ids(), "a dry run must not touch DSS"
    p.shot("action-dry-run.png", full_page=False)
    p.page.click("#pt-dialog-confirm")
    p.page.wait_for_selector("#pt-dialog[data-phase=done]", timeout=60000)
    assert p.page.get_attribute("#pt-dialog", "data-outcome") == "aborted", p.page.inner_text("#pt-dialog")
    assert p.page.inner_text("#pt-dialog-title") == "Unload kernel: outcome"
    assert "Done" in p.page.inner_text("#pt-dialog")
    p.page.wait_for_selector(row, state="detached", timeout=30000)  # the table reloads after the action
    p.shot("action-done.png", full_page=False)
    p.page.click("#pt-dialog-cancel")
    assert target["id"] not in session_ids()
    p.page.click("#pt-refresh")
    p.page.wait_for_selector("#pt-refresh:not([disabled])")
    assert not [r for r in p.rows() if r["id"] == target["id"]]
    assert p.errors == []
