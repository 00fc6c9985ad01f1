"""The monitoring webapp in headless Chromium when its backend is not on the DSS host (the demo without its fleet)
and one DSS project's API calls fail: the page says why host views are empty, lists what failed, and still shows
and acts on what DSS's API lists."""
import os

import dataikuapi
import pytest
from demo_process import running_demo
from webapp_browser import SHOTS, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FAILING_PROJECT = "MARKETING"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_demo(tmp_path_factory.mktemp("demo-degraded"), "--no-fleet", "--no-backfill", "--sampling", "2",
                      "--failing-project", FAILING_PROJECT) as process:
        yield process


def test_degraded_mode_and_a_failing_project_are_explained_and_api_views_still_work(browser, demo):
    p = Page(browser, demo, "admin")
    try:
        banners = p.page.inner_text("#pt-banners")
        assert "Host views are empty" in banners and "still works" in banners
        assert "Some DSS calls failed" in banners and FAILING_PROJECT in banners
        # No host process: every activity is listed without one, and can still be stopped through the API.
        p.tab("processes")
        rows = p.rows()
        assert rows and all(r["pid"] == "" for r in rows)
        assert all("no process here" in r["text"] for r in rows)
        assert {"notebook_session", "future", "job", "scenario"} <= {r["kind"] for r in rows}
        os.makedirs(SHOTS, exist_ok=True)
        p.page.screenshot(path=os.path.join(SHOTS, "degraded.png"), full_page=False)
        # A webapp backend's future, or (while a project cannot be listed) any plain background task that may be a
        # webapp's or a continuous activity's: the dry run spares it and says why; a job is still stopped.
        future = next(r for r in rows if r["kind"] == "future" and r["enabled"])
        p.page.click('#pt-table tr[data-id="%s"] button' % future["id"])
        p.page.wait_for_selector("#pt-dialog[data-phase=spared]")
        assert "Why: spared: " in p.page.inner_text("#pt-dialog")
        p.page.click("#pt-dialog-cancel")
        job = next(r for r in rows if r["kind"] == "job" and r["enabled"])
        project = p.page.get_attribute('#pt-table tr[data-id="%s"] button' % job["id"], "data-project")
        p.page.click('#pt-table tr[data-id="%s"] button' % job["id"])
        p.page.wait_for_selector("#pt-dialog[data-phase=confirm]")
        p.page.click("#pt-dialog-confirm")
        p.page.wait_for_selector("#pt-dialog[data-phase=done]", timeout=60000)
        assert p.page.get_attribute("#pt-dialog", "data-outcome") in ("aborted", "abort_requested")
        client = dataikuapi.DSSClient(demo.status["dss_url"], demo.status["admin_key"])
        status = client.get_project(project).get_job(job["id"]).get_status()
        assert (status.get("baseStatus") or {}).get("state") in ("ABORTED", "RUNNING"), status
        assert client.get_future(future["id"]).peek_state().get("aborted") is not True  # the spared task runs on
        assert p.errors == []
        assert p.hosts == {p.demo_host}
    finally:
        p.close()


def test_the_page_layout_fits_a_small_window(browser, demo):
    """DSS often shows webapps in a dashboard tile or a narrow panel: nothing overflows the page horizontally."""
    context = browser.new_context(viewport={"width": 900, "height": 700})
    try:
        page = context.new_page()
        server = demo.status["webapp"]["server"]
        page.goto(server + "/login?user=alice")
        frame = page.frame_locator("iframe#webapp")
        frame.locator("body[data-loaded=true]").wait_for(timeout=60000)
        overflow = page.frames[1].evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
    finally:
        context.close()
